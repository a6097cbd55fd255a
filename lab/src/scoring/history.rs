//! A trainee's history for one run: what they tried, the hints they took and
//! the solutions they revealed. The web stores it (JSON); scoring reads and
//! extends it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::ScenarioId;

/// Everything a trainee did on the questions of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// By question id; a question never touched has no entry.
    #[serde(default)]
    pub questions: BTreeMap<ScenarioId, QuestionHistory>,
}

/// What a trainee did on one question.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionHistory {
    /// The answers tried, in order.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// How many hints were shown (always the first ones: hints come in order).
    #[serde(default)]
    pub hints_taken: usize,
    /// Whether the solution was revealed.
    #[serde(default)]
    pub solution_revealed: bool,
}

/// One answer tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// The answer as given.
    pub answer: String,
    /// Whether it was right.
    pub right: bool,
    /// Points it earned (0 when wrong).
    pub points: u32,
}

impl History {
    /// The history of `question` (empty when untouched).
    pub fn of(&self, question: &ScenarioId) -> QuestionHistory {
        self.questions.get(question).cloned().unwrap_or_default()
    }

    /// Points earned on every question.
    pub fn total(&self) -> u32 {
        self.questions.values().map(QuestionHistory::points).fold(0, u32::saturating_add)
    }
}

impl QuestionHistory {
    /// Whether a right answer was given.
    pub fn solved(&self) -> bool {
        self.attempts.iter().any(|a| a.right)
    }

    /// Points earned (those of the right answer, if any).
    pub fn points(&self) -> u32 {
        self.attempts.iter().find(|a| a.right).map_or(0, |a| a.points)
    }

    /// Answers tried, as a count.
    pub fn tries(&self) -> u32 {
        u32::try_from(self.attempts.len()).unwrap_or(u32::MAX)
    }
}

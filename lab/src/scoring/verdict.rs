//! What scoring answers: verdicts, question states, hints and solutions
//! shown (serde types: the web sends them as they are), and its errors.

use serde::{Deserialize, Serialize};

use crate::scenario::ScenarioId;

/// The judgement of one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The question.
    pub question: ScenarioId,
    /// Whether the answer is right.
    pub right: bool,
    /// Points this answer earned (0 when wrong).
    pub points: u32,
    /// Answers still allowed (`None`: unlimited; 0 once right or used up).
    pub attempts_left: Option<u32>,
    /// No more answers are taken (right, or out of attempts).
    pub closed: bool,
    /// For an event picked by its uuid: the field value it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The questions shown now (their ids, in the scenario's order).
    pub unlocked: Vec<ScenarioId>,
}

/// Where a trainee stands on one question (what the web shows beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionStatus {
    /// The question.
    pub question: ScenarioId,
    /// Whether it is shown and may be answered.
    pub unlocked: bool,
    /// While locked: what it waits for ("the misp stage", "the detection dig-hit").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// Answered right.
    pub solved: bool,
    /// No more answers are taken (right, or out of attempts).
    pub closed: bool,
    /// Answers tried.
    pub tries: u32,
    /// Answers still allowed (`None`: unlimited).
    pub attempts_left: Option<u32>,
    /// Points earned.
    pub points: u32,
    /// Points a right answer would earn now (after hints and solution).
    pub points_now: u32,
    /// Hints shown.
    pub hints_taken: usize,
    /// What the hints shown cost, together (taken off a right answer).
    #[serde(default)]
    pub hints_cost: u32,
    /// Hints the question has.
    pub hints_total: usize,
    /// What the next hint costs (`None`: no hint left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hint_cost: Option<u32>,
    /// What revealing the solution costs (`None`: it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution_penalty: Option<u32>,
    /// Whether the solution was revealed.
    pub solution_revealed: bool,
}

/// A hint shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintShown {
    /// The question.
    pub question: ScenarioId,
    /// Which hint (from 0).
    pub index: usize,
    /// Its text (markdown).
    pub text: String,
    /// Points it takes off a right answer.
    pub cost: u32,
}

/// A solution revealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolutionShown {
    /// The question.
    pub question: ScenarioId,
    /// The solution (markdown).
    pub text: String,
    /// Points it takes off a right answer.
    pub penalty: u32,
}

/// Why scoring refused a request (the history is left unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoringError {
    /// The scenario has no `answers.yaml`.
    #[error("scenario {0} has no answers.yaml: its questions cannot be scored")]
    NoAnswers(ScenarioId),
    /// No question has this id.
    #[error("no question {0:?} in this scenario")]
    UnknownQuestion(String),
    /// `answers.yaml` has no answer for this question.
    #[error("question {0} has no answer in answers.yaml")]
    NoAnswer(ScenarioId),
    /// The question is not shown yet.
    #[error("question {question} is locked: waiting for {waiting_for}")]
    Locked {
        /// The question.
        question: ScenarioId,
        /// What it waits for.
        waiting_for: String,
    },
    /// The question takes no more answers.
    #[error("question {question} takes no more answers: {why}")]
    Closed {
        /// The question.
        question: ScenarioId,
        /// "it was answered right" or "no attempt left (3 allowed)".
        why: String,
    },
    /// A choice question was answered with something else.
    #[error("{answer:?} is not one of the choices of question {question}")]
    NotAChoice {
        /// The question.
        question: ScenarioId,
        /// The answer (its first 80 characters).
        answer: String,
    },
    /// A hint asked for out of order, or one the question lacks.
    #[error("question {question} has no hint {index} to show (hints come in order; next: {next}, count: {count})")]
    NoSuchHint {
        /// The question.
        question: ScenarioId,
        /// The hint asked for.
        index: usize,
        /// The next one that may be taken.
        next: usize,
        /// How many the question has.
        count: usize,
    },
    /// The question has no solution.
    #[error("question {0} has no solution to reveal")]
    NoSolution(ScenarioId),
}

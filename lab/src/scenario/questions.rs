//! Questions asked to trainees. Their answers and solutions are in
//! `answers.yaml` ([`super::answers`]), which trainees never see.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::identity::ScenarioId;
use super::steps::Stage;

/// A question.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Its name (unique; `answers.yaml` refers to it).
    pub id: ScenarioId,
    /// What is asked (markdown).
    pub prompt: String,
    /// How it is answered.
    #[serde(rename = "type")]
    pub kind: QuestionType,
    /// The choices, for `type: choice`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Points for a right answer.
    pub points: u32,
    /// How many answers may be tried (none: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Hints, in the order they are offered.
    #[serde(default)]
    pub hints: Vec<Hint>,
    /// Shown only once every condition holds (none: from the start).
    #[serde(default)]
    pub unlock: Vec<Unlock>,
}

/// How a question is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuestionType {
    /// Free text.
    Text,
    /// One of `choices`.
    Choice,
    /// An event of the run, picked from the timeline.
    PickEvent,
    /// A flag found in the run's artifacts.
    Flag,
}

/// A hint.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hint {
    /// The hint (markdown).
    pub text: String,
    /// Points taken off when it is shown.
    #[serde(default)]
    pub cost: u32,
}

/// A condition for showing a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "after", rename_all = "snake_case", deny_unknown_fields)]
pub enum Unlock {
    /// Once a stage of the run finished (`{after: stage, stage: misp}`).
    Stage {
        /// The stage.
        stage: Stage,
    },
    /// Once an expected detection was seen (`{after: detection, detection: dig-hit}`).
    Detection {
        /// The id of one of `expect.detections`.
        detection: ScenarioId,
    },
}

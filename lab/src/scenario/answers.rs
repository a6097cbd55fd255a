//! `answers.yaml`: the trainer-only half of the questions.

use std::collections::BTreeMap;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::identity::ScenarioId;

/// The whole `answers.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerFile {
    /// Answers, by question id.
    pub answers: BTreeMap<ScenarioId, Answer>,
}

/// The answer to one question.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// How an answer is judged.
    pub rule: AnswerRule,
    /// A worked solution a trainee may reveal, at a cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution: Option<Solution>,
}

/// How an answer is judged.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AnswerRule {
    /// The same text (trimmed; case-insensitive unless `case_sensitive`).
    Exact {
        /// The answer.
        value: String,
        /// Compare case.
        #[serde(default)]
        case_sensitive: bool,
    },
    /// Text matching a regular expression (anchored at both ends).
    Regex {
        /// The expression (Rust `regex` syntax), compiled when the scenario is loaded.
        #[serde(deserialize_with = "super::text::parse", serialize_with = "super::text::show")]
        #[schemars(with = "String")]
        pattern: Regex,
    },
    /// A field of an event this run saw: each run has its own answer.
    Event {
        /// Kunai event name (`dns_query`).
        event: String,
        /// Dotted path of the field (`data.query`, `info.task.pid`).
        field: String,
        /// Only events carrying a detection count.
        #[serde(default = "yes")]
        detected: bool,
    },
}

fn yes() -> bool {
    true
}

/// A worked solution.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Solution {
    /// The solution (markdown).
    pub text: String,
    /// Points taken off when it is revealed.
    pub penalty: u32,
}

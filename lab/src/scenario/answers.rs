//! `answers.yaml`: the trainer-only half of the questions.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

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
        pattern: Pattern,
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

/// A regular expression matched against a whole answer.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    anchored: Regex,
}

impl Pattern {
    /// Whether the whole of `answer` matches.
    pub fn matches(&self, answer: &str) -> bool {
        self.anchored.is_match(answer)
    }
}

impl FromStr for Pattern {
    type Err = regex::Error;
    fn from_str(s: &str) -> Result<Self, regex::Error> {
        Regex::new(s)?; // errors name the author's pattern, not the anchored one
        Ok(Pattern { source: s.to_string(), anchored: Regex::new(&format!("^(?:{s})$"))? })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_answers() {
        let p: Pattern = "(?i)update\\.dropper\\.lab".parse().unwrap();
        assert!(p.matches("Update.Dropper.lab"));
        assert!(!p.matches("not update.dropper.lab at all"));
        assert_eq!(p.to_string(), "(?i)update\\.dropper\\.lab");
        assert!("(unclosed".parse::<Pattern>().is_err());
    }
}

//! Judging one answer against its rule (`answers.yaml`).

use crate::scenario::{AnswerRule, Question, QuestionType};

use super::run_data::{event_uuid, field_text, RunData};

/// How an answer was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// Whether it is right.
    pub right: bool,
    /// For a `pick_event` question answered with an event's uuid: that
    /// event's field value, the answer it stands for.
    pub value: Option<String>,
}

/// Judges `answer` (already trimmed; for a choice question, the choice's own
/// text) to question `q` by `rule`, on the run `run`.
///
/// - exact: the same text, case-insensitive unless `case_sensitive`;
/// - regex: the whole answer matches;
/// - event: the answer is the field's value in an event of this run with that
///   name (and a detection, when `detected`), compared as text. A
///   `pick_event` question may also be answered with the uuid
///   (`info.event.uuid`) of the event picked: right when that event is one
///   the rule accepts, and its field value is what the answer stands for.
pub fn judge(q: &Question, rule: &AnswerRule, answer: &str, run: &RunData) -> Judged {
    let plain = |right| Judged { right, value: None };
    match rule {
        AnswerRule::Exact { value, case_sensitive: true } => plain(answer == value.trim()),
        AnswerRule::Exact { value, case_sensitive: false } => {
            plain(answer.to_lowercase() == value.trim().to_lowercase())
        }
        AnswerRule::Regex { pattern } => plain(pattern.matches(answer)),
        AnswerRule::Event { event, field, detected } => {
            if q.kind == QuestionType::PickEvent && run.event_by_uuid(answer).is_some() {
                let accepted = run.events_named(event, *detected).find(|e| event_uuid(e) == Some(answer));
                let value = accepted.and_then(|e| field_text(e, field));
                return Judged { right: value.is_some(), value };
            }
            plain(run.events_named(event, *detected).any(|e| field_text(e, field).as_deref() == Some(answer)))
        }
    }
}

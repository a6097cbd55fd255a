//! What scoring reads of a run: its timeline (unlocks) and its endpoint
//! events (event-derived answers).

use serde_json::Value;

use crate::run::folder::FolderError;
use crate::run::{RunEvent, RunEventKind, RunFolder};

/// A run's timeline and endpoint events.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    /// The stage events.
    pub timeline: Vec<RunEvent>,
    /// The endpoint agent's events (Kunai JSON): `events.jsonl`, plus the
    /// events of the timeline's detections.
    pub events: Vec<Value>,
}

impl RunData {
    /// Reads `timeline.jsonl` and `events.jsonl` of `run` as they are now
    /// (a run still going has fewer: read again to see more).
    pub fn read(run: &RunFolder) -> Result<RunData, FolderError> {
        Ok(RunData::new(run.timeline()?, run.events()?))
    }

    /// A run's data from its timeline and endpoint events.
    pub fn new(timeline: Vec<RunEvent>, mut events: Vec<Value>) -> RunData {
        for e in &timeline {
            if let RunEventKind::Detection { event, .. } = &e.kind {
                events.push(event.clone());
            }
        }
        RunData { timeline, events }
    }

    /// The endpoint events named `name` (`info.event.name`), only those
    /// carrying a detection when `detected`.
    pub fn events_named<'a>(&'a self, name: &'a str, detected: bool) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| {
            event_name(e) == Some(name) && (!detected || e.get("detection").is_some_and(|d| !d.is_null()))
        })
    }

    /// The endpoint event whose `info.event.uuid` is `uuid`.
    pub fn event_by_uuid(&self, uuid: &str) -> Option<&Value> {
        self.events.iter().find(|e| event_uuid(e) == Some(uuid))
    }
}

/// An event's Kunai name (`info.event.name`).
pub fn event_name(e: &Value) -> Option<&str> {
    e.pointer("/info/event/name").and_then(Value::as_str)
}

/// An event's uuid (`info.event.uuid`).
pub fn event_uuid(e: &Value) -> Option<&str> {
    e.pointer("/info/event/uuid").and_then(Value::as_str)
}

/// The field at dotted `path` (`info.task.pid`) of `event`, as text:
/// strings as they are, numbers and booleans as JSON writes them; objects,
/// arrays, null and missing fields have no text.
pub fn field_text(event: &Value, path: &str) -> Option<String> {
    let mut v = event;
    for key in path.split('.') {
        v = v.get(key)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

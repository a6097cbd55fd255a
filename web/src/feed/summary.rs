//! What the feed keeps of an event in memory: the fields its filters, rows
//! and ancestry links read, taken from the Kunai JSON line once.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// An endpoint event's summary (the full event stays on disk or in an `Arc<str>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `info.event.name` (`execve`, `dns_query`...).
    pub name: Box<str>,
    /// `info.task.name`: the process name.
    pub task: Box<str>,
    /// `info.task.pid`.
    pub pid: Option<u64>,
    /// `data.exe.path`.
    pub exe: Box<str>,
    /// `data.command_line`.
    pub command_line: Box<str>,
    /// `info.utc_time`.
    pub time: Box<str>,
    /// Whether it carries a (non-null) `detection`.
    pub detection: bool,
    /// `info.task.guuid`: the same for every event of one process.
    pub guid: Option<Box<str>>,
    /// `info.parent_task.guuid`.
    pub parent_guid: Option<Box<str>>,
}

// The Kunai fields read, borrowed from the line: everything else is skipped unparsed.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Line<'a> {
    #[serde(borrow)]
    info: Info<'a>,
    #[serde(borrow)]
    data: Data<'a>,
    detection: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Info<'a> {
    #[serde(borrow)]
    event: Named<'a>,
    #[serde(borrow)]
    task: Task<'a>,
    #[serde(borrow)]
    parent_task: Task<'a>,
    #[serde(borrow)]
    utc_time: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Task<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    pid: Option<u64>,
    #[serde(borrow)]
    guuid: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Data<'a> {
    #[serde(borrow)]
    exe: Path<'a>,
    #[serde(borrow)]
    command_line: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Path<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
}

impl From<Line<'_>> for Summary {
    fn from(l: Line<'_>) -> Summary {
        Summary {
            name: l.info.event.name.into(),
            task: l.info.task.name.into(),
            pid: l.info.task.pid,
            exe: l.data.exe.path.into(),
            command_line: l.data.command_line.into(),
            time: l.info.utc_time.into(),
            detection: l.detection.is_some(),
            guid: l.info.task.guuid.map(Into::into),
            parent_guid: l.info.parent_task.guuid.map(Into::into),
        }
    }
}

impl Summary {
    /// The summary of one line the agent wrote; the error says where the line is not a Kunai event.
    pub fn of_line(line: &[u8]) -> Result<Summary, serde_json::Error> {
        serde_json::from_slice::<Line>(line).map(Summary::from)
    }

    /// The summary of an event already parsed (the live feed's).
    pub fn of_value(event: &Value) -> Result<Summary, serde_json::Error> {
        Line::deserialize(event).map(Summary::from)
    }

    /// The process as a row shows it: `name (pid)`.
    pub fn process(&self) -> String {
        match self.pid {
            Some(pid) => format!("{} ({pid})", self.task),
            None => self.task.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"info": {"event": {"name": "execve", "uuid": "u"}, "utc_time": "2026-11-30T12:00:00Z",
                        "task": {"name": "dig", "pid": 12, "guuid": "g-12", "namespaces": {"mnt": 1}},
                        "parent_task": {"name": "sh", "pid": 10, "guuid": "g-10"}},
               "data": {"command_line": "dig \"why.kunai.rocks\"", "exe": {"path": "/usr/bin/dig"}, "ancestors": "/sbin/init"},
               "detection": {"iocs": ["why.kunai.rocks"]}})
    }

    #[test]
    fn a_line_and_its_parsed_value_give_the_same_summary() {
        let e = event();
        let from_line = Summary::of_line(e.to_string().as_bytes()).unwrap();
        assert_eq!(from_line, Summary::of_value(&e).unwrap());
        assert_eq!(&*from_line.name, "execve");
        assert_eq!(&*from_line.command_line, "dig \"why.kunai.rocks\"");
        assert_eq!(from_line.process(), "dig (12)");
        assert_eq!(from_line.guid.as_deref(), Some("g-12"));
        assert_eq!(from_line.parent_guid.as_deref(), Some("g-10"));
        assert!(from_line.detection);
    }

    #[test]
    fn a_null_detection_is_none_and_missing_fields_are_empty() {
        let s = Summary::of_line(br#"{"info": {}, "detection": null}"#).unwrap();
        assert!(!s.detection);
        assert_eq!(s, Summary::default());
    }

    #[test]
    fn a_line_that_is_not_an_event_says_where() {
        let e = Summary::of_line(b"{\"info\": {\"task\": {\"pid\": \"twelve\"}}}").unwrap_err();
        assert!(e.to_string().contains("column"), "{e}");
        assert!(Summary::of_line(b"not json").is_err());
    }
}

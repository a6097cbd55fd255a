//! An event line as the agent wrote it, read back typed (the sandbox's
//! report builder reads the task's events this way): the same structs the
//! agent serialises, so there is one schema.

use serde::Deserialize;
use uuid::Uuid;

use super::time::UtcTime;
use super::{EventData, EventKind, TaskInfo};

/// One written event, typed.
#[derive(Debug, Clone)]
pub struct WrittenEvent {
    /// The event's `data`, typed by its `info.event.name`.
    pub data: EventData,
    /// `info.event.uuid` (nil when absent).
    pub uuid: Uuid,
    /// `info.task`.
    pub task: TaskInfo,
    /// `info.parent_task`.
    pub parent_task: TaskInfo,
    /// `info.utc_time`.
    pub utc_time: UtcTime,
}

/// A line that is not an event the agent could have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadEventLine(String);

#[derive(Deserialize)]
struct Line {
    data: serde_json::Value,
    info: LineInfo,
}

#[derive(Deserialize)]
struct LineInfo {
    event: LineEvent,
    #[serde(default)]
    task: TaskInfo,
    #[serde(default)]
    parent_task: TaskInfo,
    utc_time: UtcTime,
}

#[derive(Deserialize)]
struct LineEvent {
    name: String,
    #[serde(default)]
    uuid: Uuid,
}

impl WrittenEvent {
    /// Reads one JSON line.
    pub fn parse(line: &str) -> Result<Self, BadEventLine> {
        let line: Line = serde_json::from_str(line).map_err(|e| BadEventLine(format!("not an event: {e}")))?;
        let kind: EventKind =
            line.info.event.name.parse().map_err(|e: super::UnknownEvent| BadEventLine(e.to_string()))?;
        let data =
            EventData::from_json(kind, &line.data).map_err(|e| BadEventLine(format!("{} data: {e}", kind.name())))?;
        Ok(WrittenEvent {
            data,
            uuid: line.info.event.uuid,
            task: line.info.task,
            parent_task: line.info.parent_task,
            utc_time: line.info.utc_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_line_back_with_its_task_and_time() {
        let line = r#"{"data":{"ancestors":"/usr/bin/bash","command_line":"rm /tmp/x","exe":{"path":"/usr/bin/rm"},"path":"/tmp/x","success":true},"info":{"host":{},"event":{"source":"kunai","id":86,"name":"file_unlink","uuid":"8b6a1a41-84c3-4b2a-9c4b-0c2c7f7e1b10","batch":3},"task":{"name":"rm","pid":42,"tgid":42,"guuid":"00000000-0000-0000-0000-000000000001","uid":1000,"gid":1000,"namespaces":{"mnt":1},"flags":"0x400000","zombie":false},"parent_task":{"name":"bash","pid":41,"tgid":41},"utc_time":"2024-11-19T09:55:53.138247256Z"}}"#;
        let ev = WrittenEvent::parse(line).unwrap();
        assert_eq!(ev.data.kind(), EventKind::FileUnlink);
        assert_eq!((ev.task.tgid, ev.task.uid, ev.parent_task.tgid), (42, 1000, 41));
        assert_eq!(ev.utc_time, UtcTime(1_732_010_153_138_247_256));
        match ev.data {
            EventData::FileUnlink(d) => assert_eq!(&*d.path, "/tmp/x"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "{}",
            r#"{"data":{},"info":{"event":{"name":"nope"},"utc_time":"2024-11-19T09:55:53Z"}}"#,
            r#"{"data":{"exe":7},"info":{"event":{"name":"execve"},"utc_time":"2024-11-19T09:55:53Z"}}"#,
            r#"{"data":{},"info":{"event":{"name":"execve"},"utc_time":"yesterday"}}"#,
        ] {
            assert!(WrittenEvent::parse(bad).is_err(), "{bad}");
        }
    }
}

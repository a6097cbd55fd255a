//! Kunai-compatible events: the one definition of the JSON schema ioclab
//! writes (`{"data": {...}, "info": {...}, "detection": {...}}`), serialised
//! with serde and read back by `ioclab replay`.

mod data;
pub mod json;
mod kind;
mod serde_helpers;
pub mod time;
pub mod written;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use data::*;
pub use kind::{EventKind, UnknownEvent};

use crate::ioc::{Detection, Observable, Observables};

/// Shared, immutable text (paths and command lines appear in many events).
pub type Text = Arc<str>;

/// One event as written: one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Event-specific fields.
    pub data: EventData,
    /// Fields every event has.
    pub info: Info,
    /// Present when IoCs matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
}

/// The `info` section, identical in shape for every event.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The machine.
    pub host: Arc<Host>,
    /// What event this is.
    pub event: EventInfo,
    /// The task the event is about.
    pub task: TaskJson,
    /// Its parent.
    pub parent_task: TaskJson,
    /// When it happened, RFC 3339 UTC with nanoseconds.
    pub utc_time: time::UtcTime,
    /// cgroup v2 id of the task (not written: routes events to taps).
    #[serde(skip)]
    pub cgroup_id: u64,
}

/// `info.host`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostInfo {
    /// Stable id of the machine (config `host_uuid`, else derived from /etc/machine-id).
    pub uuid: Uuid,
    /// Host name.
    pub name: String,
    /// Container the task runs in, when known.
    pub container: Option<ContainerInfo>,
}

/// `info.host`, rendered to JSON once: it is the same in every event.
#[derive(Debug)]
pub struct Host {
    info: HostInfo,
    json: Box<serde_json::value::RawValue>,
}

impl Host {
    /// Wraps `info` with its JSON.
    pub fn new(info: HostInfo) -> Self {
        let json = serde_json::value::to_raw_value(&info).unwrap_or_else(|_| {
            // HostInfo is plain strings and a uuid: serialising it cannot fail
            serde_json::value::RawValue::from_string("null".into()).expect("static JSON")
        });
        Host { info, json }
    }

    /// The host's fields.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }
}

impl Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

/// `info.host.container`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Container name.
    pub name: String,
    /// Container engine (docker, podman, lxc...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `info.event`.
#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    /// "kunai" unless the config's `event_source` says otherwise.
    pub source: Text,
    /// Numeric id of the event type.
    pub id: u32,
    /// Name of the event type.
    pub name: &'static str,
    /// Unique id of this event.
    pub uuid: Uuid,
    /// Number of the ring-buffer read that brought the event.
    pub batch: u64,
}

impl EventInfo {
    /// Info for a new event of `kind`.
    pub fn new(source: &Text, kind: EventKind, batch: u64) -> Self {
        EventInfo { source: source.clone(), id: kind.id(), name: kind.name(), uuid: Uuid::new_v4(), batch }
    }
}

/// `info.task`, `info.parent_task` and the `task` of a kill/ptrace target.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct TaskInfo {
    /// Command name (the kernel's comm, at most 15 bytes).
    pub name: String,
    /// Thread id.
    pub pid: i32,
    /// Process id.
    pub tgid: i32,
    /// Process identity for its whole life; differs between two processes that reuse a pid.
    pub guuid: Uuid,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Namespace ids.
    pub namespaces: Namespaces,
    /// The kernel's task flags (PF_*), hex.
    #[serde(with = "serde_helpers::hex_u32")]
    pub flags: u32,
    /// The task has exited and waits to be reaped.
    pub zombie: bool,
}

/// A [`TaskInfo`] rendered to JSON once, for `info.task` and
/// `info.parent_task`: every event of a process repeats them, so the agent
/// keeps them rendered while the task's fields stay the same.
#[derive(Debug, Clone)]
pub struct TaskJson(Arc<str>);

impl TaskJson {
    /// Renders `task`.
    pub fn new(task: &TaskInfo) -> Self {
        Self::render(task, &mut Vec::with_capacity(256))
    }

    /// Renders `task` through `scratch` (kept by the caller: one allocation per rendering).
    pub fn render(task: &TaskInfo, scratch: &mut Vec<u8>) -> Self {
        // TaskInfo is plain strings and numbers: rendering it cannot fail
        TaskJson(json::render_shared(task, scratch).unwrap_or_else(|| "{}".into()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text (two renderings that are the same allocation are the same rendering).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl Serialize for TaskJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json::serialize_raw(s, &self.0)
    }
}

/// `task.namespaces`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Namespaces {
    /// Inode number of the mount namespace.
    pub mnt: u32,
}

/// Derives a process's `guuid` from what identifies it: the host, its tgid
/// and its start time (in clock ticks since boot, the resolution /proc gives,
/// so a process seen first in /proc and later in the kernel gets the same id).
pub fn guuid(host: &Uuid, tgid: u32, start_ticks: u64) -> Uuid {
    let h = host.as_u64_pair();
    Uuid::from_u64_pair(start_ticks ^ h.0.rotate_left(17), ((tgid as u64) << 32) | (h.1 & 0xffff_ffff))
}

impl Event {
    /// The event's type.
    pub fn kind(&self) -> EventKind {
        self.data.kind()
    }
}

impl Observables for Event {
    fn observables(&self, visit: &mut dyn FnMut(Observable<'_>)) {
        self.data.observables(visit)
    }
}

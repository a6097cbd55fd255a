//! Events for the signatures' tests, written as the sensor writes them.

use ioclab_agent::events::{EventData, EventKind};
use serde_json::{json, Value};

use super::{Evidence, Hit, Rule, TaskEvent};
use crate::detonation::NetworkLog;

/// A task's events, built one by one.
#[derive(Default)]
pub struct Task {
    pub events: Vec<TaskEvent>,
    pub network: NetworkLog,
}

impl Task {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any event, its `data` given as JSON.
    pub fn ev(mut self, pid: u32, ppid: u32, comm: &str, kind: &str, data: Value) -> Self {
        let kind: EventKind = kind.parse().unwrap();
        let index = self.events.len();
        self.events.push(TaskEvent {
            index,
            pid,
            ppid,
            comm: comm.into(),
            time: 1_700_000_000.0 + index as f64,
            data: EventData::from_json(kind, &data).unwrap(),
            uuid: format!("00000000-0000-0000-0000-{index:012}"),
        });
        self
    }

    pub fn exec(self, pid: u32, ppid: u32, exe: &str, command_line: &str) -> Self {
        let comm = super::basename(exe).to_string();
        self.ev(pid, ppid, &comm, "execve", json!({"command_line": command_line, "exe": {"path": exe}}))
    }

    pub fn script(self, pid: u32, ppid: u32, script: &str, interpreter: &str) -> Self {
        let comm = super::basename(script).to_string();
        self.ev(
            pid,
            ppid,
            &comm,
            "execve_script",
            json!({"command_line": format!("{interpreter} {script}"), "exe": {"path": script}, "interpreter": {"path": interpreter}}),
        )
    }

    pub fn file(self, pid: u32, kind: &str, path: &str) -> Self {
        self.ev(pid, 1, "proc", kind, json!({"path": path}))
    }

    pub fn rename(self, pid: u32, old: &str, new: &str) -> Self {
        self.ev(pid, 1, "mv", "file_rename", json!({"old": old, "new": new}))
    }

    pub fn unlink(self, pid: u32, path: &str) -> Self {
        self.ev(pid, 1, "proc", "file_unlink", json!({"path": path, "success": true}))
    }

    pub fn connect(self, pid: u32, comm: &str, ip: &str, port: u16, hostname: &str) -> Self {
        self.ev(
            pid,
            1,
            comm,
            "connect",
            json!({"dst": {"ip": ip, "port": port, "hostname": hostname}, "src": {"ip": "10.0.0.2", "port": 40000}, "socket": {"proto": "TCP"}, "connected": true}),
        )
    }

    pub fn dns(self, pid: u32, query: &str, answers: &[&str]) -> Self {
        self.ev(pid, 1, "curl", "dns_query", json!({"query": query, "query_type": "A", "response": answers, "dns_server": {"ip": "10.0.0.1", "port": 53}}))
    }

    /// What `rule` finds in these events (sample named `sample`).
    pub fn check(&self, rule: &dyn Rule) -> Vec<Hit> {
        rule.check(&Evidence { events: &self.events, network: &self.network, sample_name: Some("sample") })
    }

    /// The indexes of the events `rule` marks.
    pub fn marked(&self, rule: &dyn Rule) -> Vec<usize> {
        self.check(rule)
            .into_iter()
            .filter_map(|h| match h {
                Hit::Event(i) => Some(i),
                Hit::Ioc { .. } => None,
            })
            .collect()
    }
}

//! Linux behaviour signatures over a task's sensor events and the fake
//! internet's log. Each family lives in its own module; every rule says
//! what it means (name, description, severity, ATT&CK ids) and returns the
//! events behind it, which the report turns into marks.

mod evasion;
mod execution;
mod network;
mod persistence;
mod privilege;

use std::collections::HashSet;

use ioclab_agent::events::{EventData, EventKind};

use crate::detonation::NetworkLog;

/// A task's event, read from its Kunai line.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    /// Position in the task's event list.
    pub index: usize,
    /// Process (tgid) that did it.
    pub pid: u32,
    /// Its parent.
    pub ppid: u32,
    /// The process's name (comm) at the time.
    pub comm: String,
    /// Epoch seconds.
    pub time: f64,
    /// What happened.
    pub data: EventData,
    /// `info.event.uuid`.
    pub uuid: String,
}

/// What the rules look at.
pub struct Evidence<'a> {
    /// The task's events, in order.
    pub events: &'a [TaskEvent],
    /// The fake internet's log.
    pub network: &'a NetworkLog,
    /// The submitted file's name (`None` for URL tasks).
    pub sample_name: Option<&'a str>,
}

/// A matched rule's evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// An event, by index in [`Evidence::events`].
    Event(usize),
    /// A value seen outside the events (the network log).
    Ioc {
        /// What kind of value (`ip`, `url`, `domain`...).
        category: &'static str,
        /// The value.
        ioc: String,
        /// Why it is evidence.
        description: String,
    },
}

/// What a signature means.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Identifier.
    pub name: &'static str,
    /// For a human.
    pub description: &'static str,
    /// 1 to 5.
    pub severity: u32,
    /// ATT&CK techniques: (id, name, what it is).
    pub ttp: &'static [(&'static str, &'static str, &'static str)],
}

/// A behaviour signature.
pub trait Rule: Sync {
    /// What it means.
    fn meta(&self) -> Meta;
    /// The evidence it finds (empty: it did not match).
    fn check(&self, ev: &Evidence<'_>) -> Vec<Hit>;
}

/// Every signature, in report order.
pub fn all() -> Vec<&'static dyn Rule> {
    let mut rules: Vec<&'static dyn Rule> = Vec::new();
    rules.extend_from_slice(execution::RULES);
    rules.extend_from_slice(persistence::RULES);
    rules.extend_from_slice(network::RULES);
    rules.extend_from_slice(evasion::RULES);
    rules.extend_from_slice(privilege::RULES);
    rules
}

/// The signatures that match, with their evidence.
pub fn run(ev: &Evidence<'_>) -> Vec<(Meta, Vec<Hit>)> {
    all()
        .into_iter()
        .filter_map(|r| {
            let hits = r.check(ev);
            (!hits.is_empty()).then(|| (r.meta(), dedup(hits)))
        })
        .collect()
}

fn dedup(hits: Vec<Hit>) -> Vec<Hit> {
    let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits {
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

// ---- helpers shared by the families ----

/// A file an event writes: created, written, renamed to.
pub fn written_path(data: &EventData) -> Option<&str> {
    match data {
        EventData::FileCreate(d) | EventData::Write(d) | EventData::WriteConfig(d) | EventData::WriteClose(d) => {
            Some(&d.path)
        }
        EventData::FileRename(d) => Some(&d.new),
        _ => None,
    }
}

/// The program an event executes (the script, for `execve_script`).
pub fn executed_path(data: &EventData) -> Option<&str> {
    match data {
        EventData::Execve(d) => Some(&d.exe.path),
        EventData::ExecveScript(d) => Some(&d.exe.path),
        _ => None,
    }
}

/// The command line of an exec event.
pub(crate) fn exec_command_line(data: &EventData) -> Option<&str> {
    match data {
        EventData::Execve(d) => Some(&d.command_line),
        EventData::ExecveScript(d) => Some(&d.command_line),
        _ => None,
    }
}

/// Last path component.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Shells a reverse shell or a `| sh` runs.
pub(crate) fn is_shell(path_or_name: &str) -> bool {
    matches!(basename(path_or_name), "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "busybox" | "mksh")
}

/// Indexes of the events of `kind`.
pub(crate) fn of_kind<'a>(ev: &'a Evidence<'_>, kind: EventKind) -> impl Iterator<Item = &'a TaskEvent> + 'a {
    ev.events.iter().filter(move |e| e.data.kind() == kind)
}

/// Hits for every write whose path `matches`.
pub(crate) fn writes_matching(ev: &Evidence<'_>, matches: impl Fn(&str) -> bool) -> Vec<Hit> {
    ev.events.iter().filter(|e| written_path(&e.data).is_some_and(&matches)).map(|e| Hit::Event(e.index)).collect()
}

/// Addresses names resolved to, from the sensor and the fake resolver.
pub(crate) fn resolved_addresses(ev: &Evidence<'_>) -> HashSet<String> {
    let mut out: HashSet<String> = HashSet::new();
    for e in of_kind(ev, EventKind::DnsQuery) {
        if let EventData::DnsQuery(d) = &e.data {
            out.extend(d.response.iter().cloned());
        }
    }
    for q in &ev.network.dns {
        out.extend(q.answers.iter().map(|(_, data)| data.clone()));
    }
    out
}

#[cfg(test)]
pub(crate) mod testing;

//! `behavior`: processes with their calls, the process tree, the summary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient;

/// `behavior`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behavior {
    /// Every process of the task.
    #[serde(deserialize_with = "lenient::list")]
    pub processes: Vec<Process>,
    /// The same processes as a tree.
    #[serde(deserialize_with = "lenient::list")]
    pub processtree: Vec<ProcessNode>,
    /// What they did, by kind.
    pub summary: Summary,
}

/// A `behavior.processes` entry (CAPE: `process_id`, `parent_id`, `module_path`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    /// Process id (as the sample saw it... here: in the host's pid namespace).
    #[serde(alias = "process_id", deserialize_with = "lenient::u32_")]
    pub pid: u32,
    /// Parent's id.
    #[serde(alias = "parent_id", deserialize_with = "lenient::u32_")]
    pub ppid: u32,
    /// Name.
    #[serde(deserialize_with = "lenient::string")]
    pub process_name: String,
    /// Executable.
    #[serde(alias = "module_path", deserialize_with = "lenient::string")]
    pub process_path: String,
    /// Command line.
    #[serde(deserialize_with = "lenient::string")]
    pub command_line: String,
    /// When it was first seen, epoch seconds.
    #[serde(deserialize_with = "lenient::epoch")]
    pub first_seen: f64,
    /// It descends from the sample (Cuckoo's `track`).
    #[serde(deserialize_with = "lenient_bool")]
    pub track: bool,
    /// What it did, in order (each sensor event of the process).
    #[serde(deserialize_with = "lenient::list")]
    pub calls: Vec<Call>,
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    lenient::int(d).map(|v| v != 0).or(Ok(true))
}

/// One call of a process: here, one sensor event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Call {
    /// `process`, `file`, `network`, `system`...
    #[serde(deserialize_with = "lenient::string")]
    pub category: String,
    /// The call: the Kunai event name (`execve`, `connect`, `file_unlink`...).
    #[serde(deserialize_with = "lenient::string")]
    pub api: String,
    /// Epoch seconds.
    #[serde(deserialize_with = "lenient::epoch")]
    pub time: f64,
    /// Whether it succeeded.
    #[serde(deserialize_with = "lenient_bool")]
    pub status: bool,
    /// Its arguments by name.
    #[serde(deserialize_with = "lenient::arguments")]
    pub arguments: BTreeMap<String, Value>,
    /// The Kunai event's `info.event.uuid` (ioclab: the event behind the call).
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "lenient::string")]
    pub uuid: String,
}

impl Call {
    /// Its telling argument: a path, a query, a command line, a URL or `ip:port`.
    pub fn detail(&self) -> String {
        ["path", "new", "query", "command_line", "url"]
            .iter()
            .find_map(|k| self.arguments.get(*k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()))
            .map(str::to_string)
            .or_else(|| self.arguments.get("dst").map(|d| format!("{}:{}", d["ip"].as_str().unwrap_or("?"), d["port"])))
            .unwrap_or_default()
    }
}

/// A `behavior.processtree` node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessNode {
    /// Process id.
    #[serde(alias = "process_id", deserialize_with = "lenient::u32_")]
    pub pid: u32,
    /// Parent's id.
    #[serde(alias = "parent_id", deserialize_with = "lenient::u32_")]
    pub ppid: u32,
    /// Name.
    #[serde(alias = "name", deserialize_with = "lenient::string")]
    pub process_name: String,
    /// Command line (CAPE: under `environ.CommandLine`, not read).
    #[serde(deserialize_with = "lenient::string")]
    pub command_line: String,
    /// Epoch seconds.
    #[serde(deserialize_with = "lenient::epoch")]
    pub first_seen: f64,
    /// It descends from the sample.
    #[serde(deserialize_with = "lenient_bool")]
    pub track: bool,
    /// Its children.
    #[serde(deserialize_with = "lenient::list")]
    pub children: Vec<ProcessNode>,
}

/// `behavior.summary` (CAPE names accepted: `write_files`, `delete_files`...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Files created.
    #[serde(deserialize_with = "lenient::strings")]
    pub file_created: Vec<String>,
    /// Files written.
    #[serde(alias = "write_files", deserialize_with = "lenient::strings")]
    pub file_written: Vec<String>,
    /// Files read (configuration files, as the sensor reports them).
    #[serde(alias = "read_files", deserialize_with = "lenient::strings")]
    pub file_read: Vec<String>,
    /// Files deleted.
    #[serde(alias = "delete_files", deserialize_with = "lenient::strings")]
    pub file_deleted: Vec<String>,
    /// Files moved.
    #[serde(deserialize_with = "lenient::list")]
    pub file_moved: Vec<Moved>,
    /// Command lines run.
    #[serde(alias = "executed_commands", deserialize_with = "lenient::strings")]
    pub command_line: Vec<String>,
    /// Names resolved.
    #[serde(deserialize_with = "lenient::strings")]
    pub resolves_host: Vec<String>,
    /// Addresses connected to.
    #[serde(deserialize_with = "lenient::strings")]
    pub connects_ip: Vec<String>,
    /// Host names connected to.
    #[serde(deserialize_with = "lenient::strings")]
    pub connects_host: Vec<String>,
    /// URLs fetched.
    #[serde(deserialize_with = "lenient::strings")]
    pub fetches_url: Vec<String>,
    /// URLs whose content was saved to a file.
    #[serde(deserialize_with = "lenient::strings")]
    pub downloads_file: Vec<String>,
}

/// A `file_moved` entry: Cuckoo writes `{src, dst}`; `[src, dst]` is read too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// Former path.
    pub src: String,
    /// New path.
    pub dst: String,
}

impl<'de> Deserialize<'de> for Moved {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        match Value::deserialize(d)? {
            Value::Object(o) => Ok(Moved { src: text(o.get("src")), dst: text(o.get("dst")) }),
            Value::Array(a) => Ok(Moved { src: text(a.first()), dst: text(a.get(1)) }),
            Value::String(s) => Ok(Moved { src: s, dst: String::new() }),
            other => Err(serde::de::Error::custom(format!("not a move: {other}"))),
        }
    }
}

//! The contract between the part that runs a sample (isolation, fake
//! internet, sensor) and the parts that describe it (report builder, API):
//! a [`Job`] goes in, a [`Detonation`] comes out. Times are epoch seconds as
//! floats, as Cuckoo writes them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ioclab_agent::hashes::{Md5, Sha1, Sha256, Sha512};
use serde::{Deserialize, Serialize};

/// What to detonate and how: one sandbox task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// Task id (Cuckoo's `info.id`).
    pub task_id: u64,
    /// What runs: a file, or a URL fetched with `curl` inside the sandbox.
    pub target: Target,
    /// Arguments given to the sample.
    #[serde(default)]
    pub args: Vec<String>,
    /// How to run the file ("elf", "sh", "bash", "python"...); `None`: chosen from its content.
    #[serde(default)]
    pub package: Option<String>,
    /// Wall-clock limit, seconds.
    pub timeout_s: u64,
    /// Cuckoo's `enforce_timeout`: run the whole timeout even when the sample's processes are gone.
    #[serde(default)]
    pub enforce_timeout: bool,
    /// Memory limit of the task's cgroup, bytes.
    pub memory_bytes: u64,
    /// Process limit of the task's cgroup.
    pub max_pids: u32,
    /// Run the sample as root instead of the unprivileged sandbox user.
    #[serde(default)]
    pub as_root: bool,
    /// DNS records the fake internet answers before its catch-all sink.
    #[serde(default)]
    pub dns: Vec<DnsRecord>,
    /// Services the fake internet runs instead of its sinks (a lab's HTTP
    /// page or C2 listener, the same ones its endpoint steps meet).
    #[serde(default)]
    pub services: Vec<crate::fakenet::Service>,
    /// Cuckoo's free-form `options` (`key=value,...`), kept for the report's `info.options`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The target of a job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A file stored by the sandbox; `name` is the submitted file name (already checked: no `/`, no NUL).
    File {
        /// Where the sample is stored on the host.
        path: PathBuf,
        /// Its submitted name.
        name: String,
    },
    /// A URL, fetched with `curl` inside the sandbox.
    Url(String),
}

/// A DNS record the fake internet answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsRecord {
    /// Owner name, lower case, without the final dot.
    pub name: String,
    /// The record.
    #[serde(flatten)]
    pub data: DnsRecordData,
}

/// The data of a [`DnsRecord`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", content = "value")]
pub enum DnsRecordData {
    /// An IPv4 address.
    A(std::net::Ipv4Addr),
    /// An IPv6 address.
    #[allow(clippy::upper_case_acronyms)]
    AAAA(std::net::Ipv6Addr),
    /// An alias; the target is resolved in turn.
    CNAME(String),
}

/// What a detonation saw, before it is turned into a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Detonation {
    /// The job's task id.
    pub task_id: u64,
    /// When the sample was started, epoch seconds.
    pub started: f64,
    /// When the task ended (every process gone, or killed), epoch seconds.
    pub ended: f64,
    /// The package that ran the target ("elf", "sh", "curl" for URLs...).
    pub package: String,
    /// The sample file, hashed (`None` for URL tasks).
    pub sample: Option<FileFacts>,
    /// Pid of the first process of the sample, in the host's pid namespace.
    pub root_pid: Option<u32>,
    /// Exit code of the first process (128+N when killed by signal N).
    pub exit_code: Option<i32>,
    /// The timeout ended the task (its processes were killed).
    pub timed_out: bool,
    /// The task's events, Kunai JSON lines exactly as the sensor wrote them
    /// (also stored as `kunai.jsonl.gz` next to the report).
    pub events: Vec<String>,
    /// What the sample did on the fake internet.
    pub network: NetworkLog,
    /// Files the task created or wrote, collected when it ended.
    pub dropped: Vec<DroppedFile>,
    /// Problems that did not stop the task (a hook that could not load, a file too big to keep...).
    pub errors: Vec<String>,
}

/// A file's identity and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    /// Size in bytes.
    pub size: u64,
    /// MD5.
    pub md5: Md5,
    /// SHA-1.
    pub sha1: Sha1,
    /// SHA-256.
    pub sha256: Sha256,
    /// SHA-512.
    pub sha512: Sha512,
    /// ssdeep fuzzy hash, when computed.
    pub ssdeep: Option<String>,
    /// What the content is, `file(1)`-style ("ELF 64-bit LSB executable", "POSIX shell script"...).
    pub kind: String,
}

/// A file left by the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedFile {
    /// Its path as the sample saw it, inside the sandbox.
    pub guest_path: String,
    /// The kept copy, on the host (relative to the task's folder).
    pub stored: PathBuf,
    /// Hashes and type of the whole file.
    pub facts: FileFacts,
    /// The copy was cut at the size cap (hashes are of the whole file when it could be read whole).
    pub truncated: bool,
    /// Pids (host namespace) of the processes that wrote it.
    pub pids: Vec<u32>,
}

/// What the sample did on the fake internet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkLog {
    /// Queries the resolver answered.
    pub dns: Vec<DnsQuery>,
    /// HTTP requests the HTTP sinks parsed.
    pub http: Vec<HttpRequest>,
    /// TLS ClientHellos seen by the sinks.
    pub tls: Vec<TlsHello>,
    /// TCP connections accepted by a sink.
    pub tcp: Vec<Flow>,
    /// UDP datagrams received (DNS excluded).
    pub udp: Vec<Flow>,
    /// Connections refused: no sink on that port.
    pub dead_hosts: Vec<SocketAddr>,
}

/// A DNS query and the answer it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsQuery {
    /// Epoch seconds.
    pub time: f64,
    /// The name asked, lower case, without the final dot.
    pub name: String,
    /// Query type ("A", "AAAA", "TXT"...).
    pub qtype: String,
    /// Answer records, in order: (type, data).
    pub answers: Vec<(String, String)>,
}

/// An HTTP request received by a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Epoch seconds.
    pub time: f64,
    /// Client address.
    pub src: SocketAddr,
    /// The address the sample connected to.
    pub dst: SocketAddr,
    /// Method.
    pub method: String,
    /// `Host` header (the destination IP when absent).
    pub host: String,
    /// Request target as sent (path and query).
    pub path: String,
    /// `User-Agent`, when sent.
    pub user_agent: Option<String>,
    /// Body length in bytes.
    pub body_size: u64,
    /// SHA-256 of the body, when there is one.
    pub body_sha256: Option<Sha256>,
}

/// A TLS ClientHello received by a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsHello {
    /// Epoch seconds.
    pub time: f64,
    /// Client address.
    pub src: SocketAddr,
    /// The address the sample connected to.
    pub dst: SocketAddr,
    /// Server name indication, when sent.
    pub sni: Option<String>,
}

/// A TCP connection or UDP datagram flow seen by a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Epoch seconds of the first packet.
    pub time: f64,
    /// Client address.
    pub src: SocketAddr,
    /// The address the sample sent to.
    pub dst: SocketAddr,
    /// Bytes received from the sample.
    pub bytes: u64,
    /// The first bytes it sent (at most 256).
    pub head: Vec<u8>,
}

/// Why a detonation could not run at all (a task that ran and misbehaved is
/// not an error: it is a [`Detonation`]).
#[derive(Debug, thiserror::Error)]
pub enum DetonateError {
    /// Not root, no eBPF, no namespaces: the sandbox cannot run here.
    #[error("the sandbox cannot run on this machine: {0}")]
    Unsupported(String),
    /// Nothing can run this target (a data file...).
    #[error("no package can run {name}: {reason}")]
    NoPackage {
        /// The sample's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Setting the task up or tearing it down failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Runs jobs. The real one isolates the sample and watches it with the
/// eBPF sensor; the API and the CLI only see this trait.
pub trait Detonator: Send + Sync {
    /// Runs `job`, keeping its artifacts (dropped files, `kunai.jsonl.gz`) under `task_dir`.
    fn detonate(&self, job: &Job, task_dir: &Path) -> Result<Detonation, DetonateError>;
}

//! The `data` section of each event type (field names from Kunai's schema,
//! ../shared/spec/kunai.md), and the typed values each exposes to IoCs.
//!
//! Every struct reads back leniently (`#[serde(default)]`) so `ioclab replay`
//! accepts logs from other Kunai versions; unknown fields are ignored.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::serde_helpers::{hex_u64, opt_digest};
use super::{EventKind, TaskInfo, Text};
use crate::hashes::{Md5, Sha1, Sha256, Sha512};
use crate::ioc::{Observable, Observables};

/// A file's metadata and hashes (`exe`, `interpreter`, `mapped`, `meta`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct FileMeta {
    /// Absolute path (older Kunai wrote `file`).
    #[serde(alias = "file")]
    pub path: Text,
    /// MIME type from the file's magic bytes.
    pub magic: Text,
    /// MD5 of the content, `""` when it could not be read.
    #[serde(with = "opt_digest")]
    pub md5: Option<Md5>,
    /// SHA-1 of the content.
    #[serde(with = "opt_digest")]
    pub sha1: Option<Sha1>,
    /// SHA-256 of the content.
    #[serde(with = "opt_digest")]
    pub sha256: Option<Sha256>,
    /// SHA-512 of the content.
    #[serde(with = "opt_digest")]
    pub sha512: Option<Sha512>,
    /// Size in bytes.
    pub size: u64,
    /// Why the file could not be read or hashed, else null.
    pub error: Option<Text>,
}

/// A file's metadata as events carry it: shared, and rendered to JSON once
/// when it comes from the hash cache (an executable's four digests appear in
/// every execve of it).
#[derive(Debug, Clone, Default)]
pub struct FileRef {
    meta: Arc<FileMeta>,
    /// `meta` as JSON, when rendered.
    json: Option<Arc<str>>,
}

impl FileRef {
    /// `meta`, rendered to JSON now: for metadata that many events will carry.
    pub fn rendered(meta: Arc<FileMeta>) -> Self {
        let json = crate::events::json::render_shared(&*meta, &mut Vec::with_capacity(512));
        FileRef { meta, json }
    }

    /// The shared metadata.
    pub fn meta(&self) -> &Arc<FileMeta> {
        &self.meta
    }
}

impl From<FileMeta> for FileRef {
    fn from(meta: FileMeta) -> Self {
        FileRef { meta: Arc::new(meta), json: None }
    }
}

impl std::ops::Deref for FileRef {
    type Target = FileMeta;
    fn deref(&self) -> &FileMeta {
        &self.meta
    }
}

impl PartialEq for FileRef {
    fn eq(&self, other: &Self) -> bool {
        self.meta == other.meta
    }
}

impl Eq for FileRef {}

impl Serialize for FileRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Some(json) => crate::events::json::serialize_raw(s, json),
            None => self.meta.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        FileMeta::deserialize(d).map(FileRef::from)
    }
}

impl FileMeta {
    fn visit(&self, visit: &mut dyn FnMut(Observable<'_>)) {
        visit(Observable::Path(&self.path));
        self.visit_hashes(visit);
    }

    fn visit_hashes(&self, visit: &mut dyn FnMut(Observable<'_>)) {
        if let Some(h) = &self.md5 {
            visit(Observable::Md5(h));
        }
        if let Some(h) = &self.sha1 {
            visit(Observable::Sha1(h));
        }
        if let Some(h) = &self.sha256 {
            visit(Observable::Sha256(h));
        }
        if let Some(h) = &self.sha512 {
            visit(Observable::Sha512(h));
        }
    }
}

/// A file named by path only (`exe` of non-exec events).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct FilePath {
    /// Absolute path.
    #[serde(alias = "file")]
    pub path: Text,
}

/// Digests of an in-memory object (`bpf_prog`, `filter`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Digests {
    /// MD5.
    #[serde(with = "opt_digest")]
    pub md5: Option<Md5>,
    /// SHA-1.
    #[serde(with = "opt_digest")]
    pub sha1: Option<Sha1>,
    /// SHA-256.
    #[serde(with = "opt_digest")]
    pub sha256: Option<Sha256>,
    /// SHA-512.
    #[serde(with = "opt_digest")]
    pub sha512: Option<Sha512>,
    /// Size in bytes.
    pub size: u64,
    /// Number of instructions (socket filters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
}

impl Digests {
    fn visit(&self, visit: &mut dyn FnMut(Observable<'_>)) {
        let meta =
            FileMeta { md5: self.md5, sha1: self.sha1, sha256: self.sha256, sha512: self.sha512, ..Default::default() };
        meta.visit_hashes(visit);
    }
}

fn visit_ip(s: &str, visit: &mut dyn FnMut(Observable<'_>)) {
    if let Ok(ip) = s.parse::<IpAddr>() {
        visit(Observable::Ip(ip));
    }
}

/// A name or an address: DNS answers are either.
fn visit_name_or_ip(s: &str, visit: &mut dyn FnMut(Observable<'_>)) {
    match s.parse::<IpAddr>() {
        Ok(ip) => visit(Observable::Ip(ip)),
        Err(_) if !s.is_empty() && s != "?" => visit(Observable::Domain(s)),
        Err(_) => {}
    }
}

/// `execve`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ExecveData {
    /// Executable paths of the ancestors, root first, joined by `|`.
    pub ancestors: Text,
    /// Command line of the parent.
    pub parent_command_line: Text,
    /// Executable of the parent.
    pub parent_exe: Text,
    /// Command line of the new program.
    pub command_line: Text,
    /// The program executed.
    pub exe: FileRef,
}

/// `execve_script`: `exe` is the script, `interpreter` the program that runs it.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ExecveScriptData {
    /// Executable paths of the ancestors, root first, joined by `|`.
    pub ancestors: Text,
    /// Command line of the parent.
    pub parent_command_line: Text,
    /// Executable of the parent.
    pub parent_exe: Text,
    /// Command line of the new program.
    pub command_line: Text,
    /// The script.
    pub exe: FileRef,
    /// Its interpreter.
    pub interpreter: FileRef,
}

/// `exit` (a thread ended) and `exit_group` (the process ended).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ExitData {
    /// Executable paths of the ancestors, root first, joined by `|`.
    pub ancestors: Text,
    /// Command line of the process.
    pub command_line: Text,
    /// Its executable.
    pub exe: FilePath,
    /// Exit status; 128 + the signal number when a signal killed it.
    pub error_code: i64,
}

/// `clone`: a new process (the event's task is the child).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct CloneData {
    /// Executable paths of the ancestors, root first, joined by `|`.
    pub ancestors: Text,
    /// Command line (inherited from the parent).
    pub command_line: Text,
    /// Executable (inherited from the parent).
    pub exe: FilePath,
    /// Clone flags, hex.
    #[serde(with = "hex_u64")]
    pub flags: u64,
}

/// `prctl`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct PrctlData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// The option, e.g. "PR_SET_NAME".
    pub option: String,
    /// Second argument, hex.
    pub arg2: String,
    /// Third argument, hex.
    pub arg3: String,
    /// Fourth argument, hex.
    pub arg4: String,
    /// Fifth argument, hex.
    pub arg5: String,
    /// Whether the call succeeded.
    pub success: bool,
}

/// The process a `kill` or `ptrace` targets.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Target {
    /// Its command line.
    pub command_line: Text,
    /// Its executable.
    pub exe: FilePath,
    /// Its task.
    pub task: TaskInfo,
}

/// `kill`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct KillData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Signal name, e.g. "SIGTERM".
    pub signal: String,
    /// Who receives it.
    pub target: Target,
}

/// `ptrace`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct PtraceData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Ptrace access mode, hex.
    pub mode: String,
    /// The traced process.
    pub target: Target,
}

/// `init_module`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct InitModuleData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// init_module or finit_module.
    pub syscall: String,
    /// Module name.
    pub module_name: String,
    /// Module arguments.
    pub args: String,
    /// Whether the module loaded.
    pub loaded: bool,
}

/// `bpf_prog_load.prog_type`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ProgType {
    /// Numeric program type.
    pub id: u32,
    /// Its name.
    pub name: String,
}

/// `bpf_prog_load`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct BpfProgLoadData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Program id.
    pub id: u32,
    /// Program type.
    pub prog_type: ProgType,
    /// Program tag.
    pub tag: String,
    /// Function it attaches to.
    pub attached_func: String,
    /// Program name.
    pub name: String,
    /// Kernel symbol.
    pub ksym: String,
    /// Digests of the instructions.
    pub bpf_prog: Digests,
    /// Instructions the verifier processed.
    pub verified_insns: u32,
    /// Whether it loaded.
    pub loaded: bool,
}

/// `socket` of network events.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct SocketInfo {
    /// "AF_INET", "AF_INET6"... (static names: no allocation per network event)
    pub domain: Cow<'static, str>,
    /// "SOCK_STREAM", "SOCK_DGRAM"...
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// "TCP", "UDP"...
    pub proto: Cow<'static, str>,
}

/// `bpf_socket_filter`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct BpfSocketFilterData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// The socket filtered.
    pub socket: SocketInfo,
    /// Digests of the filter.
    pub filter: Digests,
    /// Whether it attached.
    pub attached: bool,
}

/// `mprotect_exec`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct MprotectExecData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Address, hex.
    pub addr: String,
    /// Protection flags, hex.
    pub prot: String,
}

/// `mmap_exec`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct MmapExecData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// The file mapped executable.
    pub mapped: FileRef,
}

/// A local socket address (`src`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct SockAddr {
    /// Address.
    pub ip: Text,
    /// Port.
    pub port: u16,
}

/// A remote endpoint (`dst`, `dns_server`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Endpoint {
    /// Name the process resolved to this address, "?" when unknown (`dst` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Text>,
    /// Address.
    pub ip: Text,
    /// Port.
    pub port: u16,
    /// Whether the address is globally routable.
    pub public: bool,
    /// IPv6.
    pub is_v6: bool,
}

/// `connect`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct ConnectData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Socket kind.
    pub socket: SocketInfo,
    /// Local address.
    pub src: SockAddr,
    /// Remote address.
    pub dst: Endpoint,
    /// Community ID v1 of the flow.
    pub community_id: Text,
    /// Whether the connection succeeded.
    pub connected: bool,
}

/// `send_data`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct SendDataData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Socket kind.
    pub socket: SocketInfo,
    /// Local address.
    pub src: SockAddr,
    /// Remote address.
    pub dst: Endpoint,
    /// Community ID v1 of the flow.
    pub community_id: Text,
    /// Whether the socket is connected.
    pub connected: bool,
    /// Shannon entropy of a sample of the data.
    pub data_entropy: f32,
    /// Bytes sent.
    pub data_size: u64,
}

/// `dns_query`: a DNS response delivered to a process.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct DnsQueryData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Socket kind.
    pub socket: SocketInfo,
    /// Local address.
    pub src: SockAddr,
    /// The name asked.
    pub query: String,
    /// "A", "AAAA", "TXT"...
    pub query_type: String,
    /// The answers.
    pub response: Vec<String>,
    /// The server that answered.
    pub dns_server: Endpoint,
    /// Community ID v1 of the flow.
    pub community_id: Text,
    /// ioclab's: the answer was longer than the sensor copies (2,048 bytes)
    /// or cut short, and `response` holds only the records that fit.
    pub truncated: bool,
}

/// `read`, `read_config`, `write`, `write_config`, `write_close`, `file_create`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct FileData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// The file.
    pub path: Text,
}

/// `file_rename`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct FileRenameData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// Former path.
    pub old: Text,
    /// New path.
    pub new: Text,
}

/// `file_unlink`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct FileUnlinkData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// The file removed.
    pub path: Text,
    /// Whether it was removed.
    pub success: bool,
}

/// `io_uring_sqe.op`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct IoUringOp {
    /// Opcode.
    pub code: u32,
    /// Its name.
    pub name: String,
}

/// `io_uring_sqe`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct IoUringSqeData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// The submitted operation.
    pub op: IoUringOp,
}

/// `file_scan`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct FileScanData {
    /// Executable paths of the ancestors.
    pub ancestors: Text,
    /// Command line.
    pub command_line: Text,
    /// Executable.
    pub exe: FilePath,
    /// The file scanned.
    pub path: Text,
    /// Its metadata.
    pub meta: FileMeta,
    /// Signatures that matched.
    pub signatures: Vec<String>,
    /// How many matched.
    pub positives: u32,
    /// uuid of the event that caused the scan.
    pub source_event: String,
    /// Why scanning failed, else null.
    pub scan_error: Option<String>,
}

/// `error`: a problem of the agent itself, written instead of being lost.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ErrorData {
    /// Numeric code.
    pub code: u64,
    /// What happened.
    pub message: String,
}

/// `event_loss`: the kernel side dropped events (ring buffer full).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct EventLossData {
    /// Events read since the previous report.
    pub read: u64,
    /// Events lost since the previous report.
    pub lost: u64,
    /// Events per second read over that period.
    pub eps: f64,
}

/// `start.system`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct SystemInfo {
    /// Seconds since boot.
    pub uptime: f64,
    /// Boot time, RFC 3339.
    pub boot_time: String,
    /// uname sysname.
    pub sysname: String,
    /// uname release.
    pub release: String,
    /// uname version.
    pub version: String,
    /// uname machine.
    pub machine: String,
    /// uname domainname.
    pub domainname: String,
}

/// `start.kunai.config`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ConfigDigest {
    /// SHA-256 of the effective configuration (YAML).
    pub sha256: String,
}

/// `start.kunai`: the sensor (ioclab's own name and version, under Kunai's key).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct SensorInfo {
    /// "ioclab".
    pub name: String,
    /// Version.
    pub version: String,
    /// The agent's executable with its hashes, as Kunai writes it (`.exe.path`).
    pub exe: FileMeta,
    /// Its configuration.
    pub config: ConfigDigest,
}

/// `ioc_reload` (ioclab's, not Kunai's): the agent switched to a new IoC set
/// after a SIGHUP. A reload that was refused or failed is an `error` event.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct IocReloadData {
    /// IoCs now in use.
    pub iocs: u64,
    /// IoC files read.
    pub files: u64,
    /// Lines skipped as not usable IoCs (only with `scanner.accept_partial_iocs`).
    pub bad_lines: u64,
    /// Repeated IoCs (same uuid and value) and files, counted once.
    pub duplicates: u64,
}

/// `start`: written once when the agent is ready.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct StartData {
    /// The machine.
    pub system: SystemInfo,
    /// The sensor.
    pub kunai: SensorInfo,
}

macro_rules! event_data {
    ($($kind:ident => $variant:ident($ty:ty),)*) => {
        /// The `data` section of any event.
        #[derive(Debug, Clone, Serialize)]
        #[serde(untagged)]
        #[allow(missing_docs)]
        pub enum EventData { $($kind($ty),)* }

        impl EventData {
            /// The event type.
            pub fn kind(&self) -> EventKind {
                match self { $(EventData::$kind(_) => EventKind::$variant,)* }
            }

            /// Reads `data` of an event named `kind` (used by replay).
            pub fn from_json(kind: EventKind, data: &serde_json::Value) -> Result<Self, serde_json::Error> {
                Ok(match kind { $(EventKind::$variant => EventData::$kind(<$ty>::deserialize(data)?),)* })
            }
        }
    };
}

event_data! {
    Execve => Execve(ExecveData),
    ExecveScript => ExecveScript(ExecveScriptData),
    Exit => Exit(ExitData),
    ExitGroup => ExitGroup(ExitData),
    Clone => Clone(CloneData),
    Prctl => Prctl(PrctlData),
    Kill => Kill(KillData),
    Ptrace => Ptrace(PtraceData),
    InitModule => InitModule(InitModuleData),
    BpfProgLoad => BpfProgLoad(BpfProgLoadData),
    BpfSocketFilter => BpfSocketFilter(BpfSocketFilterData),
    MprotectExec => MprotectExec(MprotectExecData),
    MmapExec => MmapExec(MmapExecData),
    Connect => Connect(ConnectData),
    DnsQuery => DnsQuery(DnsQueryData),
    SendData => SendData(SendDataData),
    Read => Read(FileData),
    ReadConfig => ReadConfig(FileData),
    Write => Write(FileData),
    WriteConfig => WriteConfig(FileData),
    FileRename => FileRename(FileRenameData),
    FileUnlink => FileUnlink(FileUnlinkData),
    WriteClose => WriteClose(FileData),
    FileCreate => FileCreate(FileData),
    IoUringSqe => IoUringSqe(IoUringSqeData),
    FileScan => FileScan(FileScanData),
    Error => Error(ErrorData),
    EventLoss => EventLoss(EventLossData),
    Start => Start(StartData),
    IocReload => IocReload(IocReloadData),
}

impl Observables for EventData {
    fn observables(&self, visit: &mut dyn FnMut(Observable<'_>)) {
        use EventData as D;
        // The executable of the acting process is typed in every process event.
        let exe: Option<&str> = match self {
            D::Exit(d) | D::ExitGroup(d) => Some(&d.exe.path),
            D::Clone(d) => Some(&d.exe.path),
            D::Prctl(d) => Some(&d.exe.path),
            D::Kill(d) => Some(&d.exe.path),
            D::Ptrace(d) => Some(&d.exe.path),
            D::InitModule(d) => Some(&d.exe.path),
            D::BpfProgLoad(d) => Some(&d.exe.path),
            D::BpfSocketFilter(d) => Some(&d.exe.path),
            D::MprotectExec(d) => Some(&d.exe.path),
            D::MmapExec(d) => Some(&d.exe.path),
            D::Connect(d) => Some(&d.exe.path),
            D::DnsQuery(d) => Some(&d.exe.path),
            D::SendData(d) => Some(&d.exe.path),
            D::Read(d) | D::ReadConfig(d) | D::Write(d) | D::WriteConfig(d) | D::WriteClose(d) | D::FileCreate(d) => {
                Some(&d.exe.path)
            }
            D::FileRename(d) => Some(&d.exe.path),
            D::FileUnlink(d) => Some(&d.exe.path),
            D::IoUringSqe(d) => Some(&d.exe.path),
            D::FileScan(d) => Some(&d.exe.path),
            D::Execve(_) | D::ExecveScript(_) | D::Error(_) | D::EventLoss(_) | D::Start(_) | D::IocReload(_) => None,
        };
        if let Some(p) = exe.filter(|p| !p.is_empty()) {
            visit(Observable::Path(p));
        }
        match self {
            D::Execve(d) => {
                d.exe.visit(visit);
                visit(Observable::Path(&d.parent_exe));
            }
            D::ExecveScript(d) => {
                d.exe.visit(visit);
                d.interpreter.visit(visit);
                visit(Observable::Path(&d.parent_exe));
            }
            D::Kill(d) => visit(Observable::Path(&d.target.exe.path)),
            D::Ptrace(d) => visit(Observable::Path(&d.target.exe.path)),
            D::BpfProgLoad(d) => d.bpf_prog.visit(visit),
            D::BpfSocketFilter(d) => d.filter.visit(visit),
            D::MmapExec(d) => d.mapped.visit(visit),
            D::Connect(d) => {
                visit_ip(&d.dst.ip, visit);
                if let Some(h) = &d.dst.hostname {
                    visit_name_or_ip(h, visit);
                }
            }
            D::SendData(d) => {
                visit_ip(&d.dst.ip, visit);
                if let Some(h) = &d.dst.hostname {
                    visit_name_or_ip(h, visit);
                }
            }
            D::DnsQuery(d) => {
                visit_name_or_ip(&d.query, visit);
                for r in &d.response {
                    visit_name_or_ip(r, visit);
                }
                visit_ip(&d.dns_server.ip, visit);
            }
            D::Read(d) | D::ReadConfig(d) | D::Write(d) | D::WriteConfig(d) | D::WriteClose(d) | D::FileCreate(d) => {
                visit(Observable::Path(&d.path))
            }
            D::FileRename(d) => {
                visit(Observable::Path(&d.old));
                visit(Observable::Path(&d.new));
            }
            D::FileUnlink(d) => visit(Observable::Path(&d.path)),
            D::FileScan(d) => {
                visit(Observable::Path(&d.path));
                d.meta.visit(visit);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_rendered_once_writes_the_json_it_would_have_written() {
        let meta = FileMeta {
            path: "/usr/bin/needs \"escaping\"\n".into(),
            magic: "application/x-executable".into(),
            md5: Some(Md5([0x12; 16])),
            sha1: Some(Sha1([0xab; 20])),
            sha256: Some(Sha256([0; 32])),
            sha512: None,
            size: 35664,
            error: None,
        };
        let plain = FileRef::from(meta.clone());
        let rendered = FileRef::rendered(Arc::new(meta));
        let expected = serde_json::to_string(&plain).unwrap();
        assert!(expected.contains("\"md5\":\"1212"), "{expected}");
        assert_eq!(serde_json::to_string(&rendered).unwrap(), expected);
        assert_eq!(crate::events::json::to_string(&rendered).unwrap(), expected);
        assert_eq!(rendered, plain);
        let back: FileRef = serde_json::from_str(&expected).unwrap();
        assert_eq!(back, plain);
    }
}

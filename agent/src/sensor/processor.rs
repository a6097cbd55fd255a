//! Turns decoded kernel records into Kunai events: process table, file
//! hashes, IoC matching, then one JSON line each to the output.

use std::collections::{HashMap, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

mod filesys;
mod module;
mod script;
mod tasks;

use super::network::Network;
use super::output::Output;
use super::record::{Exec, NetKind, Record};
use super::Stats;
use crate::bpf::abi;
use crate::config::Config;
use crate::enrich::filemeta::{self, FileKey, Source};
use crate::enrich::hasher::{Hashes, Lookup};
use crate::enrich::proctable::ProcessTable;
use crate::events::time::BootClock;
use crate::events::*;
use crate::ioc::IocSet;

/// Owns everything that enriches and writes events; runs on its own thread.
pub struct Processor {
    config: Arc<Config>,
    host: Arc<Host>,
    source: Text,
    clock: BootClock,
    procs: ProcessTable,
    hashes: Hashes,
    /// Events waiting for a new file's hashes, oldest first: each is
    /// written once hashed, or at its deadline without hashes. Other events
    /// do not wait behind them.
    pending: VecDeque<Waiting>,
    /// How long an event waits for its files' hashes.
    budget: Duration,
    /// None: no IoC file given, every event is written.
    iocs: Arc<ArcSwapOption<IocSet>>,
    filter: bool,
    out: Output,
    buf: Vec<u8>,
    stats: Arc<Stats>,
    batch: u64,
    net: Network,
    /// Tasks as rendered for `info` (interior: events are built through `&self`).
    tasks: std::cell::RefCell<tasks::TaskCache>,
    /// Consumers of some cgroups' events (see [`super::tap`]).
    taps: super::tap::Taps,
    /// Mount namespace roots lent by the embedding program.
    roots: super::roots::NsRoots,
    /// Scripts whose interpreter has not opened them yet: process → its
    /// script execs' times, oldest first.
    scripts: HashMap<u32, Vec<u64>>,
    /// The kernel side reports what scripts' interpreters open.
    follow_scripts: bool,
    /// The agent's own mount namespace (inode number).
    mnt_ns: u32,
}

/// Events waiting for hashes, at most: past it the oldest is written
/// without them (bounds memory when a flood of new files meets an event storm).
const MAX_WAITING: usize = 8192;

/// Which file of an event waits for its hashes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// `exe` of execve / execve_script.
    Exe,
    /// `interpreter` of execve_script.
    Interpreter,
    /// `mapped` of mmap_exec.
    Mapped,
}

/// The files an event waits for: where they go, their identity, their name.
pub(crate) type Waits = Vec<(Slot, FileKey, Text)>;

/// An event held until its files are hashed (or its deadline).
struct Waiting {
    ev: Event,
    waits: Waits,
    /// An execve_script whose interpreter has not opened the script yet.
    script: Option<script::ScriptWait>,
    deadline: Instant,
}

fn slot(data: &mut EventData, s: Slot) -> Option<&mut FileRef> {
    match (data, s) {
        (EventData::Execve(d), Slot::Exe) => Some(&mut d.exe),
        (EventData::ExecveScript(d), Slot::Exe) => Some(&mut d.exe),
        (EventData::ExecveScript(d), Slot::Interpreter) => Some(&mut d.interpreter),
        (EventData::MmapExec(d), Slot::Mapped) => Some(&mut d.mapped),
        _ => None,
    }
}

/// How events name a file the kernel resolved: a truncated path is only its
/// tail and starts with "…" (never a name to open or to match); an unlinked
/// or nameless file (memfd) ends with " (deleted)", as /proc shows it.
pub(crate) fn shown_path(bytes: &[u8], truncated: bool, deleted: bool) -> Text {
    let path = String::from_utf8_lossy(bytes);
    match (truncated, deleted) {
        (false, false) => path.as_ref().into(),
        (true, false) => format!("…{path}").as_str().into(),
        (false, true) => format!("{path} (deleted)").as_str().into(),
        (true, true) => format!("…{path} (deleted)").as_str().into(),
    }
}

/// Where the worker may read a file the kernel resolved: its name, unless
/// truncated or unlinked, then the process's own `/proc` links to it.
pub(crate) fn kernel_sources(bytes: &[u8], truncated: bool, deleted: bool, links: &[String]) -> Vec<Source> {
    let mut v = Vec::with_capacity(1 + links.len());
    if !truncated && !deleted && bytes.starts_with(b"/") {
        v.push(Source::Resolved(filemeta::path_of(bytes)));
    }
    v.extend(links.iter().map(|l| Source::Lookup(l.into())));
    v
}

/// A script name as the process that ran it sees it: `/proc/self`,
/// `/proc/thread-self`, `/dev/fd` and `/dev/std*` name that process's
/// files, never the agent's; a relative name is under its working directory.
/// True when the name went through the process's /proc entry.
fn script_path(filename: &[u8], cwd: Option<&[u8]>, tgid: u32, pid: u32) -> (PathBuf, bool) {
    let own = |rest: &[u8], base: String| {
        let mut p = base.into_bytes();
        p.extend_from_slice(rest);
        (filemeta::path_of(&p), true)
    };
    for (std, fd) in [(&b"/dev/stdin"[..], 0), (b"/dev/stdout", 1), (b"/dev/stderr", 2)] {
        if filename == std {
            return (format!("/proc/{tgid}/fd/{fd}").into(), true);
        }
    }
    if let Some(rest) = filename.strip_prefix(b"/proc/self/") {
        return own(rest, format!("/proc/{tgid}/"));
    }
    if let Some(rest) = filename.strip_prefix(b"/proc/thread-self/") {
        return own(rest, format!("/proc/{tgid}/task/{pid}/"));
    }
    if let Some(rest) = filename.strip_prefix(b"/dev/fd/") {
        return own(rest, format!("/proc/{tgid}/fd/"));
    }
    match cwd {
        Some(cwd) if !filename.starts_with(b"/") => {
            let mut p = cwd.to_vec();
            p.push(b'/');
            p.extend_from_slice(filename);
            (filemeta::path_of(&p), false)
        }
        _ => (filemeta::path_of(filename), false),
    }
}

fn comm(t: &abi::Task) -> String {
    String::from_utf8_lossy(abi::c_str(&t.comm)).into_owned()
}

/// `error_code` of an exit: the status, or 128 + the signal as shells show it.
pub fn error_code(exit_code: i32) -> i64 {
    let sig = exit_code & 0x7f;
    if sig == 0 {
        ((exit_code >> 8) & 0xff) as i64
    } else {
        128 + sig as i64
    }
}

/// Makes a script name absolute: execve resolves relative names against the working directory.
fn absolute(filename: &str, cwd: Option<&str>) -> String {
    let joined: PathBuf = match cwd {
        Some(cwd) if !filename.starts_with('/') => Path::new(cwd).join(filename),
        _ => PathBuf::from(filename),
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

impl Processor {
    /// A processor writing to `out`; IoC matching and filtering follow `iocs`
    /// and `config.scanner.iocs` (with IoC files, only matches are written unless
    /// `scanner.write_unmatched`).
    pub fn new(
        config: Arc<Config>,
        host: Arc<Host>,
        procs: ProcessTable,
        iocs: Arc<ArcSwapOption<IocSet>>,
        out: impl Into<Output>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        Ok(Processor {
            source: config.event_source.as_str().into(),
            host,
            clock: BootClock::new(),
            procs,
            hashes: Hashes::new(config.hash_cache_size, config.max_hash_size)?,
            pending: VecDeque::new(),
            budget: Duration::from_millis(config.hash_budget_ms),
            iocs,
            filter: !config.scanner.iocs.is_empty() && !config.scanner.write_unmatched,
            out: out.into(),
            buf: Vec::with_capacity(4096),
            stats,
            batch: 0,
            net: Network::default(),
            tasks: Default::default(),
            taps: Default::default(),
            roots: Default::default(),
            scripts: HashMap::new(),
            follow_scripts: crate::bpf::follows_scripts(
                &crate::events::EventKind::ALL.iter().copied().filter(|k| config.enabled(*k)).collect::<Vec<_>>(),
            ),
            mnt_ns: script::own_mnt_ns(),
            config,
        })
    }

    /// Sends the events of tapped cgroups to their taps instead of the output.
    pub fn set_taps(&mut self, taps: super::tap::Taps) {
        self.taps = taps;
    }

    /// Reads scripts of these mount namespaces under their lent roots too.
    pub fn set_roots(&mut self, roots: super::roots::NsRoots) {
        self.roots = roots;
    }

    fn task_info(&self, t: &abi::Task) -> TaskInfo {
        TaskInfo {
            name: comm(t),
            pid: t.pid as i32,
            tgid: t.tgid as i32,
            guuid: self.procs.guuid(t.tgid, t.start_boottime),
            uid: t.uid,
            gid: t.gid,
            namespaces: Namespaces { mnt: t.mnt_ns },
            flags: t.flags,
            zombie: t.zombie != 0,
        }
    }

    fn info(&self, kind: EventKind, hdr: &abi::Header) -> Info {
        // one borrow per statement: a borrow inside the struct literal would live to its end
        let task = self.tasks.borrow_mut().get(&hdr.task, || self.task_info(&hdr.task));
        let parent_task = self.tasks.borrow_mut().get(&hdr.parent, || self.task_info(&hdr.parent));
        Info {
            host: self.host.clone(),
            event: EventInfo::new(&self.source, kind, self.batch),
            task,
            parent_task,
            utc_time: self.clock.utc(hdr.time_ns),
            cgroup_id: hdr.cgroup_id,
        }
    }

    /// Processes one batch of records (leaving `records` empty, its allocation
    /// kept for reuse), then flushes the output.
    pub fn batch(&mut self, records: &mut Vec<Record>, batch: u64) {
        self.batch = batch;
        let mut last_time = 0;
        for r in records.drain(..) {
            if r.is_kernel_record() {
                self.stats.add_read(1);
            }
            if let Record::Exec(e) = &r {
                last_time = e.hdr.time_ns;
            }
            if let Some(ev) = self.event(r) {
                self.emit(ev);
            }
        }
        if last_time > 0 {
            self.procs.sweep(last_time);
        }
        self.release(false);
        self.flush();
    }

    /// An eventfd that becomes readable when the hashing worker has results:
    /// poll it with the ring, and call [`Processor::woken`] when it is.
    pub fn hash_wake_fd(&self) -> std::os::fd::RawFd {
        self.hashes.wake_fd()
    }

    /// The hashing worker has results: clears its wakeup.
    pub fn woken(&self) {
        self.hashes.woken();
    }

    /// When the oldest event waiting for hashes is due, if one waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.front().map(|w| w.deadline)
    }

    /// Writes the events whose hashes came or whose deadline passed.
    pub fn tick(&mut self) {
        self.release(false);
        self.flush();
    }

    /// Writes every event still waiting, without the hashes not read yet (a
    /// stop never waits for a file); then lines still buffered that cannot be
    /// written are counted as lost, and not as written.
    pub fn finish(&mut self) {
        self.release(true);
        self.flush();
        let unwritten = self.out.finish();
        self.stats.written.fetch_sub(unwritten, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the waiting events whose hashes came, or that are due, or
    /// (`force`) all.
    fn release(&mut self, force: bool) {
        if self.hashes.busy() {
            self.hashes.poll();
        }
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let overflow = self.pending.len().saturating_sub(MAX_WAITING);
        for (i, mut w) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            let hashes = &mut self.hashes;
            let data = &mut w.ev.data;
            w.waits.retain(|(s, key, path)| match hashes.finished(key, path) {
                Some(meta) => {
                    if let Some(f) = slot(data, *s) {
                        *f = meta;
                    }
                    false
                }
                None => true,
            });
            if !w.waits.is_empty() || w.script.is_some() {
                let (why, script_why) = if force {
                    (
                        "not hashed: the agent stopped before the file was read".to_string(),
                        "not hashed: the agent stopped before the script's interpreter opened it".to_string(),
                    )
                } else if i < overflow {
                    let why = "not hashed: too many events were waiting for hashes";
                    (why.to_string(), why.to_string())
                } else if now >= w.deadline {
                    let ms = self.budget.as_millis();
                    (
                        format!(
                            "not hashed within the {ms} ms budget: the file is still being read, \
                             later events of it carry its hashes"
                        ),
                        format!("not hashed: the interpreter had not opened the script within the {ms} ms budget"),
                    )
                } else {
                    self.pending.push_back(w);
                    continue;
                };
                if let Some(s) = w.script.take() {
                    self.forget_script(&s);
                    s.fail(&mut w.ev.data, &script_why);
                }
                for (s, _, path) in w.waits.drain(..) {
                    if let Some(f) = slot(&mut w.ev.data, s) {
                        *f = filemeta::error_meta(&path, &why).into();
                    }
                }
            }
            self.emit(w.ev);
        }
        if self.pending.is_empty() {
            self.hashes.forget_finished();
        } else {
            let pending = &self.pending;
            self.hashes.trim_finished(|k| pending.iter().any(|w| w.waits.iter().any(|(_, key, _)| key == k)));
        }
    }

    fn event(&mut self, r: Record) -> Option<Event> {
        match r {
            Record::Exec(e) => {
                self.exec(&e);
                Record::Exec(e).recycle();
                None
            }
            Record::Script(o) => {
                self.script_opened(&o);
                None
            }
            Record::Clone { hdr, flags } => {
                // make sure the parent is known (from /proc if need be) so the child inherits from it
                self.procs.lookup(hdr.parent.tgid, hdr.parent.start_boottime, 0);
                let child = self.procs.fork(hdr.parent.tgid, hdr.task.tgid, hdr.task.start_boottime);
                let data = EventData::Clone(CloneData {
                    ancestors: child.ancestors.clone(),
                    command_line: child.command_line.clone(),
                    exe: FilePath { path: child.exe.clone() },
                    flags,
                });
                self.wanted(EventKind::Clone).then(|| self.event_of(data, &hdr))
            }
            Record::Exit { hdr, exit_code, group_dead } => {
                let p = self.procs.lookup(hdr.task.tgid, hdr.task.start_boottime, hdr.parent.tgid);
                let exit = ExitData {
                    ancestors: p.ancestors.clone(),
                    command_line: p.command_line.clone(),
                    exe: FilePath { path: p.exe.clone() },
                    error_code: error_code(exit_code),
                };
                let (kind, data) = if group_dead {
                    self.script_process_ended(hdr.task.tgid);
                    self.procs.exit(hdr.task.tgid, hdr.task.start_boottime, hdr.time_ns);
                    self.net.forget((hdr.task.tgid, hdr.task.start_boottime));
                    (EventKind::ExitGroup, EventData::ExitGroup(exit))
                } else {
                    (EventKind::Exit, EventData::Exit(exit))
                };
                self.wanted(kind).then(|| self.event_of(data, &hdr))
            }
            Record::Net(n) => {
                let ev = self.net_event(&n);
                Record::Net(n).recycle();
                ev
            }
            Record::FileSys(f) => {
                // may make several events (an open: file_create and write): written here
                self.file_sys(*f);
                None
            }
            Record::Lost { read, lost, eps } => {
                self.stats.add_lost(lost);
                Some(self.agent_event(EventData::EventLoss(EventLossData { read, lost, eps })))
            }
            Record::Malformed { reason } => Some(self.agent_event(EventData::Error(ErrorData {
                code: 1,
                message: format!("malformed kernel record: {reason}"),
            }))),
        }
    }

    fn net_event(&mut self, n: &super::record::Net) -> Option<Event> {
        let kind = match n.kind {
            NetKind::Connect => EventKind::Connect,
            NetKind::Send => EventKind::SendData,
            NetKind::Dns => EventKind::DnsQuery,
        };
        // DNS answers, and the queries they must answer, are read even when
        // their events are off: they name connect/send_data peers
        let dns_query_sent = n.kind == NetKind::Send && n.dst.port() == 53;
        if !self.wanted(kind) && n.kind != NetKind::Dns && !dns_query_sent {
            return None;
        }
        let (t, parent) = (&n.hdr.task, &n.hdr.parent);
        let p = self.procs.lookup(t.tgid, t.start_boottime, parent.tgid);
        let data = self.net.data(n, p, (t.tgid, t.start_boottime))?;
        // the kernel side sends every DNS query, whatever its size
        let big_enough = n.kind != NetKind::Send || n.size >= self.config.send_data_min_len as i64;
        (self.wanted(kind) && big_enough).then(|| self.event_of(data, &n.hdr))
    }

    fn wanted(&self, kind: EventKind) -> bool {
        self.config.enabled(kind)
    }

    fn event_of(&self, data: EventData, hdr: &abi::Header) -> Event {
        Event { info: self.info(data.kind(), hdr), data, detection: None }
    }

    /// The metadata of a file the kernel resolved (`key`, named `path`):
    /// now, or a placeholder and a wait in `waits`.
    pub(crate) fn file_ref(
        &mut self,
        key: FileKey,
        path: &Text,
        sources: impl FnOnce() -> Vec<Source>,
        at: Slot,
        waits: &mut Waits,
    ) -> FileRef {
        match self.hashes.lookup(key, path, sources) {
            Lookup::Ready(meta) => meta,
            Lookup::Pending => {
                waits.push((at, key, path.clone()));
                FileMeta { path: path.clone(), ..Default::default() }.into()
            }
        }
    }

    /// The script of an execve_script, named as the process named it (see
    /// [`script_path`]): a placeholder and what to wait for, as its identity
    /// comes when its interpreter opens it (see [`script`]); or why it
    /// cannot be hashed.
    fn script_ref(&mut self, e: &Exec) -> (FileRef, Option<script::ScriptWait>) {
        let (tgid, pid) = (e.hdr.task.tgid, e.hdr.task.pid);
        let cwd = e.cwd.as_deref();
        let given = String::from_utf8_lossy(&e.filename);
        if e.filename_truncated {
            let path: Text = format!("{given}…").as_str().into();
            let meta = filemeta::error_meta(&path, "not hashed: the script's name was truncated by the kernel");
            return (meta.into(), None);
        }
        let (source, via_proc) = script_path(&e.filename, cwd, tgid, pid);
        let path: Text = if via_proc {
            // what the process's link points to: the script's own name, or /memfd:... (deleted)
            match std::fs::read_link(&source) {
                Ok(t) => t.to_string_lossy().as_ref().into(),
                Err(_) => given.as_ref().into(),
            }
        } else {
            absolute(&given, cwd.map(String::from_utf8_lossy).as_deref()).as_str().into()
        };
        if !self.follow_scripts {
            let why = "not hashed: a script's identity is taken when its interpreter opens it, seen only \
                       with a file or system event on (mmap_exec, prctl... as by default) on x86_64";
            return (filemeta::error_meta(&path, why).into(), None);
        }
        (script::unknown(&path), Some(script::ScriptWait::new(e, path)))
    }

    fn exec(&mut self, e: &Exec) {
        let mut command_line = crate::enrich::proctable::command_line(&e.argv);
        if e.argv_truncated {
            // the kernel kept only the first bytes of the arguments
            command_line = format!("{command_line}…").as_str().into();
        }
        let tgid = e.hdr.task.tgid;
        let mut waits = Waits::new();
        let binary_path = shown_path(&e.exe_path, e.exe_truncated, e.exe_deleted);
        let links = || kernel_sources(&e.exe_path, e.exe_truncated, e.exe_deleted, &[format!("/proc/{tgid}/exe")]);
        let at = if e.is_script { Slot::Interpreter } else { Slot::Exe };
        let binary_meta = self.file_ref(e.exe_key, &binary_path, links, at, &mut waits);
        let parent = self.procs.lookup(e.hdr.parent.tgid, e.hdr.parent.start_boottime, 0);
        let (parent_exe, parent_command_line) = (parent.exe.clone(), parent.command_line.clone());
        if e.is_script {
            self.script_replaced(tgid);
        }
        let (script_meta, script_wait) = match e.is_script.then(|| self.script_ref(e)) {
            Some((meta, wait)) => (Some(meta), wait),
            None => (None, None),
        };
        // later events of a script's process name the script, not its interpreter
        let exe = script_meta.as_ref().map_or_else(|| binary_path.clone(), |m| m.path.clone());
        let ancestors = self
            .procs
            .exec(tgid, e.hdr.task.start_boottime, e.hdr.parent.tgid, exe, command_line.clone())
            .ancestors
            .clone();
        let data = match script_meta {
            Some(script) => EventData::ExecveScript(ExecveScriptData {
                ancestors,
                parent_command_line,
                parent_exe,
                command_line,
                exe: script,
                interpreter: binary_meta,
            }),
            None => EventData::Execve(ExecveData {
                ancestors,
                parent_command_line,
                parent_exe,
                command_line,
                exe: binary_meta,
            }),
        };
        if self.wanted(data.kind()) {
            let ev = self.event_of(data, &e.hdr);
            match script_wait {
                Some(s) => self.emit_waiting_script(ev, waits, s),
                None => self.emit_waiting(ev, waits),
            }
        }
    }

    /// An event about the agent itself (start, loss, errors).
    pub fn agent_event(&self, data: EventData) -> Event {
        let me = std::process::id();
        let task = TaskInfo {
            name: "ioclab".into(),
            pid: me as i32,
            tgid: me as i32,
            guuid: self.procs.get_any(me).map(|p| p.guuid).unwrap_or_default(),
            ..Default::default()
        };
        let info = Info {
            host: self.host.clone(),
            event: EventInfo::new(&self.source, data.kind(), self.batch),
            parent_task: TaskJson::new(&TaskInfo::default()),
            task: TaskJson::new(&task),
            utc_time: time::UtcTime::now(),
            cgroup_id: 0,
        };
        Event { data, info, detection: None }
    }

    /// Writes `ev` once the files in `waits` are hashed (or at its
    /// deadline): the event waits, not the events after it.
    pub(crate) fn emit_waiting(&mut self, ev: Event, waits: Waits) {
        if waits.is_empty() {
            return self.emit(ev);
        }
        self.pending.push_back(Waiting { ev, waits, script: None, deadline: Instant::now() + self.budget });
    }

    /// Matches, filters and writes one event.
    pub fn emit(&mut self, mut ev: Event) {
        if self.taps.wants(ev.info.cgroup_id) {
            self.buf.clear();
            match json::to_vec_into(&mut self.buf, &ev) {
                // only UTF-8 is ever written
                Ok(()) => self.taps.send(ev.info.cgroup_id, &String::from_utf8_lossy(&self.buf)),
                Err(e) => tracing::error!("cannot serialise a {} event: {e}", ev.kind()),
            }
            return;
        }
        if self.taps.only() && !ev.kind().is_agent_event() {
            return;
        }
        if let Some(iocs) = &*self.iocs.load() {
            ev.detection = iocs.scan(&ev);
        }
        let kind = ev.kind();
        if self.filter && !kind.is_agent_event() {
            match &ev.detection {
                Some(d) if d.severity >= self.config.scanner.min_severity => {}
                _ => return,
            }
        }
        self.buf.clear();
        if let Err(e) = json::to_vec_into(&mut self.buf, &ev) {
            tracing::error!("cannot serialise a {kind} event: {e}");
            return;
        }
        self.buf.push(b'\n');
        if self.out.write_line(&self.buf) {
            self.stats.add_written(1);
        }
    }

    /// Pushes buffered lines to the output; once writing works again after
    /// lines were dropped, says how many (`event_loss`).
    pub fn flush(&mut self) {
        if !self.out.flush() {
            return;
        }
        if let Some(loss) = self.out.take_loss() {
            tracing::warn!("event output works again: {} of {} events dropped meanwhile", loss.dropped, loss.offered);
            let eps = loss.offered as f64 / loss.secs.max(1e-3);
            let ev =
                self.agent_event(EventData::EventLoss(EventLossData { read: loss.offered, lost: loss.dropped, eps }));
            self.emit(ev);
            self.out.flush();
        }
    }

    /// The event output (reopened on SIGHUP, watched for a reader gone).
    pub fn output(&mut self) -> &mut Output {
        &mut self.out
    }

    /// Hash cache counters.
    pub fn hash_stats(&self) -> filemeta::CacheStats {
        self.hashes.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(error_code(0), 0);
        assert_eq!(error_code(3 << 8), 3);
        assert_eq!(error_code(9), 137);
        assert_eq!(error_code(15 | 0x80), 143, "core dump bit ignored");
    }

    #[test]
    fn script_names_of_the_process_are_resolved_in_its_proc_entry() {
        let p = |f: &[u8], cwd: Option<&[u8]>| script_path(f, cwd, 42, 43);
        assert_eq!(p(b"/proc/self/fd/3", None), (PathBuf::from("/proc/42/fd/3"), true));
        assert_eq!(p(b"/dev/fd/0", None), (PathBuf::from("/proc/42/fd/0"), true));
        assert_eq!(p(b"/dev/stdin", None), (PathBuf::from("/proc/42/fd/0"), true));
        assert_eq!(p(b"/proc/thread-self/fd/5", None), (PathBuf::from("/proc/42/task/43/fd/5"), true));
        assert_eq!(p(b"./x.sh", Some(b"/tmp/d")), (PathBuf::from("/tmp/d/./x.sh"), false));
        assert_eq!(p(b"/opt/x.sh", Some(b"/tmp")), (PathBuf::from("/opt/x.sh"), false));
        // raw bytes, not a lossy string
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(p(b"/tmp/\xff.sh", None).0.as_os_str().as_bytes(), b"/tmp/\xff.sh");
    }

    #[test]
    fn truncated_and_deleted_names_are_marked_and_not_opened() {
        assert_eq!(&*shown_path(b"/a/b", false, false), "/a/b");
        assert_eq!(&*shown_path(b"/b/r1", true, false), "…/b/r1");
        assert_eq!(&*shown_path(b"/memfd:x", false, true), "/memfd:x (deleted)");
        let links = ["/proc/1/exe".to_string()];
        let only_proc = vec![Source::Lookup("/proc/1/exe".into())];
        assert_eq!(kernel_sources(b"/b/r1", true, false, &links), only_proc, "a tail is never opened");
        assert_eq!(kernel_sources(b"/a/b", false, true, &links), only_proc, "an unlinked name is someone else's");
        assert_eq!(kernel_sources(b"/a/b", false, false, &links)[0], Source::Resolved("/a/b".into()));
    }

    #[test]
    fn script_paths_are_made_absolute() {
        assert_eq!(absolute("./x.sh", Some("/tmp/d")), "/tmp/d/x.sh");
        assert_eq!(absolute("../x.sh", Some("/tmp/d")), "/tmp/x.sh");
        assert_eq!(absolute("/opt/x.sh", Some("/tmp")), "/opt/x.sh");
        assert_eq!(absolute("x.sh", None), "/x.sh");
    }
}

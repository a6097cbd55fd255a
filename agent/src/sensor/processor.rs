//! Turns decoded kernel records into Kunai events: process table, file
//! hashes, IoC matching, then one JSON line each to the output.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

mod filesys;
mod module;
mod tasks;

use super::network::Network;
use super::output::Output;
use super::record::{Exec, NetKind, Record};
use super::Stats;
use crate::bpf::abi;
use crate::config::Config;
use crate::enrich::filemeta::HashCache;
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
    hashes: HashCache,
    /// None: no IoC file given, every event is written.
    iocs: Arc<ArcSwapOption<IocSet>>,
    filter: bool,
    out: Output,
    buf: Vec<u8>,
    stats: Arc<Stats>,
    batch: u64,
    net: Network,
    /// Reads the kernel ring while a file is hashed (see [`Processor::set_reader`]).
    reader: Option<RingReader>,
    /// What `reader` read: processed after the current batch.
    backlog: Vec<Record>,
    /// Tasks as rendered for `info` (interior: events are built through `&self`).
    tasks: std::cell::RefCell<tasks::TaskCache>,
}

/// Reads kernel records into a vector; returns the CPU µs it took.
pub type RingReader = Box<dyn FnMut(&mut Vec<Record>) -> u64>;

/// Runs the ring reader, if any, into `backlog`: called between the chunks of a file being hashed.
fn read_meanwhile(reader: &mut Option<RingReader>, backlog: &mut Vec<Record>) -> u64 {
    reader.as_mut().map_or(0, |read| read(backlog))
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
    /// and `config.scanner.iocs` (with IoC files, only matches are written).
    pub fn new(
        config: Arc<Config>,
        host: Arc<Host>,
        procs: ProcessTable,
        iocs: Arc<ArcSwapOption<IocSet>>,
        out: impl Into<Output>,
        stats: Arc<Stats>,
    ) -> Self {
        Processor {
            source: config.event_source.as_str().into(),
            host,
            clock: BootClock::new(),
            procs,
            hashes: HashCache::new(config.hash_cache_size, config.max_hash_size),
            iocs,
            filter: !config.scanner.iocs.is_empty(),
            out: out.into(),
            buf: Vec::with_capacity(4096),
            stats,
            batch: 0,
            net: Network::default(),
            reader: None,
            backlog: Vec::new(),
            tasks: Default::default(),
            config,
        }
    }

    /// Lets file hashing, which can take long for a big new binary, read the
    /// kernel ring meanwhile, so the ring does not fill while the thread that
    /// reads it hashes. What is read is processed after the current batch.
    pub fn set_reader(&mut self, reader: RingReader) {
        self.reader = Some(reader);
    }

    /// Records read while hashing, to process next (empty when none were).
    pub fn take_backlog(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.backlog)
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
        self.flush();
    }

    fn event(&mut self, r: Record) -> Option<Event> {
        match r {
            Record::Exec(e) => {
                let ev = self.exec(&e);
                Record::Exec(e).recycle();
                ev
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

    fn exec(&mut self, e: &Exec) -> Option<Event> {
        let command_line = crate::enrich::proctable::command_line(&e.argv);
        let meanwhile = &mut || read_meanwhile(&mut self.reader, &mut self.backlog);
        let binary_meta = self.hashes.get(&e.exe_path, (!e.exe_truncated).then_some(e.exe_key), meanwhile);
        let binary = binary_meta.path.clone();
        let parent = self.procs.lookup(e.hdr.parent.tgid, e.hdr.parent.start_boottime, 0);
        let (parent_exe, parent_command_line) = (parent.exe.clone(), parent.command_line.clone());
        let script_meta =
            e.is_script.then(|| self.hashes.get(&absolute(&e.filename, e.cwd.as_deref()), None, meanwhile));
        // later events of a script's process name the script, not its interpreter
        let exe = script_meta.as_ref().map_or_else(|| binary.clone(), |m| m.path.clone());
        let tgid = e.hdr.task.tgid;
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
        self.wanted(data.kind()).then(|| self.event_of(data, &e.hdr))
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
        };
        Event { data, info, detection: None }
    }

    /// Matches, filters and writes one event.
    pub fn emit(&mut self, mut ev: Event) {
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

    /// Last flush before stopping: lines still buffered that cannot be
    /// written are counted as lost, and not as written.
    pub fn finish(&mut self) {
        self.flush();
        let unwritten = self.out.finish();
        self.stats.written.fetch_sub(unwritten, std::sync::atomic::Ordering::Relaxed);
    }

    /// Hash cache counters.
    pub fn hash_stats(&self) -> crate::enrich::filemeta::CacheStats {
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
    fn script_paths_are_made_absolute() {
        assert_eq!(absolute("./x.sh", Some("/tmp/d")), "/tmp/d/x.sh");
        assert_eq!(absolute("../x.sh", Some("/tmp/d")), "/tmp/x.sh");
        assert_eq!(absolute("/opt/x.sh", Some("/tmp")), "/opt/x.sh");
        assert_eq!(absolute("x.sh", None), "/x.sh");
    }
}

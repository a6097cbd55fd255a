//! The process table: for every live process, what events about it need
//! and the kernel does not send each time (command line, executable,
//! ancestors, guuid). Seeded from /proc at start, then kept by the
//! fork/exec/exit events.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use uuid::Uuid;

use crate::events::{guuid, Text};

/// Nanoseconds per clock tick of /proc/<pid>/stat (USER_HZ is 100 on every Linux ABI).
pub const NS_PER_TICK: u64 = 10_000_000;

/// What the table knows of one process.
#[derive(Debug, Clone)]
pub struct Process {
    /// Identity for the process's whole life.
    pub guuid: Uuid,
    /// Start time in clock ticks since boot (with tgid, the identity).
    pub start_ticks: u64,
    /// Parent process id when the entry was made.
    pub ppid: u32,
    /// Executable path (for a script, the script).
    pub exe: Text,
    /// Command line, arguments joined by spaces.
    pub command_line: Text,
    /// Executables of the ancestors, root first, joined by `|`.
    pub ancestors: Text,
    /// Its children's `ancestors` (its own and its executable), joined once
    /// for all of them: a shell forks many.
    children_ancestors: std::cell::OnceCell<Text>,
}

impl Process {
    fn new(guuid: Uuid, start_ticks: u64, ppid: u32, exe: Text, command_line: Text, ancestors: Text) -> Self {
        Process { guuid, start_ticks, ppid, exe, command_line, ancestors, children_ancestors: Default::default() }
    }

    /// The `ancestors` of its children.
    fn children_ancestors(&self) -> Text {
        self.children_ancestors.get_or_init(|| join_ancestors(self)).clone()
    }
}

/// Processes by tgid.
pub struct ProcessTable {
    host: Uuid,
    procs: HashMap<u32, Process, ahash::RandomState>,
    /// Exited processes, removed a little later: events of their children may still refer to them.
    exited: VecDeque<(u64, u32, u64)>,
    empty: Text,
}

/// How long an exited process stays in the table, in boot-clock ns.
const EXITED_GRACE_NS: u64 = 2_000_000_000;

fn join_ancestors(parent: &Process) -> Text {
    match (parent.ancestors.is_empty(), parent.exe.is_empty()) {
        (_, true) => parent.ancestors.clone(),
        (true, false) => parent.exe.clone(),
        (false, false) => format!("{}|{}", parent.ancestors, parent.exe).into(),
    }
}

/// Joins NUL-separated arguments with spaces.
pub fn command_line(argv: &[u8]) -> Text {
    let trimmed = match argv.iter().rposition(|&b| b != 0) {
        Some(end) => &argv[..=end],
        None => return "".into(),
    };
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut joined = scratch.borrow_mut();
        joined.clear();
        // NUL is ASCII: replacing it byte for byte leaves valid UTF-8 valid
        joined.extend(trimmed.iter().map(|&b| if b == 0 { b' ' } else { b }));
        match std::str::from_utf8(&joined) {
            Ok(s) => s.into(),
            Err(_) => String::from_utf8_lossy(&joined).into(),
        }
    })
}

impl ProcessTable {
    /// An empty table for `host`.
    pub fn new(host: Uuid) -> Self {
        ProcessTable { host, procs: HashMap::default(), exited: VecDeque::new(), empty: "".into() }
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The guuid of process `tgid` started at `start_boottime_ns`.
    pub fn guuid(&self, tgid: u32, start_boottime_ns: u64) -> Uuid {
        guuid(&self.host, tgid, start_boottime_ns / NS_PER_TICK)
    }

    /// The process `tgid` if it is the one that started at `start_ticks`.
    pub fn get(&self, tgid: u32, start_ticks: u64) -> Option<&Process> {
        self.procs.get(&tgid).filter(|p| p.start_ticks == start_ticks)
    }

    /// The process `tgid`, whichever it is.
    pub fn get_any(&self, tgid: u32) -> Option<&Process> {
        self.procs.get(&tgid)
    }

    /// Records a new process `child` forked by `parent`: it inherits the
    /// parent's executable and command line until it execs.
    pub fn fork(&mut self, parent: u32, child: u32, child_start_ns: u64) -> &Process {
        let start_ticks = child_start_ns / NS_PER_TICK;
        let (exe, command_line, ancestors) = match self.procs.get(&parent) {
            Some(p) => (p.exe.clone(), p.command_line.clone(), p.children_ancestors()),
            None => (self.empty.clone(), self.empty.clone(), self.empty.clone()),
        };
        let guuid = guuid(&self.host, child, start_ticks);
        self.procs.insert(child, Process::new(guuid, start_ticks, parent, exe, command_line, ancestors));
        &self.procs[&child]
    }

    /// Records that `tgid` now runs `exe` with `command_line`. A process
    /// unknown so far (started before the table was seeded) is added.
    pub fn exec(&mut self, tgid: u32, start_ns: u64, ppid: u32, exe: Text, command_line: Text) -> &Process {
        let start_ticks = start_ns / NS_PER_TICK;
        let ancestors = match self.procs.get(&tgid) {
            Some(p) if p.start_ticks == start_ticks => p.ancestors.clone(),
            _ => self.procs.get(&ppid).map(Process::children_ancestors).unwrap_or_else(|| self.empty.clone()),
        };
        let guuid = guuid(&self.host, tgid, start_ticks);
        self.procs.insert(tgid, Process::new(guuid, start_ticks, ppid, exe, command_line, ancestors));
        &self.procs[&tgid]
    }

    /// The process `tgid` (started at `start_ns`), loading it from /proc if
    /// the table does not have it.
    pub fn lookup(&mut self, tgid: u32, start_ns: u64, ppid: u32) -> &Process {
        let start_ticks = start_ns / NS_PER_TICK;
        let known = self.procs.get(&tgid).is_some_and(|p| p.start_ticks == start_ticks);
        if !known {
            let (exe, command_line) = read_proc(tgid).unwrap_or_else(|| (self.empty.clone(), self.empty.clone()));
            let ancestors =
                self.procs.get(&ppid).map(Process::children_ancestors).unwrap_or_else(|| self.empty.clone());
            let guuid = guuid(&self.host, tgid, start_ticks);
            self.procs.insert(tgid, Process::new(guuid, start_ticks, ppid, exe, command_line, ancestors));
        }
        &self.procs[&tgid]
    }

    /// Marks `tgid` exited at `now_ns`; it is dropped after a grace period.
    pub fn exit(&mut self, tgid: u32, start_ns: u64, now_ns: u64) {
        self.exited.push_back((now_ns, tgid, start_ns / NS_PER_TICK));
    }

    /// Drops the processes that exited more than the grace period before `now_ns`.
    pub fn sweep(&mut self, now_ns: u64) {
        while let Some(&(at, tgid, start_ticks)) = self.exited.front() {
            if now_ns.saturating_sub(at) < EXITED_GRACE_NS {
                break;
            }
            self.exited.pop_front();
            // only if the pid was not reused in the meantime (one lookup: a storm exits thousands a second)
            if let std::collections::hash_map::Entry::Occupied(e) = self.procs.entry(tgid) {
                if e.get().start_ticks == start_ticks {
                    e.remove();
                }
            }
        }
    }

    /// Fills the table from /proc (call after the eBPF programs are attached,
    /// so no process falls between the two).
    pub fn seed_from_proc(&mut self) -> std::io::Result<usize> {
        let mut raw: Vec<(u32, u32, u64, Text, Text)> = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Some((ppid, start_ticks)) = read_stat(pid) else { continue };
            let (exe, cmd) = read_proc(pid).unwrap_or_else(|| (self.empty.clone(), self.empty.clone()));
            raw.push((pid, ppid, start_ticks, exe, cmd));
        }
        let parents: HashMap<u32, (u32, Text)> =
            raw.iter().map(|(p, pp, _, exe, _)| (*p, (*pp, exe.clone()))).collect();
        let n = raw.len();
        for (pid, ppid, start_ticks, exe, command_line) in raw {
            // walk up the parents, bounded in case of a cycle from racing reads
            let mut chain: Vec<Text> = Vec::new();
            let mut cur = ppid;
            while let Some((pp, exe)) = parents.get(&cur) {
                if chain.len() >= 64 || cur == 0 {
                    break;
                }
                if !exe.is_empty() {
                    chain.push(exe.clone());
                }
                cur = *pp;
            }
            chain.reverse();
            let ancestors: Text = chain.iter().map(|s| &**s).collect::<Vec<_>>().join("|").into();
            let guuid = guuid(&self.host, pid, start_ticks);
            self.procs.entry(pid).or_insert(Process::new(guuid, start_ticks, ppid, exe, command_line, ancestors));
        }
        Ok(n)
    }
}

/// (ppid, start time in ticks) from /proc/<pid>/stat.
pub fn read_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may contain spaces and parentheses: fields start after the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state): ppid is field 4, starttime field 22
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

fn read_proc(pid: u32) -> Option<(Text, Text)> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| Arc::from(p.to_string_lossy().trim_end_matches(" (deleted)")))
        .unwrap_or_else(|_| Arc::from(""));
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some((exe, command_line(&cmd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_joins_args() {
        assert_eq!(&*command_line(b"/bin/sh\0-c\0echo hi\0"), "/bin/sh -c echo hi");
        assert_eq!(&*command_line(b"\0\0"), "");
        assert_eq!(&*command_line(b"a\xffb\0"), "a\u{fffd}b");
    }

    #[test]
    fn fork_exec_builds_ancestors() {
        let mut t = ProcessTable::new(Uuid::nil());
        t.exec(1, 0, 0, "/sbin/init".into(), "init".into());
        t.fork(1, 100, 10 * NS_PER_TICK);
        t.exec(100, 10 * NS_PER_TICK, 1, "/bin/bash".into(), "bash".into());
        let child = t.fork(100, 200, 20 * NS_PER_TICK).clone();
        assert_eq!(&*child.ancestors, "/sbin/init|/bin/bash");
        assert_eq!(&*child.exe, "/bin/bash");
        let p = t.exec(200, 20 * NS_PER_TICK, 100, "/bin/true".into(), "true".into()).clone();
        assert_eq!(&*p.ancestors, "/sbin/init|/bin/bash");
        assert_eq!(p.guuid, child.guuid, "exec keeps the guuid");
    }

    #[test]
    fn reused_pid_gets_new_guuid_and_sweep_respects_reuse() {
        let mut t = ProcessTable::new(Uuid::nil());
        let a = t.fork(1, 300, 5 * NS_PER_TICK).guuid;
        t.exit(300, 5 * NS_PER_TICK, 1_000);
        let b = t.fork(1, 300, 9 * NS_PER_TICK).guuid;
        assert_ne!(a, b);
        t.sweep(1_000 + EXITED_GRACE_NS);
        assert!(t.get(300, 9).is_some(), "the new process with the reused pid stays");
    }

    #[test]
    fn seeds_self_from_proc() {
        let mut t = ProcessTable::new(Uuid::nil());
        assert!(t.seed_from_proc().unwrap() > 0);
        let me = std::process::id();
        let (_, start) = read_stat(me).unwrap();
        let p = t.get(me, start).expect("own process seeded");
        assert_eq!(&*p.exe, std::env::current_exe().unwrap().to_str().unwrap());
        assert!(!p.command_line.is_empty());
    }
}

//! File and system records into events: file_create, read/write (and their
//! *_config kinds), write_close, file_rename, file_unlink, mmap_exec,
//! mprotect_exec, kill, ptrace, prctl, bpf_prog_load, bpf_socket_filter, and
//! the `error` that says a task's file events are throttled.

use sha2::Digest;

use super::{Processor, Slot, Waits};

/// Page size of the mappings (x86_64, like the syscall programs).
const PAGE: u64 = 4096;
use crate::bpf::abi;
use crate::enrich::bpfprog;
use crate::events::*;
use crate::hashes::{hex_into, Md5, Sha1, Sha256, Sha512};
use crate::sensor::record::{FileSys, FileSysDetail};

const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_CREATED: u32 = 0x10_0000;

/// md5/sha1/sha256/sha512 and size of bytes (a BPF program, a socket filter).
pub fn digests(bytes: &[u8], len: Option<u64>) -> Digests {
    Digests {
        md5: Some(Md5(md5::Md5::digest(bytes).into())),
        sha1: Some(Sha1(sha1::Sha1::digest(bytes).into())),
        sha256: Some(Sha256(sha2::Sha256::digest(bytes).into())),
        sha512: Some(Sha512(sha2::Sha512::digest(bytes).into())),
        size: bytes.len() as u64,
        len,
    }
}

/// Signal names as `kill -l` gives them.
pub fn signal_name(sig: u64) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(sig as usize) {
        Some(n) => n.to_string(),
        None if (34..=64).contains(&sig) => format!("SIGRTMIN+{}", sig - 34),
        None => sig.to_string(),
    }
}

/// `PR_*` name of a prctl option.
pub fn prctl_option(option: u64) -> String {
    let name = match option {
        1 => "PR_SET_PDEATHSIG",
        2 => "PR_GET_PDEATHSIG",
        3 => "PR_GET_DUMPABLE",
        4 => "PR_SET_DUMPABLE",
        7 => "PR_GET_KEEPCAPS",
        8 => "PR_SET_KEEPCAPS",
        15 => "PR_SET_NAME",
        16 => "PR_GET_NAME",
        21 => "PR_GET_SECCOMP",
        22 => "PR_SET_SECCOMP",
        23 => "PR_CAPBSET_READ",
        24 => "PR_CAPBSET_DROP",
        27 => "PR_GET_SECUREBITS",
        28 => "PR_SET_SECUREBITS",
        29 => "PR_SET_TIMERSLACK",
        30 => "PR_GET_TIMERSLACK",
        35 => "PR_SET_MM",
        36 => "PR_SET_CHILD_SUBREAPER",
        37 => "PR_GET_CHILD_SUBREAPER",
        38 => "PR_SET_NO_NEW_PRIVS",
        39 => "PR_GET_NO_NEW_PRIVS",
        41 => "PR_SET_THP_DISABLE",
        42 => "PR_GET_THP_DISABLE",
        47 => "PR_CAP_AMBIENT",
        52 => "PR_GET_SPECULATION_CTRL",
        53 => "PR_SET_SPECULATION_CTRL",
        57 => "PR_SET_IO_FLUSHER",
        58 => "PR_GET_IO_FLUSHER",
        59 => "PR_SET_SYSCALL_USER_DISPATCH",
        62 => "PR_SCHED_CORE",
        65 => "PR_SET_MDWE",
        66 => "PR_GET_MDWE",
        0x5356_4d41 => "PR_SET_VMA",
        0x4155_5856 => "PR_GET_AUXV",
        other => return other.to_string(),
    };
    name.to_string()
}

/// The `error` message of the max_eps_fs throttle: when it kicks in
/// (`dropped` 0), then how many file events that second lost.
pub fn throttle_message(comm: &str, pid: u32, limit: u64, dropped: u64) -> String {
    if dropped == 0 {
        format!(
            "file events of {comm} (pid {pid}) throttled: over max_eps_fs = {limit} a second, \
             the rest of this second's are dropped"
        )
    } else {
        format!("file events of {comm} (pid {pid}) throttled: {dropped} dropped in a second over max_eps_fs = {limit}")
    }
}

fn hex(v: u64) -> String {
    format!("0x{v:x}")
}

fn c_text(b: &[u8]) -> String {
    String::from_utf8_lossy(abi::c_str(b)).into_owned()
}

impl Processor {
    /// Turns one file/system record into its events (an open can be both
    /// `file_create` and `write`) and writes them.
    pub(super) fn file_sys(&mut self, r: FileSys) {
        let t = &r.hdr.task;
        let p = self.procs.lookup(t.tgid, t.start_boottime, r.hdr.parent.tgid);
        let (ancestors, command_line, exe) =
            (p.ancestors.clone(), p.command_line.clone(), FilePath { path: p.exe.clone() });
        let mut out: Vec<EventData> = Vec::new();
        // what an mmap_exec event waits for (no other event here has hashes)
        let mut waits = Waits::new();
        match r.detail {
            FileSysDetail::File { f_mode, config, key, path, truncated, deleted } => {
                let text: Text = path.as_str().into();
                let file = |path: &Text| FileData {
                    ancestors: ancestors.clone(),
                    command_line: command_line.clone(),
                    exe: exe.clone(),
                    path: path.clone(),
                };
                match r.op {
                    abi::OP_OPEN => {
                        let (wr, rd) = (f_mode & FMODE_WRITE != 0, f_mode & FMODE_READ != 0);
                        if f_mode & FMODE_CREATED != 0 && self.wanted(EventKind::FileCreate) {
                            out.push(EventData::FileCreate(file(&text)));
                        }
                        if wr {
                            if config && self.wanted(EventKind::WriteConfig) {
                                out.push(EventData::WriteConfig(file(&text)));
                            } else if self.wanted(EventKind::Write) {
                                out.push(EventData::Write(file(&text)));
                            }
                        }
                        if rd {
                            if config && self.wanted(EventKind::ReadConfig) {
                                out.push(EventData::ReadConfig(file(&text)));
                            } else if self.wanted(EventKind::Read) {
                                out.push(EventData::Read(file(&text)));
                            }
                        }
                    }
                    abi::OP_CLOSE_WRITABLE if self.wanted(EventKind::WriteClose) => {
                        out.push(EventData::WriteClose(file(&text)))
                    }
                    abi::OP_MMAP_EXEC if self.wanted(EventKind::MmapExec) => {
                        let shown = super::shown_path(path.as_bytes(), truncated, deleted);
                        // the mapping itself reaches the file when its name does not (args: addr, len, .., fd)
                        let (start, len, fd) = (r.ret as u64, r.args[1], r.args[4] as i32);
                        let end = start.saturating_add(len.div_ceil(PAGE) * PAGE);
                        let links = [
                            format!("/proc/{}/map_files/{start:x}-{end:x}", t.tgid),
                            format!("/proc/{}/fd/{fd}", t.tgid),
                        ];
                        let sources = || super::kernel_sources(path.as_bytes(), truncated, deleted, &links);
                        let mapped = self.file_ref(key, &shown, sources, Slot::Mapped, &mut waits);
                        out.push(EventData::MmapExec(MmapExecData { ancestors, command_line, exe, mapped }));
                    }
                    _ => {}
                }
            }
            FileSysDetail::Paths(names) => match (r.op, names.as_slice()) {
                (abi::OP_RENAME, [old, new]) if self.wanted(EventKind::FileRename) => {
                    out.push(EventData::FileRename(FileRenameData {
                        ancestors,
                        command_line,
                        exe,
                        old: old.as_str().into(),
                        new: new.as_str().into(),
                    }))
                }
                (abi::OP_UNLINK, [path]) if self.wanted(EventKind::FileUnlink) => {
                    out.push(EventData::FileUnlink(FileUnlinkData {
                        ancestors,
                        command_line,
                        exe,
                        path: path.as_str().into(),
                        success: r.ret == 0,
                    }))
                }
                _ => {}
            },
            FileSysDetail::Sys(s) => {
                if let Some(d) = self.sys_data(&r.op, r.ret, &r.args, &s, (ancestors, command_line, exe)) {
                    out.push(d);
                }
            }
            FileSysDetail::Module(m) if self.wanted(EventKind::InitModule) => {
                out.push(self.module_load(r.ret, *m, (ancestors, command_line, exe)))
            }
            FileSysDetail::Module(_) => {}
            FileSysDetail::Throttled { limit, dropped } => {
                let comm = String::from_utf8_lossy(abi::c_str(&t.comm)).into_owned();
                out.push(EventData::Error(ErrorData {
                    code: 2,
                    message: throttle_message(&comm, t.tgid, limit, dropped),
                }));
            }
        }
        for data in out {
            let w = if matches!(data, EventData::MmapExec(_)) { std::mem::take(&mut waits) } else { Waits::new() };
            let ev = self.event_of(data, &r.hdr);
            self.emit_waiting(ev, w);
        }
    }

    fn target(&mut self, pid: u32, task: Option<&abi::Task>) -> Target {
        let p = match task {
            Some(t) => self.procs.lookup(t.tgid, t.start_boottime, 0),
            None => match self.procs.get_any(pid) {
                Some(p) => p,
                None => {
                    return Target {
                        task: TaskInfo { pid: pid as i32, tgid: pid as i32, ..Default::default() },
                        ..Default::default()
                    }
                }
            },
        };
        let (command_line, exe, guuid) = (p.command_line.clone(), FilePath { path: p.exe.clone() }, p.guuid);
        let task = match task {
            Some(t) => self.task_info(t),
            None => TaskInfo {
                name: std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_string(),
                pid: pid as i32,
                tgid: pid as i32,
                guuid,
                ..Default::default()
            },
        };
        Target { command_line, exe, task }
    }

    fn sys_data(
        &mut self,
        op: &u32,
        ret: i64,
        args: &[u64; 6],
        s: &abi::SysRec,
        (ancestors, command_line, exe): (Text, Text, FilePath),
    ) -> Option<EventData> {
        Some(match *op {
            abi::OP_KILL if self.wanted(EventKind::Kill) => {
                let target = self.target(s.target.tgid, Some(&s.target));
                EventData::Kill(KillData { ancestors, command_line, exe, signal: signal_name(args[0]), target })
            }
            abi::OP_PTRACE if self.wanted(EventKind::Ptrace) => {
                let target = self.target(args[1] as u32, None);
                EventData::Ptrace(PtraceData { ancestors, command_line, exe, mode: hex(args[0]), target })
            }
            abi::OP_PRCTL if self.wanted(EventKind::Prctl) => EventData::Prctl(PrctlData {
                ancestors,
                command_line,
                exe,
                option: prctl_option(args[0]),
                arg2: hex(args[1]),
                arg3: hex(args[2]),
                arg4: hex(args[3]),
                arg5: hex(args[4]),
                success: ret >= 0,
            }),
            abi::OP_MPROTECT_EXEC if self.wanted(EventKind::MprotectExec) => {
                EventData::MprotectExec(MprotectExecData {
                    ancestors,
                    command_line,
                    exe,
                    addr: hex(args[0]),
                    prot: hex(args[2]),
                })
            }
            abi::OP_BPF_PROG if self.wanted(EventKind::BpfProgLoad) => {
                let loaded = ret >= 0;
                let insns = if loaded { bpfprog::xlated_insns(s.prog_id).ok() } else { None };
                let mut tag = [0u8; 16];
                hex_into(&s.prog_tag, &mut tag);
                let name = c_text(&s.prog_name);
                EventData::BpfProgLoad(BpfProgLoadData {
                    ancestors,
                    command_line,
                    exe,
                    id: s.prog_id,
                    prog_type: ProgType { id: s.prog_type, name: bpfprog::prog_type_name(s.prog_type) },
                    tag: if loaded { String::from_utf8_lossy(&tag).into_owned() } else { String::new() },
                    attached_func: c_text(&s.text),
                    ksym: if loaded {
                        format!("bpf_prog_{}_{name}", String::from_utf8_lossy(&tag))
                    } else {
                        String::new()
                    },
                    name,
                    bpf_prog: insns.map(|b| digests(&b, None)).unwrap_or_default(),
                    verified_insns: s.prog_verified_insns,
                    loaded,
                })
            }
            abi::OP_SOCK_FILTER if self.wanted(EventKind::BpfSocketFilter) => {
                // SO_ATTACH_FILTER: the classic filter the call passed; SO_ATTACH_BPF: the program's instructions
                let (bytes, len) = if s.prog_id != 0 {
                    let b = bpfprog::xlated_insns(s.prog_id).unwrap_or_default();
                    let n = b.len() as u64 / 8;
                    (b, n)
                } else {
                    let n = (s.data_len as usize).min(abi::SYS_DATA);
                    (s.data[..n].to_vec(), n as u64 / 8)
                };
                let socket = crate::sensor::network::socket_info(s.sock.family, s.sock.kind, s.sock.proto);
                EventData::BpfSocketFilter(BpfSocketFilterData {
                    ancestors,
                    command_line,
                    exe,
                    socket,
                    filter: digests(&bytes, Some(len)),
                    attached: ret == 0,
                })
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(35), "SIGRTMIN+1");
        assert_eq!(signal_name(99), "99");
        assert_eq!(prctl_option(15), "PR_SET_NAME");
        assert_eq!(prctl_option(47), "PR_CAP_AMBIENT");
        assert_eq!(prctl_option(1234), "1234");
    }

    #[test]
    fn digests_of_bytes() {
        let d = digests(b"abc", Some(0));
        assert_eq!(d.sha256.unwrap().to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.size, 3);
    }
}

//! The kernel side: the eBPF programs compiled from agent/bpf/ (embedded in
//! the binary), their loading and attaching with aya, and the ring buffer
//! and loss counters they write to.

pub mod abi;
pub mod config_dirs;

use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use aya_obj::btf::BtfKind;

use crate::events::EventKind;

/// The compiled programs (built by build.rs from agent/bpf/sensor.bpf.c).
static SENSOR_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// A BTF tracepoint program and the events it feeds.
struct Hook {
    program: &'static str,
    tracepoint: &'static str,
    /// Attached only when one of these is enabled; empty: always (the
    /// process table needs exec/fork/exit whatever the config says).
    feeds: &'static [EventKind],
}

use EventKind::*;

/// Events fed by the syscall-exit program (files.c). execve_script is not
/// one: it takes its script's identity from that program (the file the
/// interpreter opens) only when one of these attached it, so the process
/// events alone keep syscalls off the slow path.
const SYS_EXIT_EVENTS: &[EventKind] = &[
    FileCreate,
    Read,
    ReadConfig,
    Write,
    WriteConfig,
    FileRename,
    FileUnlink,
    MmapExec,
    MprotectExec,
    Ptrace,
    Prctl,
    BpfProgLoad,
    BpfSocketFilter,
    InitModule,
];

/// Events counted by the max_eps_fs throttle (files.c, file_budget).
const THROTTLED_EVENTS: &[EventKind] =
    &[FileCreate, Read, ReadConfig, Write, WriteConfig, FileRename, FileUnlink, WriteClose];

const HOOKS: &[Hook] = &[
    Hook { program: "ioclab_exec", tracepoint: "sched_process_exec", feeds: &[] },
    Hook { program: "ioclab_fork", tracepoint: "sched_process_fork", feeds: &[] },
    // before ioclab_exit: a process's last throttle count comes before its exit_group
    Hook { program: "ioclab_fs_exit", tracepoint: "sched_process_exit", feeds: THROTTLED_EVENTS },
    Hook { program: "ioclab_exit", tracepoint: "sched_process_exit", feeds: &[] },
    // sends also teach which unconnected UDP sockets talk to a DNS server
    Hook { program: "ioclab_sock_send", tracepoint: "sock_send_length", feeds: &[SendData, DnsQuery] },
    // DNS answers also give connect/send_data their dst.hostname
    Hook { program: "ioclab_sock_recv", tracepoint: "sock_recv_length", feeds: &[DnsQuery, Connect, SendData] },
    Hook { program: "ioclab_sock_state", tracepoint: "inet_sock_set_state", feeds: &[Connect] },
    Hook { program: "ioclab_signal", tracepoint: "signal_generate", feeds: &[Kill] },
    // syscall hooks last: the agent's own loads above are not reported
    Hook { program: "ioclab_sys_exit", tracepoint: "sys_exit", feeds: SYS_EXIT_EVENTS },
    Hook { program: "ioclab_sys_enter", tracepoint: "sys_enter", feeds: &[WriteClose] },
];

/// Whether the syscall-exit program is attached for these events (it also
/// ends each sendmmsg/recvmmsg, which lets the socket programs tell its messages apart).
fn sys_exit_attached(enabled: &[EventKind]) -> bool {
    cfg!(target_arch = "x86_64") && SYS_EXIT_EVENTS.iter().any(|k| enabled.contains(k))
}

/// Whether the kernel side reports what scripts' interpreters open (the
/// scripts' identity): execve_script on, and the syscall-exit program
/// attached for another event (the defaults attach it).
pub fn follows_scripts(enabled: &[EventKind]) -> bool {
    sys_exit_attached(enabled) && enabled.contains(&ExecveScript)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_followed_only_where_syscalls_already_are() {
        let defaults: Vec<EventKind> = EventKind::ALL.iter().copied().filter(|k| k.enabled_by_default()).collect();
        assert!(follows_scripts(&defaults));
        // the process events alone attach no syscall program, for scripts neither
        let process = [Execve, ExecveScript, Exit, ExitGroup, Clone];
        assert!(!sys_exit_attached(&process) && !follows_scripts(&process));
        assert!(follows_scripts(&[ExecveScript, MmapExec]));
        assert!(!follows_scripts(&[Execve, MmapExec]));
    }
}

/// The `file_events` mask of files.c for the enabled events.
fn file_events(enabled: &[EventKind]) -> u64 {
    let bits: &[(EventKind, u64)] = &[
        (FileCreate, abi::WANT_CREATE),
        (Read, abi::WANT_READ),
        (ReadConfig, abi::WANT_READ_CONFIG),
        (Write, abi::WANT_WRITE),
        (WriteConfig, abi::WANT_WRITE_CONFIG),
        (FileRename, abi::WANT_RENAME),
        (FileUnlink, abi::WANT_UNLINK),
        (WriteClose, abi::WANT_WRITE_CLOSE),
        (MmapExec, abi::WANT_MMAP_EXEC),
        (MprotectExec, abi::WANT_MPROTECT_EXEC),
        (Ptrace, abi::WANT_PTRACE),
        (Prctl, abi::WANT_PRCTL),
        (InitModule, abi::WANT_MODULE),
        (BpfProgLoad, abi::WANT_BPF_PROG),
        (BpfSocketFilter, abi::WANT_SOCK_FILTER),
    ];
    bits.iter().filter(|(k, _)| enabled.contains(k)).fold(0, |m, (_, b)| m | b)
}

/// Why the programs could not be loaded; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The process lacks a capability.
    #[error("missing capability {0}: run ioclab agent as root (e.g. with sudo)")]
    MissingCapability(&'static str),
    /// The kernel exposes no BTF.
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux): ioclab needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf(#[source] aya::BtfError),
    /// The kernel refused the object.
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[source] aya::EbpfError),
    /// The kernel refused one program.
    #[error("eBPF program {program} (on {hook}): {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// Where it attaches.
        hook: &'static str,
        /// What the kernel said.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map is missing or of the wrong type.
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
}

/// Tunables of the kernel side.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Enabled events: programs feeding none of them are not attached.
    pub events: Vec<EventKind>,
    /// Ring buffer size in bytes (rounded up to a power of two, at least one page).
    pub ring_bytes: u32,
    /// Unread bytes above which the reader is woken at once.
    pub wakeup_bytes: u64,
    /// Smallest send reported as `send_data`.
    pub send_data_min_len: u64,
    /// File events per process and second before throttling (0: no limit).
    pub max_eps_fs: u64,
}

/// What the ring's reader does, as the programs see it (common.h, READER_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderState {
    /// Reading: no record wakes it.
    Running = 0,
    /// Sleeping on its drain timer: woken when `wakeup_bytes` are unread.
    BusySleep = 1,
    /// Sleeping with nothing to read: woken by the first record.
    IdleSleep = 2,
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Programs {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    reader_state: Array<MapData, u32>,
    // keeps the programs attached
    _ebpf: Ebpf,
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks the effective capabilities the programs need (CAP_BPF and
/// CAP_PERFMON, or CAP_SYS_ADMIN on kernels before 5.8).
pub fn check_capabilities() -> Result<(), BpfError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    if !has(CAP_BPF) {
        return Err(BpfError::MissingCapability("CAP_BPF"));
    }
    if !has(CAP_PERFMON) {
        return Err(BpfError::MissingCapability("CAP_PERFMON"));
    }
    Ok(())
}

/// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (< 5.11).
fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer; failure only matters on old kernels, where loading then says why.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

impl Programs {
    /// Loads, verifies and attaches every program.
    pub fn load(opts: LoadOptions) -> Result<Self, BpfError> {
        check_capabilities()?;
        raise_memlock();
        let btf = Btf::from_sys_fs().map_err(BpfError::NoBtf)?;
        let ring_bytes = opts.ring_bytes.max(4096).next_power_of_two();
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // a threshold the ring cannot reach would leave only the timer
            .set_global("wakeup_bytes", &opts.wakeup_bytes.min(ring_bytes as u64 / 4), true)
            .set_global("send_data_min_len", &opts.send_data_min_len, true)
            .set_global("send_records", &(opts.events.contains(&SendData) as u8), true)
            .set_global("file_events", &file_events(&opts.events), true)
            .set_global("mmsg_at_exit", &(sys_exit_attached(&opts.events) as u8), true)
            .set_global("follow_scripts", &(follows_scripts(&opts.events) as u8), true)
            .set_global("agent_tgid", &std::process::id(), true)
            .set_global("max_eps_fs", &opts.max_eps_fs, true)
            .set_max_entries("events", ring_bytes)
            .load(SENSOR_OBJ)
            .map_err(BpfError::Load)?;
        config_dirs::fill(&mut ebpf)?;

        for hook in HOOKS {
            if !hook.feeds.is_empty() && !hook.feeds.iter().any(|k| opts.events.contains(k)) {
                continue;
            }
            let feeds = hook.feeds;
            let (name, hook) = (hook.program, hook.tracepoint);
            if ebpf.program(name).is_none() {
                // the syscall programs are built for x86_64 only
                tracing::warn!("eBPF program {name} is not built for this architecture: its events are off");
                continue;
            }
            // an optional hook the kernel lacks (sock_send_length and sock_recv_length
            // came in Linux 6.3; Debian 12 ships 6.1) turns its events off, not the agent
            if !feeds.is_empty() && btf.id_by_type_name_kind(&format!("btf_trace_{hook}"), BtfKind::Typedef).is_err() {
                let events: Vec<&str> = feeds.iter().map(|k| k.name()).collect();
                tracing::warn!(
                    "this kernel has no {hook} tracepoint (program {name}): {} come without it (Linux 6.3 or later has it)",
                    events.join(", ")
                );
                continue;
            }
            let err = |source| BpfError::Program { program: name, hook, source };
            let prog: &mut BtfTracePoint = program(&mut ebpf, name)?.try_into().map_err(err)?;
            prog.load(hook, &btf).map_err(err)?;
            prog.attach().map_err(err)?;
        }
        let ring = ebpf.take_map("events").ok_or(BpfError::Map("events", "missing".into()))?;
        let ring = RingBuf::try_from(ring).map_err(|e| BpfError::Map("events", e.to_string()))?;
        let lost = ebpf.take_map("lost").ok_or(BpfError::Map("lost", "missing".into()))?;
        let lost = PerCpuArray::try_from(lost).map_err(|e| BpfError::Map("lost", e.to_string()))?;
        let state = ebpf.take_map("reader_state").ok_or(BpfError::Map("reader_state", "missing".into()))?;
        let reader_state = Array::try_from(state).map_err(|e| BpfError::Map("reader_state", e.to_string()))?;
        Ok(Programs { ring, lost, reader_state, _ebpf: ebpf })
    }

    /// The ring buffer's file descriptor, to poll for readability.
    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Calls `f` with each record waiting in the ring buffer, at most `max`
    /// of them; returns how many.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = self.ring.next() else { break };
            f(&item);
            n += 1;
        }
        n
    }

    /// Tells the programs what the reader is about to do (common.h's
    /// `reader_state`): the record that finds it asleep and worth waking wakes it.
    pub fn set_reader_state(&mut self, state: ReaderState) {
        if let Err(e) = self.reader_state.set(0, state as u32, 0) {
            tracing::warn!("cannot update the reader_state map: {e}");
        }
    }

    /// Records the kernel side could not write since it was loaded, all CPUs together.
    pub fn lost(&self) -> u64 {
        self.lost.get(&0, 0).map(|per_cpu| per_cpu.iter().sum()).unwrap_or(0)
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::programs::Program, BpfError> {
    ebpf.program_mut(name).ok_or(BpfError::Map(name, "program missing from the object".into()))
}

//! The running agent: one thread drains the kernel ring buffer, decodes the
//! records, enriches, matches and writes them. Hashing a new file (the slow
//! part) is done by a worker thread (`enrich::hasher`): only the event that
//! needs the hashes waits for them, up to a budget; the loop never stops
//! reading the ring nor writing the other events.
//!
//! One thread for the events, not a reader handing batches to a processor
//! thread: each hand-off cost a wakeup, several µs on a VM, about a fifth of
//! the agent's CPU in an exec storm. Only cache misses go to the worker.

pub(crate) mod network;
pub mod output;
mod processor;
pub mod record;
pub mod reload;
pub mod roots;
mod start;
pub mod tap;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::bpf::{abi, BpfError, LoadOptions, Programs, ReaderState};
use crate::config::Config;
use crate::enrich::proctable::ProcessTable;
use crate::events::{ErrorData, EventData, EventKind};
use crate::ioc::loader::{load_files, IocFileError, LoadReport};
use crate::ioc::IocSet;
use output::Output;
pub use processor::Processor;
use record::{decode, Record};
use reload::Reloader;

/// Flags the caller sets (from signal handlers) to steer a running agent.
#[derive(Debug, Default, Clone)]
pub struct Control {
    /// Flush and return.
    pub stop: Arc<AtomicBool>,
    /// Reload the IoC files and reopen the output file (SIGHUP).
    pub reload: Arc<AtomicBool>,
    /// Other consumers of the same programs (the sandbox): their cgroups' events go to them only.
    pub taps: tap::Taps,
    /// Roots of mount namespaces lent by the embedding program (the lab's
    /// steps): scripts there are read even after their processes end.
    pub roots: roots::NsRoots,
    /// IoC loads asked by the embedding program (a remote agent applying a
    /// push); SIGHUP asks through `reload` instead.
    pub reloads: reload::Reloads,
    /// An IoC file the embedding program rewrites (the appliance's pushes),
    /// loaded with the IoC files when it exists: absent means "none pushed
    /// yet", and the reloader runs for it even with no IoC file.
    pub pushed_iocs: Option<PathBuf>,
}

/// Counters shared by the agent's threads.
#[derive(Debug, Default)]
pub struct Stats {
    read: AtomicU64,
    written: AtomicU64,
    lost: AtomicU64,
}

impl Stats {
    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }
    fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }
    fn add_lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a run did, returned when it stops.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Kernel records read.
    pub read: u64,
    /// Events written.
    pub written: u64,
    /// Events lost: records the kernel could not write (ring buffer full)
    /// and events the output could not take (`output_lost`).
    pub lost: u64,
    /// Events dropped because the output failed (full disk...), part of `lost`.
    pub output_lost: u64,
    /// The output's reader went away (broken pipe) and the agent stopped.
    pub output_closed: bool,
    /// Files hashed.
    pub files_hashed: u64,
    /// Hash lookups answered from the cache.
    pub hash_cache_hits: u64,
    /// CPU time spent hashing files seen for the first time, µs (part of `cpu_us`).
    pub hash_cpu_us: u64,
    /// CPU time (user + system) of the agent from ready to stop, µs.
    pub cpu_us: u64,
    /// Peak resident memory of the process, KiB.
    pub max_rss_kb: u64,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The eBPF side.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// An IoC file could not be read.
    #[error(transparent)]
    Iocs(#[from] IocFileError),
    /// Starting a thread or reading /proc failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn rusage() -> (u64, u64) {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime), peak_rss_kb().unwrap_or(ru.ru_maxrss as u64))
}

/// Peak RSS of this process image (VmHWM). Not getrusage's ru_maxrss: Linux
/// carries that across execve, so a process started by a big parent through
/// vfork reports the parent's peak.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()
}

/// Loads the IoC files, logging each bad line as `file:line: reason`.
pub fn load_iocs(paths: &[PathBuf]) -> Result<(IocSet, LoadReport), IocFileError> {
    let (set, report) = load_files(paths)?;
    for bad in report.bad.iter().chain(&report.duplicates) {
        tracing::warn!("{bad}");
    }
    for twice in &report.repeated_files {
        tracing::warn!("{}: named twice, read once", twice.display());
    }
    tracing::info!("IoCs loaded: {}", report.counts());
    Ok((set, report))
}

/// `error` event for IoCs loaded at start with problems: the agent runs
/// with what loaded (there is no previous set to keep), and says so.
fn start_load_problems(report: &LoadReport) -> Option<EventData> {
    if report.complete() {
        return None;
    }
    let first = report.bad.first().map(|b| format!(" (first bad line {b})")).unwrap_or_default();
    Some(EventData::Error(ErrorData {
        code: reload::ERROR_RELOAD_REFUSED,
        message: format!("IoC files loaded with problems: {}{first}; `ioclab ioc check` lists them", report.counts()),
    }))
}

/// Runs the agent until `control.stop` is set (or the output's reader goes
/// away), writing JSON lines to `out`. Returns once every event read has
/// been written or counted as lost.
pub fn run(config: Config, out: impl Into<Output>, control: Control) -> Result<Summary, AgentError> {
    let config = Arc::new(config);
    let own_exe = start::own_exe(config.max_hash_size.min(start::OWN_EXE_HASH_MAX));
    let iocs_paths = config.scanner.iocs.clone();
    let iocs = Arc::new(ArcSwapOption::empty());
    let mut start_problems = None;
    let start_paths = reload::present(&iocs_paths, control.pushed_iocs.as_deref());
    if !start_paths.is_empty() {
        let (set, report) = load_iocs(&start_paths)?;
        start_problems = start_load_problems(&report);
        iocs.store(Some(Arc::new(set)));
    }

    let ring_bytes = (config.max_buffered_events as u64 * std::mem::size_of::<abi::Exec>() as u64).min(1 << 30) as u32;
    let programs = Programs::load(LoadOptions {
        events: EventKind::ALL.iter().copied().filter(|k| config.enabled(*k)).collect(),
        ring_bytes,
        wakeup_bytes: config.wakeup_bytes,
        send_data_min_len: config.send_data_min_len,
        max_eps_fs: config.max_eps_fs,
    })?;

    // After attaching: a process is then either in /proc now or in the events.
    let host = Arc::new(crate::events::Host::new(start::host_info(&config)));
    let mut procs = ProcessTable::new(host.info().uuid);
    let known = procs.seed_from_proc()?;

    let stats = Arc::new(Stats::default());
    let mut processor = Processor::new(config.clone(), host, procs, iocs.clone(), out, stats.clone())?;
    processor.set_taps(control.taps.clone());
    processor.set_roots(control.roots.clone());
    let exe = own_exe.join().unwrap_or_default();
    let start = processor.agent_event(start::start_data(&config, exe));
    processor.emit(start);
    if let Some(problems) = start_problems {
        let ev = processor.agent_event(problems);
        processor.emit(ev);
    }
    processor.flush();
    let to = match &config.output.path {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdout".into(),
    };
    let what = match iocs_paths.is_empty() || config.scanner.write_unmatched {
        true => "every event",
        false => "events matching the IoCs",
    };
    tracing::info!("agent ready: {known} running processes known, writing {what} to {to}; Ctrl-C to stop");

    let reloader = match iocs_paths.is_empty() && control.pushed_iocs.is_none() {
        true => None,
        false => Some(Reloader::spawn(
            iocs_paths,
            control.pushed_iocs.clone(),
            config.scanner.accept_partial_iocs,
            iocs.clone(),
            control.reloads.clone(),
        )?),
    };
    let (cpu0, _) = rusage();
    let programs = RefCell::new(programs);
    read_loop(&programs, &config, &control, &mut processor, reloader.as_ref());
    processor.finish();
    let hash_stats = processor.hash_stats();
    let (cpu1, max_rss_kb) = rusage();
    let output_lost = processor.output().dropped_total();
    Ok(Summary {
        read: stats.read.load(Ordering::Relaxed),
        written: stats.written.load(Ordering::Relaxed),
        lost: stats.lost.load(Ordering::Relaxed) + output_lost,
        output_lost,
        output_closed: processor.output().closed(),
        files_hashed: hash_stats.hashed,
        hash_cache_hits: hash_stats.hits,
        hash_cpu_us: hash_stats.hash_cpu_us,
        cpu_us: cpu1.saturating_sub(cpu0),
        max_rss_kb,
    })
}

/// SIGHUP: the output file is opened again (logrotate moved it) and the
/// IoCs reloaded off the event path, one load at a time.
fn on_sighup(processor: &mut Processor, reloader: Option<&Reloader>) {
    processor.output().reopen();
    match reloader {
        Some(r) => r.request(),
        None => tracing::info!("SIGHUP: output reopened; no IoC file configured, nothing to reload"),
    }
}

/// Writes the outcome of each finished IoC reload as an event.
fn report_reloads(processor: &mut Processor, reloader: Option<&Reloader>) {
    let Some(r) = reloader else { return };
    let mut any = false;
    for outcome in r.outcomes() {
        if let reload::Outcome::Applied(report) = &outcome {
            tracing::info!("IoCs reloaded: {}", report.counts());
        }
        let data = outcome.event_data();
        if let EventData::Error(e) = &data {
            tracing::error!("{}", e.message);
        }
        let ev = processor.agent_event(data);
        processor.emit(ev);
        any = true;
    }
    if any {
        processor.flush();
    }
}

/// Records in one batch, at most.
const BATCH_RECORDS: usize = 1024;

/// Longest sleep of an idle reader: bounds how late it sees `control.stop`
/// when no signal interrupts its poll (signals do).
const IDLE_POLL_MS: i32 = 250;

/// The agent's loop. Busy, it drains the ring buffer every poll interval (or
/// when the unread data crosses `wakeup_bytes`) and processes what it read;
/// after a drain that found nothing it sleeps until the kernel side wakes it
/// with the next record. It notes kernel-side losses once a second.
fn read_loop(
    programs: &RefCell<Programs>,
    config: &Config,
    control: &Control,
    processor: &mut Processor,
    reloader: Option<&Reloader>,
) {
    let fd = programs.borrow().ring_fd();
    let busy_timeout = config.poll_interval_ms as i32;
    let mut idle = false;
    let mut more = false;
    let mut batch_no = 0u64;
    let mut last_check = Instant::now();
    let mut lost_seen = programs.borrow().lost();
    let mut records = Vec::with_capacity(BATCH_RECORDS);
    let mut read_since = 0u64;
    loop {
        let stopping = control.stop.load(Ordering::Relaxed) || processor.output().closed();
        if control.reload.swap(false, Ordering::Relaxed) {
            on_sighup(processor, reloader);
        }
        report_reloads(processor, reloader);
        if !stopping {
            let timeout = if more {
                0 // the last drain stopped at a full batch: records are waiting
            } else if idle {
                IDLE_POLL_MS
            } else {
                // a record finding wakeup_bytes unread wakes the reader before its timer
                programs.borrow_mut().set_reader_state(ReaderState::BusySleep);
                busy_timeout
            };
            // an event waiting for hashes is written at its deadline at the latest
            let timeout = match processor.next_deadline() {
                Some(d) => timeout.min(d.saturating_duration_since(Instant::now()).as_millis() as i32 + 1),
                None => timeout,
            };
            // the output's fd, if a pipe, reports POLLERR when its reader goes
            // away: an idle agent notices `| head -1` closing without writing
            let out_fd = processor.output().watch_fd();
            let mut pfds = [
                libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: processor.hash_wake_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: out_fd.unwrap_or(-1), events: 0, revents: 0 },
            ];
            // SAFETY: valid pollfds (a negative fd is ignored). EINTR (a signal) just ends the wait early.
            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if pfds[1].revents != 0 {
                processor.woken();
            }
            if pfds[2].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                processor.output().reader_gone();
            }
        }
        let mut ring = programs.borrow_mut();
        more = ring.drain(BATCH_RECORDS, |bytes| records.push(decode(bytes))) == BATCH_RECORDS;
        if records.is_empty() && !idle && !stopping {
            // let the next record wake the reader, then look once more: a record
            // that came before the state was visible would otherwise wait for the idle timer
            ring.set_reader_state(ReaderState::IdleSleep);
            idle = true;
            ring.drain(BATCH_RECORDS, |bytes| records.push(decode(bytes)));
        }
        if !records.is_empty() && idle {
            ring.set_reader_state(ReaderState::Running);
            idle = false;
        }
        read_since += records.len() as u64;
        let elapsed = last_check.elapsed();
        if elapsed >= Duration::from_secs(1) || stopping {
            processor.output().reopen_if_deleted();
            let lost = ring.lost();
            if lost > lost_seen {
                let eps = read_since as f64 / elapsed.as_secs_f64().max(1e-3);
                records.push(Record::Lost { read: read_since, lost: lost - lost_seen, eps });
                lost_seen = lost;
            }
            read_since = 0;
            last_check = Instant::now();
        }
        drop(ring);
        if !records.is_empty() {
            batch_no += 1;
            processor.batch(&mut records, batch_no);
        } else if processor.next_deadline().is_some() {
            processor.tick();
        }
        if stopping {
            return;
        }
    }
}

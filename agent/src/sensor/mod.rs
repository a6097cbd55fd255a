//! The running agent: a reader thread drains the kernel ring buffer and
//! decodes records; a processor thread enriches, matches and writes them.
//! Hashing (the slow part) happens on the processor, never on the reader.

pub(crate) mod network;
mod processor;
mod queue;
pub mod record;
mod start;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::bpf::{abi, BpfError, LoadOptions, Programs};
use crate::config::Config;
use crate::enrich::proctable::ProcessTable;
use crate::events::EventKind;
use crate::ioc::loader::{load_files, IocFileError};
use crate::ioc::IocSet;
pub use processor::Processor;
use record::{decode, Record};

/// Flags the caller sets (from signal handlers) to steer a running agent.
#[derive(Debug, Default, Clone)]
pub struct Control {
    /// Flush and return.
    pub stop: Arc<AtomicBool>,
    /// Reload the IoC files.
    pub reload: Arc<AtomicBool>,
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
    /// Records the kernel could not write (ring buffer full).
    pub lost: u64,
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
pub fn load_iocs(paths: &[PathBuf]) -> Result<IocSet, IocFileError> {
    let (set, report) = load_files(paths)?;
    for bad in &report.bad {
        tracing::warn!("{bad}");
    }
    tracing::info!(
        "{} IoCs loaded from {} file(s), {} bad line(s) skipped",
        report.loaded,
        paths.len(),
        report.bad.len()
    );
    Ok(set)
}

/// Runs the agent until `control.stop` is set, writing JSON lines to `out`.
/// Returns once every event read has been written.
pub fn run(config: Config, out: Box<dyn Write + Send>, control: Control) -> Result<Summary, AgentError> {
    let config = Arc::new(config);
    let iocs_paths = config.scanner.iocs.clone();
    let iocs = Arc::new(ArcSwapOption::empty());
    if !iocs_paths.is_empty() {
        iocs.store(Some(Arc::new(load_iocs(&iocs_paths)?)));
    }

    let ring_bytes = (config.max_buffered_events as u64 * std::mem::size_of::<abi::Exec>() as u64).min(1 << 30) as u32;
    let mut programs = Programs::load(LoadOptions {
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
    let mut processor = Processor::new(config.clone(), host, procs, iocs.clone(), out, stats.clone());
    let start = processor.agent_event(start::start_data(&config));
    processor.emit(start);
    processor.flush();
    let to = match &config.output.path {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdout".into(),
    };
    let what = if iocs_paths.is_empty() { "every event" } else { "events matching the IoCs" };
    tracing::info!("agent ready: {known} running processes known, writing {what} to {to}; Ctrl-C to stop");

    let (cpu0, _) = rusage();
    // Bounded batches in flight: when the processor falls behind for long,
    // the reader blocks, the kernel ring fills and losses are reported as
    // event_loss, instead of userspace memory growing without bound.
    let batches = Arc::new(queue::Queue::<(u64, Vec<Record>)>::new(QUEUED_RECORDS));
    // emptied batch vectors go back to the reader: no allocation per batch
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<Record>>(64);
    let rx = batches.clone();
    let proc_thread = std::thread::Builder::new().name("ioclab-process".into()).spawn(move || {
        // blocks until a batch comes: no timer wakeups when the machine is quiet
        while let Some((batch, mut records)) = rx.pop() {
            processor.batch(&mut records, batch);
            let _ = free_tx.try_send(records);
        }
        processor.flush();
        processor.hash_stats()
    })?;

    let reload = || spawn_reload(iocs_paths.clone(), iocs.clone());
    read_loop(&mut programs, &config, &control, &batches, &free_rx, &reload);
    batches.close();
    let hash_stats = proc_thread.join().unwrap_or_default();
    let (cpu1, max_rss_kb) = rusage();
    Ok(Summary {
        read: stats.read.load(Ordering::Relaxed),
        written: stats.written.load(Ordering::Relaxed),
        lost: stats.lost.load(Ordering::Relaxed),
        files_hashed: hash_stats.hashed,
        hash_cache_hits: hash_stats.hits,
        hash_cpu_us: hash_stats.hash_cpu_us,
        cpu_us: cpu1.saturating_sub(cpu0),
        max_rss_kb,
    })
}

/// Reloads IoCs off the event path; the old set stays in use until the new one is ready.
fn spawn_reload(paths: Vec<PathBuf>, target: Arc<ArcSwapOption<IocSet>>) {
    if paths.is_empty() {
        tracing::warn!("SIGHUP: no IoC file configured, nothing to reload");
        return;
    }
    let spawned = std::thread::Builder::new().name("ioclab-reload".into()).spawn(move || match load_iocs(&paths) {
        Ok(set) => {
            target.store(Some(Arc::new(set)));
            tracing::info!("IoCs reloaded");
        }
        Err(e) => tracing::error!("IoC reload failed, keeping the previous IoCs: {e}"),
    });
    if let Err(e) = spawned {
        tracing::error!("IoC reload failed: {e}");
    }
}

/// Records waiting for the processor, at most (counted in records, not
/// batches: a batch's size follows the event rate): up to tens of MB at
/// worst, they absorb a processor stalled by first-time hashing of a big
/// binary (seconds at a high event rate) before the kernel ring has to drop
/// and report losses.
const QUEUED_RECORDS: usize = 64 * BATCH_RECORDS;
/// Records in one batch, at most.
const BATCH_RECORDS: usize = 1024;

/// Longest sleep of an idle reader: bounds how late it sees `control.stop`
/// when no signal interrupts its poll (signals do).
const IDLE_POLL_MS: i32 = 250;

/// The reader. Busy, it drains the ring buffer every poll interval (or when
/// the unread data crosses `wakeup_bytes`); after a drain that found nothing
/// it sleeps until the kernel side wakes it with the next record. It notes
/// kernel-side losses once a second.
fn read_loop(
    programs: &mut Programs,
    config: &Config,
    control: &Control,
    batches: &queue::Queue<(u64, Vec<Record>)>,
    free: &crossbeam_channel::Receiver<Vec<Record>>,
    reload: &dyn Fn(),
) {
    let fd = programs.ring_fd();
    let busy_timeout = config.poll_interval_ms as i32;
    let mut idle = false;
    let mut more = false;
    let mut batch_no = 0u64;
    let mut last_check = Instant::now();
    let mut lost_seen = programs.lost();
    let mut read_since = 0u64;
    loop {
        let stopping = control.stop.load(Ordering::Relaxed);
        if control.reload.swap(false, Ordering::Relaxed) {
            reload();
        }
        if !stopping {
            let timeout = if more {
                0 // the last drain stopped at a full batch: records are waiting
            } else if idle {
                IDLE_POLL_MS
            } else {
                busy_timeout
            };
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd. EINTR (a signal) just ends the wait early.
            unsafe { libc::poll(&mut pfd, 1, timeout) };
        }
        let mut records = free.try_recv().unwrap_or_else(|_| Vec::with_capacity(256));
        more = programs.drain(BATCH_RECORDS, |bytes| records.push(decode(bytes))) == BATCH_RECORDS;
        if records.is_empty() && !idle && !stopping {
            // arm the kernel-side wakeup, then look once more: a record that
            // came before the flag was visible would otherwise wait for the timer
            programs.set_reader_idle(true);
            idle = true;
            programs.drain(BATCH_RECORDS, |bytes| records.push(decode(bytes)));
        }
        if !records.is_empty() && idle {
            programs.set_reader_idle(false);
            idle = false;
        }
        read_since += records.len() as u64;
        let elapsed = last_check.elapsed();
        if elapsed >= Duration::from_secs(1) || stopping {
            let lost = programs.lost();
            if lost > lost_seen {
                let eps = read_since as f64 / elapsed.as_secs_f64().max(1e-3);
                records.push(Record::Lost { read: read_since, lost: lost - lost_seen, eps });
                lost_seen = lost;
            }
            read_since = 0;
            last_check = Instant::now();
        }
        if !records.is_empty() {
            batch_no += 1;
            let n = records.len();
            if batches.push((batch_no, records), n).is_err() {
                return;
            }
        }
        if stopping {
            return;
        }
    }
}

//! Syscall storm: what the file and system events cost the rest of the
//! machine. Their syscall-exit program puts every syscall of every task on
//! the tracepoint slow path, so this measures syscall rates without the
//! agent, with the process events only (no syscall program attached) and
//! with the default events (file and system events on), interleaved:
//!
//! - `getppid`: a syscall no event is about (the pure slow-path cost);
//! - `open_close`: open+close of a file outside the configuration
//!   directories (the open is inspected, no event is made);
//! - `open_config`: open+close of a file under /etc (read_config events, far
//!   over `max_eps_fs`: the throttle drops them in the kernel).
//!
//! Run with `cargo bench --bench syscall_storm` as root (`SYSCALL_STORM_ONLY=open_close,default_events`
//! for some workloads or configs only). Figures, not pass/fail.

mod common;

use std::ffi::CString;
use std::path::Path;
use std::time::Instant;

use common::*;

/// One thread: the lab machines' two cores are shared, and a second busy
/// thread would measure the neighbours as much as the agent.
const THREADS: usize = 1;
/// Interleaved rounds; the median of the rounds' ratios is reported.
const ROUNDS: usize = 7;

#[derive(Clone, Copy)]
enum Workload {
    Getppid,
    OpenClose,
    OpenConfig,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Getppid => "getppid",
            Workload::OpenClose => "open_close",
            Workload::OpenConfig => "open_config",
        }
    }

    /// Calls per thread and round: about half a second each on the lab machines.
    fn calls(self) -> usize {
        match self {
            Workload::Getppid => 1_500_000,
            Workload::OpenClose | Workload::OpenConfig => 250_000,
        }
    }
}

/// Runs the workload on THREADS threads; returns calls per second (all threads).
fn storm(w: Workload, plain: &Path, config: &Path) -> f64 {
    let n = w.calls();
    let file = match w {
        Workload::OpenConfig => config,
        _ => plain,
    };
    let file = CString::new(file.to_str().unwrap()).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let file = &file;
            s.spawn(move || {
                for _ in 0..n {
                    // SAFETY: plain syscalls on a valid NUL-terminated path.
                    unsafe {
                        match w {
                            Workload::Getppid => {
                                libc::getppid();
                            }
                            _ => {
                                let fd = libc::open(file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                                assert!(fd >= 0, "open failed");
                                libc::close(fd);
                            }
                        }
                    }
                }
            });
        }
    });
    (n * THREADS) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if !is_root("syscall_storm") {
        return;
    }
    let dir = scratch_dir();
    let out = dir.path().join("events.json");
    // not a dot directory (tempfile's default names are): "/." sends the
    // configuration check to its slower path, which is not the common case
    let named = || tempfile::Builder::new().prefix("ioclab-bench-").tempdir_in("/dev/shm");
    let plain_dir = named().or_else(|_| tempfile::Builder::new().prefix("ioclab-bench-").tempdir()).unwrap();
    let plain = plain_dir.path().join("plain.txt");
    std::fs::write(&plain, b"not configuration\n").unwrap();
    // a file of our own under /etc, removed at the end
    let etc = tempfile::Builder::new().prefix("ioclab-bench-").tempdir_in("/etc").unwrap();
    let config = etc.path().join("bench.conf");
    std::fs::write(&config, b"key = value\n").unwrap();

    for w in [Workload::Getppid, Workload::OpenClose, Workload::OpenConfig] {
        storm(w, &plain, &config); // warm up
    }
    // SYSCALL_STORM_ONLY=open_close,default_events: only the workloads and configs named
    let filter = std::env::var("SYSCALL_STORM_ONLY").unwrap_or_default();
    let wanted = |name: &str| filter.is_empty() || filter.split(',').any(|f| f == name);
    for (cname, only) in CONFIGS.iter().filter(|(c, _)| filter.is_empty() || !filter.contains("_events") || wanted(c)) {
        let args = config_args(dir.path(), cname, *only);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for w in [Workload::Getppid, Workload::OpenClose, Workload::OpenConfig] {
            if !filter.is_empty() && filter.split(',').any(|f| !f.ends_with("_events")) && !wanted(w.name()) {
                continue;
            }
            // interleaved rounds (without, with, ...) so drift on the VM hits both sides alike
            let mut total = AgentRun::default();
            let mut rounds: Vec<(f64, f64)> = Vec::new();
            for _ in 0..ROUNDS {
                let base = storm(w, &plain, &config);
                let agent = start_agent(&out, &args);
                let with = storm(w, &plain, &config);
                total.add(&agent.stop());
                rounds.push((base, with));
            }
            // the round of median ratio: one busy neighbour during one round does not decide
            rounds.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
            let (base, with) = rounds[ROUNDS / 2];
            let (lo, hi) = (rounds[0].1 / rounds[0].0, rounds[ROUNDS - 1].1 / rounds[ROUNDS - 1].0);
            // wall time per call on one thread: THREADS threads run at once
            let added_ns = (THREADS as f64 / with - THREADS as f64 / base) * 1e9;
            let label = format!("syscall_storm[{cname}].{}", w.name());
            println!(
                "{label} rate without {base:.0}/s with {with:.0}/s ratio {:.3} (rounds {lo:.3}..{hi:.3}; {added_ns:+.0} ns a call)",
                with / base
            );
            println!(
                "{label} agent read {} events, lost {}, cpu {:.1} ms",
                total.read,
                total.lost,
                total.cpu_us as f64 / 1e3
            );
        }
    }
}

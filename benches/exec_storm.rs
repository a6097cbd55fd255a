//! Exec storm: 20,000 spawn+wait of /bin/true on both cores, without and
//! with the agent running, from one run. Prints the rate ratio, events
//! captured vs. execs, agent CPU per event and peak RSS.
//!
//! Run with `make bench` (as root). Figures, not pass/fail: the targets
//! are printed next to them.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SPAWNS: usize = 20_000;
const THREADS: usize = 2;

/// Spawns and waits for /bin/true `n` times over THREADS threads; returns spawns per second.
fn storm(n: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n / THREADS {
                    let st = Command::new("/bin/true").stdin(Stdio::null()).status().expect("spawn /bin/true");
                    assert!(st.success());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

thread_local! {
    /// Spawn-to-output latencies (ms), measured once, on an idle machine with the agent running.
    static LATENCY: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Time from spawning /bin/true to its execve line being in the output file, 20 times.
fn latencies(out: &Path) -> Vec<f64> {
    let mut v = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let child = Command::new("/bin/true").spawn().unwrap();
        let needle = format!("\"tgid\":{},", child.id());
        let deadline = t + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(out).unwrap_or_default();
            if text.lines().any(|l| l.contains("\"name\":\"execve\"") && l.contains(&needle)) {
                break;
            }
            assert!(Instant::now() < deadline, "execve never written");
            std::thread::sleep(Duration::from_micros(500));
        }
        v.push(t.elapsed().as_secs_f64() * 1e3);
        let _ = child.wait_with_output();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Counters of one agent run during a storm.
#[derive(Default)]
struct AgentRun {
    read: u64,
    lost: u64,
    cpu_us: u64,
    hash_cpu_us: u64,
    max_rss_kb: u64,
    captured: usize,
}

/// Starts the agent, runs a storm of `n` spawns under it, stops it; returns (rate, counters).
fn storm_with_agent(n: usize, out: &Path) -> (f64, AgentRun) {
    let _ = std::fs::remove_file(out);
    let mut agent = Command::new(env!("CARGO_BIN_EXE_ioclab"))
        .args(["agent", "--stats", "-o"])
        .arg(out)
        .env("IOCLAB_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ioclab agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(out).unwrap_or_default().contains("\"start\"") {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let latency = if LATENCY.with(|l| l.borrow().is_empty()) { Some(latencies(out)) } else { None };
    if let Some(l) = latency {
        LATENCY.with(|cell| *cell.borrow_mut() = l);
    }
    let rate = storm(n);
    std::thread::sleep(Duration::from_millis(300)); // let it drain
                                                    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    agent.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(agent.wait().unwrap().success(), "agent failed: {stderr}");
    let stats: serde_json::Value = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no --stats line in: {stderr}"));
    let truth = std::fs::canonicalize("/bin/true").unwrap();
    let run = AgentRun {
        read: stats["read"].as_u64().unwrap_or(0),
        lost: stats["lost"].as_u64().unwrap_or(u64::MAX),
        cpu_us: stats["cpu_us"].as_u64().unwrap_or(0),
        hash_cpu_us: stats["hash_cpu_us"].as_u64().unwrap_or(0),
        max_rss_kb: stats["max_rss_kb"].as_u64().unwrap_or(0),
        captured: count_execs(out, truth.to_str().unwrap()),
    };
    (rate, run)
}

fn main() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("exec_storm: needs root to run the agent; skipped");
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let out = dir.path().join("events.json");

    storm(2_000); // warm caches
                  // interleaved quarters (without, with, without, with, ...) so drift on the VM hits both sides alike
    const ROUNDS: usize = 4;
    let half = SPAWNS / ROUNDS;
    let (mut base_time, mut agent_time) = (0.0, 0.0);
    let mut total = AgentRun::default();
    for _ in 0..ROUNDS {
        base_time += half as f64 / storm(half);
        let (rate, run) = storm_with_agent(half, &out);
        agent_time += half as f64 / rate;
        total.read += run.read;
        total.lost = total.lost.saturating_add(run.lost);
        total.cpu_us += run.cpu_us;
        total.hash_cpu_us += run.hash_cpu_us;
        total.max_rss_kb = total.max_rss_kb.max(run.max_rss_kb);
        total.captured += run.captured;
    }
    let (base, with_agent) = (SPAWNS as f64 / base_time, SPAWNS as f64 / agent_time);
    let ratio = with_agent / base;
    // first-time hashing (of /bin/true and the like) is excluded, as the target says
    let steady_us = total.cpu_us.saturating_sub(total.hash_cpu_us) as f64;
    let per_event = steady_us / total.read.max(1) as f64;
    let rss_mb = total.max_rss_kb as f64 / 1024.0;

    println!("exec_storm.spawns {SPAWNS} on {THREADS} threads ({ROUNDS} interleaved rounds)");
    println!("exec_storm.rate_without_agent {base:.0}/s");
    println!("exec_storm.rate_with_agent {with_agent:.0}/s");
    println!("exec_storm.ratio {ratio:.3}  (target >= 0.98) {}", verdict(ratio >= 0.98));
    let latency_spawns = LATENCY.with(|l| l.borrow().len());
    println!("exec_storm.execve_captured {} of {}", total.captured, SPAWNS + latency_spawns);
    println!(
        "exec_storm.events_read {}  lost {}  (target 0 lost) {}",
        total.read,
        total.lost,
        verdict(total.lost == 0)
    );
    println!(
        "exec_storm.agent_cpu_us_per_event {per_event:.2}  (excluding {:.1} ms of first-time hashing; target <= 1.5) {}",
        total.hash_cpu_us as f64 / 1e3,
        verdict(per_event <= 1.5)
    );
    println!("exec_storm.agent_cpu_us_per_spawn {:.2}  (clone + execve + exit_group)", steady_us / SPAWNS as f64);
    let lat = LATENCY.with(|l| l.borrow().clone());
    if !lat.is_empty() {
        let max = lat[lat.len() - 1];
        println!(
            "exec_storm.output_latency_ms median {:.1} max {max:.1}  (target < 50) {}",
            lat[lat.len() / 2],
            verdict(max < 50.0)
        );
    }
    println!("exec_storm.agent_peak_rss_mb {rss_mb:.1}  (target < 40) {}", verdict(rss_mb < 40.0));
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

/// execve events of `exe` in the agent's output.
fn count_execs(out: &Path, exe: &str) -> usize {
    let text = std::fs::read_to_string(out).unwrap();
    let needle = format!("\"path\":\"{exe}\"");
    text.lines().filter(|l| l.contains("\"name\":\"execve\"") && l.contains(&needle)).count()
}

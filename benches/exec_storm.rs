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

fn main() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("exec_storm: needs root to run the agent; skipped");
        return;
    }
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let out = dir.path().join("events.json");

    storm(2_000); // warm caches
    let base = storm(SPAWNS);

    let mut agent = Command::new(env!("CARGO_BIN_EXE_ioclab"))
        .args(["agent", "--stats", "-o"])
        .arg(&out)
        .env("IOCLAB_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ioclab agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&out).unwrap_or_default().contains("\"start\"") {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let with_agent = storm(SPAWNS);
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
    let captured = count_execs(&out, truth.to_str().unwrap());
    let read = stats["read"].as_u64().unwrap_or(0);
    let cpu_us = stats["cpu_us"].as_u64().unwrap_or(0) as f64;
    let ratio = with_agent / base;
    let per_event = cpu_us / read.max(1) as f64;
    let rss_mb = stats["max_rss_kb"].as_u64().unwrap_or(0) as f64 / 1024.0;
    let lost = stats["lost"].as_u64().unwrap_or(u64::MAX);

    println!("exec_storm.spawns {SPAWNS} on {THREADS} threads");
    println!("exec_storm.rate_without_agent {base:.0}/s");
    println!("exec_storm.rate_with_agent {with_agent:.0}/s");
    println!("exec_storm.ratio {ratio:.3}  (target >= 0.98) {}", verdict(ratio >= 0.98));
    println!("exec_storm.execve_captured {captured} of {SPAWNS}");
    println!("exec_storm.events_read {read}  lost {lost}  (target 0 lost) {}", verdict(lost == 0));
    println!("exec_storm.agent_cpu_us_per_event {per_event:.2}  (target <= 1.5) {}", verdict(per_event <= 1.5));
    println!("exec_storm.agent_cpu_us_per_spawn {:.2}", cpu_us / SPAWNS as f64);
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

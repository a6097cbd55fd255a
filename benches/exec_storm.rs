//! Exec storm: 20,000 spawn+wait of /bin/true on both cores, without and
//! with the agent running, from one run. Prints the rate ratio, events
//! captured vs. execs, agent CPU per event and peak RSS.
//!
//! Run with `make bench` (as root). Figures, not pass/fail: the targets
//! are printed next to them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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

/// Spawn-to-output latencies (ms), measured once per configuration with the
/// agent running: spawns one by one (each after the previous one's event was
/// written), and the same while another thread spawns without pause.
struct Latencies {
    one_by_one: Vec<f64>,
    loaded: Vec<f64>,
}

thread_local! {
    static LATENCY: std::cell::RefCell<Option<Latencies>> = const { std::cell::RefCell::new(None) };
}

/// Time from spawning /bin/true to its execve line being in the output
/// file, 20 times. Reads only what the agent appended since the last look.
fn latencies(out: &Path) -> Vec<f64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(out).expect("agent output");
    let mut seen = file.seek(SeekFrom::End(0)).unwrap();
    let mut tail = String::new();
    let mut v = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let child = Command::new("/bin/true").spawn().unwrap();
        let needle = format!("\"tgid\":{},", child.id());
        let deadline = t + Duration::from_secs(5);
        loop {
            file.seek(SeekFrom::Start(seen)).unwrap();
            seen += file.read_to_string(&mut tail).unwrap() as u64;
            let found = tail.lines().any(|l| l.contains("\"name\":\"execve\"") && l.contains(&needle));
            // keep a partial last line for the next read
            let cut = tail.rfind('\n').map_or(0, |i| i + 1);
            tail.drain(..cut);
            if found {
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

/// [`latencies`] while a thread spawns /bin/false without pause: the reader
/// is then busy and drains on its timer, which bounds this latency.
fn latencies_under_load(out: &Path) -> Vec<f64> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new("/bin/false").stdin(Stdio::null()).status();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let v = latencies(out);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    v
}

/// Starts the agent, runs a storm of `n` spawns under it, stops it; returns
/// (rate, counters, execve events of /bin/true written).
fn storm_with_agent(n: usize, out: &Path, args: &[&str]) -> (f64, AgentRun, usize) {
    let agent = start_agent(out, args);
    if LATENCY.with(|l| l.borrow().is_none()) {
        let one_by_one = latencies(out);
        let loaded = latencies_under_load(out);
        LATENCY.with(|cell| *cell.borrow_mut() = Some(Latencies { one_by_one, loaded }));
    }
    let rate = storm(n);
    let run = agent.stop();
    let truth = std::fs::canonicalize("/bin/true").unwrap();
    (rate, run, count_execs(out, truth.to_str().unwrap()))
}

fn main() {
    if !is_root("exec_storm") {
        return;
    }
    let dir = scratch_dir();
    let out = dir.path().join("events.json");
    storm(2_000); // warm caches
    for (name, only) in CONFIGS {
        let args = config_args(dir.path(), name, *only);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        LATENCY.with(|l| *l.borrow_mut() = None);
        run_config(name, &out, &args);
    }
}

fn run_config(name: &str, out: &Path, args: &[&str]) {
    // interleaved quarters (without, with, without, with, ...) so drift on the VM hits both sides alike
    const ROUNDS: usize = 4;
    let half = SPAWNS / ROUNDS;
    let (mut base_time, mut agent_time) = (0.0, 0.0);
    let mut total = AgentRun::default();
    let mut captured = 0;
    // each round's ratio and µs per event: their spread shows how much of a change is noise
    let (mut ratios, mut per_events) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let base = storm(half);
        base_time += half as f64 / base;
        let (rate, run, execs) = storm_with_agent(half, out, args);
        agent_time += half as f64 / rate;
        ratios.push(rate / base);
        per_events.push(run.cpu_us.saturating_sub(run.hash_cpu_us) as f64 / run.read.max(1) as f64);
        total.add(&run);
        captured += execs;
    }
    let (base, with_agent) = (SPAWNS as f64 / base_time, SPAWNS as f64 / agent_time);
    let ratio = with_agent / base;
    // first-time hashing (of /bin/true and the like) is excluded, as the target says
    let steady_us = total.cpu_us.saturating_sub(total.hash_cpu_us) as f64;
    let per_event = steady_us / total.read.max(1) as f64;
    let rss_mb = total.max_rss_kb as f64 / 1024.0;

    println!("exec_storm[{name}].spawns {SPAWNS} on {THREADS} threads ({ROUNDS} interleaved rounds)");
    println!("exec_storm[{name}].rate_without_agent {base:.0}/s");
    println!("exec_storm[{name}].rate_with_agent {with_agent:.0}/s");
    println!("exec_storm[{name}].ratio {ratio:.3}  ({}; target >= 0.98) {}", spread(&ratios), verdict(ratio >= 0.98));
    let latency_spawns = LATENCY.with(|l| l.borrow().as_ref().map_or(0, |l| l.one_by_one.len() + l.loaded.len()));
    println!("exec_storm[{name}].execve_captured {} of {}", captured, SPAWNS + latency_spawns);
    println!(
        "exec_storm[{name}].events_read {}  lost {}  (target 0 lost) {}",
        total.read,
        total.lost,
        verdict(total.lost == 0)
    );
    println!(
        "exec_storm[{name}].agent_cpu_us_per_event {per_event:.2}  ({}; excluding {:.1} ms of first-time hashing; target <= 1.5) {}",
        spread(&per_events),
        total.hash_cpu_us as f64 / 1e3,
        verdict(per_event <= 1.5)
    );
    println!(
        "exec_storm[{name}].agent_cpu_us_per_spawn {:.2}  (clone + execve + exit_group)",
        steady_us / SPAWNS as f64
    );
    LATENCY.with(|l| {
        let Some(l) = &*l.borrow() else { return };
        for (when, lat) in [("one_by_one", &l.one_by_one), ("under_load", &l.loaded)] {
            let max = lat[lat.len() - 1];
            println!(
                "exec_storm[{name}].output_latency_ms.{when} median {:.1} max {max:.1}  (target < 50) {}",
                lat[lat.len() / 2],
                verdict(max < 50.0)
            );
        }
    });
    println!("exec_storm[{name}].agent_peak_rss_mb {rss_mb:.1}  (target < 40) {}", verdict(rss_mb < 40.0));
}

/// execve events of `exe` in the agent's output.
fn count_execs(out: &Path, exe: &str) -> usize {
    let text = std::fs::read_to_string(out).unwrap();
    let needle = format!("\"path\":\"{exe}\"");
    text.lines().filter(|l| l.contains("\"name\":\"execve\"") && l.contains(&needle)).count()
}

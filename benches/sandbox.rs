//! The sandbox end to end, through `ioclab sandbox serve` and its API:
//! submit -> reported for a trivial script (target: at most 2 s more than
//! the script alone), and 20 queued tasks on 2 workers (tasks per minute,
//! the server's peak memory). Needs root and eBPF (the real detonator).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ioclab_sandbox::client::{CuckooClient, SubmitOptions};

const SCRIPT: &str = "#!/bin/sh\nsleep 0.5\necho done\n";
const QUEUED: usize = 20;
const MAX_OVERHEAD_S: f64 = 2.0;
const MIN_TASKS_PER_MIN: f64 = 40.0;
const MAX_PEAK_MB: f64 = 256.0;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

/// Peak resident memory of a process, MB (VmHWM).
fn peak_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn wait_reported(client: &CuckooClient, id: i64) {
    loop {
        let t = client.task(id).await.expect("task view");
        match t["status"].as_str().unwrap_or_default() {
            "reported" => return,
            s if s.starts_with("failed") => panic!("task {id} failed: {t}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn main() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("sandbox: skipped (needs root: namespaces, cgroups and eBPF)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("trivial.sh");
    std::fs::write(&script, SCRIPT).unwrap();

    // the script's own run time, outside the sandbox
    let t = Instant::now();
    assert!(Command::new("sh").arg(&script).stdout(Stdio::null()).status().unwrap().success());
    let alone_s = t.elapsed().as_secs_f64();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ioclab"))
        .args([
            "sandbox",
            "serve",
            "--no-auth",
            "--workers",
            "2",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--storage",
        ])
        .arg(dir.path().join("storage"))
        .env("IOCLAB_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("start ioclab sandbox serve");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sandbox serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let client = CuckooClient::new(&format!("http://127.0.0.1:{port}"), None);
    let opts = SubmitOptions { timeout: Some(30), ..Default::default() };

    let (latency_s, queued_s) = rt.block_on(async {
        // one task at a time: submit -> reported, median of 5 (the first warms the caches)
        let mut runs = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let id = client.submit_file(&script, &opts).await.expect("submit");
            wait_reported(&client, id).await;
            runs.push(t.elapsed().as_secs_f64());
        }
        runs.sort_by(f64::total_cmp);
        let latency = runs[runs.len() / 2];
        // 20 tasks queued at once, 2 detonating at a time
        let t = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..QUEUED {
            ids.push(client.submit_file(&script, &opts).await.expect("submit"));
        }
        for id in ids {
            wait_reported(&client, id).await;
        }
        (latency, t.elapsed().as_secs_f64())
    });
    let peak = peak_mb(server.id());
    let _ = server.kill();
    let _ = server.wait();

    let overhead = latency_s - alone_s;
    let per_min = QUEUED as f64 / queued_s * 60.0;
    println!("sandbox.script_alone_s {alone_s:.2}");
    println!(
        "sandbox.submit_to_reported_s {latency_s:.2}  (overhead {overhead:.2} s, target <= {MAX_OVERHEAD_S} s) {}",
        verdict(overhead <= MAX_OVERHEAD_S)
    );
    println!(
        "sandbox.queued_{QUEUED}_tasks_per_min {per_min:.1}  ({queued_s:.1} s on 2 workers, target >= {MIN_TASKS_PER_MIN}) {}",
        verdict(per_min >= MIN_TASKS_PER_MIN)
    );
    println!("sandbox.server_peak_mb {peak:.0}  (target <= {MAX_PEAK_MB}) {}", verdict(peak <= MAX_PEAK_MB));
}

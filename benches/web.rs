//! The appliance's web UI under load (issue 15): `ioclab serve` started as
//! a process, measured from outside over loopback. Each figure next to its
//! target. Run with `make bench` (root and eBPF: the live lab).
//!
//! Targets, and why:
//! - SSE fan-out < 1 s at the 99th percentile: 50 trainees watch one running
//!   scenario (`/api/runs/<id>/events`); from an event entering the run log
//!   (its `at_ms` on the run's clock, `started` + `at_ms`) to the event
//!   reaching the last of the 50 clients. A class sees a stage light up
//!   together, within a second of it happening. Detections are reported apart.
//! - the event stream page (`/endpoint`) and the run pages with 100,000 stored
//!   endpoint events < 50 ms of server time (measured as the request's time on
//!   loopback, so an upper bound): a projector page must not lag.
//! - RSS of `ioclab serve` idle and during a scenario: reported (no target:
//!   the lab VM's budget; watched for growth).

#[path = "../tests/browser/appliance.rs"]
mod appliance;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use appliance::Appliance;
use common::{percentile, verdict};
use serde_json::Value;

const SCENARIO: &str = "dns-ioc-why-kunai-rocks";
const CLIENTS: usize = 50;
const ROUNDS: usize = 3;
const FANOUT_TARGET_S: f64 = 1.0;
const STORED: usize = 100_000;
const PAGE_TARGET_MS: f64 = 50.0;
const PAGE_REQUESTS: usize = 10;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").trim_end_matches('/').to_string()
}

/// One request with the trainee's token: status and body.
fn request(app: &Appliance, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let a = addr(&app.web);
    let mut s = TcpStream::connect(&a).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.token,
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// The resident memory of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    common::status_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// One SSE client: when it was connected, and each run event with the wall time it arrived.
fn sse_client(app_addr: String, token: String, run: String) -> (f64, Vec<(Value, f64)>) {
    let mut s = TcpStream::connect(&app_addr).unwrap();
    write!(
        s,
        "GET /api/runs/{run}/events HTTP/1.1\r\nHost: {app_addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let connected = now();
    let mut got = Vec::new();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        // chunked framing lines are not `data:` lines; every SSE data line is one RunEvent
        if let Some(data) = line.strip_prefix("data:") {
            let at = now();
            if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                let finished = v.get("kind").is_some_and(|k| k == "finished");
                got.push((v, at));
                if finished {
                    break;
                }
            }
        }
    }
    (connected, got)
}

/// Times `path` (once to check it answers, then [`PAGE_REQUESTS`] times) and prints the figure next to its target.
fn page_times(app: &Appliance, path: &str, with: &str) {
    let (status, body) = request(app, "GET", path, None);
    assert_eq!(status, 200, "{path}: {body}");
    let mut times: Vec<f64> = (0..PAGE_REQUESTS)
        .map(|_| {
            let t = Instant::now();
            let (status, _) = request(app, "GET", path, None);
            assert_eq!(status, 200);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let median = percentile(&mut times, 0.5);
    let max = percentile(&mut times, 1.0);
    println!(
        "web: GET {path} with {with}: median {median:.1} ms, max {max:.1} ms of {PAGE_REQUESTS} (target < {PAGE_TARGET_MS} ms: {})",
        verdict(median < PAGE_TARGET_MS)
    );
}

fn main() {
    if !common::is_root("web") {
        return;
    }
    let app = Appliance::start(false);
    if !app.live {
        eprintln!("web bench: ioclab serve did not start live (root and eBPF needed):\n{}", app.printed);
        return;
    }
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_mib(app.pid());

    // 50 SSE clients on each of ROUNDS runs
    let mut all = Vec::new();
    let mut detections = Vec::new();
    let mut peak = idle;
    let mut run_ids = Vec::new();
    for _ in 0..ROUNDS {
        let (status, body) = request(&app, "POST", "/api/runs", Some(&format!("{{\"scenario\":\"{SCENARIO}\"}}")));
        assert_eq!(status, 201, "starting {SCENARIO}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let run = v.pointer("/run/id").and_then(Value::as_str).unwrap().to_string();
        run_ids.push(run.clone());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (a, t, r) = (addr(&app.web), app.token.clone(), run.clone());
                std::thread::spawn(move || sse_client(a, t, r))
            })
            .collect();
        while clients.iter().any(|c| !c.is_finished()) {
            peak = peak.max(rss_mib(app.pid()));
            std::thread::sleep(Duration::from_millis(50));
        }
        let got: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let last_connect = got.iter().map(|(c, _)| *c).fold(0.0, f64::max);
        let started = got[0]
            .1
            .iter()
            .find_map(|(e, _)| e.get("started").and_then(Value::as_f64))
            .expect("the run's started event");
        // per event emitted after every client listened: its emission, and when the last client had it
        for (i, (e, _)) in got[0].1.iter().enumerate() {
            let at_ms = e.get("at_ms").and_then(Value::as_f64).unwrap_or(0.0);
            let emitted = started + at_ms / 1000.0;
            if emitted < last_connect {
                continue;
            }
            let reached =
                got.iter().map(|(_, evs)| evs.get(i).map(|(_, t)| *t).unwrap_or(f64::INFINITY)).fold(0.0, f64::max);
            let lat = (reached - emitted).max(0.0);
            if e.get("kind").is_some_and(|k| k == "detection") {
                detections.push(lat);
            }
            all.push(lat);
        }
    }
    let n = all.len();
    let p50 = percentile(&mut all, 0.50);
    let p99 = percentile(&mut all, 0.99);
    let det_p99 = percentile(&mut detections, 0.99);
    println!(
        "web: SSE fan-out to {CLIENTS} clients, run log -> every client: p50 {:.1} ms, p99 {:.1} ms over {n} events of {ROUNDS} runs (target p99 < {FANOUT_TARGET_S} s: {})",
        p50 * 1e3,
        p99 * 1e3,
        verdict(p99 < FANOUT_TARGET_S)
    );
    println!(
        "web: SSE fan-out of detections to {CLIENTS} clients: p99 {:.1} ms over {} detections (target < {FANOUT_TARGET_S} s: {})",
        det_p99 * 1e3,
        detections.len(),
        verdict(det_p99 < FANOUT_TARGET_S)
    );
    println!("web: RSS of ioclab serve: idle {idle:.1} MiB, peak during {ROUNDS} runs x {CLIENTS} SSE clients {peak:.1} MiB (reported, no target)");
    // the live stream page: the lab's feed, copied into the web's index as it grows
    page_times(&app, "/endpoint", "events of the live lab's feed");

    // 100,000 stored endpoint events: the first run's events.jsonl grown, served in replay mode (pages read the runs' files)
    let token = app.token.clone();
    let dir = app.stop();
    let run = &run_ids[0];
    let events = dir.path().join("data/runs").join(run).join("events.jsonl");
    let kept = std::fs::read_to_string(&events).unwrap_or_default();
    let lines: Vec<&str> = kept.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the run kept no endpoint event in {}", events.display());
    let mut big = String::with_capacity(kept.len() * STORED / lines.len() + 1);
    for i in 0..STORED {
        big.push_str(lines[i % lines.len()]);
        big.push('\n');
    }
    std::fs::write(&events, big).unwrap();
    let app = Appliance::again(dir, token, true);
    std::thread::sleep(Duration::from_secs(1));
    let before_pages = rss_mib(app.pid());
    // the first request indexes the 100,000 lines (once; later ones read the index)
    let t = Instant::now();
    let (status, body) = request(&app, "GET", "/endpoint", None);
    assert_eq!(status, 200, "/endpoint: {body}");
    println!(
        "web: GET /endpoint, first request after a start with {STORED} stored endpoint events (indexes them): {:.1} ms (reported, no target)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let stored = format!("{STORED} stored endpoint events");
    for path in [
        "/endpoint".to_string(),
        "/endpoint?detections=on".to_string(),
        "/endpoint?process=dig".to_string(),
        format!("/endpoint?before={run}:{}", STORED / 2),
        format!("/endpoint/{run}/{}", STORED - 1),
        "/api/events".to_string(),
        format!("/runs/{run}"),
        format!("/runs/{run}/pipeline"),
        format!("/runs/{run}/detection"),
        format!("/runs/{run}/questions"),
    ] {
        page_times(&app, &path, &stored);
    }
    println!(
        "web: RSS of ioclab serve in replay mode with {STORED} stored events, before the pages: {before_pages:.1} MiB"
    );
    println!(
        "web: RSS of ioclab serve in replay mode with {STORED} stored events, after those pages: {:.1} MiB",
        rss_mib(app.pid())
    );
    app.stop();
}

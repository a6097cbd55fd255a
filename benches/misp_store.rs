//! The embedded MISP store under a class (issue 11), against `ioclab misp
//! serve` on loopback with 100,000 attributes: the `tags` filter with 10, 40
//! and 100 names, 20 concurrent writers (requests/s, p99, errors), a
//! 50,000-attribute import (how long it holds the writer), and the server's
//! peak memory under 12 concurrent full searches. Each figure next to its
//! target. Run with `make bench`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

use ioclab_intel::store::Role;
use serde_json::json;

const EVENTS: usize = 100;
const PER_EVENT: usize = 1_000;
/// Distinct tags in the store; each event has 2, every tenth attribute 1.
const TAGS: usize = 200;
const WRITERS: usize = 20;
const WRITES_EACH: usize = 25;
const SEARCHERS: usize = 12;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

fn seed(db: &Path) -> String {
    common::seed_store(db, Role::Admin, EVENTS, |e| {
        let attrs: Vec<_> = (0..PER_EVENT)
            .map(|i| {
                let n = e * PER_EVENT + i;
                let mut a = json!({"type": "domain", "value": format!("d{n}.bench.example")});
                if n % 10 == 0 {
                    a["Tag"] = json!([{"name": format!("bench:tag-{}", n % TAGS)}]);
                }
                a
            })
            .collect();
        let tags = [
            json!({"name": format!("bench:tag-{}", e % TAGS)}),
            json!({"name": format!("bench:tag-{}", (e * 7 + 3) % TAGS)}),
        ];
        json!({"info": format!("bench {e}"), "published": true, "Tag": tags, "Attribute": attrs})
    })
}

/// One HTTP/1.1 request on `stream`; returns the status and the body length.
/// Keep-alive answers carry Content-Length; streamed ones (chunked) are read to EOF.
fn request(stream: &mut TcpStream, key: &str, path: &str, body: &str, close: bool) -> (u16, usize) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: {key}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = None;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
    }
    match length {
        Some(n) => {
            let mut buf = vec![0; n];
            r.read_exact(&mut buf).unwrap();
            (status, n)
        }
        None => {
            let mut sink = Vec::new();
            r.read_to_end(&mut sink).unwrap();
            (status, sink.len())
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn search(port: u16, key: &str, body: &serde_json::Value) -> (u16, usize, f64) {
    let t = Instant::now();
    let (status, bytes) = request(&mut connect(port), key, "/attributes/restSearch", &body.to_string(), true);
    (status, bytes, t.elapsed().as_secs_f64())
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let t = Instant::now();
    let key = seed(&db);
    println!(
        "misp_store.attributes {} in {EVENTS} events, {TAGS} tags (seeded in {:.1} s)",
        EVENTS * PER_EVENT,
        t.elapsed().as_secs_f64()
    );
    let (mut server, port) = common::misp_serve(&db);

    // the tags filter: 5 tags that exist and the rest unknown, so the answer
    // is the same size and only the filter's length changes
    let mut tag_times = Vec::new();
    for n in [10usize, 40, 100] {
        let tags: Vec<String> = (0..n)
            .map(|i| if i < 5 { format!("bench:tag-{}", i * 37) } else { format!("bench:unknown-{i}") })
            .collect();
        let body = json!({"tags": tags, "returnFormat": "csv", "requested_attributes": ["uuid"]});
        let (status, bytes, s) = search(port, &key, &body);
        assert_eq!(status, 200, "tags query of {n}");
        println!("misp_store.tags_{n}_s {s:.3}  ({bytes} bytes)  (target <= 1.0 s) {}", verdict(s <= 1.0));
        tag_times.push(s);
    }
    let growth = tag_times[2] / tag_times[0].max(1e-3);
    println!(
        "misp_store.tags_100_vs_10 {growth:.1}x  (target <= 2x: the filter's length costs nearly nothing) {}",
        verdict(growth <= 2.0)
    );

    // 20 writers at once, each adding events of 10 attributes on its own keep-alive connection
    let t = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let key = key.clone();
            std::thread::spawn(move || {
                let mut s = connect(port);
                let mut out = Vec::new();
                for i in 0..WRITES_EACH {
                    let attrs: Vec<_> = (0..10)
                        .map(|a| json!({"type": "domain", "value": format!("w{w}-{i}-{a}.writers.example")}))
                        .collect();
                    let body = json!({"info": format!("writer {w} event {i}"), "Attribute": attrs}).to_string();
                    let t = Instant::now();
                    let (status, _) = request(&mut s, &key, "/events/add", &body, false);
                    out.push((status, t.elapsed().as_secs_f64()));
                }
                out
            })
        })
        .collect();
    let mut results: Vec<(u16, f64)> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let wall = t.elapsed().as_secs_f64();
    let errors = results.iter().filter(|(s, _)| *s != 200).count();
    results.sort_by(|a, b| a.1.total_cmp(&b.1));
    let p99 = results[(results.len() * 99 / 100).min(results.len() - 1)].1;
    let rate = results.len() as f64 / wall;
    println!("misp_store.writers_{WRITERS}_errors {errors} of {}  (target 0) {}", results.len(), verdict(errors == 0));
    println!("misp_store.writers_{WRITERS}_req_per_s {rate:.0}  (target >= 100) {}", verdict(rate >= 100.0));
    println!("misp_store.writers_{WRITERS}_p99_s {p99:.3}  (target <= 1.0 s) {}", verdict(p99 <= 1.0));

    // a 50,000-attribute import: how long the writer is held (what a queued writer may wait)
    let attrs: Vec<_> =
        (0..50_000).map(|a| json!({"type": "domain", "value": format!("i{a}.import.example")})).collect();
    let body = json!({"info": "big import", "Attribute": attrs}).to_string();
    let t = Instant::now();
    let (status, _) = request(&mut connect(port), &key, "/events/add", &body, true);
    let s = t.elapsed().as_secs_f64();
    assert_eq!(status, 200, "big import");
    println!("misp_store.import_50k_s {s:.2}  (target <= 3 s, was 17 s) {}", verdict(s <= 3.0));

    // 12 full searches at once on a fresh server: its memory stays bounded
    let _ = server.kill();
    let _ = server.wait();
    let (mut server, port) = common::misp_serve(&db);
    let before = vm_kib(server.id(), "VmHWM:");
    let searchers: Vec<_> = (0..SEARCHERS)
        .map(|_| {
            let key = key.clone();
            std::thread::spawn(move || search(port, &key, &json!({})))
        })
        .collect();
    let answers: Vec<_> = searchers.into_iter().map(|h| h.join().unwrap()).collect();
    let peak = vm_kib(server.id(), "VmHWM:");
    let failed = answers.iter().filter(|a| a.0 != 200).count();
    let bytes = answers.iter().map(|a| a.1).max().unwrap_or(0);
    let slowest = answers.iter().map(|a| a.2).fold(0.0, f64::max);
    println!(
        "misp_store.full_searches_{SEARCHERS}_failed {failed}  ({:.1} MB each, slowest {slowest:.1} s)  (target 0) {}",
        bytes as f64 / 1e6,
        verdict(failed == 0)
    );
    let peak_mib = peak as f64 / 1024.0;
    println!(
        "misp_store.full_searches_{SEARCHERS}_peak_rss_mib {peak_mib:.0}  (before: {:.0})  (target <= 256 MiB, was 4.3 GB) {}",
        before as f64 / 1024.0,
        verdict(peak_mib <= 256.0)
    );
    let _ = server.kill();
    let _ = server.wait();
}

//! Report → MISP event (issue 13): a report with 1,000 network IoCs and 200
//! dropped files, built into one event (filters and warninglists included)
//! and sent to `ioclab misp serve` on loopback through a counting relay:
//! time and HTTP requests for a new event, a re-report (update) and a
//! publish. Each figure next to its target. Run with `make bench`.
//!
//! Targets, and why:
//! - build ≤ 100 ms: it runs after every detonation, whose own floor is
//!   seconds; a tenth of a second is invisible there.
//! - send ≤ 2 s for a new event, ≤ 3 s for an update: the analyst waits for
//!   the event after the report; Cuckoo's module took minutes on such reports
//!   (one request per attribute, about 2,200 here).
//! - requests: 1 for a new event, 2 for an update (add refused, edit), 1 more
//!   to publish, whatever the number of IoCs: one request carries the whole
//!   event, which is also what keeps MISP from a half-filled event.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ioclab_intel::warninglists::Warninglists;
use ioclab_sandbox::misp::{event, push, ReportingMisp};
use ioclab_sandbox::report::network::{DomainIp, Http};
use ioclab_sandbox::report::{Dropped, FileInfo, NetHost, Signature, Ttp};
use ioclab_sandbox::Report;

use common::verdict;

const DOMAINS: usize = 400;
const HOSTS: usize = 300;
const URLS: usize = 300;
const DROPPED: usize = 200;
const BUILDS: usize = 20;

fn hex(seed: usize, len: usize) -> String {
    let mut h = format!("{seed:016x}").repeat(len / 16 + 1);
    h.truncate(len);
    h
}

/// 1,000 network IoCs (names with addresses, other hosts, URLs), 200 dropped files, 20 signatures.
fn report() -> Report {
    let mut r = Report::default();
    r.info.id = 1000;
    r.info.score = 8.0;
    r.info.started = 1_727_780_000.0;
    r.target.file = Some(FileInfo {
        name: "bench.elf".into(),
        md5: hex(1, 32).parse().ok(),
        sha1: hex(2, 40).parse().ok(),
        sha256: hex(3, 64).parse().ok(),
        ..Default::default()
    });
    let ip = |i: usize| format!("45.{}.{}.{}", 10 + i / 65_536, (i / 256) % 256, i % 256);
    for i in 0..DOMAINS {
        r.network.domains.push(DomainIp { domain: format!("c{i}.bench-c2.example.org"), ip: ip(i) });
        r.network.hosts.push(NetHost { ip: ip(i), hostname: None });
    }
    for i in 0..HOSTS {
        r.network.hosts.push(NetHost { ip: ip(DOMAINS + i), hostname: None });
    }
    for i in 0..URLS {
        let host = format!("c{}.bench-c2.example.org", i % DOMAINS);
        r.network.http.push(Http {
            uri: format!("http://{host}/p/{i}"),
            host,
            method: "GET".into(),
            ..Default::default()
        });
    }
    for i in 0..DROPPED {
        r.dropped.push(Dropped {
            file: FileInfo {
                name: format!("drop{i}"),
                size: 4096,
                md5: hex(10_000 + i, 32).parse().ok(),
                sha1: hex(20_000 + i, 40).parse().ok(),
                sha256: hex(30_000 + i, 64).parse().ok(),
                ..Default::default()
            },
            filepath: format!("/tmp/drop{i}"),
            ..Default::default()
        });
    }
    for i in 0..20 {
        let mut s = Signature {
            name: format!("bench_sig_{i}"),
            description: "bench".into(),
            severity: 2,
            ..Default::default()
        };
        s.ttp.insert(format!("T{}", 1000 + i), Ttp { short: format!("Technique {i}"), long: String::new() });
        r.signatures.push(s);
    }
    r
}

/// A relay on loopback in front of `port` that counts the requests going through it.
fn counting_relay(port: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_in, mut c_out) = (server, client);
            let counter = c.clone();
            std::thread::spawn(move || {
                // every request carries one Authorization header (bodies are JSON: no raw CRLF);
                // the last bytes of a read are kept, shorter than the header, so a split one counts once
                const HEADER: &str = "\r\nauthorization:";
                let mut buf = vec![0u8; 1 << 16];
                let mut tail: Vec<u8> = Vec::new();
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&tail).to_ascii_lowercase();
                    counter.fetch_add(text.matches(HEADER).count(), Ordering::SeqCst);
                    tail.drain(..tail.len().saturating_sub(HEADER.len() - 1));
                }
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_in, &mut c_out);
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (relay_port, count)
}

fn start_misp(db: &Path) -> (Child, u16, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ioclab"))
        .args(["misp", "keys", "create", "--email", "bench@lab.example", "--role", "publisher", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (child, port) = common::misp_serve(db);
    (child, port, key)
}

fn main() {
    let r = report();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port, key) = start_misp(&dir.path().join("misp.db"));
    let (relay, requests) = counting_relay(port);
    let cfg = ReportingMisp {
        enabled: true,
        url: format!("http://127.0.0.1:{relay}"),
        apikey: key,
        sandbox_name: "bench".into(),
        ..Default::default()
    };
    let lists = Warninglists::embedded();

    let mut times = Vec::new();
    let mut built = None;
    for _ in 0..BUILDS {
        let t = Instant::now();
        built = Some(event::build(&r, &cfg, lists, None, "bench").unwrap());
        times.push(t.elapsed());
    }
    times.sort();
    let build_ms = times[BUILDS / 2].as_secs_f64() * 1e3;
    let built = built.unwrap();
    let attributes = built.event.all_attributes().count();
    println!(
        "report → MISP event: {} network IoCs, {DROPPED} dropped files → {} attributes, {} objects, {} left out",
        DOMAINS + HOSTS + URLS,
        attributes,
        built.event.objects.len(),
        built.left_out.len()
    );
    println!("  build (median of {BUILDS}): {build_ms:.1} ms (target ≤ 100 ms: {})", verdict(build_ms <= 100.0));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = |label: &str, cfg: &ReportingMisp, target_s: f64, target_requests: usize| {
        let before = requests.load(Ordering::SeqCst);
        let t = Instant::now();
        let out = rt.block_on(push::report_to_misp(&r, cfg, lists, None)).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let made = requests.load(Ordering::SeqCst) - before;
        let push::Outcome::Sent { pushed, .. } = out else { panic!("not sent") };
        assert_eq!(made, pushed.requests, "the relay and the client agree");
        println!(
            "  {label}: {:.0} ms (target ≤ {:.0} ms: {}), {made} HTTP requests (target ≤ {target_requests}: {})",
            secs * 1e3,
            target_s * 1e3,
            verdict(secs <= target_s),
            verdict(made <= target_requests)
        );
    };
    send("new event (events/add)", &cfg, 2.0, 1);
    send("re-report (add refused, events/edit)", &cfg, 3.0, 2);
    send("re-report and publish", &ReportingMisp { publish: true, ..cfg.clone() }, 3.0, 3);
    println!("  (Cuckoo 2.0's module: one request per attribute, about {} here)", attributes + 2);
    let _ = server.kill();
    let _ = server.wait();
}

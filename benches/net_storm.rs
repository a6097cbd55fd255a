//! Network storms on loopback, without and with the agent, from one run:
//! - a TCP connect storm (connect + close, both cores): one `connect` event each;
//! - DNS-style UDP round trips to a responder on 127.0.53.99:53: a query and an
//!   answer each (`send_data` ×2 and one `dns_query`).
//!
//! The agent runs with process and network events only (file events add a
//! syscall hook whose cost syscall_storm measures). Prints rate ratios,
//! events captured vs. sent, the network event rate the agent kept up with
//! and its loss, and agent CPU per event. Run with `make bench` (as root).
//! Figures, not pass/fail: targets are printed beside them.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const CONNECTS: usize = 100_000;
const ROUND_TRIPS: usize = 100_000;
const THREADS: usize = 2;
const ROUNDS: usize = 4;

/// A DNS query for why.kunai.rocks (A) and its answer (A 127.0.66.80), as
/// bytes: the agent parses real DNS messages.
const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03why\x05kunai\x05rocks\x00\x00\x01\x00\x01";
const ANSWER: &[u8] = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03why\x05kunai\x05rocks\x00\x00\x01\x00\x01\
\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x42\x50";

/// Closes with a RST (SO_LINGER 0): no TIME_WAIT pile-up over 40,000 connects.
fn reset_close(s: TcpStream) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid socket and option struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
}

/// `n` connects to `to` over THREADS threads; returns connects per second.
fn connect_storm(to: SocketAddr, n: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n / THREADS {
                    reset_close(TcpStream::connect(to).expect("connect to the bench listener"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `n` query/answer round trips to `server` over THREADS client threads; returns round trips per second.
fn dns_storm(server: SocketAddr, n: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(server).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 512];
                for _ in 0..n / THREADS {
                    s.send(QUERY).unwrap();
                    s.recv(&mut buf).expect("answer from the bench responder");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// CPU µs per line this thread spends appending the lines of `events` to a
/// new file next to it, through a 64 KB buffer as the agent writes: the floor
/// of the agent's cost per event that no faster encoding can remove.
fn write_floor_us(events: &Path) -> f64 {
    use std::io::Write;
    let text = std::fs::read(events).unwrap();
    // the lines, found before the clock starts: only writing them is timed
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let copy = events.with_extension("floor");
    let cpu = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid timespec pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
    };
    let t0 = cpu();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(&copy).unwrap());
    for line in &lines {
        out.write_all(line).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let us = cpu() - t0;
    std::fs::remove_file(&copy).unwrap();
    us / lines.len().max(1) as f64
}

/// Lines of the agent's output that contain every needle.
fn count(out: &Path, needles: &[&str]) -> usize {
    let text = std::fs::read_to_string(out).unwrap();
    text.lines().filter(|l| needles.iter().all(|n| l.contains(n))).count()
}

struct Storm {
    name: &'static str,
    sent: usize,
    unit: &'static str,
    base_time: f64,
    agent_time: f64,
    run: AgentRun,
    captured: usize,
    expected: usize,
    /// Each round's rate ratio and agent µs per event.
    ratios: Vec<f64>,
    per_events: Vec<f64>,
    /// Each round's CPU µs per event to only append the agent's output lines to a file.
    write_floor: Vec<f64>,
}

impl Storm {
    /// Adds a round of `n`: rates without and with the agent, and the agent's counters.
    fn round(&mut self, n: usize, base: f64, with: f64, run: AgentRun) {
        self.base_time += n as f64 / base;
        self.agent_time += n as f64 / with;
        self.ratios.push(with / base);
        self.per_events.push(run.cpu_us as f64 / run.read.max(1) as f64);
        self.run.add(&run);
    }

    fn print(&self) {
        let (base, with) = (self.sent as f64 / self.base_time, self.sent as f64 / self.agent_time);
        let ratio = with / base;
        let n = self.name;
        println!("{n}.{} {} on {THREADS} threads ({ROUNDS} interleaved rounds)", self.unit, self.sent);
        println!("{n}.rate_without_agent {base:.0}/s");
        println!("{n}.rate_with_agent {with:.0}/s");
        println!("{n}.ratio {ratio:.3}  ({}; target >= 0.90) {}", spread(&self.ratios), verdict(ratio >= 0.90));
        println!("{n}.events_captured {} of {} expected", self.captured, self.expected);
        let eps = self.run.read as f64 / self.agent_time;
        if eps >= 100_000.0 {
            println!(
                "{n}.events_read {} at {eps:.0} events/s, lost {}  (target 0 lost at >= 100k/s) {}",
                self.run.read,
                self.run.lost,
                verdict(self.run.lost == 0)
            );
        } else {
            // connects are slower to make than events are to read: this storm cannot reach the rate
            println!(
                "{n}.events_read {} at {eps:.0} events/s, lost {}  (target 0 lost) {}; under 100k/s: the rate target is dns_round_trips'",
                self.run.read,
                self.run.lost,
                verdict(self.run.lost == 0)
            );
        }
        let per_event = self.run.cpu_us as f64 / self.run.read.max(1) as f64;
        println!(
            "{n}.agent_cpu_us_per_event {per_event:.2}  ({}; target <= 0.5) {}",
            spread(&self.per_events),
            verdict(per_event <= 0.5)
        );
        if !self.write_floor.is_empty() {
            let floor = self.write_floor.iter().sum::<f64>() / self.write_floor.len() as f64;
            println!(
                "{n}.output_write_floor_us_per_event {floor:.2}  ({}; appending the same JSON lines to the same file system, nothing else)",
                spread(&self.write_floor)
            );
        }
        println!("{n}.agent_peak_rss_mb {:.1}", self.run.max_rss_kb as f64 / 1024.0);
    }
}

fn main() {
    if !is_root("net_storm") {
        return;
    }
    let dir = scratch_dir();
    let out = dir.path().join("events.json");
    let stop = Arc::new(AtomicBool::new(false));
    // process and network events on, file and system events off: what is
    // measured here is the network sensor; the syscall hook the file events
    // add costs every syscall (see the syscall_storm benchmark)
    let args = config_args(dir.path(), "network", Some(NETWORK_EVENTS));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // TCP listener: accepts and drops
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = listener.local_addr().unwrap();
    // std listens with a backlog of 128: too short for two connecting threads
    // SAFETY: listen(2) again on our listening socket only raises its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    std::thread::spawn(move || {
        for c in listener.incoming() {
            drop(c);
        }
    });
    // DNS-style responder on port 53 of a loopback address
    let server_addr = SocketAddr::from((Ipv4Addr::new(127, 0, 53, 99), 53));
    let responder = UdpSocket::bind(server_addr).expect("bind 127.0.53.99:53 (is another DNS test running?)");
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = responder.recv_from(&mut buf) {
                    let _ = responder.send_to(ANSWER, peer);
                }
            }
        });
    }

    connect_storm(tcp_addr, 2_000); // warm up
    dns_storm(server_addr, 2_000);

    let port = format!("\"port\":{}", tcp_addr.port());
    let mut connects = Storm {
        name: "connect_storm",
        sent: CONNECTS,
        unit: "connects",
        base_time: 0.0,
        agent_time: 0.0,
        run: AgentRun::default(),
        captured: 0,
        expected: CONNECTS,
        ratios: Vec::new(),
        per_events: Vec::new(),
        write_floor: Vec::new(),
    };
    let mut dns = Storm {
        name: "dns_round_trips",
        sent: ROUND_TRIPS,
        unit: "round_trips",
        base_time: 0.0,
        agent_time: 0.0,
        run: AgentRun::default(),
        captured: 0,
        expected: 3 * ROUND_TRIPS,
        ratios: Vec::new(),
        per_events: Vec::new(),
        write_floor: Vec::new(),
    };
    // interleaved rounds (without, with, ...) so drift on the VM hits both sides alike
    for _ in 0..ROUNDS {
        let n = CONNECTS / ROUNDS;
        let base = connect_storm(tcp_addr, n);
        let agent = start_agent(&out, &args);
        let with = connect_storm(tcp_addr, n);
        connects.round(n, base, with, agent.stop());
        connects.captured += count(&out, &["\"name\":\"connect\"", &port, "\"connected\":true"]);

        let n = ROUND_TRIPS / ROUNDS;
        let base = dns_storm(server_addr, n);
        let agent = start_agent(&out, &args);
        let with = dns_storm(server_addr, n);
        dns.round(n, base, with, agent.stop());
        dns.captured += count(&out, &["\"name\":\"dns_query\"", "\"query\":\"why.kunai.rocks\""])
            + count(&out, &["\"name\":\"send_data\"", "127.0.53.99"]);
        dns.write_floor.push(write_floor_us(&out));
    }
    stop.store(true, Ordering::Relaxed);
    connects.print();
    dns.print();
}

//! A class under load (issue 16 item 6): one appliance (`ioclab serve`
//! started as a process, replay mode: its endpoint listener and dashboard
//! API) and simulated endpoints in this process, each the agent's real
//! spool and shipper sending synthetic Kunai events over TLS. Each figure is
//! printed next to its target. Run with `make bench`, or alone:
//! `cargo bench --bench class_load`.
//!
//! Targets, and why:
//! - stored >= 20,000 events/s sustained: 20 trainee endpoints at 1,000
//!   events/s each (a busy lab machine) on one appliance, every endpoint
//!   keeping up (its spool does not grow);
//! - detection to dashboard p99 < 2 s: a trainee's detection is on the
//!   instructor's screen while they still look at their own (from the event
//!   written into the endpoint's spool to the event in the instructor's
//!   `/api/endpoints/T/E/events?detections=true`, polled; the stored row,
//!   by the batch's ack, is printed too);
//! - IoC push to all 20 matching < 2 s: midway through the window the
//!   instructor pushes an IoC set on the web (`/class/push`, target all);
//!   each endpoint long-polls its orders with the agent's own code
//!   (`remote::orders::run`), loads the pushed file with the agent's IoC
//!   loader and matches its next events with it: time from the push to the
//!   last endpoint's matching detection stored, and to all 20 reports;
//! - CPU and memory of the appliance: reported (one 2-core appliance VM).
//!
//! Then a sweep (more events per endpoint) finds where one appliance stops:
//! the rate where stored/s stops growing or the spools grow.
//! `CLASS_LOAD_SWEEP=0` skips it; `CLASS_LOAD_SECONDS=N` sets the window,
//! `CLASS_LOAD_RATE=N` each endpoint's events per second (1,000).

#[path = "../tests/browser/appliance.rs"]
mod appliance;
mod common;
#[path = "../tests/common/endpoint_sim.rs"]
mod endpoint_sim;
#[path = "../tests/browser/http.rs"]
#[allow(dead_code)] // the browser tests use the rest
mod http;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance::Appliance;
use common::{percentile, status_kib, verdict};
use ioclab_agent::events::{EventData, EventKind};
use ioclab_agent::ioc::loader::load_files;
use ioclab_agent::ioc::IocSet;
use ioclab_agent::remote::orders::{self, OrderClient, PushedIocs, Reload};
use ioclab_agent::remote::pin::Fingerprint;
use ioclab_agent::remote::ship::{self, Shipper};
use ioclab_agent::remote::spool::{Spool, SpoolLimits};
use ioclab_agent::remote::synthetic;
use ioclab_web::endpoints::EndpointDb;
use serde_json::Value;

const ENDPOINTS: usize = 20;
const PER_SEC: u64 = 1000;
const STORED_TARGET: f64 = 20_000.0;
const DETECTION_TARGET_S: f64 = 2.0;
const PUSH_TARGET_S: f64 = 2.0;
/// Before the measured window: connections made, first batches through.
const WARMUP: Duration = Duration::from_secs(2);
/// Every this many events, an endpoint writes a file an IoC names (a detection).
const DETECT_EVERY: u64 = 100;
/// The file the endpoints' IoC set names from the start.
const BAIT: &str = "/tmp/ioclab-bench/dropper.sh";
/// The file only the pushed IoC set names: its events are detections once the push is loaded.
const PUSHED: &str = "/tmp/ioclab-bench/pushed-stage2.bin";
/// Longest wait for every endpoint's report of the push.
const REPORTS_MAX: Duration = Duration::from_secs(30);
/// How often the instructor's side asks each endpoint's detections.
const DASHBOARD_POLL: Duration = Duration::from_millis(200);
/// Longest wait for the spools to empty after the producers stop.
const DRAIN_MAX: Duration = Duration::from_secs(120);
/// A spool still holding more than this much of its endpoint's output after the window did not keep up.
const KEPT_UP_S: f64 = 2.0;

/// An IoC line of Kunai's format naming `path`.
fn ioc_line(path: &str, n: u8) -> String {
    format!(
        "{{\"uuid\":\"5d0b4a41-0000-4000-8000-0000000000{n:02}\",\"source\":\"class-load-bench\",\"value\":\"{path}\",\"severity\":7}}"
    )
}

/// The IoC set of an IoC file, loaded as the agent loads it (refused unless complete).
fn load_iocs(path: &std::path::Path) -> Result<(IocSet, String), String> {
    match load_files(&[path.to_path_buf()]) {
        Ok((set, report)) if report.complete() => Ok((set, report.counts())),
        Ok((_, report)) => Err(format!("refused: {}", report.counts())),
        Err(e) => Err(e.to_string()),
    }
}

/// A `file_create` of `path`, scanned by the agent's matcher with `iocs`: its line, and whether it is a detection.
fn file_event(host: &str, n: u64, path: &str, iocs: &IocSet) -> (String, bool) {
    let mut v: Value = serde_json::from_str(&synthetic::file_create(host, n)).unwrap();
    v["data"]["path"] = path.into();
    let data = EventData::from_json(EventKind::FileCreate, &v["data"]).expect("a file_create's data");
    match iocs.scan(&data) {
        Some(det) => {
            v["detection"] = serde_json::to_value(det).unwrap();
            (v.to_string(), true)
        }
        None => (v.to_string(), false),
    }
}

/// `utime + stime` of a process, seconds.
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / hz
}

/// The value after `label` on the banner line holding it.
fn banner(app: &Appliance, label: &str) -> String {
    let line =
        app.printed.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("no {label:?}:\n{}", app.printed));
    line.split(label).nth(1).unwrap().split_whitespace().next().unwrap().trim_end_matches(')').to_string()
}

/// An appliance with one enrolment token per endpoint (`pc-01`...), as a
/// class has, and the instructor logged in on the web.
struct Class {
    app: Appliance,
    data: PathBuf,
    url: ship::Url,
    fingerprint: Fingerprint,
    tokens: Vec<String>,
    /// The instructor's session cookie.
    instructor: Option<String>,
}

impl Class {
    fn start(endpoints: usize) -> Class {
        let app = Appliance::start(true);
        let data = PathBuf::from(banner(&app, "data:"));
        let url = banner(&app, "endpoints:").parse().unwrap();
        let fingerprint = banner(&app, "--fingerprint ").parse().unwrap();
        let tokens = (1..=endpoints)
            .map(|i| {
                let name = format!("pc-{i:02}");
                let out = Command::new(env!("CARGO_BIN_EXE_ioclab"))
                    .args(["endpoints", "--data", data.to_str().unwrap(), "token", "create", "--name", &name])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
                let out = String::from_utf8_lossy(&out.stdout).into_owned();
                out.lines().next().and_then(|l| l.split(" token: ").nth(1)).expect("a token").to_string()
            })
            .collect();
        let mut web = http::Plain::default();
        let login = web.get(&app.web, "/login");
        let pw = app.instructor_pw.clone().expect("the first instructor's password");
        let ok = web.request(
            &app.web,
            "POST",
            "/login",
            Some(&[("csrf", &http::csrf_of(&login.body)), ("name", "instructor"), ("password", &pw)]),
        );
        assert!((300..400).contains(&ok.status), "instructor login: {} {}", ok.status, ok.body);
        Class { app, data, url, fingerprint, tokens, instructor: web.cookie }
    }

    /// A web client with the instructor's session.
    fn web(&self) -> http::Plain {
        http::Plain { cookie: self.instructor.clone() }
    }

    /// Pushes `lines` to every endpoint from the class's push page, as the instructor does.
    fn push(&self, label: &str, lines: &str) {
        let mut web = self.web();
        let page = web.get(&self.app.web, "/class/push");
        assert_eq!(page.status, 200, "/class/push: {}", page.body);
        let csrf = http::csrf_of(&page.body);
        let form = [("csrf", csrf.as_str()), ("target", "all"), ("label", label), ("lines", lines)];
        let r = web.request(&self.app.web, "POST", "/class/push", Some(&form));
        assert!((300..400).contains(&r.status), "the push: {} {}", r.status, r.body);
    }

    /// Events stored, counted in the appliance's store.
    async fn stored(&self, db: &EndpointDb) -> i64 {
        db.tokens().await.unwrap().iter().map(|t| t.events).sum()
    }
}

/// One simulated endpoint's shared state.
struct Endpoint {
    name: String,
    spool: Spool,
    /// Its IoC set, replaced whole by a push (the agent's reload).
    iocs: Mutex<Arc<IocSet>>,
    produced: AtomicU64,
    acked: AtomicU64,
    done_producing: AtomicBool,
    /// When the pushed set was loaded; when a detection of [`PUSHED`] was first acknowledged, first on the dashboard.
    reloaded: Mutex<Option<Instant>>,
    pushed_stored: Mutex<Option<Instant>>,
    pushed_shown: Mutex<Option<Instant>>,
}

/// When each detection was written, and when it was first stored and shown.
#[derive(Default)]
struct Detections {
    written: HashMap<String, Instant>,
    stored: Vec<(Instant, f64)>,
    shown: Vec<(Instant, f64)>,
    seen: HashSet<String>,
}

/// What the push measured, seconds after it.
struct PushMeasured {
    reloaded: Vec<f64>,
    stored: Vec<f64>,
    shown: Vec<f64>,
    all_reported: Option<f64>,
    /// Reports in the pushes list at the end: applied, all.
    reports: (usize, usize),
}

/// What one load measured.
struct Measured {
    endpoints: usize,
    per_sec: u64,
    window_s: f64,
    produced: u64,
    acked: u64,
    stored: i64,
    backlog_batches: usize,
    backlog_max_batches: usize,
    backlog_bytes: u64,
    drain_s: f64,
    to_store: Vec<f64>,
    to_dashboard: Vec<f64>,
    push: Option<PushMeasured>,
    cpu_s: f64,
    bench_cpu_s: f64,
    rss_peak_kib: u64,
    hwm_kib: u64,
    total_produced: u64,
    total_stored: i64,
    failures: u64,
}

impl Measured {
    fn offered(&self) -> f64 {
        (self.endpoints as u64 * self.per_sec) as f64
    }
    fn stored_per_s(&self) -> f64 {
        self.stored as f64 / self.window_s
    }
    fn kept_up(&self) -> bool {
        self.drain_s <= KEPT_UP_S && self.total_stored as u64 == self.total_produced
    }
}

/// The instructor's side: each endpoint's newest detections from the
/// dashboard API, every [`DASHBOARD_POLL`], until `stop`.
fn watch_dashboard(class: &Class, eps: &[Arc<Endpoint>], detections: &Mutex<Detections>, stop: &AtomicBool) {
    let mut web = class.web();
    while !stop.load(Ordering::Relaxed) {
        let round = Instant::now();
        for ep in eps {
            let path = format!("/api/endpoints/{0}/{0}/events?detections=true&limit=50", ep.name);
            let r = web.get(&class.app.web, &path);
            let now = Instant::now();
            if r.status == 404 {
                continue; // nothing stored from it yet
            }
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            let page: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body));
            let mut d = detections.lock().unwrap();
            for e in page["events"].as_array().into_iter().flatten() {
                let uuid = e["uuid"].as_str().unwrap_or_default().to_string();
                if !d.seen.insert(uuid.clone()) {
                    continue;
                }
                if let Some(t) = d.written.get(&uuid).copied() {
                    d.shown.push((now, (now - t).as_secs_f64()));
                }
                let iocs = &e["event"]["detection"]["iocs"];
                if iocs.as_array().is_some_and(|a| a.iter().any(|v| v == PUSHED)) {
                    ep.pushed_shown.lock().unwrap().get_or_insert(now);
                }
            }
        }
        std::thread::sleep(DASHBOARD_POLL.saturating_sub(round.elapsed()));
    }
}

/// Runs `endpoints` simulated endpoints at `per_sec` events/s each against
/// `class` for `window` after [`WARMUP`]; with `push`, the instructor pushes
/// an IoC set midway.
fn load(class: &Class, endpoints: usize, per_sec: u64, window: Duration, push: bool) -> Measured {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let spools = common::scratch_dir();
    let stop = Arc::new(AtomicBool::new(false));
    // the order long-polls and the instructor's side go on until the spools drained
    let stop_orders = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let detections: Arc<Mutex<Detections>> = Arc::default();
    let mut eps = Vec::new();
    let mut tasks = Vec::new();
    let mut pollers = Vec::new();
    for (i, token) in class.tokens.iter().take(endpoints).enumerate() {
        let name = format!("pc-{:02}", i + 1);
        let dir = spools.path().join(&name);
        let spool = Spool::open(&dir.join("spool"), &name, SpoolLimits::default()).unwrap();
        // the IoCs it starts with, loaded as the agent loads its IoC files
        let initial = dir.join("iocs.json");
        std::fs::write(&initial, ioc_line(BAIT, 1)).unwrap();
        let ep = Arc::new(Endpoint {
            name: name.clone(),
            spool,
            iocs: Mutex::new(Arc::new(load_iocs(&initial).unwrap().0)),
            produced: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            done_producing: AtomicBool::new(false),
            reloaded: Mutex::new(None),
            pushed_stored: Mutex::new(None),
            pushed_shown: Mutex::new(None),
        });
        let target = ship::Appliance { url: class.url.clone(), token: token.clone(), fingerprint: class.fingerprint };
        let shipper = Shipper::new(&target).unwrap();
        let producer = {
            let (ep, stop, detections) = (ep.clone(), stop.clone(), detections.clone());
            rt.spawn(async move {
                let n = endpoint_sim::produce(&ep.spool, per_sec, u64::MAX, &stop, |n| {
                    ep.produced.fetch_add(1, Ordering::Relaxed);
                    let path = match n % DETECT_EVERY {
                        0 => BAIT,
                        x if x == DETECT_EVERY / 2 => PUSHED,
                        _ => return synthetic::file_create(&ep.name, n),
                    };
                    let iocs = ep.iocs.lock().unwrap().clone();
                    let (line, detection) = file_event(&ep.name, n, path, &iocs);
                    if detection {
                        detections.lock().unwrap().written.insert(endpoint_sim::uuid_of(&line), Instant::now());
                    }
                    line
                })
                .await;
                ep.done_producing.store(true, Ordering::SeqCst);
                n
            })
        };
        let sender = {
            let (ep, failures, detections) = (ep.clone(), failures.clone(), detections.clone());
            rt.spawn(async move {
                endpoint_sim::ship(
                    &shipper,
                    &ep.spool,
                    || ep.done_producing.load(Ordering::SeqCst),
                    |body, ack| {
                        let now = Instant::now();
                        ep.acked.fetch_add(ack.stored, Ordering::Relaxed);
                        for line in endpoint_sim::events(body).filter(|l| l.contains("\"detection\":")) {
                            let mut d = detections.lock().unwrap();
                            if let Some(t) = d.written.get(&endpoint_sim::uuid_of(line)).copied() {
                                d.stored.push((now, (now - t).as_secs_f64()));
                            }
                            if line.contains(PUSHED) {
                                ep.pushed_stored.lock().unwrap().get_or_insert(now);
                            }
                        }
                    },
                    |_| {
                        failures.fetch_add(1, Ordering::Relaxed);
                    },
                )
                .await
            })
        };
        // its orders, with the agent's own long-poll; a push is loaded as the agent's reload does
        let poller = {
            let client = OrderClient::new(&target, &name, false).unwrap();
            let pushed = PushedIocs::beside(&dir.join("spool"));
            let (ep, stop) = (ep.clone(), stop_orders.clone());
            let file = pushed.path().to_path_buf();
            let reload: Arc<Reload> = Arc::new(move || {
                let (set, counts) = load_iocs(&file)?;
                *ep.iocs.lock().unwrap() = Arc::new(set);
                ep.reloaded.lock().unwrap().get_or_insert(Instant::now());
                Ok(counts)
            });
            rt.spawn(async move { orders::run(&client, &pushed, reload, None, &stop).await })
        };
        eps.push(ep);
        tasks.push((producer, sender));
        pollers.push(poller);
    }
    let db = rt.block_on(EndpointDb::open(&class.data.join("web.db"))).unwrap();
    let pid = class.app.pid();
    let pid_s = pid.to_string();
    // the appliance's resident memory, sampled through the run
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let acked = || eps.iter().map(|e| e.acked.load(Ordering::Relaxed)).sum::<u64>();
    let produced = || eps.iter().map(|e| e.produced.load(Ordering::Relaxed)).sum::<u64>();

    let measured = std::thread::scope(|s| {
        s.spawn(|| watch_dashboard(class, &eps, &detections, &stop_orders));
        std::thread::sleep(WARMUP);
        let (t0, p0, a0, s0, c0, b0) =
            (Instant::now(), produced(), acked(), rt.block_on(class.stored(&db)), cpu_s(&pid_s), cpu_s("self"));
        let push = push.then(|| {
            s.spawn(|| {
                std::thread::sleep(window / 2);
                let lines = format!("{}\n{}\n", ioc_line(BAIT, 1), ioc_line(PUSHED, 2));
                let pushed_at = Instant::now();
                class.push("class-load stage 2", &lines);
                // every endpoint's report, as the instructor's list of pushes shows it
                let mut all_reported = None;
                let mut reports = (0, 0);
                while all_reported.is_none() && pushed_at.elapsed() < REPORTS_MAX {
                    let p = rt.block_on(db.pushes()).unwrap();
                    let applied = p.first().map(|p| p.applied.as_slice()).unwrap_or_default();
                    reports = (applied.iter().filter(|a| a.ok).count(), applied.len());
                    if reports.0 == endpoints {
                        all_reported = Some(pushed_at.elapsed().as_secs_f64());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (pushed_at, all_reported, reports)
            })
        });
        std::thread::sleep(window.saturating_sub(t0.elapsed()));
        let (t1, p1, a1, s1, c1, b1) =
            (Instant::now(), produced(), acked(), rt.block_on(class.stored(&db)), cpu_s(&pid_s), cpu_s("self"));
        let backlog: Vec<(usize, u64)> = eps.iter().map(|e| e.spool.pending()).collect();

        stop.store(true, Ordering::SeqCst);
        let stopped = Instant::now();
        let mut total_produced = 0;
        for (producer, sender) in tasks {
            total_produced += rt.block_on(producer).unwrap();
            let left = DRAIN_MAX.saturating_sub(stopped.elapsed());
            rt.block_on(async { tokio::time::timeout(left, sender).await }).expect("the spools drained").unwrap();
        }
        let drain_s = stopped.elapsed().as_secs_f64();
        // the dashboard's last look after the drain
        std::thread::sleep(DASHBOARD_POLL * 2);
        let push = push.map(|p| p.join().unwrap());
        stop_orders.store(true, Ordering::Relaxed);
        for p in pollers {
            rt.block_on(p).unwrap();
        }
        let total_stored = rt.block_on(class.stored(&db));
        let window_s = (t1 - t0).as_secs_f64();
        let d = detections.lock().unwrap();
        let within =
            |v: &[(Instant, f64)]| v.iter().filter(|(at, _)| *at >= t0 && *at <= t1).map(|(_, l)| *l).collect();
        let push = push.map(|(at, all_reported, reports)| {
            let after =
                |t: &Mutex<Option<Instant>>| t.lock().unwrap().map_or(f64::INFINITY, |t| (t - at).as_secs_f64());
            PushMeasured {
                reloaded: eps.iter().map(|e| after(&e.reloaded)).collect(),
                stored: eps.iter().map(|e| after(&e.pushed_stored)).collect(),
                shown: eps.iter().map(|e| after(&e.pushed_shown)).collect(),
                all_reported,
                reports,
            }
        });
        Measured {
            endpoints,
            per_sec,
            window_s,
            produced: p1 - p0,
            acked: a1 - a0,
            stored: s1 - s0,
            backlog_batches: backlog.iter().map(|b| b.0).sum(),
            backlog_max_batches: backlog.iter().map(|b| b.0).max().unwrap_or(0),
            backlog_bytes: backlog.iter().map(|b| b.1).sum(),
            drain_s,
            to_store: within(&d.stored),
            to_dashboard: within(&d.shown),
            push,
            cpu_s: c1 - c0,
            bench_cpu_s: b1 - b0,
            rss_peak_kib: 0,
            hwm_kib: status_kib(pid, "VmHWM:"),
            total_produced,
            total_stored,
            failures: failures.load(Ordering::Relaxed),
        }
    });
    sampling.store(false, Ordering::Relaxed);
    Measured { rss_peak_kib: sampler.join().unwrap(), ..measured }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Seconds, or "never" for what did not happen in the run.
fn secs(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2} s")
    } else {
        "never (not within the run)".into()
    }
}

fn report(m: &mut Measured, main: bool) {
    let tag = format!("class_load: {} endpoints x {} ev/s", m.endpoints, m.per_sec);
    let target = if main { STORED_TARGET } else { m.offered() };
    println!(
        "{tag}: stored {:.0} ev/s (counted in the store), {:.0} ev/s acknowledged, over {:.1} s; offered {:.0}, produced {:.0} ev/s (target >= {target:.0}, less 2% for the batches in flight when the window closes: {})",
        m.stored_per_s(),
        m.acked as f64 / m.window_s,
        m.window_s,
        m.offered(),
        m.produced as f64 / m.window_s,
        verdict(m.stored_per_s() >= target * 0.98)
    );
    println!(
        "{tag}: spool backlog at the end of the window {} batches ({:.1} MiB), at most {} on one endpoint; drained {:.2} s after the producers stopped; {} sends failed; stored {} of {} produced (every endpoint kept up, drained within {KEPT_UP_S} s: {})",
        m.backlog_batches,
        m.backlog_bytes as f64 / 1048576.0,
        m.backlog_max_batches,
        m.drain_s,
        m.failures,
        m.total_stored,
        m.total_produced,
        verdict(m.kept_up())
    );
    let n = m.to_dashboard.len();
    let (p50, p99) = (percentile(&mut m.to_dashboard, 0.5), percentile(&mut m.to_dashboard, 0.99));
    println!(
        "{tag}: detection (event written on the endpoint) to the dashboard API (polled every {} ms): p50 {:.0} ms, p99 {:.0} ms over {n} detections (target p99 < {DETECTION_TARGET_S} s: {})",
        DASHBOARD_POLL.as_millis(),
        p50 * 1e3,
        p99 * 1e3,
        verdict(p99 < DETECTION_TARGET_S)
    );
    let n = m.to_store.len();
    let (p50, p99) = (percentile(&mut m.to_store, 0.5), percentile(&mut m.to_store, 0.99));
    println!(
        "{tag}: detection to stored row (its batch's ack): p50 {:.0} ms, p99 {:.0} ms over {n} detections (reported; the part of the above before the dashboard)",
        p50 * 1e3,
        p99 * 1e3
    );
    if let Some(p) = &m.push {
        println!(
            "{tag}: IoC push from /class/push to the last of the {} endpoints' matching detection stored: {} (reloads: last {}; target < {PUSH_TARGET_S} s: {})",
            m.endpoints,
            secs(max(&p.stored)),
            secs(max(&p.reloaded)),
            verdict(max(&p.stored) < PUSH_TARGET_S)
        );
        println!(
            "{tag}: IoC push to the last matching detection on the dashboard {}, to all {} reports in the pushes list {} ({} applied, {} reported; reported)",
            secs(max(&p.shown)),
            m.endpoints,
            secs(p.all_reported.unwrap_or(f64::INFINITY)),
            p.reports.0,
            p.reports.1
        );
    }
    println!(
        "{tag}: appliance CPU {:.0}% of one core, {:.0}% of 2 cores; RSS peak {:.1} MiB, VmHWM {:.1} MiB (reported; the load generator in the bench took {:.0}% of one core on the same machine)",
        m.cpu_s / m.window_s * 100.0,
        m.cpu_s / m.window_s * 50.0,
        m.rss_peak_kib as f64 / 1024.0,
        m.hwm_kib as f64 / 1024.0,
        m.bench_cpu_s / m.window_s * 100.0
    );
}

fn main() {
    let window =
        Duration::from_secs(std::env::var("CLASS_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20));
    // the simulated agents' warnings (a refused report, a retried batch) on stderr, as the agent logs them
    tracing_subscriber::fmt().with_env_filter("warn").with_writer(std::io::stderr).init();
    let per_sec = std::env::var("CLASS_LOAD_RATE").ok().and_then(|s| s.parse().ok()).unwrap_or(PER_SEC);
    let class = Class::start(ENDPOINTS);
    let mut m = load(&class, ENDPOINTS, per_sec, window, true);
    report(&mut m, per_sec == PER_SEC);
    // what the appliance logged under the load: statements waiting for SQLite's write lock, refused writes
    let log = class.app.log();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    println!(
        "class_load: appliance log: {} slow statements (over 1 s: a writer waiting for SQLite's lock), {} \"database is locked\"",
        count("slow statement"),
        count("database is locked")
    );
    drop(class);

    if std::env::var("CLASS_LOAD_SWEEP").is_ok_and(|v| v == "0") {
        return;
    }
    // where one appliance stops: more events until stored/s stops growing or the spools grow
    let sweep = window.min(Duration::from_secs(10));
    if !m.kept_up() {
        // what it holds, then: half the rate
        let class = Class::start(ENDPOINTS);
        let mut half = load(&class, ENDPOINTS, per_sec / 2, sweep, false);
        report(&mut half, false);
    }
    let mut best = m.stored_per_s();
    for (endpoints, per_sec) in [(20, 2 * per_sec), (20, 4 * per_sec), (40, 2 * per_sec), (20, 8 * per_sec)] {
        let class = Class::start(endpoints);
        let mut m = load(&class, endpoints, per_sec, sweep, false);
        report(&mut m, false);
        drop(class);
        let grew = m.stored_per_s() > best * 1.1;
        best = best.max(m.stored_per_s());
        if !m.kept_up() || !grew {
            println!(
                "class_load: one appliance stops at about {best:.0} stored ev/s here ({endpoints} x {per_sec} ev/s offered did not fit)"
            );
            return;
        }
    }
    println!("class_load: one appliance held every rate of the sweep (best {best:.0} stored ev/s)");
}

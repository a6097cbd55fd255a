//! `ioclab sandbox config` and `ioclab sandbox to-misp`, run as a user would.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{misp_key, misp_serve, run, Reaped};

#[test]
fn config_dump_is_a_commented_sandbox_toml_and_a_bad_file_names_its_key() {
    let (code, dump, err) = run(&["sandbox", "config", "--dump"]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "[processing.misp]",
        "[reporting.misp]",
        "maxioc = 100",
        "only_ids = true",
        "mode = \"ipaddr hashes url\"",
        "threat_level = 4",
        "tag = [\"Cuckoo\"]",
        "publish = false",
        "url = \"http://127.0.0.1:8080\"",
        "# Cuckoo: reporting.conf [misp] min_malscore",
    ] {
        assert!(dump.contains(needle), "--dump lacks {needle}: {dump}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox.toml");
    std::fs::write(&file, &dump).unwrap();
    let (code, out, err) = run(&["sandbox", "config", "-c", file.to_str().unwrap()]);
    assert_eq!(code, 0, "the dump is a valid sandbox.toml: {err}");
    assert!(out.contains("[reporting.misp]"), "{out}");
    std::fs::write(&file, "[reporting.misp]\napikey = \"s3cret\"\nthreat_level = 9\n").unwrap();
    let (code, _, err) = run(&["sandbox", "config", "-c", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("sandbox.toml") && err.contains("reporting.misp.threat_level") && err.contains("line 3"),
        "{err}"
    );
    std::fs::write(&file, "[reporting.misp]\napikey = \"s3cret\"\n").unwrap();
    let (code, out, _) = run(&["sandbox", "config", "-c", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(!out.contains("s3cret"), "keys are not printed: {out}");
}

/// The embedded MISP on a loopback port (stopped when dropped), its URL and a publisher key.
struct Misp {
    _server: Reaped,
    url: String,
    key: String,
}

fn embedded_misp(dir: &Path) -> Misp {
    let db = dir.join("misp.db");
    let key = misp_key(&db, "sandbox@lab.example", "publisher");
    let (server, url) = misp_serve(&db);
    Misp { _server: server, url, key }
}

fn fixture_report() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sandbox/tests/fixtures/misp_report.json")
}

/// `sandbox.toml` for the MISP at `url`, the key in a file as `ioclab misp keys create` wrote it.
fn sandbox_toml(dir: &Path, url: &str, key: &str, extra: &str) -> PathBuf {
    let key_file = dir.join("misp.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let path = dir.join("sandbox.toml");
    std::fs::write(
        &path,
        format!(
            "[reporting.misp]\nurl = \"{url}\"\napikey_file = \"{}\"\nsandbox_name = \"cli-test\"\n\
             ioc_blacklist = \"blocked.example.net\"\n{extra}",
            key_file.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn to_misp_adds_then_updates_one_event_and_lists_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let misp = embedded_misp(dir.path());
    let cfg = sandbox_toml(dir.path(), &misp.url, &misp.key, "");
    let report = fixture_report();
    let (code, out, err) = run(&["sandbox", "to-misp", report.to_str().unwrap(), "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("MISP event {}/events/view/", misp.url))
            && out.contains(" added (unpublished, for review)"),
        "{out}"
    );
    for line in [
        "ip-dst 8.8.8.8: on warninglist List of known IPv4 public DNS resolvers",
        "url http://blocked.example.net/beacon: on ioc_blacklist",
        "domain|ip crl.verisign.com|72.21.91.29: on the safelist",
        "md5 d41d8cd98f00b204e9800998ecf8427e: on warninglist List of known hashes for empty files (dropped file /tmp/empty)",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    assert!(out.contains("tags: Cuckoo, misp-galaxy:mitre-attack-pattern=\"Cron - T1053.003\""), "{out}");
    let url_of = |out: &str| out.split_whitespace().find(|w| w.contains("/events/view/")).unwrap().to_string();
    let first = url_of(&out);
    let (code, out, err) = run(&["sandbox", "to-misp", report.to_str().unwrap(), "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" updated ") && url_of(&out) == first, "the same event, updated: {out}");
    let index = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: {}", misp.key),
            "-H",
            "Accept: application/json",
        ])
        .arg(format!("{}/events/index", misp.url))
        .output()
        .expect("curl (installed by scripts/setup.sh)");
    let events: serde_json::Value = serde_json::from_slice(&index.stdout).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");

    // min_malscore: nothing sent, said so
    let high = sandbox_toml(dir.path(), &misp.url, &misp.key, "min_malscore = 9\n");
    let (code, out, _) = run(&["sandbox", "to-misp", report.to_str().unwrap(), "-c", high.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("not sent to MISP: score 3.2 is below min_malscore 9"), "{out}");
}

#[test]
fn to_misp_fails_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let report = fixture_report();
    // MISP down
    let cfg = sandbox_toml(dir.path(), "http://127.0.0.1:9", "k", "");
    let (code, _, err) = run(&["sandbox", "to-misp", report.to_str().unwrap(), "-c", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot connect") && err.contains("to-misp --task 42"), "{err}");
    // no key
    let path = dir.path().join("nokey.toml");
    std::fs::write(&path, "[reporting.misp]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
    let (code, _, err) = run(&["sandbox", "to-misp", report.to_str().unwrap(), "-c", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("[reporting.misp] has no API key") && err.contains("ioclab misp keys create"), "{err}");
    // a report that is not one names the file and the place
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"info\": {\"id\": \"x\"}}").unwrap();
    let (code, _, err) = run(&["sandbox", "to-misp", bad.to_str().unwrap(), "-c", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.json") && err.contains("info.id"), "{err}");
    // neither a file nor a task
    let (code, _, err) = run(&["sandbox", "to-misp"]);
    assert_ne!(code, 0);
    assert!(err.contains("--task"), "{err}");
}

/// `--task` reads the report from the sandbox API (here a one-shot stand-in serving the fixture).
#[test]
fn to_misp_reads_a_task_from_the_sandbox_api() {
    let dir = tempfile::tempdir().unwrap();
    let misp = embedded_misp(dir.path());
    let cfg = sandbox_toml(dir.path(), &misp.url, &misp.key, "");
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_url = format!("http://{}", api.local_addr().unwrap());
    let body = std::fs::read(fixture_report()).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = api.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(&body).unwrap();
        head
    });
    let (code, out, err) =
        run(&["sandbox", "to-misp", "--task", "42", "-c", cfg.to_str().unwrap(), "--url", &api_url, "--token", "t"]);
    assert_eq!(server.join().unwrap(), "GET /tasks/report/42 HTTP/1.1");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" added "), "{out}");
}

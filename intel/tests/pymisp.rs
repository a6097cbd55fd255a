//! PyMISP and pykunai's misp-to-kunai, unmodified from PyPI, against the
//! embedded store over real HTTP. They run from the venv `scripts/setup.sh`
//! makes (`.venv/`). Under CI=true a missing venv fails the test; elsewhere
//! the test says why it skips.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use ioclab_intel::export::config::ExportConfig;
use ioclab_intel::export::{self, ExportOptions};
use ioclab_intel::server::{self, AppState};
use ioclab_intel::store::keys::KeyRequest;
use ioclab_intel::store::{Role, Store};
use ioclab_intel::warninglists::Warninglists;

fn venv() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("IOCLAB_VENV").map(PathBuf::from).unwrap_or_else(|| root.join(".venv"));
    if dir.join("bin/python").exists() && dir.join("bin/misp-to-kunai").exists() {
        return Some(dir);
    }
    let why = format!("no venv with pymisp and pykunai at {} (made by scripts/setup.sh)", dir.display());
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true: {why}");
    }
    eprintln!("SKIPPED (not in CI): {why}");
    None
}

/// Starts the store on a free loopback port; returns its URL and an admin key.
async fn start_store(dir: &std::path::Path) -> (String, String) {
    let store = Store::open(&dir.join("misp.db")).await.unwrap();
    let key = store.create_key("trainer@lab.example", Role::Admin).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = server::router(AppState { store, warninglists: Arc::new(Warninglists::shipped()) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), key)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed\nstdout:\n{so}\nstderr:\n{se}");
    so.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymisp_and_misp_to_kunai_unmodified_against_the_embedded_store() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = start_store(dir.path()).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/pymisp_flow.py");

    let py = venv.join("bin/python");
    let (u, k) = (url.clone(), key.clone());
    let out = tokio::task::spawn_blocking(move || run(Command::new(py).arg(script).arg(&u).arg(&k))).await.unwrap();
    let summary: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(summary["attributes"], 5);
    let event_uuid = summary["event_uuid"].as_str().unwrap().to_string();

    // misp-to-kunai and ioclab misp export on the same server, same config
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(
        &cfg_path,
        format!("misp-feeds = []\n\n[misp]\nname = \"lab-misp\"\nurl = \"{url}\"\nkey = \"{key}\"\nssl = false\nenable = true\n"),
    )
    .unwrap();
    let theirs_path = dir.path().join("m2k.json");
    let (m2k, c, o) = (venv.join("bin/misp-to-kunai"), cfg_path.clone(), theirs_path.clone());
    tokio::task::spawn_blocking(move || run(Command::new(m2k).arg("-c").arg(c).arg("-o").arg(o))).await.unwrap();
    let lines = |p: &std::path::Path| -> BTreeSet<(String, String, String, u64, String, String)> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap().to_string();
                (s("type"), s("uuid"), s("value"), v["severity"].as_u64().unwrap(), s("event_uuid"), s("source"))
            })
            .collect()
    };
    let theirs = lines(&theirs_path);
    let (sha256, sha1) = ("a".repeat(64), "b".repeat(40));
    let want: BTreeSet<(&str, &str)> = [
        ("domain", "why.kunai.rocks"),
        ("ip-dst", "203.0.113.7"),
        ("ip-dst", "8.8.8.8"),
        ("sha256", sha256.as_str()),
        ("sha1", sha1.as_str()),
    ]
    .into_iter()
    .collect();
    let got: BTreeSet<(&str, &str)> = theirs.iter().map(|l| (l.0.as_str(), l.2.as_str())).collect();
    assert_eq!(got, want, "misp-to-kunai's IoCs");
    assert!(theirs.iter().all(|l| l.4 == event_uuid && l.5 == "lab-misp"));

    let cfg = ExportConfig::from_file(&cfg_path).unwrap();
    let ours_path = dir.path().join("ours.json");
    let mut opts = ExportOptions {
        last_days: Some(1),
        all: false,
        tags: vec![],
        to_ids_only: true,
        warninglists: false,
        allow: vec![],
        sync: false,
        overwrite: false,
        shared_only: true,
        output: Some(ours_path.clone()),
    };
    let report = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    assert_eq!(report.added, 5);
    assert_eq!(lines(&ours_path), theirs, "identical IoC lines on misp-to-kunai's types");

    // with warninglists (the default), 8.8.8.8 and the RFC 5735 test address are left out
    opts.warninglists = true;
    opts.overwrite = true;
    let report = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    let left_out: BTreeSet<&str> = report.warned.iter().map(|(l, _)| l.value.as_str()).collect();
    assert_eq!(left_out, ["203.0.113.7", "8.8.8.8"].into_iter().collect());
    assert_eq!(report.added, 3);
}

/// Roles and organisations as PyMISP meets them: another organisation's user
/// cannot edit, tag, publish or delete; a user cannot publish; a publisher and
/// an admin can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymisp_meets_the_roles_of_the_embedded_store() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (url, admin) = start_store(dir.path()).await;
    let store = Store::open(&dir.path().join("misp.db")).await.unwrap();
    let key = |email: &'static str, org: &'static str, role: Role| {
        let store = store.clone();
        async move {
            let req = KeyRequest { email, role: Some(role), org: Some(org), change_role: false };
            store.create_key_with(&req).await.unwrap()
        }
    };
    let blue = key("blue@lab.example", "blue", Role::User).await;
    let blue_pub = key("blue-pub@lab.example", "blue", Role::Publisher).await;
    let red = key("red@lab.example", "red", Role::User).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/pymisp_roles.py");
    let py = venv.join("bin/python");
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new(py).arg(script).arg(&url).arg(&blue).arg(&blue_pub).arg(&red).arg(&admin))
    })
    .await
    .unwrap();
    let summary: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(summary["rules"], 9);
    assert!(store.event(summary["event_uuid"].as_str().unwrap()).await.is_err(), "deleted by the admin");
}

/// A class: 20 PyMISP clients at once, each adding 3 events, tagging them
/// and an attribute, sighting a value and searching. No client may see an
/// error; afterwards every event is there once, with its attributes and tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pymisp_clients_at_once_lose_and_duplicate_nothing() {
    const TRAINEES: usize = 20;
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = start_store(dir.path()).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/class_client.py");
    let (py, u, k) = (venv.join("bin/python"), url.clone(), key.clone());
    let outputs = tokio::task::spawn_blocking(move || {
        let children: Vec<_> = (0..TRAINEES)
            .map(|n| {
                Command::new(&py)
                    .arg(&script)
                    .arg(&u)
                    .arg(&k)
                    .arg(n.to_string())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children.into_iter().map(|c| c.wait_with_output().unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut reported = BTreeSet::new();
    for (n, out) in outputs.iter().enumerate() {
        let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "trainee {n} failed\nstdout:\n{so}\nstderr:\n{se}");
        let summary: serde_json::Value = serde_json::from_str(so.trim().lines().last().unwrap()).unwrap();
        for u in summary["events"].as_array().unwrap() {
            assert!(reported.insert(u.as_str().unwrap().to_string()), "uuid {u} reported twice");
        }
    }
    assert_eq!(reported.len(), TRAINEES * 3);

    let client = ioclab_intel::client::MispClient::new(&url, &key, true, None).unwrap();
    let index = client.post("/events/index", &serde_json::json!({})).await.unwrap();
    let stored: Vec<String> =
        index.as_array().unwrap().iter().map(|e| e["uuid"].as_str().unwrap().to_string()).collect();
    assert_eq!(stored.len(), TRAINEES * 3, "no event lost or stored twice");
    assert_eq!(stored.iter().cloned().collect::<BTreeSet<_>>(), reported);
    let count = |body: serde_json::Value| {
        let client = &client;
        async move {
            let v = client.post("/attributes/restSearch", &body).await.unwrap();
            v["response"]["Attribute"].as_array().unwrap().len()
        }
    };
    assert_eq!(count(serde_json::json!({})).await, TRAINEES * 15, "every attribute once");
    assert_eq!(count(serde_json::json!({"tags": "class:shared"})).await, TRAINEES * 3, "every attribute tag");
    for n in [0, TRAINEES - 1] {
        assert_eq!(count(serde_json::json!({"tags": format!("class:trainee-{n}")})).await, 15);
    }
}

//! Report → MISP event against the embedded MISP store over real HTTP, read
//! back with PyMISP from PyPI (`.venv`, made by scripts/setup.sh): one event
//! per task, updated (never duplicated) when re-reported, unpublished unless
//! configured, tagged, without warninglisted values; and failures that leave
//! nothing in MISP and a `misp_error` in the report.

mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use ioclab_intel::client::MispClient;
use ioclab_intel::store::Role;
use ioclab_intel::warninglists::Warninglists;
use ioclab_sandbox::misp::config::List;
use ioclab_sandbox::misp::event::{self, Attribute};
use ioclab_sandbox::misp::push::{self, Outcome, PushError};
use ioclab_sandbox::misp::ReportingMisp;
use ioclab_sandbox::report::network::Http;
use ioclab_sandbox::Report;
use serde_json::{json, Value};

fn fixture() -> Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/misp_report.json");
    Report::from_file(&path).unwrap()
}

fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("IOCLAB_VENV").map(PathBuf::from).unwrap_or_else(|| root.join(".venv"));
    let py = dir.join("bin/python");
    if Command::new(&py).args(["-c", "import pymisp"]).status().is_ok_and(|s| s.success()) {
        return Some(py);
    }
    let why = format!("no venv with pymisp at {} (made by scripts/setup.sh)", dir.display());
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "CI=true: {why}");
    eprintln!("SKIPPED (not in CI): {why}");
    None
}

fn config(url: &str, key: &str) -> ReportingMisp {
    ReportingMisp {
        enabled: true,
        url: url.into(),
        apikey: key.into(),
        sandbox_name: "test-sandbox".into(),
        ioc_blacklist: List(vec!["blocked.example.net".into()]),
        ..Default::default()
    }
}

async fn events(url: &str, key: &str) -> Vec<Value> {
    let client = MispClient::new(url, key, true, None).unwrap();
    client.post("/events/index", &json!({})).await.unwrap().as_array().cloned().unwrap()
}

async fn pymisp_view(py: &Path, url: &str, key: &str, uuid: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/misp_event_check.py");
    let mut cmd = Command::new(py);
    cmd.arg(script).args([url, key, uuid]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

fn has(list: &Value, item: Value) -> bool {
    list.as_array().unwrap().contains(&item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_per_task_read_back_with_pymisp_then_updated_not_duplicated() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = fixture::embedded_misp(dir.path(), Role::Publisher).await;
    let cfg = config(&url, &key);
    let report = fixture();

    let Outcome::Sent { pushed, built } =
        push::report_to_misp(&report, &cfg, Warninglists::embedded(), None).await.unwrap()
    else {
        panic!("sent")
    };
    assert!(pushed.created && !pushed.published);
    assert_eq!(pushed.requests, 1, "one events/add carries everything");
    assert_eq!(pushed.url, format!("{url}/events/view/{}", pushed.id));
    let left: Vec<String> = built.left_out.iter().map(|l| l.value.clone()).collect();
    for v in
        ["8.8.8.8", "www.google.com|142.250.74.78", "crl.verisign.com|72.21.91.29", "http://blocked.example.net/beacon"]
    {
        assert!(left.contains(&v.to_string()), "{v} left out: {left:?}");
    }

    let seen = pymisp_view(&py, &url, &key, &pushed.uuid).await;
    assert_eq!(seen["info"], "Cuckoo Sandbox analysis #42");
    assert_eq!(seen["published"], false);
    assert_eq!((seen["threat_level_id"].as_i64(), seen["distribution"].as_i64()), (Some(4), Some(0)));
    assert!(has(&seen["tags"], json!("Cuckoo")), "{}", seen["tags"]);
    assert!(has(&seen["tags"], json!("misp-galaxy:mitre-attack-pattern=\"Cron - T1053.003\"")), "{}", seen["tags"]);
    assert!(has(&seen["attribute_tags"], json!("misp-galaxy:mitre-attack-pattern=\"T1071.001\"")));
    let attrs = &seen["attributes"];
    for (kind, value, category) in [
        ("filename|md5", "dropper.sh|8ee2f2e1b5c57bdf0e8c1b4b0b6e6f54", "Payload delivery"),
        ("domain|ip", "why.kunai.rocks|185.199.108.153", "Network activity"),
        ("domain", "c2.evil.example.org", "Network activity"),
        ("ip-dst", "45.33.32.156", "Network activity"),
        ("url", "http://why.kunai.rocks/upload", "Network activity"),
    ] {
        assert!(has(attrs, json!([kind, value, true, category])), "{kind} {value} in {attrs}");
    }
    let comments = attrs.as_array().unwrap().iter().filter(|a| a[0] == "comment").count();
    assert_eq!(comments, 2, "one comment per signature");
    let objects = seen["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "the empty dropped file is left out: {objects:?}");
    assert!(has(&objects[0][1], json!(["sha256", "d2a84f4b8b650937ec8f73cd8be2c74add5a911ba64df27458ed8229da804a26"])));
    assert_eq!(seen["warninglisted"], json!({}), "no IDS value is on a warninglist");
    assert_eq!(seen["events"], 1);

    // the same task again, with one more request: the same event, edited, nothing twice
    let mut again = report.clone();
    again.network.http.push(Http {
        uri: "http://why.kunai.rocks/second".into(),
        method: "GET".into(),
        ..Default::default()
    });
    let Outcome::Sent { pushed: second, .. } =
        push::report_to_misp(&again, &cfg, Warninglists::embedded(), None).await.unwrap()
    else {
        panic!("sent")
    };
    assert!(!second.created);
    assert_eq!((second.id.as_str(), second.uuid.as_str()), (pushed.id.as_str(), pushed.uuid.as_str()));
    let seen2 = pymisp_view(&py, &url, &key, &pushed.uuid).await;
    assert_eq!(seen2["events"], 1, "never a second event");
    assert_eq!(seen2["attributes"].as_array().unwrap().len(), attrs.as_array().unwrap().len() + 1);
    assert!(has(&seen2["attributes"], json!(["url", "http://why.kunai.rocks/second", true, "Network activity"])));
    assert_eq!(seen2["objects"], seen["objects"]);

    // publish = true publishes the complete event, as a last step
    let publish = ReportingMisp { publish: true, ..cfg.clone() };
    let Outcome::Sent { pushed: third, .. } =
        push::report_to_misp(&again, &publish, Warninglists::embedded(), None).await.unwrap()
    else {
        panic!("sent")
    };
    assert!(third.published && !third.created);
    assert_eq!(pymisp_view(&py, &url, &key, &pushed.uuid).await["published"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_malscore_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = fixture::embedded_misp(dir.path(), Role::User).await;
    let cfg = ReportingMisp { min_malscore: 5.0, ..config(&url, &key) };
    let out = push::report_to_misp(&fixture(), &cfg, Warninglists::embedded(), None).await.unwrap();
    assert!(matches!(out, Outcome::Skipped(s) if s.score == 3.2));
    assert!(events(&url, &key).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_leaves_nothing_in_misp_and_the_error_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = fixture::embedded_misp(dir.path(), Role::User).await;
    let cfg = config(&url, &key);
    let mut built = event::build(&fixture(), &cfg, Warninglists::embedded(), None, "test-sandbox").unwrap();
    // one attribute MISP refuses, after many it accepts
    let mut bad: Attribute = built.event.attributes[0].clone();
    bad.kind = "ip-dst";
    bad.value = "not-an-ip".into();
    bad.uuid = event::derived_uuid(&built.event.uuid, "bad");
    built.event.attributes.push(bad);
    let client = cfg.connection().client().unwrap();
    // (the store answers 403 like MISP does for a refused event; telling that from a bad key is intel's diagnosis)
    let e = push::push(&client, &built, false).await.unwrap_err();
    assert!(matches!(e, PushError::Client { step, .. } if step.contains("events/add")), "{e}");
    assert!(events(&url, &key).await.is_empty(), "nothing half-written stays");

    // a bad key: the report keeps the error, the analysis goes on
    let mut report = fixture();
    let wrong = ReportingMisp { apikey: "x".repeat(40), ..cfg.clone() };
    push::after_detonation(&mut report, &wrong, None).await;
    let msg = report.misp_error.clone().unwrap();
    assert!(msg.contains("authentication failed") && msg.contains("to-misp --task 42"), "{msg}");
    // unreachable MISP
    let down = ReportingMisp { url: "http://127.0.0.1:9".into(), ..cfg.clone() };
    push::after_detonation(&mut report, &down, None).await;
    let msg = report.misp_error.clone().unwrap();
    assert!(msg.contains("cannot connect") && msg.contains("127.0.0.1:9"), "{msg}");
    assert!(serde_json::to_value(&report).unwrap()["misp_error"].as_str().is_some(), "kept in report.json");
    // no key at all says how to make one
    let nokey = ReportingMisp { apikey: String::new(), ..cfg.clone() };
    push::after_detonation(&mut report, &nokey, None).await;
    assert!(report.misp_error.as_deref().unwrap().contains("ioclab misp keys create"));
    assert!(events(&url, &key).await.is_empty());
    // once MISP works, the error goes away
    push::after_detonation(&mut report, &cfg, None).await;
    assert_eq!(report.misp_error, None);
    assert_eq!(events(&url, &key).await.len(), 1);
    // disabled: nothing is sent, nothing recorded
    let mut untouched = fixture();
    push::after_detonation(&mut untouched, &ReportingMisp { enabled: false, ..down }, None).await;
    assert_eq!(untouched.misp_error, None);
}

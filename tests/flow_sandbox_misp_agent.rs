//! The whole flow of the appliance in one live test, each stage's artifact
//! checked: a script sample detonated in the embedded sandbox (`ioclab
//! sandbox run`) → an event in the embedded MISP (`ioclab sandbox to-misp`)
//! → read back with PyMISP (unpublished, tagged, the expected attributes, no
//! warninglisted value) → published with PyMISP → `ioclab misp export` →
//! `ioclab agent` loaded with those IoCs → the same script run on the host
//! raises `execve_script` (its hash), `dns_query` (its domain) and `connect`
//! (its C2 address) detections.
//!
//! On the host the script runs in a network namespace of its own holding the
//! sandbox's fake internet (every address local, the resolver answering the
//! test's record), so its traffic never leaves the machine either time.
//! Needs root, eBPF and namespaces: under `CI=true` it fails when it cannot
//! run, elsewhere it says why and skips.

mod common;
#[path = "../sandbox/tests/common/mod.rs"]
mod sandbox_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{in_ci, ioclab, misp_config, misp_key, misp_serve, output, Reaped};
use ioclab_sandbox::detonation::{DnsRecord, DnsRecordData};
use ioclab_sandbox::fakenet::{FakeNet, FakeNetConfig, DEFAULT_SINK_V4};
use sandbox_common::{digest, leftovers, processes_with};
use serde_json::Value;

/// The C2 the sample connects to by address: on no shipped warninglist, so it
/// must travel the whole way.
const C2_IP: &str = "91.219.236.18";
/// The resolver the sample asks by address (TEST-NET-2: warninglisted, like
/// the sandbox's sink address its name resolves to there).
const RESOLVER: &str = "198.51.100.53";
/// The tag the sandbox puts on its events.
const TAG: &str = "ioclab:flow-test";

/// Prints why and returns false outside CI; fails under CI.
fn cannot_run(reason: &str) -> bool {
    assert!(!in_ci(), "CI=true and the flow test cannot run: {reason}");
    eprintln!("SKIPPED (not in CI): {reason}");
    false
}

/// The venv's Python with PyMISP (scripts/setup.sh makes it).
fn pymisp_python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = Command::new(&py).args(["-c", "import pymisp"]).status().is_ok_and(|s| s.success());
    (ok || cannot_run("PyMISP is not in .venv; run scripts/setup.sh")).then_some(py)
}

/// Reads back (and with `publish`, first publishes) the one event tagged
/// [`TAG`], as PyMISP parses it.
const PYMISP: &str = r#"
import json, sys
from pymisp import PyMISP
url, key, tag, action = sys.argv[1:5]
misp = PyMISP(url, key, ssl=False)
found = misp.search_index(tags=[tag])
if not isinstance(found, list) or len(found) != 1:
    sys.exit(f"expected one event tagged {tag}, got {found}")
uuid = found[0]["uuid"]
if action == "publish":
    answer = misp.publish(uuid)
    if "errors" in answer:
        sys.exit(f"publish: {answer}")
event = misp.get_event(uuid, pythonify=True)
def attribute(a):
    return {"type": a.type, "value": a.value, "to_ids": a.to_ids, "category": a.category}
attributes = [attribute(a) for a in event.attributes]
for o in event.objects:
    attributes += [dict(attribute(a), object=o.name) for a in o.attributes]
print(json.dumps({"uuid": event.uuid, "info": event.info, "published": event.published,
                  "tags": [t.name for t in event.tags], "attributes": attributes}))
"#;

fn pymisp(py: &Path, url: &str, key: &str, action: &str) -> Value {
    let (code, out, err) = output(Command::new(py).args(["-c", PYMISP, url, key, TAG, action]));
    assert_eq!(code, 0, "PyMISP {action}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Whether `event` holds an attribute of `kind` whose value is `value`.
fn has(event: &Value, kind: &str, value: &str) -> bool {
    event["attributes"].as_array().unwrap().iter().any(|a| a["type"] == kind && a["value"] == value)
}

/// The first event of the agent's output that `pred` accepts, running the
/// sample (in `net`'s namespace) again until it comes.
fn wait_event(events: &Path, what: &str, mut rerun: impl FnMut(), pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(events).unwrap_or_default();
        if let Some(v) = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| pred(v)) {
            return v;
        }
        assert!(Instant::now() < deadline, "no {what} event in the agent's output");
        rerun();
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[test]
fn a_sample_travels_from_the_sandbox_through_misp_to_a_detection_on_the_host() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 && !cannot_run("not root: the sandbox and the agent need eBPF and namespaces") {
        return;
    }
    let Some(py) = pymisp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let marker = format!("flow{}x{nanos}", std::process::id());
    let domain = format!("c2-{marker}.ioclab-flow.net");
    let sample = dir.path().join("flow-dropper.sh");
    std::fs::write(
        &sample,
        format!(
            "#!/bin/sh\n# ioclab flow sample {marker}\n\
             dig +short +time=2 +tries=1 @{RESOLVER} {domain} A\n\
             curl -s -m 5 -o /dev/null http://{C2_IP}/beacon\n\
             exit 0\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&sample, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (md5, sha1, sha256) = (digest("md5sum", &sample), digest("sha1sum", &sample), digest("sha256sum", &sample));
    let sink = DEFAULT_SINK_V4.to_string();

    // 1. the sandbox: report with the sample's hashes and its network activity
    let analysis = dir.path().join("analysis");
    let child = ioclab()
        .args(["sandbox", "run", "--timeout", "30", "-o"])
        .arg(&analysis)
        .arg(&sample)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sandbox_pid = child.id();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    if !done.status.success() && err.contains("cannot detonate on this machine") && !cannot_run(&err) {
        return;
    }
    assert!(done.status.success(), "ioclab sandbox run: {err}");
    let report_path = analysis.join("reports/report.json");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let file = &report["target"]["file"];
    assert_eq!((file["md5"].as_str(), file["sha1"].as_str()), (Some(md5.as_str()), Some(sha1.as_str())));
    assert_eq!(file["sha256"], sha256.as_str());
    assert_eq!(file["name"], "flow-dropper.sh");
    let domains = report["network"]["domains"].as_array().unwrap();
    assert!(
        domains.iter().any(|d| d["domain"] == domain.as_str() && d["ip"] == sink.as_str()),
        "the fake resolver answered the name with its sink: {domains:?}"
    );
    assert!(strs(&report["network"]["hosts"]).contains(&C2_IP), "{}", report["network"]);
    let beacon = format!("http://{C2_IP}/beacon");
    assert!(report["network"]["http"].as_array().unwrap().iter().any(|h| h["uri"] == beacon.as_str()));
    assert!(leftovers(sandbox_pid, None).is_empty(), "the task left: {:?}", leftovers(sandbox_pid, None));

    // 2. the embedded MISP: the sandbox's `user` key adds, an analyst's `publisher` key publishes
    let db = dir.path().join("misp.db");
    let sandbox_key = misp_key(&db, "sandbox@lab.example", "user");
    let analyst_key = misp_key(&db, "analyst@lab.example", "publisher");
    let (misp, url) = misp_serve(&db);
    let toml = dir.path().join("sandbox.toml");
    std::fs::write(
        &toml,
        format!(
            "[reporting.misp]\nenabled = true\nurl = \"{url}\"\napikey = \"{sandbox_key}\"\n\
             tag = \"{TAG}\"\nmode = \"ipaddr hashes url\"\n"
        ),
    )
    .unwrap();
    let (code, out, err) = output(ioclab().args(["sandbox", "to-misp", "-c"]).arg(&toml).arg(&report_path));
    assert_eq!(code, 0, "ioclab sandbox to-misp: {out}{err}");
    assert!(out.contains("added (unpublished, for review)"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with(&format!("ip-dst {sink}: on warninglist"))),
        "the warninglisted sink is listed as left out: {out}"
    );

    // 3. PyMISP reads it back: unpublished, tagged, the IoCs, nothing warninglisted
    let event = pymisp(&py, &url, &sandbox_key, "read");
    assert_eq!(event["published"], false, "{event}");
    assert!(strs(&event["tags"]).contains(&TAG), "{event}");
    assert_eq!(event["info"], "Cuckoo Sandbox analysis #1");
    for (kind, value) in [
        ("filename|md5", format!("flow-dropper.sh|{md5}")),
        ("filename|sha1", format!("flow-dropper.sh|{sha1}")),
        ("filename|sha256", format!("flow-dropper.sh|{sha256}")),
        ("domain", domain.clone()),
        ("ip-dst", C2_IP.to_string()),
        ("url", beacon.clone()),
    ] {
        assert!(has(&event, kind, &value), "no {kind} {value} in {event}");
    }
    for a in event["attributes"].as_array().unwrap() {
        let v = a["value"].as_str().unwrap();
        assert!(!v.contains(&sink) && !v.contains(RESOLVER), "a warninglisted value went to MISP: {a}");
        if a["type"] != "comment" && a["type"] != "text" {
            assert_eq!(a["to_ids"], true, "IoCs carry the IDS flag: {a}");
        }
    }

    // 4. published by the analyst, with PyMISP
    let published = pymisp(&py, &url, &analyst_key, "publish");
    assert_eq!(published["published"], true, "{published}");
    assert_eq!(published["uuid"], event["uuid"]);

    // 5. the export: one line per IoC of the event, none warninglisted
    let iocs = dir.path().join("iocs.json");
    let cfg = misp_config(dir.path(), &url, &analyst_key);
    let (code, _, err) = output(ioclab().args(["misp", "export", "-c"]).arg(&cfg).arg("-o").arg(&iocs));
    assert_eq!(code, 0, "ioclab misp export: {err}");
    let lines: Vec<Value> =
        std::fs::read_to_string(&iocs).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let exported = |kind: &str, value: &str| lines.iter().any(|l| l["type"] == kind && l["value"] == value);
    for (kind, value) in
        [("md5", md5.as_str()), ("sha1", &sha1), ("sha256", &sha256), ("domain", &domain), ("ip-dst", C2_IP)]
    {
        assert!(exported(kind, value), "no {kind} {value} exported: {lines:?}");
    }
    assert!(lines.iter().all(|l| l["event_uuid"] == event["uuid"]), "{lines:?}");
    assert!(lines.iter().all(|l| l["value"] != sink.as_str() && l["value"] != RESOLVER), "{lines:?}");

    // 6. the agent with those IoCs; the same script on the host, inside its own fake internet
    let events = dir.path().join("events.json");
    let mut agent = Reaped(
        ioclab()
            .args(["agent", "-i"])
            .arg(&iocs)
            .arg("-o")
            .arg(&events)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_event(&events, "start", || {}, |e| e["info"]["event"]["name"] == "start");
    let records = vec![DnsRecord { name: domain.clone(), data: DnsRecordData::A(C2_IP.parse().unwrap()) }];
    let net = FakeNet::start(FakeNetConfig { records, ..FakeNetConfig::default() }).expect("a network namespace");
    let rerun = || {
        let mut cmd = Command::new(&sample);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        net.netns().command(&mut cmd);
        assert!(cmd.status().unwrap().success());
    };
    rerun();
    let named = |name: &'static str| move |e: &Value| e["info"]["event"]["name"] == name && !e["detection"].is_null();
    let script = wait_event(&events, "execve_script", rerun, |e| {
        named("execve_script")(e) && e["data"]["exe"]["sha256"] == sha256.as_str()
    });
    assert_eq!(script["data"]["exe"]["path"], sample.to_str().unwrap());
    assert!(strs(&script["detection"]["iocs"]).contains(&sha256.as_str()), "{script}");
    let dns =
        wait_event(&events, "dns_query", rerun, |e| named("dns_query")(e) && e["data"]["query"] == domain.as_str());
    assert!(strs(&dns["data"]["response"]).contains(&C2_IP), "answered by the namespace's resolver: {dns}");
    assert!(strs(&dns["detection"]["iocs"]).contains(&domain.as_str()), "{dns}");
    let connect = wait_event(&events, "connect", rerun, |e| named("connect")(e) && e["data"]["dst"]["ip"] == C2_IP);
    assert_eq!(connect["data"]["dst"]["port"], 80);
    assert!(strs(&connect["detection"]["iocs"]).contains(&C2_IP), "{connect}");

    // the host run's traffic stayed in the namespace: its resolver and sink saw it
    let netns = format!("net:[{}]", sandbox_common::ns_inode(net.netns().fd()));
    let seen = net.stop();
    assert!(seen.dns.iter().any(|q| q.name == domain), "{:?}", seen.dns);
    assert!(seen.tcp.iter().any(|f| f.dst.to_string() == format!("{C2_IP}:80")), "{:?}", seen.tcp);

    // 7. nothing left: the agent, the MISP, the sample's processes
    let pids: Vec<u64> = [&script, &dns, &connect].iter().filter_map(|e| e["info"]["task"]["tgid"].as_u64()).collect();
    // SAFETY: kill(2) on the agent we started.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    assert!(agent.wait().unwrap().success(), "the agent stops cleanly on SIGTERM");
    let (agent_pid, misp_pid) = (agent.id(), misp.id());
    drop((agent, misp));
    for pid in pids.iter().copied().chain([agent_pid as u64, misp_pid as u64]) {
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || reused_by_another(pid), "pid {pid} is still running");
    }
    assert!(processes_with(&marker).is_empty(), "{:?}", processes_with(&marker));
    // the namespace went with its fd (no /run/netns mount was ever made)
    let held: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == netns))
        .collect();
    assert!(held.is_empty(), "this test still holds {netns}");
}

/// Whether `pid` was reused by a process that is not ours (pids are recycled).
fn reused_by_another(pid: u64) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd);
    !(cmd.contains("ioclab") || cmd.contains("flow-dropper") || cmd.contains("dig") || cmd.contains("curl"))
}

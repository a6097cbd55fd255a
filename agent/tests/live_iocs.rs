//! Live IoC matching: IoCs loaded, a real process matches, only matches are written.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Runs /bin/true, then `script`, each to its end; their pids.
fn true_then(script: &std::path::Path) -> (u32, u32) {
    let run = |cmd: &mut Command| {
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        child.wait_with_output().unwrap();
        pid
    };
    (run(&mut Command::new("/bin/true")), run(&mut Command::new(script)))
}

#[test]
fn script_sha256_ioc_detects_execve_script_and_filters_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "dropper.sh", "exit 0");
    let sha = digest("sha256sum", &s);
    let iocs = dir.path().join("iocs.json");
    std::fs::write(
        &iocs,
        format!(
            "{{\"uuid\":\"u1\",\"source\":\"test\",\"value\":\"{sha}\",\"severity\":4}}\n\
             not json at all\n\
             {{\"uuid\":\"u2\",\"source\":\"test\",\"value\":\"{}\",\"severity\":8}}\n",
            s.display()
        ),
    )
    .unwrap();
    let mut c = config();
    c.scanner.iocs = vec![iocs];
    let Some(agent) = start(c) else { return };

    // /bin/true is not an IoC: it must not be written
    let (true_pid, pid) = true_then(&s);

    let ev = agent.wait_for("detected execve_script", is("execve_script", pid));
    let det = &ev["detection"];
    let mut iocs: Vec<&str> = det["iocs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    iocs.sort();
    let mut want = vec![sha.as_str(), s.to_str().unwrap()];
    want.sort();
    assert_eq!(iocs, want, "both the hash and the path matched");
    assert_eq!(det["severity"], 10, "4 + 8 capped at 10");

    let (_, events) = agent.stop();
    let problems = events.iter().find(|e| name(e) == "error").expect("the bad line is reported as an event");
    let message = problems["data"]["message"].as_str().unwrap();
    assert!(message.contains("1 bad line") && message.contains("iocs.json:2:"), "{message}");
    for e in &events {
        let n = name(e);
        assert!(
            n == "start" || n == "error" || !e["detection"].is_null(),
            "only matching events are written with IoCs loaded, got {n}: {e}"
        );
        assert_ne!(tgid(e), true_pid as i64, "/bin/true matched nothing");
    }
}

#[test]
fn min_severity_and_reload_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "later.sh", "exit 0");
    let marker = script(dir.path(), "marker.sh", "exit 0 # marker: other content, other hash");
    let sha = digest("sha256sum", &s);
    let iocs = dir.path().join("iocs.json");
    // severity 2 is below min_severity 3: not written; the marker (severity 3) is
    let marker_line =
        format!("{{\"uuid\":\"m\",\"source\":\"t\",\"value\":\"{}\",\"severity\":3}}\n", marker.display());
    std::fs::write(
        &iocs,
        format!("{{\"uuid\":\"a\",\"source\":\"t\",\"value\":\"{sha}\",\"severity\":2}}\n{marker_line}"),
    )
    .unwrap();
    let mut c = config();
    c.scanner.iocs = vec![iocs.clone()];
    c.scanner.min_severity = 3;
    let Some(agent) = start(c) else { return };
    let child = Command::new(&s).spawn().unwrap();
    let first = child.id();
    child.wait_with_output().unwrap();
    // once the marker (run after) is written, the first run has been matched with the first IoC set
    let m = Command::new(&marker).spawn().unwrap();
    let marker_pid = m.id();
    m.wait_with_output().unwrap();
    agent.wait_for("marker detection", is("execve_script", marker_pid));

    std::fs::write(&iocs, format!("{{\"uuid\":\"b\",\"source\":\"t\",\"value\":\"{sha}\",\"severity\":5}}\n")).unwrap();
    agent.control.reload.store(true, std::sync::atomic::Ordering::Relaxed);
    // the reload runs in the background: run the script until a run is detected
    let deadline = Instant::now() + Duration::from_secs(10);
    let detected = loop {
        let child = Command::new(&s).spawn().unwrap();
        let pid = child.id();
        child.wait_with_output().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if let Some(e) = agent.events().into_iter().find(|e| is("execve_script", pid)(e)) {
            break e;
        }
        assert!(Instant::now() < deadline, "reloaded IoC never matched");
    };
    assert_eq!(detected["detection"]["severity"], 5);
    let (_, events) = agent.stop();
    assert!(!events.iter().any(|e| tgid(e) == first as i64), "severity 2 < min_severity 3 was written");
}

#[test]
fn write_unmatched_writes_the_events_matching_nothing_too_with_their_matches() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "watched.sh", "exit 0");
    let sha = digest("sha256sum", &s);
    let iocs = dir.path().join("iocs.json");
    std::fs::write(&iocs, format!("{{\"uuid\":\"u1\",\"source\":\"test\",\"value\":\"{sha}\",\"severity\":4}}\n"))
        .unwrap();
    let mut c = config();
    c.scanner.iocs = vec![iocs];
    c.scanner.write_unmatched = true;
    let Some(agent) = start(c) else { return };
    let (true_pid, pid) = true_then(&s);
    let ev = agent.wait_for("detected execve_script", is("execve_script", pid));
    assert_eq!(ev["detection"]["iocs"][0], sha.as_str(), "still matched");
    let plain = agent.wait_for("/bin/true's execve", is("execve", true_pid));
    assert!(plain["detection"].is_null(), "written without a detection: {plain}");
    agent.stop();
}

//! Live: a consumer that taps a cgroup (the sandbox) gets that cgroup's
//! events, and the endpoint output does not.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The cgroup v2 hierarchy: the whole tree (pure v2) or its `unified` mount (hybrid).
fn cgroup2_root() -> PathBuf {
    let root = PathBuf::from("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        root
    } else {
        root.join("unified")
    }
}

/// A v2 cgroup of the test's own, removed when dropped.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_tapped_cgroup_goes_to_its_tap_only() {
    let Some(agent) = start(config()) else { return };
    let cg = TestCgroup(cgroup2_root().join(format!("ioclab-tap-test-{}", std::process::id())));
    std::fs::create_dir(&cg.0).expect("a cgroup v2 folder");
    let tap = agent.control.taps.subscribe(std::fs::metadata(&cg.0).unwrap().ino());

    // a child joins the cgroup, then runs a program: both are the tap's
    let procs = cg.0.join("cgroup.procs");
    let tapped = in_child(move || {
        std::fs::write(&procs, "0").unwrap();
        let status = Command::new("/bin/true").status().unwrap();
        assert!(status.success());
    });
    // the same program outside the cgroup goes to the endpoint output
    let free = Command::new("/bin/true").spawn().unwrap();
    let free_pid = free.id();
    free.wait_with_output().unwrap();
    agent.wait_for("execve of the untapped /bin/true", is("execve", free_pid));

    // an execve waits for its file's hashes, and may come after the exits behind it
    let mut lines: Vec<Value> = Vec::new();
    let done = |lines: &[Value]| {
        lines.iter().any(|e| name(e) == "exit_group" && tgid(e) == tapped as i64)
            && lines.iter().any(|e| name(e) == "execve")
    };
    while let Some(l) = tap.recv_timeout(Duration::from_secs(10)) {
        lines.push(serde_json::from_str(&l).unwrap());
        if done(&lines) {
            break;
        }
    }
    let exec = lines.iter().find(|e| name(e) == "execve").expect("the tapped child's execve, on the tap");
    assert_eq!(exec["data"]["exe"]["path"], realpath("/bin/true").to_str().unwrap());
    assert_eq!(exec["info"]["parent_task"]["tgid"], tapped);
    assert!(lines.iter().all(|e| tgid(e) != free_pid as i64), "the untapped process is not on the tap");

    let (_, out) = agent.stop();
    let leaked: Vec<&Value> = out
        .iter()
        .filter(|e| tgid(e) == tapped as i64 || e["info"]["parent_task"]["tgid"] == tapped)
        .filter(|e| name(e) != "clone") // the fork happened before the child joined the cgroup
        .collect();
    assert!(leaked.is_empty(), "tapped events reached the endpoint output: {leaked:?}");
}

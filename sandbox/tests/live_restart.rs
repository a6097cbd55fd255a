//! A server killed mid-task leaves nothing running, and the next start
//! removes its cgroups and mounts.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ioclab_agent::sensor::tap::Taps;
use ioclab_sandbox::runner::{Sandbox, SandboxConfig, SensorSource};
use ioclab_sandbox::Detonator;

const MARK: &str = "sleep 7781";
const HELPER_ENV: &str = "IOCLAB_SANDBOX_KILL_HELPER";

/// No sensor: this test is about isolation and cleanup, not events.
fn no_sensor() -> SandboxConfig {
    SandboxConfig {
        sensor: SensorSource::Shared { taps: Taps::default(), roots: Default::default() },
        ..Default::default()
    }
}

/// Run by `a_server_killed_mid_task_leaves_nothing` in a child process: a
/// detonation that lasts until that process is killed.
#[test]
#[ignore = "helper, run by a_server_killed_mid_task_leaves_nothing"]
fn helper_detonates_until_killed() {
    if std::env::var(HELPER_ENV).is_err() {
        return;
    }
    let sb = Sandbox::new(no_sensor()).expect("sandbox");
    let dir = tempfile::tempdir().unwrap();
    let job = job(777, dir.path(), "long.sh", &format!("#!/bin/sh\n{MARK}\n"), 600);
    let _ = sb.detonate(&job, &dir.path().join("task"));
    panic!("the detonation should have been killed");
}

fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_killed_mid_task_leaves_nothing() {
    if !can_isolate() {
        return;
    }
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_detonates_until_killed", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = helper.id();
    wait("the sample running", || !processes_with(MARK).is_empty());
    assert!(!leftovers(pid, None).is_empty(), "the task has a cgroup and a staging mount while it runs");

    helper.kill().unwrap(); // SIGKILL: no destructor runs
    helper.wait().unwrap();
    // the keeper dies with the server's thread, the namespace's init with the keeper
    wait("the sample gone", || processes_with(MARK).is_empty());
    let left = leftovers(pid, None);
    assert!(!left.is_empty(), "a killed server cannot clean up after itself");

    // the next start sweeps what the dead server left
    let _sb = Sandbox::new(no_sensor()).expect("sandbox");
    assert!(leftovers(pid, None).is_empty(), "{:?}", leftovers(pid, None));
}

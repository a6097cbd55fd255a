//! Shared by the live sandbox tests: one sandbox (one loaded sensor) for
//! the whole test binary, jobs, and the checks that nothing of a task is left.
//!
//! Under `CI=true` a test that cannot run (not root, no eBPF, no
//! namespaces) fails; elsewhere it prints why and skips.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ioclab_sandbox::detonation::{DnsRecord, DnsRecordData, Job, Target};
use ioclab_sandbox::runner::{Sandbox, SandboxConfig};

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Fails under CI, else prints why the test is skipped.
pub fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("CI=true and the sandbox cannot run: {reason}");
    }
    eprintln!("SKIPPED (not in CI): the sandbox cannot run here: {reason}");
}

/// The sandbox shared by the tests of this binary; `None` (after
/// [`skip_or_fail`]) when it cannot run here.
pub fn sandbox() -> Option<&'static Sandbox> {
    static SANDBOX: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    match SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).map_err(|e| e.to_string())) {
        Ok(s) => Some(s),
        Err(e) => {
            skip_or_fail(e);
            None
        }
    }
}

/// Whether this machine can make namespaces at all (for tests without the sensor).
pub fn can_isolate() -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("not root");
        return false;
    }
    true
}

/// A job running `sample` (written to `dir`) with the lab's DNS records.
pub fn job(task_id: u64, dir: &Path, name: &str, sample: &str, timeout_s: u64) -> Job {
    let path = dir.join(name);
    std::fs::write(&path, sample).unwrap();
    Job {
        task_id,
        target: Target::File { path, name: name.into() },
        args: Vec::new(),
        package: None,
        timeout_s,
        enforce_timeout: false,
        memory_bytes: 512 << 20,
        max_pids: 256,
        as_root: false,
        dns: vec![
            DnsRecord { name: "why.kunai.rocks".into(), data: DnsRecordData::CNAME("kunai-project.github.io".into()) },
            DnsRecord { name: "kunai-project.github.io".into(), data: DnsRecordData::A([127, 0, 66, 80].into()) },
        ],
        services: Vec::new(),
        options: Default::default(),
    }
}

/// Digest by coreutils (`sha256sum`...), not by ioclab.
pub fn digest(tool: &str, path: &Path) -> String {
    let out = std::process::Command::new(tool).arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) && !cmd.contains("cargo") && !cmd.contains("--exact") {
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

/// What is left of the tasks of server `pid` (task `task_id`, or all with `None`):
/// cgroups in every hierarchy, staging folders, mounts.
pub fn leftovers(pid: u32, task_id: Option<u64>) -> Vec<String> {
    let prefix = match task_id {
        Some(t) => format!("task-{pid}-{t}-"),
        None => format!("task-{pid}-"),
    };
    let mut left = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("/run/ioclab-sandbox")];
    for h in ["", "unified", "memory", "pids"] {
        dirs.push(Path::new("/sys/fs/cgroup").join(h).join("ioclab-sandbox"));
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                left.push(e.path().display().to_string());
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(mounts.lines().filter(|l| l.contains(&prefix)).map(|l| format!("mount: {l}")));
    left
}

/// The task's processes (tgids of its events) still alive in the task's
/// mount namespace (`info.task.namespaces.mnt` of the same events). Only
/// those pids are looked at: namespace inode numbers are reused at once by
/// the next namespace made (another test's task), pids are handed out in turn.
pub fn in_task_namespaces(events: &[String]) -> Vec<String> {
    let values: Vec<serde_json::Value> = events.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mine = std::fs::read_link("/proc/self/ns/mnt").unwrap().to_string_lossy().into_owned();
    let mut ns: Vec<String> = values
        .iter()
        .filter_map(|v| v["info"]["task"]["namespaces"]["mnt"].as_u64())
        .map(|i| format!("mnt:[{i}]"))
        .filter(|n| *n != mine)
        .collect();
    ns.sort_unstable();
    ns.dedup();
    assert!(!ns.is_empty(), "the task's events name its own mount namespace");
    let mut pids: Vec<u64> = values.iter().filter_map(|v| v["info"]["task"]["tgid"].as_u64()).collect();
    pids.sort_unstable();
    pids.dedup();
    let mut found = Vec::new();
    for pid in pids {
        if let Ok(l) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
            if ns.contains(&l.to_string_lossy().into_owned()) {
                found.push(format!("pid {pid} in {}", l.display()));
            }
        }
    }
    found
}

/// Whether any process or fd still holds network namespace `ino`.
pub fn netns_in_use(ino: u64) -> Vec<String> {
    let want = format!("net:[{ino}]");
    let mut users = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if std::fs::read_link(p.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == want) {
            users.push(format!("pid {}", p.file_name().to_string_lossy()));
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == want) {
                users.push(format!("fd {}", fd.path().display()));
            }
        }
    }
    users
}

/// The inode of the network namespace behind `fd`.
pub fn ns_inode(fd: std::os::fd::RawFd) -> u64 {
    // SAFETY: fstat of an open fd into a zeroed struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd, &mut st), 0);
        st.st_ino
    }
}

//! What a lab network may leave behind, as /proc shows it: shared by the
//! lab crate's live tests and `ioclab lab shell`'s (tests/lab_shell.rs).

#![allow(dead_code)] // each test file uses its own part

/// Whether `pid` runs (a zombie waiting for its reaper does not).
pub fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Live processes in namespace `link` (`net:[...]` or `mnt:[...]`, as
/// /proc/PID/ns/* reads), and open fds holding it.
pub fn ns_users(link: &str) -> Vec<String> {
    let mut users = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        let inside = ["ns/net", "ns/mnt"]
            .iter()
            .any(|ns| std::fs::read_link(p.path().join(ns)).is_ok_and(|l| l.to_string_lossy() == link));
        if inside && alive(&pid) {
            users.push(format!("pid {pid}"));
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == link) {
                users.push(format!("fd {}", fd.path().display()));
            }
        }
    }
    users
}

/// Whether this machine can make namespaces (root); under `CI=true` it must.
pub fn can_isolate() -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "CI=true and the lab network cannot run: not root");
    eprintln!("SKIPPED (not in CI): the lab network needs root");
    false
}

/// What a lab on `data` run by process `pid` may leave besides the
/// sandbox's tasks: processes working in its folders, mounts of it, the lab
/// network's files of that process, the lab's threads (of this process).
pub fn of_lab(data: &std::path::Path, pid: u32) -> Vec<String> {
    let mut left = Vec::new();
    let data = data.to_string_lossy().into_owned();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || !alive(&pid) {
            continue;
        }
        if std::fs::read_link(p.path().join("cwd")).is_ok_and(|c| c.to_string_lossy().starts_with(&data)) {
            left.push(format!("process {pid} works in {data}"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(mounts.lines().filter(|l| l.contains(&data)).map(|l| format!("mount {l}")));
    // the lab network's resolv.conf files of this process
    let own = format!("resolv-{pid}-");
    if let Ok(dir) = std::fs::read_dir("/run/ioclab-lab") {
        left.extend(
            dir.flatten()
                .filter(|f| f.file_name().to_string_lossy().starts_with(&own))
                .map(|f| format!("lab network file {}", f.path().display())),
        );
    }
    // the agent's and the runs' threads of this process
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with("ioclab-lab") || comm.starts_with("ioclab-run") || comm.starts_with("ioclab-reload") {
            left.push(format!("thread {}", comm.trim()));
        }
    }
    left
}

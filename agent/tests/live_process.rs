//! Live eBPF tests of the process sensor: real programs, real processes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::*;
use serde_json::Value;

fn me() -> u32 {
    std::process::id()
}

fn my_exe() -> String {
    std::env::current_exe().unwrap().to_str().unwrap().to_string()
}

fn assert_file_meta(meta: &Value, path: &std::path::Path) {
    assert_eq!(meta["path"], path.to_str().unwrap(), "{meta}");
    assert_eq!(meta["md5"], digest("md5sum", path));
    assert_eq!(meta["sha1"], digest("sha1sum", path));
    assert_eq!(meta["sha256"], digest("sha256sum", path));
    assert_eq!(meta["sha512"], digest("sha512sum", path));
    assert_eq!(meta["size"], std::fs::metadata(path).unwrap().len());
    assert!(meta["error"].is_null(), "{meta}");
}

#[test]
fn exec_of_true_gives_clone_execve_exit_group() {
    let Some(agent) = start(config()) else { return };
    let child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());

    let exec = agent.wait_for("execve of /bin/true", is("execve", pid));
    let clone = agent.wait_for("clone of /bin/true", is("clone", pid));
    let exit = agent.wait_for("exit_group of /bin/true", is("exit_group", pid));

    let truth = realpath("/bin/true");
    assert_eq!(exec["info"]["event"]["id"], 1);
    assert_eq!(exec["info"]["event"]["source"], "kunai");
    assert_file_meta(&exec["data"]["exe"], &truth);
    assert_eq!(exec["data"]["command_line"], "/bin/true");
    assert_eq!(exec["data"]["parent_exe"], my_exe());
    let ancestors = exec["data"]["ancestors"].as_str().unwrap();
    assert!(ancestors.ends_with(&my_exe()), "ancestors {ancestors:?} end with the test binary");
    assert_eq!(exec["info"]["task"]["pid"], pid);
    assert_eq!(exec["info"]["task"]["tgid"], pid);
    assert_eq!(exec["info"]["task"]["name"], "true");
    assert_eq!(exec["info"]["parent_task"]["tgid"], me());
    assert_eq!(exec["info"]["task"]["uid"], 0);

    assert_eq!(clone["info"]["event"]["id"], 6);
    assert_eq!(clone["info"]["parent_task"]["tgid"], me());
    let flags = clone["data"]["flags"].as_str().unwrap();
    let flags = u64::from_str_radix(flags.strip_prefix("0x").unwrap(), 16).unwrap();
    assert_eq!(flags & 0xff, 17, "exit signal SIGCHLD in the clone flags");
    assert_eq!(clone["data"]["exe"]["path"], my_exe(), "a fresh child runs its parent's executable");

    assert_eq!(exit["info"]["event"]["id"], 5);
    assert_eq!(exit["data"]["error_code"], 0);
    assert_eq!(exit["data"]["exe"]["path"], truth.to_str().unwrap());

    let guuid = &exec["info"]["task"]["guuid"];
    assert!(guuid.as_str().unwrap().len() == 36);
    assert_eq!(&clone["info"]["task"]["guuid"], guuid, "one guuid for the whole process");
    assert_eq!(&exit["info"]["task"]["guuid"], guuid);
    assert_ne!(&exec["info"]["parent_task"]["guuid"], guuid);

    let info = &exec["info"];
    for key in ["uuid", "name", "container"] {
        assert!(info["host"].get(key).is_some(), "info.host.{key}");
    }
    for key in ["source", "id", "name", "uuid", "batch"] {
        assert!(info["event"].get(key).is_some(), "info.event.{key}");
    }
    for task in ["task", "parent_task"] {
        for key in ["name", "pid", "tgid", "guuid", "uid", "gid", "namespaces", "flags", "zombie"] {
            assert!(info[task].get(key).is_some(), "info.{task}.{key}");
        }
        assert!(info[task]["namespaces"]["mnt"].as_u64().unwrap() > 0);
        assert!(info[task]["flags"].as_str().unwrap().starts_with("0x"));
    }
    let t = info["utc_time"].as_str().unwrap();
    assert!(t.len() == 30 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "RFC 3339 with ns: {t}");

    let start = agent.events().into_iter().next().unwrap();
    assert_eq!(name(&start), "start");
    assert_eq!(start["info"]["event"]["id"], 1101);
    let (summary, _) = agent.stop();
    assert_eq!(summary.lost, 0);
    assert!(summary.read >= 3);
}

#[test]
fn exit_codes_and_signals() {
    let Some(agent) = start(config()) else { return };
    let child = Command::new("/bin/sh").args(["-c", "exit 3"]).spawn().unwrap();
    let pid = child.id();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(3));
    let exit = agent.wait_for("exit_group with code 3", is("exit_group", pid));
    assert_eq!(exit["data"]["error_code"], 3);

    let mut sleeper = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let spid = sleeper.id();
    agent.wait_for("execve of sleep", is("execve", spid));
    sleeper.kill().unwrap();
    assert_eq!(sleeper.wait().unwrap().signal(), Some(9));
    let exit = agent.wait_for("exit_group of the killed sleep", is("exit_group", spid));
    assert_eq!(exit["data"]["error_code"], 128 + 9);
}

#[test]
fn shebang_script_gives_execve_script_with_both_files_hashed() {
    let Some(agent) = start(config()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "hello.sh", "exit 0");
    let child = Command::new(&s).arg("arg1").spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());

    let ev = agent.wait_for("execve_script", is("execve_script", pid));
    assert_eq!(ev["info"]["event"]["id"], 2);
    assert_file_meta(&ev["data"]["exe"], &s);
    assert_eq!(ev["data"]["exe"]["magic"], "text/x-shellscript");
    assert_file_meta(&ev["data"]["interpreter"], &realpath("/bin/sh"));
    assert_eq!(ev["data"]["command_line"], format!("/bin/sh {} arg1", s.display()));

    // a relative name is resolved against the working directory
    let child = Command::new("./hello.sh").current_dir(dir.path()).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let ev = agent.wait_for("execve_script by relative path", is("execve_script", pid));
    assert_eq!(ev["data"]["exe"]["path"], s.to_str().unwrap());
    let exit = agent.wait_for("exit_group of the script", is("exit_group", pid));
    assert_eq!(exit["data"]["exe"]["path"], s.to_str().unwrap(), "a script process is named by its script");
}

#[test]
fn fork_then_exec_chain_keeps_parents_and_ancestors() {
    let Some(agent) = start(config()) else { return };
    // sh forks a child for the first command (not the last, which it may exec in place)
    let child = Command::new("/bin/sh").args(["-c", "/bin/true; exit 7"]).spawn().unwrap();
    let sh = child.id();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(7));

    let sh_exec = agent.wait_for("execve of sh", is("execve", sh));
    let dash = realpath("/bin/sh");
    assert_eq!(sh_exec["data"]["exe"]["path"], dash.to_str().unwrap());
    let inner = agent
        .wait_for("execve of /bin/true under sh", |e| name(e) == "execve" && e["info"]["parent_task"]["tgid"] == sh);
    let inner_pid = tgid(&inner) as u32;
    assert_ne!(inner_pid, sh);
    assert_eq!(inner["data"]["parent_exe"], dash.to_str().unwrap());
    assert_eq!(inner["data"]["parent_command_line"], "/bin/sh -c /bin/true; exit 7");
    assert_eq!(
        inner["data"]["ancestors"],
        format!("{}|{}", sh_exec["data"]["ancestors"].as_str().unwrap(), dash.display())
    );
    assert_eq!(inner["info"]["parent_task"]["guuid"], sh_exec["info"]["task"]["guuid"]);

    let clone = agent.wait_for("clone of the inner child", is("clone", inner_pid));
    assert_eq!(clone["info"]["parent_task"]["tgid"], sh);
    assert_eq!(clone["data"]["exe"]["path"], dash.to_str().unwrap());
    let exit = agent.wait_for("exit_group of sh", is("exit_group", sh));
    assert_eq!(exit["data"]["error_code"], 7);
}

#[test]
fn disabled_events_are_not_written() {
    let mut c = config();
    c.events.get_mut("clone").unwrap().enable = false;
    let Some(agent) = start(c) else { return };
    let child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    child.wait_with_output().unwrap();
    agent.wait_for("exit_group", is("exit_group", pid));
    assert!(!agent.events().iter().any(|e| name(e) == "clone"), "clone is disabled");
}

#[test]
fn full_ring_buffer_is_reported_as_event_loss() {
    let mut c = config();
    // a ring of one exec record, drained once a second: a burst must overflow it
    c.max_buffered_events = 1;
    c.poll_interval_ms = 1000;
    c.wakeup_bytes = u64::MAX;
    let Some(agent) = start(c) else { return };
    for _ in 0..40 {
        Command::new("/bin/true").status().unwrap();
    }
    let loss = agent.wait_for("event_loss", |e| name(e) == "event_loss");
    assert_eq!(loss["info"]["event"]["id"], 1100);
    assert!(loss["data"]["lost"].as_u64().unwrap() > 0, "{loss}");
    let (summary, _) = agent.stop();
    assert!(summary.lost > 0);
}

#[test]
fn hashing_a_big_new_binary_does_not_stop_the_ring_being_read() {
    let mut c = config();
    for (name, switch) in c.events.iter_mut() {
        switch.enable = matches!(name.as_str(), "execve" | "clone" | "exit_group");
    }
    // a small ring (about 100 exec records): were it not read while the big
    // binary is hashed, the execs made meanwhile would overflow it
    c.max_buffered_events = 64;
    c.max_hash_size = 1 << 30;
    let Some(agent) = start(c) else { return };
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-true");
    std::fs::copy("/bin/true", &big).unwrap();
    // an ELF runs the same with data after it: 256 MB to hash, well over the budget, so the
    // hash lasts long enough for many execs even on a fast machine (sparse: no disk needed)
    std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(256 << 20).unwrap();
    let sha = digest("sha256sum", &big);
    let mut big_pids = vec![Command::new(&big).spawn().unwrap().id()];

    // exec until an execve of the big binary carries its hashes, i.e. all the while it is hashed
    let t0 = std::time::Instant::now();
    let mut n = 0;
    let hashed =
        |events: &[Value]| events.iter().any(|e| name(e) == "execve" && e["data"]["exe"]["sha256"] == sha.as_str());
    while !hashed(&agent.events()) {
        Command::new("/bin/true").status().unwrap();
        n += 1;
        if n % 50 == 0 {
            big_pids.push(Command::new(&big).spawn().unwrap().id());
        }
        // a loaded machine starves the hashing thread: generous, only a guard against hanging
        assert!(t0.elapsed().as_secs() < 300, "the big binary was never hashed");
    }
    let (summary, events) = agent.stop();
    let execs = events.iter().filter(|e| name(e) == "execve").count();
    assert!(execs > 150, "enough execs during the hash to overflow the ring: {execs} in {:?}", t0.elapsed());
    assert_eq!(summary.lost, 0, "no event lost while hashing ({execs} execs)");
    let first = events.iter().find(|e| is("execve", big_pids[0])(e)).unwrap();
    let error = first["data"]["exe"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("budget") || first["data"]["exe"]["sha256"] == sha.as_str(), "{first}");
}

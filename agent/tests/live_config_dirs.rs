//! Live read_config / write_config whatever name the process gave:
//! relative names, `..`, `//` into /etc are caught (decided on the opened
//! file), and the other configuration directories count too.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn path_is(kind: &'static str, path: String) -> impl Fn(&Value) -> bool {
    move |e| name(e) == kind && e["data"]["path"] == path.as_str()
}

/// Runs a shell script with `$1` = `arg`; returns the shell's pid.
fn sh(script: &str, arg: &str) -> u32 {
    let child = Command::new("/bin/sh").args(["-c", script, "sh", arg]).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{script} failed");
    pid
}

#[test]
fn config_files_by_relative_name_dotdot_and_odd_slashes() {
    // a directory of our own under /etc, removed at the end
    let etc = tempfile::Builder::new().prefix("ioclab-test-").tempdir_in("/etc").unwrap();
    let etc_dir = etc.path().to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_dir = realpath(tmp.path().to_str().unwrap());
    let conf = format!("{etc_dir}/rel.conf");
    let plain = tmp_dir.join("plain.txt");
    std::fs::write(&plain, "not configuration\n").unwrap();
    let Some(agent) = start(config()) else { return };

    // the shell writes by a relative name: the name says nothing of /etc
    let writer = sh("cd \"$1\" && echo a=1 > rel.conf && echo b=2 >> ./rel.conf", &etc_dir);
    let w = agent.wait_for("write_config by relative name", path_is("write_config", conf.clone()));
    assert_eq!(tgid(&w), writer as i64);
    assert_eq!(w["info"]["event"]["id"], 84);
    let created = agent.wait_for("file_create", path_is("file_create", conf.clone()));
    assert_eq!(tgid(&created), writer as i64);

    let dotdot = format!("/tmp/../{}", etc_dir.trim_start_matches('/'));
    let reader = sh("cat \"$1\"/rel.conf > /dev/null", &dotdot);
    let r = agent.wait_for("read_config through ..", |e| {
        path_is("read_config", conf.clone())(e) && e["info"]["parent_task"]["tgid"] == reader
    });
    assert_eq!(r["info"]["event"]["id"], 82);
    assert_eq!(r["info"]["task"]["name"], "cat");

    // a name the prefixes cannot judge ("//", "/./") is decided on the file
    let slashes = format!("/{}", etc_dir.replace('/', "//./"));
    let odd = sh("cat \"$1\"/rel.conf > /dev/null", &slashes);
    agent.wait_for("read_config by a name with // and /./", |e| {
        path_is("read_config", conf.clone())(e) && e["info"]["parent_task"]["tgid"] == odd
    });

    // a file elsewhere is no configuration (and read is off by default)
    let other = sh("cat \"$1\" > /dev/null", plain.to_str().unwrap());
    agent.wait_for("exit_group of the last cat", |e| {
        name(e) == "exit_group" && e["info"]["parent_task"]["tgid"] == other
    });

    // systemd units shipped by packages are configuration too (/usr/lib/systemd)
    let unit = std::fs::read_dir("/usr/lib/systemd/system")
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok().filter(|e| e.path().is_file())))
        .map(|e| e.path());
    if let Some(unit) = &unit {
        let dir = unit.parent().unwrap().to_str().unwrap();
        let file = unit.file_name().unwrap().to_str().unwrap();
        let pid = sh(&format!("cd \"$1\" && cat '{file}' > /dev/null"), dir);
        let want = realpath(unit.to_str().unwrap()).to_str().unwrap().to_string();
        agent.wait_for("read_config of a systemd unit", |e| {
            path_is("read_config", want.clone())(e) && e["info"]["parent_task"]["tgid"] == pid
        });
    } else {
        eprintln!("no /usr/lib/systemd/system on this machine: systemd part not checked");
    }

    let (_, events) = agent.stop();
    let plain = plain.to_str().unwrap();
    assert!(
        !events.iter().any(|e| e["data"]["path"] == plain),
        "a file outside the configuration directories made an event"
    );
    assert!(
        !events.iter().any(|e| name(e) == "write" && e["data"]["path"] == conf.as_str()),
        "a configuration write is write_config, not write"
    );
}

#[test]
fn ioc_on_a_configuration_path_detects_a_write_by_relative_name() {
    let etc = tempfile::Builder::new().prefix("ioclab-test-").tempdir_in("/etc").unwrap();
    let etc_dir = etc.path().to_str().unwrap().to_string();
    let conf = format!("{etc_dir}/implant.conf");
    let tmp = tempfile::tempdir().unwrap();
    let Some(agent) = start(with_ioc(config(), tmp.path(), &conf, 3)) else { return };

    let writer = sh("cd \"$1\" && echo evil=1 > implant.conf", &etc_dir);
    let w = agent.wait_for("detected write_config", path_is("write_config", conf.clone()));
    assert_eq!(tgid(&w), writer as i64);
    assert_eq!(w["detection"]["iocs"], serde_json::json!([conf]), "the path IoC matched");
    assert_eq!(w["detection"]["severity"], 3);
    let created = agent.wait_for("detected file_create", path_is("file_create", conf.clone()));
    assert_eq!(created["detection"]["severity"], 3);
    let (_, events) = agent.stop();
    assert!(
        // agent events (start, error, event_loss) are always written
        events.iter().all(|e| ["start", "error", "event_loss"].contains(&name(e)) || !e["detection"].is_null()),
        "with IoCs loaded only matching events are written"
    );
}

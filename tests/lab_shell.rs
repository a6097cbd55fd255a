//! `ioclab lab shell`: the lab network from the command line, live (network
//! and mount namespaces, so root). Under `CI=true` these fail when they
//! cannot run; elsewhere they print why and skip.

mod common;
#[path = "../lab/tests/common/leftovers.rs"]
mod leftovers;

use common::*;
use leftovers::{alive, can_isolate, ns_users};

const BLOG: [&str; 4] =
    ["--record", "why.kunai.rocks=CNAME:kunai-project.github.io", "--record", "kunai-project.github.io=A:127.0.66.80"];

fn shell(records: &[&str], command: &str) -> (i32, String, String) {
    let mut args = vec!["lab", "shell"];
    args.extend_from_slice(records);
    args.extend_from_slice(&["-c", command]);
    run(&args)
}

#[test]
fn dig_sees_the_blogs_records_offline_and_other_names_get_the_sink() {
    if !can_isolate() {
        return;
    }
    let (code, out, err) =
        shell(&BLOG, "dig +short +time=3 +tries=1 why.kunai.rocks && dig +short +time=3 +tries=1 unknown.example");
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["kunai-project.github.io.", "127.0.66.80", "192.0.2.1"],
        "{err}"
    );
    // the banner says where we are and how to leave; the summary what was asked
    assert!(err.contains("why.kunai.rocks CNAME kunai-project.github.io"), "{err}");
    assert!(err.contains("nothing leaves this machine"), "{err}");
    assert!(err.contains("dns  why.kunai.rocks A -> kunai-project.github.io, 127.0.66.80"), "{err}");
    assert!(err.contains("dns  unknown.example A -> 192.0.2.1"), "{err}");
}

#[test]
fn the_commands_status_is_the_exit_status_and_resolv_conf_is_the_labs() {
    if !can_isolate() {
        return;
    }
    let (code, out, err) = shell(&[], "grep -c '^nameserver 127.0.0.53$' /etc/resolv.conf; exit 7");
    assert_eq!(code, 7, "{out}\n{err}");
    assert_eq!(out.trim(), "1", "only the lab resolver: {err}");
    // the host's resolv.conf is untouched (the lab's is a private mount)
    assert!(!std::fs::read_to_string("/etc/resolv.conf").unwrap().contains("ioclab fake internet"));
}

#[test]
fn a_public_address_lands_in_the_sink_and_a_host_listener_gets_nothing() {
    if !can_isolate() {
        return;
    }
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let script = format!(
        "curl -s -m 5 -H 'Host: c2.example' http://198.51.100.7:443/beacon; echo \" curl=$?\"; \
         curl -s -m 5 http://127.0.0.1:{port}/; echo \" host=$?\""
    );
    let (code, out, err) = shell(&[], &script);
    assert_eq!(code, 0, "{out}\n{err}");
    // the sink on 443 answered (it speaks HTTP to an HTTP client) inside the namespace
    assert!(out.contains("curl=0"), "{out}\n{err}");
    assert!(err.contains("tcp  198.51.100.7:") && err.contains("-> 198.51.100.7:443"), "{err}");
    assert!(err.contains("http GET http://c2.example/beacon (to 198.51.100.7:443)"), "{err}");
    // 127.0.0.1 inside is the namespace's own: refused there, logged, never seen by the host
    assert!(out.contains("host=7"), "connection refused inside: {out}");
    assert!(err.contains(&format!("refused 127.0.0.1:{port}")), "{err}");
    assert!(
        matches!(host.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host listener got a connection"
    );
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) && !cmd.contains("ioclab") && !cmd.contains("cargo") {
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

fn lab_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains("ioclab-lab")).count()
}

#[test]
fn nothing_is_left_after_exit_not_even_a_detached_background_process() {
    if !can_isolate() {
        return;
    }
    let marker = "31415926";
    let mounts_before = lab_mounts();
    // a process that leaves the shell's session and outlives it, as malware would
    let (code, out, err) = shell(
        &[],
        &format!("readlink /proc/self/ns/net /proc/self/ns/mnt; echo $PPID; setsid sleep {marker} </dev/null >/dev/null 2>&1 & echo $!"),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let (net, mnt, ioclab, bg) = (lines[0], lines[1], lines[2], lines[3]);
    assert!(net.starts_with("net:[") && mnt.starts_with("mnt:["), "{out}");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(net, host_net.to_string_lossy(), "the shell ran in its own network namespace");

    assert!(!alive(bg), "the background process {bg} is left");
    assert!(processes_with(marker).is_empty(), "{:?}", processes_with(marker));
    assert!(ns_users(net).is_empty(), "{net}: {:?}", ns_users(net));
    assert!(ns_users(mnt).is_empty(), "{mnt}: {:?}", ns_users(mnt));
    assert_eq!(lab_mounts(), mounts_before, "a lab mount is left on the host");
    let left: Vec<_> = std::fs::read_dir("/run/ioclab-lab")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|f| !f.starts_with(&format!("resolv-{ioclab}-"))), "{left:?}");
}

#[test]
fn bad_records_are_refused_with_the_argument_named() {
    let (code, _, err) = run(&["lab", "shell", "--record", "why.kunai.rocks=MX:mail.example", "-c", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("why.kunai.rocks=MX:mail.example") && err.contains("\"MX\" is not one of A, AAAA, CNAME"),
        "{err}"
    );
}

/// A scenario folder `<dir>/<id>` with the blog's network, an HTTP sink and a C2.
fn write_scenario(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    let folder = dir.join(id);
    std::fs::create_dir_all(&folder).unwrap();
    let sample = b"#!/bin/sh\n# harmless lab sample\ndig +short why.kunai.rocks\n";
    std::fs::write(folder.join("sample.sh"), sample).unwrap();
    let out = std::process::Command::new("sha256sum").arg(folder.join("sample.sh")).output().unwrap();
    let sha = String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string();
    let yaml = format!(
        "id: {id}
uuid: 0b7f4a52-53d1-4a8e-9a53-2f1d54e0c0de
version: 1
title: The lab network of a scenario
level: beginner
duration_minutes: 5
license: CC-BY-4.0
attack: [T1071.004]
story: A test scenario.
objectives: [Resolve a name offline.]
network:
  dns:
    - {{name: why.kunai.rocks, type: CNAME, value: kunai-project.github.io}}
    - {{name: kunai-project.github.io, type: A, value: 127.0.66.80}}
  services:
    - {{id: web, kind: http_sink, address: 127.0.66.80, port: 80}}
    - {{id: c2, kind: c2, address: 127.0.66.81, port: 4444}}
sample:
  file: sample.sh
  sha256: {sha}
  sandbox: embedded
expect:
  iocs:
    - value: why.kunai.rocks
"
    );
    std::fs::write(folder.join("scenario.yaml"), yaml).unwrap();
    folder
}

#[test]
fn a_scenario_id_gives_its_records_and_services() {
    if !can_isolate() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_scenario(&dir.path().join("lab-scenarios"), "lab-net-test");
    // by id, from the folder holding lab-scenarios/
    let script = "dig +short +time=3 +tries=1 why.kunai.rocks; curl -s -m 5 http://why.kunai.rocks/; \
                  exec 3<>/dev/tcp/127.0.66.81/4444; echo hello-c2 >&3; sleep 0.2";
    let (code, out, err) =
        output(ioclab().current_dir(dir.path()).args(["lab", "shell", "lab-net-test", "-c", script]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("kunai-project.github.io.\n127.0.66.80\n"), "{out}");
    assert!(out.contains("ioclab lab: lab-net-test"), "the scenario's HTTP sink answered: {out}");
    assert!(err.contains("127.0.66.81:4444 C2"), "{err}");
    assert!(err.contains("-> 127.0.66.81:4444 (9 bytes)"), "the C2 logged what the client sent: {err}");
}

#[test]
fn a_bad_scenario_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_scenario(dir.path(), "broken");
    let yaml = std::fs::read_to_string(folder.join("scenario.yaml")).unwrap();
    std::fs::write(folder.join("scenario.yaml"), yaml.replace("kind: c2", "kind: smtp")).unwrap();
    let (code, _, err) = run(&["lab", "shell", folder.to_str().unwrap(), "-c", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("scenario.yaml:17:"), "FILE:LINE of the bad service: {err}");
    let (code, _, err) = run(&["lab", "shell", "no-such-scenario-here", "-c", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"no-such-scenario-here\": no such folder"), "{err}");
}

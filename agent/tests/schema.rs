//! Every event type's JSON field names, checked against Kunai's schema
//! (../shared/spec/kunai.md, transcribed here so the test runs anywhere).

use std::collections::BTreeSet;

use ioclab_agent::events::{EventData, EventKind};
use serde_json::{json, Value};

/// Dotted paths of every key in a JSON object (objects and leaves).
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.insert(p.clone());
            paths(v, &p, out);
        }
    }
}

const PROC: &[&str] = &["ancestors", "command_line", "exe", "exe.path"];
const META: &[&str] = &["path", "magic", "md5", "sha1", "sha256", "sha512", "size", "error"];
const TASK: &[&str] =
    &["name", "pid", "tgid", "guuid", "uid", "gid", "namespaces", "namespaces.mnt", "flags", "zombie"];
const DIGESTS: &[&str] = &["md5", "sha1", "sha256", "sha512", "size"];
const SOCKET_SRC: &[&str] = &["socket", "socket.domain", "socket.type", "socket.proto", "src", "src.ip", "src.port"];
const DST: &[&str] = &["dst", "dst.hostname", "dst.ip", "dst.port", "dst.public", "dst.is_v6", "community_id"];

fn with(base: &[&str], prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    if !prefix.is_empty() {
        v.push(prefix.to_string());
    }
    v.extend(extra.iter().map(|s| if prefix.is_empty() { s.to_string() } else { format!("{prefix}.{s}") }));
    v
}

fn expected(kind: EventKind) -> Vec<String> {
    use EventKind::*;
    let meta_exe: Vec<String> = ["ancestors", "command_line", "parent_command_line", "parent_exe", "exe"]
        .iter()
        .map(|s| s.to_string())
        .chain(META.iter().map(|m| format!("exe.{m}")))
        .collect();
    let target = |extra: &str| {
        let mut v = with(PROC, "", &[extra, "target", "target.command_line", "target.exe", "target.exe.path"]);
        v.extend(with(&[], "target.task", TASK));
        v
    };
    match kind {
        Execve => meta_exe,
        ExecveScript => {
            let mut v = meta_exe;
            v.extend(with(&[], "interpreter", META));
            v
        }
        Exit | ExitGroup => with(PROC, "", &["error_code"]),
        Clone => with(PROC, "", &["flags"]),
        Prctl => with(PROC, "", &["option", "arg2", "arg3", "arg4", "arg5", "success"]),
        Kill => target("signal"),
        Ptrace => target("mode"),
        InitModule => with(PROC, "", &["syscall", "module_name", "args", "loaded"]),
        BpfProgLoad => {
            let mut v = with(PROC, "", &["id", "tag", "attached_func", "name", "ksym", "verified_insns", "loaded"]);
            v.extend(with(&[], "prog_type", &["id", "name"]));
            v.extend(with(&[], "bpf_prog", DIGESTS));
            v
        }
        BpfSocketFilter => {
            let mut v = with(PROC, "", &["attached"]);
            v.extend(with(&[], "socket", &["domain", "type", "proto"]));
            v.extend(with(&[], "filter", &["md5", "sha1", "sha256", "sha512", "len", "size"]));
            v
        }
        MprotectExec => with(PROC, "", &["addr", "prot"]),
        MmapExec => {
            let mut v = with(PROC, "", &[]);
            v.extend(with(&[], "mapped", META));
            v
        }
        Connect => {
            let mut v = with(PROC, "", SOCKET_SRC);
            v.extend(with(&[], "", DST));
            v.push("connected".into());
            v
        }
        SendData => {
            let mut v = with(PROC, "", SOCKET_SRC);
            v.extend(with(&[], "", DST));
            v.extend(["connected", "data_entropy", "data_size"].map(String::from));
            v
        }
        DnsQuery => {
            let mut v = with(PROC, "", SOCKET_SRC);
            // "truncated" is ioclab's addition: the answer did not fit the sensor's copy
            v.extend(with(&[], "", &["query", "query_type", "response", "community_id", "truncated"]));
            v.extend(with(&[], "dns_server", &["ip", "port", "public", "is_v6"]));
            v
        }
        Read | ReadConfig | Write | WriteConfig | WriteClose | FileCreate => with(PROC, "", &["path"]),
        FileRename => with(PROC, "", &["old", "new"]),
        FileUnlink => with(PROC, "", &["path", "success"]),
        IoUringSqe => with(PROC, "", &["op", "op.code", "op.name"]),
        FileScan => {
            let mut v = with(PROC, "", &["path", "signatures", "positives", "source_event", "scan_error"]);
            v.extend(with(&[], "meta", META));
            v
        }
        Error => vec!["code".into(), "message".into()],
        EventLoss => vec!["read".into(), "lost".into(), "eps".into()],
        Start => {
            let mut v =
                with(&[], "system", &["uptime", "boot_time", "sysname", "release", "version", "machine", "domainname"]);
            // "name" is ioclab's addition: the sensor says who it is under Kunai's key
            v.extend(with(&[], "kunai", &["name", "version", "exe", "config", "config.sha256"]));
            v.extend(with(&[], "kunai.exe", META));
            v
        }
        IocReload => ["iocs", "files", "bad_lines", "duplicates"].map(String::from).to_vec(),
    }
}

#[test]
fn every_event_type_has_the_spec_fields() {
    for &kind in EventKind::ALL {
        // network events name the peer; the sensor always fills dst.hostname ("?" when unknown)
        let input = json!({"dst": {"hostname": "?"}, "bpf_prog": {}, "filter": {"len": 0}});
        let data = EventData::from_json(kind, &input).unwrap();
        assert_eq!(data.kind(), kind);
        let mut got = BTreeSet::new();
        paths(&serde_json::to_value(&data).unwrap(), "", &mut got);
        let want: BTreeSet<String> = expected(kind).into_iter().collect();
        let (missing, extra): (Vec<_>, Vec<_>) = (want.difference(&got).collect(), got.difference(&want).collect());
        assert!(missing.is_empty() && extra.is_empty(), "{kind}: missing {missing:?}, not in spec {extra:?}");
    }
}

#[test]
fn spec_ids() {
    let ids: Vec<(u32, &str)> = EventKind::ALL.iter().map(|k| (k.id(), k.name())).collect();
    for (id, name) in [
        (1, "execve"),
        (2, "execve_script"),
        (4, "exit"),
        (5, "exit_group"),
        (6, "clone"),
        (7, "prctl"),
        (8, "kill"),
        (9, "ptrace"),
        (20, "init_module"),
        (21, "bpf_prog_load"),
        (22, "bpf_socket_filter"),
        (40, "mprotect_exec"),
        (41, "mmap_exec"),
        (60, "connect"),
        (61, "dns_query"),
        (62, "send_data"),
        (81, "read"),
        (82, "read_config"),
        (83, "write"),
        (84, "write_config"),
        (85, "file_rename"),
        (86, "file_unlink"),
        (87, "write_close"),
        (88, "file_create"),
        (100, "io_uring_sqe"),
        (500, "file_scan"),
        (1000, "error"),
        (1100, "event_loss"),
        (1101, "start"),
        (1102, "ioc_reload"),
    ] {
        assert!(ids.contains(&(id, name)), "{id} {name} missing");
    }
    assert_eq!(ids.len(), 30);
}

#[test]
fn file_meta_reads_older_kunai_file_key() {
    let data = EventData::from_json(EventKind::Execve, &json!({"exe": {"file": "/usr/bin/x", "md5": ""}})).unwrap();
    let v = serde_json::to_value(&data).unwrap();
    assert_eq!(v["exe"]["path"], "/usr/bin/x");
}

#[test]
fn wrong_types_are_errors_not_panics() {
    for bad in [json!({"exe": 5}), json!({"exe": {"sha256": "nothex"}}), json!({"command_line": []}), json!("text")] {
        assert!(EventData::from_json(EventKind::Execve, &bad).is_err(), "{bad}");
    }
}

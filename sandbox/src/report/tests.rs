use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::detonation::{self, Detonation, Job};

fn fixture() -> Detonation {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dropper.detonation.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn job() -> Job {
    Job {
        task_id: 7,
        target: detonation::Target::File { path: PathBuf::from("/nonexistent/dropper.sh"), name: "dropper.sh".into() },
        args: vec![],
        package: None,
        timeout_s: 60,
        enforce_timeout: false,
        memory_bytes: 512 << 20,
        max_pids: 256,
        as_root: false,
        dns: vec![],
        services: vec![],
        options: [("procmemdump".to_string(), "yes".to_string())].into(),
    }
}

#[test]
fn the_dropper_fixture_becomes_a_cuckoo_report() {
    let mut det = fixture();
    det.task_id = 7;
    let r = build(&job(), &det);
    assert_eq!((r.info.id, r.info.duration, r.info.category.as_str()), (7, 2, "file"));
    assert_eq!(r.info.version, "2.0.7");
    assert_eq!(r.info.options, "enforce_timeout=0,procmemdump=yes,user=sandbox");
    assert_eq!(r.info.machine.started_on, "2024-11-19 09:55:53");
    // the sensor's own start event is not a process of the task
    let pids: Vec<u32> = r.behavior.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![100, 101, 102]);
    let sh = &r.behavior.processes[0];
    assert_eq!(
        (sh.process_path.as_str(), sh.command_line.as_str()),
        ("/usr/bin/dash", "/bin/sh /home/sandbox/dropper.sh")
    );
    assert_eq!(
        sh.calls.iter().map(|c| c.api.as_str()).collect::<Vec<_>>(),
        ["execve", "file_create", "write_close", "file_unlink", "exit_group"]
    );
    assert_eq!(r.behavior.processtree.len(), 1);
    assert_eq!(r.behavior.processtree[0].children.iter().map(|c| c.pid).collect::<Vec<_>>(), vec![101, 102]);
    let s = &r.behavior.summary;
    assert_eq!(s.file_created, ["/tmp/stage2"]);
    assert_eq!(s.file_written, ["/tmp/stage2"]);
    assert_eq!(s.file_deleted, ["/home/sandbox/dropper.sh"]);
    assert_eq!(s.resolves_host, ["why.kunai.rocks"]);
    assert_eq!(s.connects_ip, ["127.0.66.80"]);
    assert_eq!(s.connects_host, ["why.kunai.rocks"]);
    assert_eq!(s.fetches_url, ["http://why.kunai.rocks/upload"]);
    assert!(s.command_line.contains(&"/tmp/stage2".to_string()));
    let n = &r.network;
    assert_eq!(n.domains, vec![network::DomainIp { domain: "why.kunai.rocks".into(), ip: "127.0.66.80".into() }]);
    assert_eq!(n.http[0].uri, "http://why.kunai.rocks/upload");
    assert_eq!((n.http[0].method.as_str(), n.http[0].port, n.http[0].count), ("POST", 80, 1));
    assert_eq!(n.tcp[0].dport, 80);
    assert_eq!(n.dead_hosts, vec![network::DeadHost { ip: "203.0.113.7".into(), port: 4444 }]);
    let hosts: Vec<&str> = n.hosts.iter().map(|h| h.ip.as_str()).collect();
    assert_eq!(hosts, ["127.0.66.80", "203.0.113.7"]);
    assert_eq!(r.dropped[0].filepath, "/tmp/stage2");
    assert_eq!(r.dropped[0].file.name, "stage2");
    assert_eq!(r.dropped[0].file.sha256, Some(det.dropped[0].facts.sha256));
    let names: Vec<&str> = r.signatures.iter().map(|s| s.name.as_str()).collect();
    for expected in ["dropped_executed_from_tmp", "deletes_itself", "contacts_raw_ip", "non_standard_port"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let sum: u32 = r.signatures.iter().map(|s| s.severity).sum();
    assert_eq!(r.info.score, sum as f64 / 5.0);
    // marks point at the events behind them: pid, index in the process's calls, the Kunai uuid
    let tmp = r.signatures.iter().find(|s| s.name == "dropped_executed_from_tmp").unwrap();
    let marks: Vec<(u32, usize, &str, &str)> = tmp
        .marks
        .iter()
        .map(|m| match m {
            Mark::Call { pid, cid, call } => (*pid, *cid, call.api.as_str(), call.uuid.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        marks,
        [
            (100, 1, "file_create", "5e1e0000-0000-4000-8000-000000000002"),
            (101, 0, "execve", "5e1e0000-0000-4000-8000-000000000004")
        ]
    );
    assert_eq!(tmp.ttp["T1105"].short, "Ingress Tool Transfer");
}

#[test]
fn bad_lines_and_a_timeout_are_reported_not_fatal() {
    let mut det = fixture();
    det.events.insert(1, "{not json".into());
    det.events.push(r#"{"data":{},"info":{"event":{"name":"nope"},"utc_time":"2024-11-19T09:55:53Z"}}"#.into());
    det.timed_out = true;
    let r = build(&job(), &det);
    assert_eq!(r.behavior.processes.len(), 3);
    // no signature: a score of 0, not -0 (an empty f64 sum is -0.0)
    assert_eq!(Report::cuckoo_score(&[]).to_string(), "0");
    assert!(r.debug.errors[0].starts_with("kunai.jsonl line 2: not an event"), "{:?}", r.debug.errors);
    assert!(
        r.debug.errors[1].contains("line 12") && r.debug.errors[1].contains("unknown event"),
        "{:?}",
        r.debug.errors
    );
    assert!(r.debug.errors[2].contains("60 s timeout"), "{:?}", r.debug.errors);
    assert!(r.info.timed_out);
}

#[test]
fn a_report_reads_back_as_written() {
    let r = build(&job(), &fixture());
    let text = serde_json::to_string_pretty(&r).unwrap();
    let back = Report::from_slice(text.as_bytes(), "report.json").unwrap();
    assert_eq!(back, r);
    // Cuckoo's shapes on the wire
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["network"]["hosts"][0].is_string());
    assert!(v["network"]["dead_hosts"][0].is_array());
    assert!(v["info"]["started"].is_f64() && v["info"]["id"].is_u64() && v["info"]["duration"].is_u64());
    assert!(v["network"]["http"][0]["user-agent"].is_string());
    assert_eq!(v["signatures"][0]["marks"][0]["type"], "call");
}

#[test]
fn cape_shapes_are_accepted() {
    let cape = json!({
        "info": {"id": "12", "started": "2023-05-01 10:00:00", "ended": "2023-05-01 10:02:00.123456", "duration": 120,
                 "options": {"route": "none"}, "machine": {"name": "win10", "started_on": "2023-05-01 10:00:00"}, "package": "exe"},
        "target": {"category": "file", "file": {"name": "x.exe", "size": "42", "md5": "D41D8CD98F00B204E9800998ECF8427E", "sha256": "", "crc32": "00"}},
        "behavior": {"processes": [{"process_id": 1000, "parent_id": 4, "module_path": "C:\\x.exe", "first_seen": "2023-05-01 10:00:01,123",
                     "calls": [{"api": "NtWriteFile", "arguments": [{"name": "FileName", "value": "C:\\a"}], "status": 1, "timestamp": "x"}]}],
                     "summary": {"write_files": ["C:\\a"], "delete_files": [], "executed_commands": ["cmd /c x"], "keys": ["HKLM"]}},
        "network": {"hosts": [{"ip": "1.2.3.4", "hostname": "a.example", "country_name": "x"}, "5.6.7.8"], "dead_hosts": ["9.9.9.9:80"],
                    "domains": [{"domain": "a.example", "ip": "1.2.3.4"}], "http": [{"host": "a.example", "port": "80", "uri": "http://a.example/"}]},
        "signatures": [{"name": "x", "severity": 3, "ttp": ["T1055"], "data": [{"a": 1}], "marks": [{"type": "generic", "k": "v"}, {"weird": true}]}],
        "malscore": 6.5, "ttps": [], "detections": "Emotet"
    });
    // CAPE writes process times as its logger does, a comma before the milliseconds
    let r = Report::from_slice(cape.to_string().as_bytes(), "cape.json").unwrap();
    assert!((r.behavior.processes[0].first_seen - 1682935201.123).abs() < 1e-6);
    // what is not a time still fails, naming the place
    let mut bad = cape.clone();
    bad["behavior"]["processes"][0]["first_seen"] = json!("2023-05-01 10:00:01;123");
    let e = Report::from_slice(bad.to_string().as_bytes(), "cape.json").unwrap_err().to_string();
    assert!(e.starts_with("cape.json: at behavior.processes[0].first_seen:"), "{e}");
    assert_eq!(r.info.id, 12);
    assert_eq!(r.info.options, "route=none");
    assert_eq!(r.info.started, 1682935200.0);
    assert!((r.info.ended - 1682935320.123456).abs() < 1e-3);
    let f = r.target.file.as_ref().unwrap();
    assert_eq!((f.size, f.sha256), (42, None));
    assert_eq!(f.md5.unwrap().to_string(), "d41d8cd98f00b204e9800998ecf8427e");
    let p = &r.behavior.processes[0];
    assert_eq!((p.pid, p.ppid, p.process_path.as_str()), (1000, 4, "C:\\x.exe"));
    assert_eq!(p.calls[0].arguments["FileName"], "C:\\a");
    assert_eq!(r.behavior.summary.file_written, ["C:\\a"]);
    assert_eq!(r.behavior.summary.command_line, ["cmd /c x"]);
    assert_eq!(r.network.hosts[0], NetHost { ip: "1.2.3.4".into(), hostname: Some("a.example".into()) });
    assert_eq!(r.network.hosts[1].ip, "5.6.7.8");
    assert_eq!(r.network.dead_hosts[0].port, 80);
    assert_eq!(r.network.http[0].port, 80);
    assert!(r.signatures[0].ttp.contains_key("T1055"));
    assert!(matches!(&r.signatures[0].marks[1], Mark::Other(v) if v["weird"] == true));
    assert_eq!(r.malscore, Some(6.5));
}

#[test]
fn errors_name_the_file_and_the_json_path() {
    let cases = [
        (r#"{"info": {"id": "seven"}}"#, "info.id"),
        (r#"{"network": {"dead_hosts": [["1.2.3.4", 99999]]}}"#, "network.dead_hosts[0]"),
        (r#"{"signatures": [{"severity": -1}]}"#, "signatures[0].severity"),
        (r#"{"target": {"file": {"sha1": "xyz"}}}"#, "target.file"),
        (r#"{"behavior": {"processes": [{}, {"pid": [1]}]}}"#, "behavior.processes[1].pid"),
        (r#"{"info": {}} trailing"#, "."),
        (r#"{"info": "#, "info"),
    ];
    for (text, path) in cases {
        let e = Report::from_slice(text.as_bytes(), "/x/report.json").unwrap_err();
        match &e {
            ReportError::Parse { file, path: p, .. } => {
                assert_eq!(file, "/x/report.json");
                assert!(p.starts_with(path), "{text}: {e}");
            }
            other => panic!("{other}"),
        }
    }
    let e = Report::from_file(Path::new("/nonexistent/report.json")).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/report.json: "), "{e}");
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z0-9 :,.|\\-]{0,12}".prop_map(Value::String),
        Just(json!("2025-11-21 15:38:40,072")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("info".to_string()),
            Just("network".to_string()),
            Just("hosts".to_string()),
            Just("id".to_string()),
            Just("started".to_string()),
            Just("signatures".to_string()),
            Just("marks".to_string()),
            Just("ttp".to_string()),
            Just("dead_hosts".to_string()),
            Just("behavior".to_string()),
            Just("processes".to_string()),
            Just("type".to_string()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Any JSON: a report or an error naming the file, never a panic.
    #[test]
    fn any_json_parses_or_names_the_place(v in arb_json()) {
        let text = v.to_string();
        match Report::from_slice(text.as_bytes(), "r.json") {
            Ok(r) => {
                // what was read writes back and reads back (floats may move by an ulp: serde_json's parser)
                let again = Report::from_slice(serde_json::to_string(&r).unwrap().as_bytes(), "again").unwrap();
                prop_assert_eq!(again.signatures.len(), r.signatures.len());
                prop_assert_eq!(again.network.hosts, r.network.hosts);
                prop_assert_eq!(again.behavior.processes.len(), r.behavior.processes.len());
            }
            Err(e) => prop_assert!(e.to_string().starts_with("r.json: at "), "{}", e),
        }
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Report::from_slice(&bytes, "r.json");
    }

    /// A real-shaped report (tests/fixtures: CAPE, Cuckoo 2.0.7, Cuckoo3) with
    /// any one part replaced by any JSON: a report, or an error naming the
    /// file and the JSON path; never a panic.
    #[test]
    fn mangled_real_shapes_parse_or_name_the_place(
        which in 0usize..3,
        pick in any::<prop::sample::Index>(),
        with in arb_json(),
    ) {
        let name = ["cape-report.json", "cuckoo2-report.json", "cuckoo3-post.json"][which];
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        let mut v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let path = pick.get(&all).clone();
        replace(&mut v, &path, with);
        match Report::from_slice(v.to_string().as_bytes(), name) {
            Ok(r) => {
                let again = serde_json::to_string(&r).unwrap();
                prop_assert!(Report::from_slice(again.as_bytes(), "again").is_ok());
            }
            Err(e) => prop_assert!(e.to_string().starts_with(&format!("{name}: at ")), "{}", e),
        }
    }
}

/// Every (object key or array index) path of `v`, depth first.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
        Value::Array(a) => a.iter().enumerate().map(|(i, c)| (i.to_string(), c)).collect(),
        _ => Vec::new(),
    };
    for (k, c) in children {
        at.push(k);
        paths(c, at, out);
        at.pop();
    }
}

/// `v` with the part at `path` replaced by `with`.
fn replace(v: &mut Value, path: &[String], with: Value) {
    match path.split_first() {
        None => *v = with,
        Some((k, rest)) => {
            let child = match v {
                Value::Object(m) => m.get_mut(k),
                Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                _ => None,
            };
            if let Some(c) = child {
                replace(c, rest, with);
            }
        }
    }
}

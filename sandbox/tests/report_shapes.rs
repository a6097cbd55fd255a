//! One parser for the reports of Cuckoo 2.0.7, CAPEv2 and Cuckoo3 (fixtures
//! written by ioclab in those sandboxes' shapes, see tests/fixtures/README.md):
//! what each shape carries reads into the one model and unknown keys are
//! ignored (the same fixtures mangled anywhere: src/report/tests.rs).

mod fixture;

use fixture::fixture_path;
use ioclab_intel::model::levels::ThreatLevel;
use ioclab_sandbox::misp::config::List;
use ioclab_sandbox::misp::lookup::{candidates, Origin};
use ioclab_sandbox::report::{Mark, Report};
use serde_json::json;

fn read(name: &str) -> Report {
    Report::from_file(&fixture_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

const SAMPLE_MD5: &str = "ab2c4563c7c42dc830026d67a5e76ea6";
const STAGE2_SHA256: &str = "91816b28055780c929b258afbfd6bb583b12bada9eb45387bf00b1c4e1823785";

#[test]
fn a_cape_report_reads_whole() {
    let r = read("cape-report.json");
    assert_eq!((r.info.id, r.info.duration, r.info.package.as_str()), (4711, 104, "exe"));
    assert_eq!(r.info.options, "api-cap=1000,force-sleepskip=1");
    assert_eq!(r.info.started, 1763739512.0);
    assert_eq!(r.malscore, Some(6.4));
    let f = r.target.file.as_ref().unwrap();
    assert_eq!((f.name.as_str(), f.size, f.md5.unwrap().to_string()), ("invoice.exe", 9728, SAMPLE_MD5.to_string()));
    // processes: CAPE's names, and first_seen as its logger writes it
    let p = &r.behavior.processes[0];
    assert_eq!((p.pid, p.ppid, p.process_name.as_str()), (2144, 4032, "invoice.exe"));
    assert!(p.process_path.ends_with("\\invoice.exe"));
    assert!((p.first_seen - 1763739520.072).abs() < 1e-6, "{}", p.first_seen);
    assert_eq!(p.calls[0].arguments["Name"], "c2.example");
    assert_eq!(r.behavior.processtree[0].children[0].pid, 5120);
    let s = &r.behavior.summary;
    assert_eq!(s.file_written, ["C:\\Users\\user\\AppData\\Local\\Temp\\stage2.exe"]);
    assert_eq!(s.file_deleted.len(), 1);
    assert!(s.command_line[0].contains("/install"));
    // network: hosts as objects, dead hosts as pairs
    let n = &r.network;
    assert_eq!(n.hosts.iter().map(|h| h.ip.as_str()).collect::<Vec<_>>(), ["203.0.113.7", "198.51.100.9"]);
    assert_eq!(n.hosts[0].hostname.as_deref(), Some("c2.example"));
    assert_eq!((n.domains[0].domain.as_str(), n.domains[0].ip.as_str()), ("c2.example", "203.0.113.7"));
    assert_eq!(n.dns[0].answers[0].data, "203.0.113.7");
    assert_eq!(n.http[0].uri, "http://c2.example/gate.php?id=1");
    assert_eq!((n.dead_hosts[0].ip.as_str(), n.dead_hosts[0].port), ("198.51.100.9", 8080));
    // dropped: the guest path from guest_paths
    assert_eq!(r.dropped[0].filepath, "C:\\Users\\user\\AppData\\Local\\Temp\\stage2.exe");
    assert_eq!(r.dropped[0].file.sha256.unwrap().to_string(), STAGE2_SHA256);
    assert_eq!(r.dropped[1].file.ssdeep, "");
    // signatures without marks (CAPE's evidence is data[], not read)
    assert_eq!(r.signatures.len(), 2);
    assert!(r.signatures.iter().all(|s| s.marks.is_empty()));
    assert_eq!(r.signatures[1].families, ["AgentTesla"]);
    // what the MISP lookup would ask, in its order
    let c = candidates(&r, &List::default(), 100);
    assert_eq!(c.values[0], (Origin::Sample, SAMPLE_MD5.to_string()));
    assert_eq!(c.values.iter().filter(|(o, _)| *o == Origin::Dropped).count(), 6);
    let net: Vec<&str> = c.values.iter().filter(|(o, _)| *o == Origin::Network).map(|(_, v)| v.as_str()).collect();
    assert_eq!(net, ["203.0.113.7", "198.51.100.9", "c2.example", "update.example.net"]);
}

#[test]
fn a_cuckoo_2_report_reads_whole() {
    let r = read("cuckoo2-report.json");
    assert_eq!((r.info.id, r.info.version.as_str(), r.info.score), (42, "2.0.7", 4.2));
    assert_eq!(r.info.started, 1555063810.0);
    assert_eq!(r.info.machine.manager, "VirtualBox");
    assert_eq!(r.target.file.as_ref().unwrap().md5.unwrap().to_string(), SAMPLE_MD5);
    assert_eq!(r.network.hosts.iter().map(|h| h.ip.as_str()).collect::<Vec<_>>(), ["203.0.113.7", "198.51.100.9"]);
    assert_eq!(r.network.domains[1].ip, "");
    assert_eq!(r.dropped[0].filepath, "C:\\Users\\user\\AppData\\Local\\Temp\\stage2.exe");
    let http = &r.signatures[0];
    assert_eq!((http.name.as_str(), http.markcount), ("network_http", 3));
    assert_eq!(http.ttp["T1071"].short, "Standard Application Layer Protocol");
    assert!(matches!(&http.marks[0], Mark::Call { pid: 2044, cid: 123, call } if call.api == "InternetConnectA"));
    assert!(matches!(&http.marks[1], Mark::Ioc { description, .. } if description.is_empty()));
    assert!(matches!(&http.marks[2], Mark::Other(v) if v["type"] == "generic"));
    assert_eq!(r.behavior.processes[0].calls[0].arguments["port"], 80);
    assert!(r.behavior.processes[0].track);
    assert_eq!(r.behavior.summary.fetches_url, ["http://c2.example/gate.php?id=1"]);
}

#[test]
fn a_cuckoo3_post_report_gives_its_network_and_misp_matches() {
    let r = read("cuckoo3-post.json");
    assert_eq!(r.network.hosts.iter().map(|h| h.ip.as_str()).collect::<Vec<_>>(), ["192.168.122.1", "203.0.113.7"]);
    assert_eq!(r.network.domains[0].domain, "c2.example");
    assert_eq!((r.network.dns[0].request.as_str(), r.network.dns[0].kind.as_str()), ("c2.example", "A"));
    assert!(r.network.dns[0].time > 1.7e9);
    let m = &r.misp[0];
    assert_eq!(
        (m.event_id, m.date.as_str(), m.iocs.clone()),
        (2211, "2024-05-01T09:53:13", vec!["203.0.113.7".to_string()])
    );
    assert_eq!(m.level, None);
    assert_eq!(r.signatures[0].name, "executes_dropped");
}

#[test]
fn misp_entries_read_leniently() {
    let text = json!({"misp": [
        {"event_id": 12, "date": "2024-05-01", "url": "http://misp/events/view/12", "level": 1, "info": "x", "iocs": ["a", 3]},
        {"event_id": "13", "level": "9", "iocs": "b"},
        {"event_id": "14", "level": null},
    ]});
    let r = Report::from_slice(text.to_string().as_bytes(), "r.json").unwrap();
    assert_eq!(r.misp[0].level, Some(ThreatLevel::High));
    assert_eq!(r.misp[0].iocs, ["a", "3"]);
    assert_eq!((r.misp[1].event_id, r.misp[1].level, r.misp[1].iocs.clone()), (13, None, vec!["b".to_string()]));
    assert_eq!(r.misp[2].level, None);
    let e = Report::from_slice(br#"{"misp": [{"event_id": "x"}]}"#, "r.json").unwrap_err().to_string();
    assert!(e.starts_with("r.json: at misp[0].event_id:"), "{e}");
}

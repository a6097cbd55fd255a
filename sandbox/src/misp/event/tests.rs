use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::misp::config::{List, Modes};
use crate::report::network::{DomainIp, Http};
use crate::report::{FileInfo, Mark, NetHost, Ttp};

const MD5: &str = "0123456789abcdef0123456789abcdef";
const SHA1: &str = "0123456789abcdef0123456789abcdef01234567";
const SHA256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

fn file(name: &str, md5: &str, sha1: Option<&str>, sha256: Option<&str>, size: u64) -> FileInfo {
    FileInfo {
        name: name.into(),
        size,
        md5: Some(md5.parse().unwrap()),
        sha1: sha1.map(|h| h.parse().unwrap()),
        sha256: sha256.map(|h| h.parse().unwrap()),
        ..Default::default()
    }
}

/// A report with one of each: a sample, resolved names (real, sink, benign),
/// contacted hosts, HTTP requests, dropped files (one empty) and a signature.
pub(super) fn report() -> Report {
    let mut r = Report::default();
    r.info.id = 7;
    r.info.score = 2.4;
    r.info.started = 1_727_780_000.0;
    r.target.category = "file".into();
    r.target.file = Some(file("dropper.sh", MD5, Some(SHA1), Some(SHA256), 120));
    let n = &mut r.network;
    for (domain, ip) in [
        ("why.kunai.rocks", "185.199.108.153"),
        ("c2.evil.example.org", "192.0.2.1"),
        ("google.com", "142.250.74.78"),
        ("www.msftncsi.com", "131.107.255.255"),
        ("blocked.example.net", "198.51.100.20"),
        ("noanswer.example.org", ""),
    ] {
        n.domains.push(DomainIp { domain: domain.into(), ip: ip.into() });
    }
    for ip in ["185.199.108.153", "192.0.2.1", "8.8.8.8", "45.33.32.156", "127.0.0.53"] {
        n.hosts.push(NetHost { ip: ip.into(), hostname: None });
    }
    for (uri, host) in
        [("http://why.kunai.rocks/upload", "why.kunai.rocks"), ("http://blocked.example.net/x", "blocked.example.net")]
    {
        n.http.push(Http { uri: uri.into(), host: host.into(), method: "POST".into(), port: 80, ..Default::default() });
    }
    n.http.push(Http {
        host: "45.33.32.156".into(),
        port: 8080,
        path: "/stage2".into(),
        method: "GET".into(),
        ..Default::default()
    });
    r.dropped.push(Dropped {
        file: file("stage2", "11111111111111111111111111111111", Some(&"2".repeat(40)), Some(&"3".repeat(64)), 22),
        filepath: "/tmp/stage2".into(),
        ..Default::default()
    });
    r.dropped.push(Dropped {
        file: file("empty", EMPTY_MD5, None, None, 0),
        filepath: "/tmp/empty".into(),
        ..Default::default()
    });
    let mut ttp = BTreeMap::new();
    ttp.insert("T1053.003".to_string(), Ttp { short: "Cron".into(), long: String::new() });
    ttp.insert("T1105".to_string(), Ttp::default());
    r.signatures.push(Signature {
        name: "persistence_cron".into(),
        description: "Installs a cron job".into(),
        severity: 3,
        ttp,
        marks: vec![
            Mark::Ioc { category: "file".into(), ioc: "/etc/cron.d/x".into(), description: String::new() },
            Mark::Other(json!({"unexpected": ["shape", 1, null], "nul": "a\u{0}b"})),
        ],
        markcount: 12,
        ..Default::default()
    });
    r
}

pub(super) fn config() -> ReportingMisp {
    ReportingMisp {
        ioc_blacklist: List(vec!["blocked.example.net".into()]),
        sandbox_name: "lab-sandbox".into(),
        ..Default::default()
    }
}

fn built(r: &Report, cfg: &ReportingMisp) -> Built {
    build(r, cfg, Warninglists::embedded(), None, "lab-sandbox").unwrap()
}

fn pairs(e: &Event) -> BTreeSet<(&str, String)> {
    e.attributes.iter().filter(|a| a.kind != "comment").map(|a| (a.kind, a.value.clone())).collect()
}

fn left<'a>(b: &'a Built, value: &str) -> Option<&'a LeftOut> {
    b.left_out.iter().find(|l| l.value == value)
}

#[test]
fn all_modes_send_cuckoos_attributes_and_leave_out_noise_with_reasons() {
    let b = built(&report(), &config());
    let want: BTreeSet<(&str, String)> = [
        ("filename|md5", format!("dropper.sh|{MD5}")),
        ("filename|sha1", format!("dropper.sh|{SHA1}")),
        ("filename|sha256", format!("dropper.sh|{SHA256}")),
        ("domain|ip", "why.kunai.rocks|185.199.108.153".into()),
        ("domain", "c2.evil.example.org".into()),
        ("domain", "noanswer.example.org".into()),
        ("ip-dst", "45.33.32.156".into()),
        ("url", "http://why.kunai.rocks/upload".into()),
        ("url", "http://45.33.32.156:8080/stage2".into()),
    ]
    .into_iter()
    .collect();
    assert_eq!(pairs(&b.event), want);
    let cat = |kind: &str| b.event.attributes.iter().find(|a| a.kind == kind).map(|a| (a.category, a.to_ids)).unwrap();
    assert_eq!(cat("filename|md5"), ("Payload delivery", true));
    assert_eq!(cat("domain|ip"), ("Network activity", true));
    assert_eq!(cat("url"), ("Network activity", true));
    // each left-out value says why
    assert!(matches!(&left(&b, "8.8.8.8").unwrap().reason, Reason::Warninglist(n) if n[0].contains("DNS")));
    assert!(matches!(left(&b, "google.com|142.250.74.78").unwrap().reason, Reason::Warninglist(_)));
    assert!(left(&b, "198.51.100.20").unwrap().to_string().contains("the domain is left out too"));
    assert!(matches!(left(&b, "www.msftncsi.com|131.107.255.255").unwrap().reason, Reason::Safelist(_)));
    assert!(matches!(left(&b, "127.0.0.53").unwrap().reason, Reason::Safelist(_)));
    assert_eq!(left(&b, "blocked.example.net").unwrap().reason, Reason::Blacklist);
    assert_eq!(
        left(&b, "http://blocked.example.net/x").unwrap().reason,
        Reason::Blacklist,
        "a URL on a blacklisted host"
    );
    let sink = left(&b, "192.0.2.1").unwrap();
    assert!(sink.note.as_deref().unwrap().contains("the domain is sent alone"), "{sink}");
    assert!(sink.to_string().contains("RFC 5735"), "{sink}");
    // the empty dropped file is on the empty-hashes list: no object for it
    assert!(matches!(left(&b, EMPTY_MD5).unwrap().reason, Reason::Warninglist(_)));
    // nothing sent as IDS is on a warninglist
    for a in b.event.all_attributes().filter(|a| a.to_ids) {
        assert!(Warninglists::embedded().check_attribute(a.kind, &a.value).is_empty(), "{} {}", a.kind, a.value);
    }
    // the whole event: unpublished, Cuckoo's title, the config's levels
    let e = &b.event;
    assert!(!e.published);
    assert_eq!(e.info, "Cuckoo Sandbox analysis #7");
    assert_eq!(e.date, "2024-10-01");
    let body = e.body();
    assert_eq!(body["Event"]["threat_level_id"], 4);
    assert_eq!(body["Event"]["distribution"], 0);
    assert_eq!(body["Event"]["analysis"], 0);
    assert_eq!(body["Event"]["published"], false);
}

#[test]
fn each_mode_alone() {
    let r = report();
    for (mode, kinds) in [
        ("hashes", &["filename|md5", "filename|sha1", "filename|sha256"][..]),
        ("ipaddr", &["domain|ip", "domain", "ip-dst"]),
        ("url", &["url"]),
    ] {
        let cfg = ReportingMisp { mode: Modes::parse(mode).unwrap(), ..config() };
        let b = built(&r, &cfg);
        let got: BTreeSet<&str> = pairs(&b.event).into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, kinds.iter().copied().collect(), "mode {mode}");
    }
    // dropped files and signatures do not depend on the mode
    let cfg = ReportingMisp { mode: Modes::parse("").unwrap(), ..config() };
    let b = built(&r, &cfg);
    assert!(pairs(&b.event).is_empty());
    assert_eq!(b.event.objects.len(), 1);
    assert_eq!(b.event.attributes.len(), 1, "the signature's comment");
}

#[test]
fn dropped_files_are_file_objects_in_artifacts_dropped() {
    let b = built(&report(), &config());
    let o = &b.event.objects[0];
    assert_eq!((o.name, o.meta_category, o.template_uuid), ("file", "file", FILE_TEMPLATE.0));
    let rel: BTreeMap<&str, (&str, &str, bool)> =
        o.attributes.iter().map(|a| (a.object_relation.unwrap(), (a.kind, a.value.as_str(), a.to_ids))).collect();
    assert_eq!(rel["md5"], ("md5", "11111111111111111111111111111111", true));
    assert_eq!(rel["sha256"].1, "3".repeat(64));
    assert_eq!(rel["filename"], ("filename", "stage2", false));
    assert_eq!(rel["path"], ("text", "/tmp/stage2", false));
    assert_eq!(rel["size-in-bytes"], ("size-in-bytes", "22", false));
    assert!(o.attributes.iter().filter(|a| a.to_ids).all(|a| a.category == "Artifacts dropped"));
}

#[test]
fn dropped_path_ids_marks_dropped_paths_as_ids_and_the_export_takes_them() {
    let cfg = ReportingMisp { dropped_path_ids: true, ..config() };
    let b = built(&report(), &cfg);
    let path = b.event.objects[0].attributes.iter().find(|a| a.object_relation == Some("path")).unwrap();
    assert_eq!((path.kind, path.value.as_str(), path.to_ids, path.category), ("text", "/tmp/stage2", true, "Other"));
    // the export (IDS only) turns it into a path IoC, by its relation
    let sel = ioclab_intel::export::iocs::Select { to_ids_only: true, shared_only: false };
    let lines = ioclab_intel::export::iocs::from_event(&b.event.body(), "lab", sel);
    assert!(lines.iter().any(|l| l.kind == "path" && l.value == "/tmp/stage2"), "{lines:?}");
    // off by default: no path IoC
    let lines = ioclab_intel::export::iocs::from_event(&built(&report(), &config()).event.body(), "lab", sel);
    assert!(!lines.iter().any(|l| l.kind == "path"), "{lines:?}");
}

#[test]
fn filters_can_be_turned_off() {
    let cfg = ReportingMisp { warninglists: false, safelist: false, ioc_blacklist: List::default(), ..config() };
    let b = built(&report(), &cfg);
    let got = pairs(&b.event);
    for v in ["8.8.8.8", "127.0.0.53"] {
        assert!(got.contains(&("ip-dst", v.to_string())), "{v} kept: {got:?}");
    }
    assert!(got.contains(&("domain|ip", "google.com|142.250.74.78".into())));
    assert!(got.contains(&("domain|ip", "c2.evil.example.org|192.0.2.1".into())));
    assert!(got.contains(&("url", "http://blocked.example.net/x".into())));
    assert_eq!(b.event.objects.len(), 2, "the empty file too");
}

#[test]
fn allowed_values_pass_the_safelist_and_warninglists_but_not_the_blacklist() {
    let mut r = report();
    r.network.domains.push(DomainIp { domain: "c2.lab.example".into(), ip: "127.0.55.4".into() });
    r.network.hosts.push(NetHost { ip: "127.0.55.5".into(), hostname: None });
    let without = built(&r, &config());
    assert!(matches!(left(&without, "127.0.55.5").unwrap().reason, Reason::Safelist(_)));
    assert!(matches!(left(&without, "127.0.55.4").unwrap().reason, Reason::Safelist(_)), "{:?}", without.left_out);
    let allow = List(vec!["127.0.55.4".into(), "127.0.55.5".into(), "8.8.8.8".into(), "blocked.example.net".into()]);
    let b = built(&r, &ReportingMisp { allow, ..config() });
    let got = pairs(&b.event);
    assert!(got.contains(&("ip-dst", "127.0.55.5".into())), "a lab's loopback C2 is kept: {got:?}");
    assert!(got.contains(&("domain|ip", "c2.lab.example|127.0.55.4".into())), "{got:?}");
    assert!(got.contains(&("ip-dst", "8.8.8.8".into())), "allowed past the warninglists too: {got:?}");
    assert_eq!(left(&b, "blocked.example.net").unwrap().reason, Reason::Blacklist);
    assert!(matches!(left(&b, "127.0.0.53").unwrap().reason, Reason::Safelist(_)), "only what is allowed");
}

#[test]
fn min_malscore_skips_low_scores_and_prefers_capes_malscore() {
    let mut r = report();
    let cfg = ReportingMisp { min_malscore: 3.0, ..config() };
    let skip = build(&r, &cfg, Warninglists::embedded(), None, "x").unwrap_err();
    assert_eq!(skip, BelowMinScore { score: 2.4, min: 3.0 });
    assert!(skip.to_string().contains("below min_malscore 3"));
    r.malscore = Some(8.5);
    assert!(build(&r, &cfg, Warninglists::embedded(), None, "x").is_ok());
    r.info.score = 9.0;
    r.malscore = Some(1.0);
    assert!(build(&r, &cfg, Warninglists::embedded(), None, "x").is_err());
}

#[test]
fn signatures_are_comments_with_their_marks_and_attack_galaxy_tags() {
    let b = built(&report(), &config());
    let sig = b.event.attributes.iter().find(|a| a.kind == "comment").unwrap();
    assert_eq!((sig.category, sig.to_ids), ("Internal reference", false));
    assert!(sig.value.starts_with("persistence_cron (severity 3): Installs a cron job"), "{}", sig.value);
    assert!(sig.value.contains("ATT&CK: T1053.003 Cron, T1105"), "{}", sig.value);
    assert!(sig.value.contains("marks (2 of 12):\n  file /etc/cron.d/x\n  {"), "{}", sig.value);
    assert!(!sig.value.contains('\0'), "control characters are cleaned");
    let tags: Vec<&str> = sig.tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tags,
        ["misp-galaxy:mitre-attack-pattern=\"Cron - T1053.003\"", "misp-galaxy:mitre-attack-pattern=\"T1105\""]
    );
    let event_tags: Vec<&str> = b.event.tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(event_tags[0], "Cuckoo");
    assert!(event_tags.contains(&"misp-galaxy:mitre-attack-pattern=\"Cron - T1053.003\""));
    let cfg = ReportingMisp { tag: List(vec!["Cuckoo".into(), "tlp:amber".into()]), ..config() };
    let event_tags: Vec<String> = built(&report(), &cfg).event.tags.into_iter().map(|t| t.name).collect();
    assert_eq!(&event_tags[..2], ["Cuckoo", "tlp:amber"]);
}

#[test]
fn identifiers_are_stable_per_sandbox_and_task() {
    let (r, cfg) = (report(), config());
    let (a, b) = (built(&r, &cfg), built(&r, &cfg));
    assert_eq!(a.event, b.event, "the same report builds the same event, uuids included");
    assert_eq!(a.event.uuid.len(), 36);
    assert_eq!(&a.event.uuid[14..15], "5", "a version 5 uuid");
    let mut other = r.clone();
    other.info.id = 8;
    assert_ne!(built(&other, &cfg).event.uuid, a.event.uuid);
    let elsewhere = build(&r, &cfg, Warninglists::embedded(), None, "another-sandbox").unwrap();
    assert_ne!(elsewhere.event.uuid, a.event.uuid);
    let uuids: BTreeSet<&str> = a.event.all_attributes().map(|x| x.uuid.as_str()).collect();
    assert_eq!(uuids.len(), a.event.all_attributes().count(), "attribute uuids are distinct");
    // a later report of the same task (more marks) keeps the signature's uuid: MISP updates it
    let mut more = r.clone();
    more.signatures[0].marks.push(Mark::Ioc {
        category: "file".into(),
        ioc: "/etc/cron.d/y".into(),
        description: String::new(),
    });
    let sig = |e: &Event| e.attributes.iter().find(|x| x.kind == "comment").unwrap().uuid.clone();
    assert_eq!(sig(&built(&more, &cfg).event), sig(&a.event));
}

#[test]
fn upload_sample_attaches_misps_zip_or_says_why_not() {
    let cfg = ReportingMisp { upload_sample: true, ..config() };
    let sample = b"#!/bin/sh\necho hello\n";
    let md5: String = md5::Md5::digest(sample).iter().map(|b| format!("{b:02x}")).collect();
    let mut r = report();
    r.target.file = Some(file("dropper.sh", &md5, None, None, sample.len() as u64));
    let b = build(&r, &cfg, Warninglists::embedded(), Some(sample), "x").unwrap();
    let a = b.event.attributes.iter().find(|a| a.kind == "malware-sample").unwrap();
    assert_eq!(a.value, format!("dropper.sh|{md5}"));
    use base64::Engine;
    let zip = base64::engine::general_purpose::STANDARD.decode(a.data.as_ref().unwrap()).unwrap();
    assert_eq!(&zip[..4], b"PK\x03\x04");
    // the wrong file, or none
    let b = build(&r, &cfg, Warninglists::embedded(), Some(b"other"), "x").unwrap();
    assert!(b.event.attributes.iter().all(|a| a.kind != "malware-sample"));
    assert!(matches!(&left(&b, "dropper.sh").unwrap().reason, Reason::NoSample(w) if w.contains("md5")));
    let b = build(&r, &cfg, Warninglists::embedded(), None, "x").unwrap();
    assert!(matches!(left(&b, "dropper.sh").unwrap().reason, Reason::NoSample(_)));
}

#[test]
fn values_misp_would_refuse_are_left_out_not_sent() {
    let mut r = report();
    r.network.domains.push(DomainIp { domain: "not a domain".into(), ip: "45.33.32.157".into() });
    r.network.hosts.push(NetHost { ip: "999.1.1.1".into(), hostname: None });
    let b = built(&r, &config());
    assert!(matches!(left(&b, "not a domain|45.33.32.157").unwrap().reason, Reason::Invalid(_)));
    assert!(matches!(left(&b, "999.1.1.1").unwrap().reason, Reason::Invalid(_)));
}

#[test]
fn a_url_task_sends_its_url() {
    let mut r = report();
    r.target.file = None;
    r.target.url = Some("http://landing.example.org/a".into());
    let b = built(&r, &config());
    assert!(pairs(&b.event).contains(&("url", "http://landing.example.org/a".into())));
    assert!(!pairs(&b.event).iter().any(|(k, _)| k.starts_with("filename|")));
}

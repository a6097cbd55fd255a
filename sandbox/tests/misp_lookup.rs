//! MISP → report against the embedded MISP store on loopback: which events
//! land in `misp` (only_ids, ioc_blacklist, maxioc, composite attributes),
//! in Cuckoo's shape, in few requests; a failing MISP leaves an error in the
//! report, never a failed task; the API's queue runs the lookup on each report.

mod fixture;

use std::time::Duration;

use ioclab_intel::client::MispClient;
use ioclab_intel::model::levels::ThreatLevel;
use ioclab_intel::store::Role;
use ioclab_sandbox::api::ApiConfig;
use ioclab_sandbox::misp::config::{List, ProcessingMisp};
use ioclab_sandbox::misp::lookup::{self, candidates};
use ioclab_sandbox::misp::SandboxToml;
use ioclab_sandbox::report::network::DomainIp;
use ioclab_sandbox::report::{Dropped, FileInfo, NetHost, Report};
use serde_json::{json, Value};

const SAMPLE_MD5: &str = "0123456789abcdef0123456789abcdef";
const DROPPED_SHA256: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

async fn add_event(url: &str, key: &str, event: Value) -> String {
    let r = reqwest::Client::new().post(format!("{url}/events/add")).header("Authorization", key).json(&event);
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    v["Event"]["id"].as_str().unwrap_or_else(|| panic!("{v}")).to_string()
}

/// Three events: an old high-level one with the sample (as a report makes it,
/// `filename|md5`) and the C2 name; a newer low-level one with the dropped
/// file's hash and the C2 address without the IDS flag; one with 8.8.8.8.
async fn seeded(dir: &std::path::Path) -> (String, String, [String; 3]) {
    let (url, key) = fixture::embedded_misp(dir, Role::User).await;
    let old = add_event(
        &url,
        &key,
        json!({"info": "Cuckoo Sandbox analysis #3 ", "date": "2024-03-01", "threat_level_id": 1, "Attribute": [
            {"type": "filename|md5", "value": format!("dropper.sh|{SAMPLE_MD5}"), "to_ids": true},
            {"type": "domain", "value": "c2.example", "to_ids": true},
        ]}),
    )
    .await;
    let new = add_event(
        &url,
        &key,
        json!({"info": "Stage 2 campaign", "date": "2024-05-01", "threat_level_id": 3, "Attribute": [
            {"type": "sha256", "value": DROPPED_SHA256, "to_ids": true},
            {"type": "ip-dst", "value": "203.0.113.7", "to_ids": false},
        ]}),
    )
    .await;
    let dns = add_event(
        &url,
        &key,
        json!({"info": "resolvers", "date": "2024-06-01", "Attribute": [{"type": "ip-dst", "value": "8.8.8.8", "to_ids": true}]}),
    )
    .await;
    (url, key, [old, new, dns])
}

fn report() -> Report {
    let mut r = Report::default();
    r.info.id = 9;
    r.target.file =
        Some(FileInfo { name: "dropper.sh".into(), md5: Some(SAMPLE_MD5.parse().unwrap()), ..Default::default() });
    r.dropped = vec![Dropped {
        file: FileInfo { sha256: Some(DROPPED_SHA256.parse().unwrap()), ..Default::default() },
        ..Default::default()
    }];
    r.network.hosts =
        vec![NetHost { ip: "203.0.113.7".into(), hostname: None }, NetHost { ip: "8.8.8.8".into(), hostname: None }];
    r.network.domains = vec![DomainIp { domain: "c2.example".into(), ip: "203.0.113.7".into() }];
    r
}

fn config(url: &str, key: &str) -> ProcessingMisp {
    ProcessingMisp {
        enabled: true,
        url: url.to_string(),
        apikey: key.to_string(),
        ioc_blacklist: List(vec!["8.8.8.8".into()]),
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn hits_land_in_the_report_as_cuckoo_writes_them() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (url, key, [old, new, _dns]) = seeded(dir.path()).await;
        let mut r = report();
        let outcome = lookup::enrich(&mut r, &config(&url, &key)).await.unwrap().unwrap();
        // only_ids: the C2 address of the newer event has no IDS flag; 8.8.8.8 is never asked
        let got: Vec<(String, &str, Option<ThreatLevel>, &str, Vec<&str>)> = r
            .misp
            .iter()
            .map(|h| {
                (
                    h.event_id.to_string(),
                    h.date.as_str(),
                    h.level,
                    h.info.as_str(),
                    h.iocs.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (new.clone(), "2024-05-01", Some(ThreatLevel::Low), "Stage 2 campaign", vec![DROPPED_SHA256]),
                (
                    old.clone(),
                    "2024-03-01",
                    Some(ThreatLevel::High),
                    "Cuckoo Sandbox analysis #3",
                    vec![SAMPLE_MD5, "c2.example"]
                ),
            ]
        );
        assert_eq!(r.misp[0].url, format!("{url}/events/view/{new}"));
        assert_eq!(outcome.candidates.blacklisted, ["8.8.8.8"]);
        assert_eq!(outcome.requests, 2, "one search, one index");
        assert_eq!(r.misp_lookup_error, None);
        // written as Cuckoo does: ids and levels as MISP's strings
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["misp"][0]["event_id"], json!(new));
        assert_eq!(v["misp"][0]["level"], json!("3"));
        let back = Report::from_slice(v.to_string().as_bytes(), "report.json").unwrap();
        assert_eq!(back.misp, r.misp);

        // without only_ids, the address counts too
        let mut r = report();
        let all = ProcessingMisp { only_ids: false, ..config(&url, &key) };
        lookup::enrich(&mut r, &all).await.unwrap().unwrap();
        assert_eq!(r.misp[0].iocs, [DROPPED_SHA256, "203.0.113.7"]);

        // maxioc 1: the sample's hash only, the first of the stable order
        let mut r = report();
        lookup::enrich(&mut r, &ProcessingMisp { maxioc: 1, ..config(&url, &key) }).await.unwrap().unwrap();
        assert_eq!(r.misp.len(), 1);
        assert_eq!(r.misp[0].iocs, [SAMPLE_MD5]);

        // disabled: nothing asked, nothing written
        let mut r = report();
        assert!(lookup::enrich(&mut r, &ProcessingMisp { enabled: false, ..config(&url, &key) }).await.is_none());
        assert!(r.misp.is_empty() && r.misp_lookup_error.is_none());
    });
}

#[test]
fn many_values_are_looked_up_in_few_requests() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (url, key, [old, ..]) = seeded(dir.path()).await;
        let mut r = report();
        r.network
            .hosts
            .extend((0..1200).map(|i| NetHost { ip: format!("198.51.{}.{}", i / 256, i % 256), hostname: None }));
        let client = MispClient::new(&url, &key, true, None).unwrap();
        let c = candidates(&r, &List::default(), 1000);
        assert_eq!(c.values.len(), 1000);
        let outcome = lookup::look_up(&client, &url, c, true).await.unwrap();
        assert_eq!(outcome.requests, 3, "2 searches of 500 values, 1 index");
        assert_eq!(outcome.hits.iter().map(|h| h.event_id.to_string()).collect::<Vec<_>>().last(), Some(&old));
    });
}

#[test]
fn a_failing_misp_leaves_a_reason_in_the_report() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (url, _key, _) = seeded(dir.path()).await;
        // a wrong key: MISP's 403, with what to check
        let mut r = report();
        let e = lookup::enrich(&mut r, &config(&url, "0123456789012345678901234567890123456789"))
            .await
            .unwrap()
            .unwrap_err();
        assert!(e.contains("authentication failed") && e.contains("API key"), "{e}");
        assert_eq!(r.misp_lookup_error.as_deref(), Some(e.as_str()));
        assert!(r.misp.is_empty());
        // nothing listening
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let mut r = report();
        let e = lookup::enrich(&mut r, &config(&closed, "k")).await.unwrap().unwrap_err();
        assert!(e.contains("cannot connect") && e.contains(&closed), "{e}");
        // no key at all
        let mut r = report();
        let e = lookup::enrich(&mut r, &config(&url, "")).await.unwrap().unwrap_err();
        assert!(e.contains("apikey"), "{e}");
        // the rest of the report is untouched
        assert_eq!(r.network.hosts.len(), 2);
    });
}

/// Polls the task until it is reported (the test runner's timeout bounds a hang).
async fn reported(base: &str, id: i64) -> Report {
    let client = ioclab_sandbox::client::CuckooClient::new(base, None);
    loop {
        let t = client.task(id).await.unwrap();
        match t["status"].as_str().unwrap() {
            "reported" => return client.report(id).await.unwrap(),
            "failed_analysis" | "failed_reporting" => panic!("{t}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[test]
fn the_queue_looks_each_report_up_and_a_dead_misp_fails_no_task() {
    let sample = std::fs::read(fixture::fixture_path("dropper.sh")).unwrap();
    let md5: String = {
        use md5::Digest;
        md5::Md5::digest(&sample).iter().map(|b| format!("{b:02x}")).collect()
    };
    let misp_rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let (url, key, event) = misp_rt.block_on(async {
        let (url, key) = fixture::embedded_misp(dir.path(), Role::User).await;
        let id = add_event(
            &url,
            &key,
            json!({"info": "dropper seen before", "date": "2024-01-01", "Attribute": [{"type": "md5", "value": md5, "to_ids": true}]}),
        )
        .await;
        (url, key, id)
    });
    let submit = |server: &fixture::Server| {
        fixture::block_on(async {
            let client = ioclab_sandbox::client::CuckooClient::new(&server.url, None);
            let id = client.submit_file(&fixture::fixture_path("dropper.sh"), &Default::default()).await.unwrap();
            reported(&server.url, id).await
        })
    };
    let with = |cfg: ProcessingMisp| {
        let mut misp = SandboxToml::default();
        misp.processing.misp = cfg;
        fixture::serve_config(ApiConfig { misp, ..Default::default() })
    };
    let r = submit(&with(config(&url, &key)));
    assert_eq!(r.misp.len(), 1, "{:?}", r.misp_lookup_error);
    assert_eq!((r.misp[0].event_id.to_string(), r.misp[0].iocs.clone()), (event, vec![md5.clone()]));

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let r = submit(&with(config(&closed, &key)));
    assert!(r.misp.is_empty());
    assert!(r.misp_lookup_error.as_deref().is_some_and(|e| e.contains("cannot connect")), "{:?}", r.misp_lookup_error);
    assert!(!r.signatures.is_empty(), "the analysis itself is whole");
    drop(misp_rt);
}

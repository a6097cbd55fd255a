//! Remote endpoints with the real binary: `ioclab endpoints token ...`, and
//! the appliance killed with SIGKILL while 20 endpoints send, then started
//! again: no acknowledged event lost, none stored twice.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{endpoint_sim, free_port, ioclab, run, Reaped};
use ioclab_agent::remote::pin::Fingerprint;
use ioclab_agent::remote::ship::{Appliance, Shipper};
use ioclab_agent::remote::spool::{Spool, SpoolLimits};
use ioclab_agent::remote::synthetic;
use ioclab_web::endpoints::EndpointDb;

#[test]
fn tokens_are_created_listed_and_revoked_from_the_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let (code, out, err) = run(&["endpoints", "--data", data, "token", "create", "--name", "team-blue"]);
    assert_eq!(code, 0, "{err}");
    let secret = out.lines().next().unwrap().strip_prefix("team-blue token: ").unwrap().to_string();
    assert_eq!(secret.len(), 64, "{out}");
    let (code, _, err) = run(&["endpoints", "--data", data, "token", "create", "--name", "team-blue"]);
    assert_ne!(code, 0);
    assert!(err.contains("exists already"), "{err}");
    let (code, out, _) = run(&["endpoints", "--data", data, "token", "create", "--group", "blue"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("endpoint-02 token: "), "{out}");
    let (code, _, err) = run(&["endpoints", "--data", data, "token", "revoke", "team-blue"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(&["endpoints", "--data", data, "token", "list"]);
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!((rows[0][0], rows[1][0]), ("team-blue", "endpoint-02"));
    assert_ne!(rows[0][2], "-", "team-blue is revoked: {out}");
    assert_eq!(rows[1][2], "-", "endpoint-02 is not: {out}");
    assert_eq!((rows[0][4], rows[1][4]), ("-", "blue"), "the groups: {out}");
    let db = std::fs::read(tmp.path().join("web.db")).unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "only the token's hash is stored");
    let (code, _, err) = run(&["endpoints", "--data", data, "token", "revoke", "nobody"]);
    assert_ne!(code, 0);
    assert!(err.contains("no enrolment token named nobody"), "{err}");
}

/// `ioclab endpoints serve` on `port`; returns it once it listens, with its fingerprint.
fn appliance(data: &Path, port: u16) -> (Reaped, Fingerprint) {
    let mut child = Reaped(
        ioclab()
            .args(["endpoints", "--data", data.to_str().unwrap(), "serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let fingerprint = loop {
        let line = lines.next().expect("the appliance printed its fingerprint before exiting").unwrap();
        if let Some(fp) = line.strip_prefix("fingerprint:") {
            break fp.trim().parse().unwrap();
        }
    };
    (child, fingerprint)
}

const ENDPOINTS: usize = 20;
const EVENTS_EACH: u64 = 1500;
/// Each endpoint's rate: the kill lands while every endpoint still sends.
const EVENTS_PER_SEC: u64 = 800;

#[test]
fn sigkill_while_20_endpoints_send_loses_no_acknowledged_event_and_stores_none_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("appliance");
    let (code, out, err) = run(&["endpoints", "--data", data.to_str().unwrap(), "token", "create", "--name", "class"]);
    assert_eq!(code, 0, "{err}");
    let secret = out.lines().next().unwrap().strip_prefix("class token: ").unwrap().to_string();
    let port = free_port();
    let (mut first, fingerprint) = appliance(&data, port);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let target = Appliance { url: format!("https://127.0.0.1:{port}").parse().unwrap(), token: secret, fingerprint };
    let mut endpoints = Vec::new();
    for i in 0..ENDPOINTS {
        let name = format!("pc-{i:02}");
        let limits = SpoolLimits { batch_events: 50, batch_age: Duration::from_millis(20), ..SpoolLimits::default() };
        let spool = Spool::open(&tmp.path().join(&name), &name, limits).unwrap();
        let shipper = Shipper::new(&target).unwrap();
        let produced = Arc::new(AtomicBool::new(false));
        // the endpoint's sensor: synthetic events written into the spool as the agent's output does
        let producer = {
            let (spool, produced, name) = (spool.clone(), produced.clone(), name.clone());
            rt.spawn(async move {
                let mut sent = Vec::new();
                let never = AtomicBool::new(false);
                endpoint_sim::produce(&spool, EVENTS_PER_SEC, EVENTS_EACH, &never, |n| {
                    let line = synthetic::file_create(&name, n);
                    sent.push(endpoint_sim::uuid_of(&line));
                    line
                })
                .await;
                produced.store(true, Ordering::SeqCst);
                sent
            })
        };
        // its shipper: the batch's uuids count as acknowledged once the appliance acked it
        let sender = {
            let (acked, failures) = (acked.clone(), failures.clone());
            rt.spawn(async move {
                endpoint_sim::ship(
                    &shipper,
                    &spool,
                    || produced.load(Ordering::SeqCst),
                    |body, _ack| acked.lock().unwrap().extend(endpoint_sim::events(body).map(endpoint_sim::uuid_of)),
                    |_| {
                        failures.fetch_add(1, Ordering::SeqCst);
                    },
                )
                .await
            })
        };
        endpoints.push((producer, sender));
    }

    // a third of the events acknowledged: SIGKILL, mid-flight
    while acked.lock().unwrap().len() < (ENDPOINTS as u64 * EVENTS_EACH / 3) as usize {
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    first.wait().unwrap();
    let acked_before = acked.lock().unwrap().clone();
    let stored_after_kill: HashSet<String> = rt.block_on(async {
        let db = EndpointDb::open(&data.join("web.db")).await.unwrap();
        db.event_uuids().await.unwrap().into_iter().collect()
    });
    let lost: Vec<&String> = acked_before.difference(&stored_after_kill).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost by the kill, e.g. {:?}", lost.len(), lost.first());
    assert!(acked_before.len() < ENDPOINTS * EVENTS_EACH as usize, "the kill came before the end");

    // down for a while: the endpoints spool and retry
    let failures_before = failures.load(Ordering::SeqCst);
    while failures.load(Ordering::SeqCst) < failures_before + ENDPOINTS as u64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_second, again) = appliance(&data, port);
    assert_eq!(again, fingerprint, "the same certificate after a restart");

    let mut sent = Vec::new();
    for (producer, sender) in endpoints {
        sent.extend(rt.block_on(producer).unwrap());
        rt.block_on(sender).unwrap();
    }
    let stored: Vec<String> = rt.block_on(async {
        let db = EndpointDb::open(&data.join("web.db")).await.unwrap();
        db.event_uuids().await.unwrap()
    });
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "an event stored twice");
    let sent: HashSet<&String> = sent.iter().collect();
    assert_eq!(sent.len(), ENDPOINTS * EVENTS_EACH as usize);
    assert_eq!(unique, sent, "every event stored once in the end");
}

//! Remote endpoints against a real TLS ingest listener on loopback:
//! enrolment tokens, certificate pinning, acks and duplicates, the spool.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ioclab_agent::remote::pin::Fingerprint;
use ioclab_agent::remote::ship::{Appliance, ShipError, Shipper};
use ioclab_agent::remote::spool::{Spool, SpoolLimits};
use ioclab_agent::remote::synthetic;
use ioclab_agent::remote::wire::BatchHeader;
use ioclab_web::endpoints::tls::{self, ApplianceCert};
use ioclab_web::endpoints::{ingest, EndpointDb};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running ingest listener; dropping it stops it.
struct Running {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    db: EndpointDb,
    _stop: oneshot::Sender<()>,
}

async fn start(dir: &std::path::Path, listener: TcpListener) -> Running {
    let db = EndpointDb::open(&dir.join("web.db")).await.unwrap();
    let cert = ApplianceCert::load_or_create(&dir.join("endpoints")).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tls::serve(listener, ingest::router(db.clone()), cert.server_config().unwrap(), async {
        let _ = stopped.await;
    }));
    Running { addr, fingerprint: cert.fingerprint(), db, _stop: stop }
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn appliance(addr: SocketAddr, token: &str, fingerprint: Fingerprint) -> Appliance {
    Appliance { url: format!("https://{addr}").parse().unwrap(), token: token.into(), fingerprint }
}

fn batch(id: &str, events: &[String]) -> Vec<u8> {
    let mut body = BatchHeader { batch: id.into(), endpoint: "pc-01".into(), agent_version: "test".into() }.to_line();
    for e in events {
        body.extend_from_slice(e.as_bytes());
        body.push(b'\n');
    }
    body
}

#[tokio::test]
async fn a_batch_is_acked_once_stored_and_a_resent_batch_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), loopback().await).await;
    let (token, secret) = app.db.create_token(Some("team-blue".parse().unwrap())).await.unwrap();
    assert_eq!(token.name.as_str(), "team-blue");
    let shipper = Shipper::new(&appliance(app.addr, &secret, app.fingerprint)).unwrap();
    let events: Vec<String> = (0..50).map(|n| synthetic::file_create("pc-01", n)).collect();
    let ack = shipper.send(batch("b-1", &events)).await.unwrap();
    assert_eq!((ack.batch.as_str(), ack.stored, ack.duplicates), ("b-1", 50, 0));
    let again = shipper.send(batch("b-1", &events)).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 50));
    let stored = app.db.event_uuids().await.unwrap();
    assert_eq!(stored.len(), 50);
    assert_eq!(app.db.tokens().await.unwrap()[0].events, 50);
}

#[tokio::test]
async fn an_unknown_or_revoked_token_gets_401() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), loopback().await).await;
    let (token, secret) = app.db.create_token(None).await.unwrap();
    assert_eq!(token.name.as_str(), "endpoint-01");
    let body = batch("b-1", &[synthetic::file_create("pc-01", 1)]);
    let ok = Shipper::new(&appliance(app.addr, &secret, app.fingerprint)).unwrap();
    ok.send(body.clone()).await.unwrap();

    let wrong = Shipper::new(&appliance(app.addr, "0123abcd", app.fingerprint)).unwrap();
    assert!(matches!(wrong.send(body.clone()).await, Err(ShipError::Unauthorized(_))));

    app.db.revoke(&token.name).await.unwrap();
    let e = ok.send(batch("b-2", &[synthetic::file_create("pc-01", 2)])).await.unwrap_err();
    assert!(matches!(e, ShipError::Unauthorized(_)), "{e}");
    assert!(e.to_string().contains("revoked"), "{e}");
    let listed = app.db.tokens().await.unwrap();
    assert!(listed[0].revoked.is_some());
    assert_eq!(listed[0].events, 1, "the events sent before the revocation stay");
    assert!(app.db.revoke(&"nobody".parse().unwrap()).await.is_err());
    assert!(app.db.create_token(Some(token.name.clone())).await.is_err(), "names are unique");
}

#[tokio::test]
async fn only_the_pinned_certificate_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), loopback().await).await;
    let (_, secret) = app.db.create_token(None).await.unwrap();
    // another appliance's certificate: a man in the middle would present one like it
    let other = ApplianceCert::load_or_create(&dir.path().join("other")).unwrap().fingerprint();
    assert_ne!(other, app.fingerprint);
    let shipper = Shipper::new(&appliance(app.addr, &secret, other)).unwrap();
    let e = shipper.send(batch("b-1", &[synthetic::file_create("pc-01", 1)])).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ShipError::Unreachable { .. }), "{msg}");
    assert!(msg.contains(&format!("fingerprint {}", app.fingerprint)) && msg.contains("not the pinned"), "{msg}");
    assert!(app.db.event_uuids().await.unwrap().is_empty(), "nothing went through");
    // the certificate is kept: a restart presents the same fingerprint
    let again = ApplianceCert::load_or_create(&dir.path().join("endpoints")).unwrap();
    assert_eq!(again.fingerprint(), app.fingerprint);
}

#[tokio::test]
async fn a_bad_batch_is_refused_naming_its_line_and_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), loopback().await).await;
    let (_, secret) = app.db.create_token(None).await.unwrap();
    let shipper = Shipper::new(&appliance(app.addr, &secret, app.fingerprint)).unwrap();
    let mut body = batch("b-9", &[synthetic::file_create("pc-01", 1)]);
    body.extend_from_slice(b"{\"info\": 3}\n");
    let e = shipper.send(body).await.unwrap_err();
    assert!(matches!(e, ShipError::Rejected(_)), "{e}");
    assert!(e.to_string().contains("batch b-9, line 3"), "{e}");
    assert!(app.db.event_uuids().await.unwrap().is_empty(), "a refused batch stores nothing");
}

#[tokio::test]
async fn events_spooled_while_the_appliance_is_down_are_stored_once_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    // the appliance's address is known but nothing listens yet
    let addr = loopback().await.local_addr().unwrap();
    let cert = ApplianceCert::load_or_create(&dir.path().join("endpoints")).unwrap();
    let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
    let (_, secret) = db.create_token(None).await.unwrap();

    let limits =
        SpoolLimits { batch_events: 100, batch_age: std::time::Duration::from_millis(20), ..SpoolLimits::default() };
    let spool = Spool::open(&dir.path().join("spool"), "pc-01", limits).unwrap();
    let shipper = Shipper::new(&appliance(addr, &secret, cert.fingerprint())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (spool, stop) = (spool.clone(), stop.clone());
        tokio::spawn(async move { shipper.run(&spool, &stop).await })
    };
    let mut w = spool.writer();
    let mut sent = Vec::new();
    for n in 0..1000 {
        let line = synthetic::file_create("pc-01", n);
        sent.push(
            serde_json::from_str::<serde_json::Value>(&line).unwrap()["info"]["event"]["uuid"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(spool.pending().0 >= 10, "the batches wait in the spool: {:?}", spool.pending());
    assert!(db.event_uuids().await.unwrap().is_empty());

    let app = start(dir.path(), TcpListener::bind(addr).await.unwrap()).await;
    while !spool.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let mut stored = app.db.event_uuids().await.unwrap();
    stored.sort();
    sent.sort();
    assert_eq!(stored, sent, "every event stored, once");
}

//! Remote endpoints against a real TLS ingest listener on loopback:
//! enrolment tokens, certificate pinning, acks and duplicates, the spool.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ioclab_agent::remote::orders::OrderClient;
use ioclab_agent::remote::pin::Fingerprint;
use ioclab_agent::remote::ship::{Appliance, ShipError, Shipper};
use ioclab_agent::remote::spool::{Spool, SpoolLimits};
use ioclab_agent::remote::synthetic;
use ioclab_agent::remote::wire::{order_done_path, BatchHeader, OrderDone, OrderKind};
use ioclab_web::endpoints::tls::{self, ApplianceCert};
use ioclab_web::endpoints::{ingest, EndpointDb, PushTarget};
use ioclab_web::users::UserName;
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

/// The IoC set a push carries, one domain.
fn iocs(domain: &str) -> String {
    format!("{{\"value\":\"{domain}\",\"severity\":4}}\n")
}

fn lines_of(order: &ioclab_agent::remote::wire::Order) -> &str {
    let OrderKind::Iocs { lines, .. } = &order.kind else { panic!("not an IoC order: {order:?}") };
    lines
}

#[tokio::test]
async fn pushes_reach_only_their_targets_and_the_newest_wins() {
    let dir = tempfile::tempdir().unwrap();
    let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
    let name = |s: &str| s.parse::<UserName>().unwrap();
    let (alice, _) = db.create_token_in(Some(name("alice")), Some(name("blue"))).await.unwrap();
    let (bob, _) = db.create_token_in(Some(name("bob")), Some(name("red"))).await.unwrap();
    let (carol, _) = db.create_token(Some(name("carol"))).await.unwrap();
    assert_eq!(alice.group, Some(name("blue")));
    assert_eq!(db.tokens().await.unwrap()[1].group, Some(name("red")), "the group is listed");
    assert!(db.push_for(&alice, "pc-a", 0).await.unwrap().is_none(), "no push yet");

    let mut woken = db.push_watch();
    let all = db.push_iocs(&PushTarget::All, "day 1", &iocs("all.example")).await.unwrap();
    assert!(woken.has_changed().unwrap(), "a push wakes the waiting polls");
    assert_eq!(*woken.borrow_and_update(), all);
    for (t, e) in [(&alice, "pc-a"), (&bob, "pc-b"), (&carol, "pc-c")] {
        let o = db.push_for(t, e, 0).await.unwrap().unwrap();
        assert_eq!((o.id as i64, lines_of(&o)), (all, iocs("all.example").as_str()));
        assert!(db.push_for(t, e, o.id).await.unwrap().is_none(), "an applied order is not sent again");
    }

    let blue = db.push_iocs(&PushTarget::Group(name("blue")), "blue team", &iocs("blue.example")).await.unwrap();
    let one = PushTarget::Endpoint { token: name("bob"), endpoint: "pc-b2".into() };
    let bob2 = db.push_iocs(&one, "bob's second machine", &iocs("bob2.example")).await.unwrap();
    let got = |t, e, after| {
        let db = db.clone();
        async move { db.push_for(t, e, after).await.unwrap().map(|o| o.id as i64) }
    };
    assert_eq!(got(&alice, "pc-a", all as u64).await, Some(blue));
    assert_eq!(got(&bob, "pc-b", all as u64).await, None, "bob is not in blue, pc-b is not pc-b2");
    assert_eq!(got(&bob, "pc-b2", 0).await, Some(bob2));
    assert_eq!(got(&carol, "pc-c", all as u64).await, None);
    assert_eq!(got(&carol, "pc-b2", 0).await, Some(all), "the endpoint target names the token too");

    // a newer push to all replaces the group's for alice: a set, not a diff
    let newest = db.push_iocs(&PushTarget::All, "day 2", &iocs("day2.example")).await.unwrap();
    assert_eq!(got(&alice, "pc-a", 0).await, Some(newest));
    assert_eq!(got(&alice, "pc-a", blue as u64).await, Some(newest));

    let e = db.push_iocs(&PushTarget::Group(name("green")), "x", &iocs("x.example")).await.unwrap_err();
    assert!(e.to_string().contains("no enrolment token is in group green"), "{e}");
    let e = db
        .push_iocs(&PushTarget::Endpoint { token: name("dave"), endpoint: "x".into() }, "x", &iocs("x.example"))
        .await;
    assert!(matches!(e, Err(ioclab_web::endpoints::EndpointError::Unknown(_))), "{e:?}");
    let bad = format!("{}{{\"value\":\"x\",\"severity\":99}}\n", iocs("a.example"));
    let e = db.push_iocs(&PushTarget::All, "day-3.json", &bad).await.unwrap_err().to_string();
    assert!(e.contains("day-3.json:2: "), "{e}");
    let e = db.push_iocs(&PushTarget::All, "empty", "# nothing\n").await.unwrap_err().to_string();
    assert!(e.contains("no IoC"), "{e}");

    let ok = OrderDone { ok: true, message: "1 IoCs from 1 file(s)".into() };
    assert!(db.record_done(&alice, "pc-a", newest as u64, &ok).await.unwrap());
    let refused = OrderDone { ok: false, message: "IoC reload refused".into() };
    assert!(db.record_done(&bob, "pc-b", newest as u64, &refused).await.unwrap());
    assert!(!db.record_done(&bob, "pc-b", 999, &ok).await.unwrap(), "no such push");
    let pushes = db.pushes().await.unwrap();
    assert_eq!(pushes.iter().map(|p| p.id).collect::<Vec<_>>(), vec![newest, bob2, blue, all], "newest first");
    assert_eq!(pushes[0].label, "day 2");
    assert_eq!(pushes[0].bytes, iocs("day2.example").len() as i64);
    let applied: Vec<(&str, &str, bool)> =
        pushes[0].applied.iter().map(|a| (a.token.as_str(), a.endpoint.as_str(), a.ok)).collect();
    assert_eq!(applied, vec![("alice", "pc-a", true), ("bob", "pc-b", false)]);
    assert_eq!(pushes[1].target, one);
    assert_eq!(pushes[2].target, PushTarget::Group(name("blue")));
    assert!(pushes[3].applied.is_empty());
}

#[tokio::test]
async fn a_waiting_long_poll_gets_the_push_and_its_report_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), loopback().await).await;
    let name = |s: &str| s.parse::<UserName>().unwrap();
    let (alice, alice_secret) = app.db.create_token_in(Some(name("alice")), Some(name("blue"))).await.unwrap();
    let (_, bob_secret) = app.db.create_token_in(Some(name("bob")), Some(name("red"))).await.unwrap();
    let client = |secret: &str, endpoint: &str| {
        OrderClient::new(&appliance(app.addr, secret, app.fingerprint), endpoint, false).unwrap()
    };
    let (alice_pc, bob_pc) = (client(&alice_secret, "pc-a"), client(&bob_secret, "pc-b"));

    // both wait; a push to blue answers alice's poll, bob's keeps waiting
    let alice_poll = tokio::spawn({
        let c = alice_pc.clone();
        async move { c.next(0).await }
    });
    let bob_poll = tokio::spawn({
        let c = bob_pc.clone();
        async move { c.next(0).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!alice_poll.is_finished() && !bob_poll.is_finished(), "no push yet: the polls wait");
    let id = app.db.push_iocs(&PushTarget::Group(name("blue")), "blue", &iocs("blue.example")).await.unwrap();
    let order = alice_poll.await.unwrap().unwrap().expect("the push answers the waiting poll");
    assert_eq!(order.id as i64, id);
    assert_eq!(lines_of(&order), iocs("blue.example"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!bob_poll.is_finished(), "bob is not in blue");

    // a push made by another process (the CLI's own connection: no wake-up) is seen too
    let cli = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
    let all = cli.push_iocs(&PushTarget::All, "day 2", &iocs("day2.example")).await.unwrap();
    let order = bob_poll.await.unwrap().unwrap().expect("the table is looked at while waiting");
    assert_eq!(order.id as i64, all);
    let newest = alice_pc.next(id as u64).await.unwrap().unwrap();
    assert_eq!(newest.id as i64, all, "the newest push wins");

    alice_pc.done(&newest.done_path(), &OrderDone { ok: true, message: "IoCs loaded: 1 IoCs".into() }).await.unwrap();
    bob_pc.done(&order.done_path(), &OrderDone { ok: false, message: "refused".into() }).await.unwrap();
    let e = bob_pc.done(&order_done_path(9999), &OrderDone { ok: true, message: String::new() }).await.unwrap_err();
    assert!(e.to_string().contains("no push 9999"), "{e}");
    let pushes = app.db.pushes().await.unwrap();
    let applied: Vec<(&str, &str, bool)> =
        pushes[0].applied.iter().map(|a| (a.token.as_str(), a.endpoint.as_str(), a.ok)).collect();
    assert_eq!(applied, vec![("alice", "pc-a", true), ("bob", "pc-b", false)]);
    let rows = app.db.endpoints().await.unwrap();
    /// token, endpoint, (last push, applied)
    type Last<'a> = (&'a str, &'a str, Option<(i64, bool)>);
    let last: Vec<Last> = rows
        .iter()
        .map(|r| (r.token.as_str(), r.endpoint.as_str(), r.last_push.as_ref().map(|p| (p.id, p.ok))))
        .collect();
    assert_eq!(last, vec![("alice", "pc-a", Some((all, true))), ("bob", "pc-b", Some((all, false)))]);
    assert_eq!(rows[0].group, Some(name("blue")));

    // a raw report that is not one is refused naming the place
    let raw = reqwest::Client::builder()
        .use_preconfigured_tls(ioclab_agent::remote::pin::client_config(app.fingerprint))
        .build()
        .unwrap();
    let r = raw
        .post(format!("https://{}/v1/orders/{all}/done?endpoint=pc-a", app.addr))
        .bearer_auth(&alice_secret)
        .body("{\"ok\": yes}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("order report, line 1, column"));

    app.db.revoke(&alice.name).await.unwrap();
    assert!(matches!(alice_pc.next(0).await, Err(ShipError::Unauthorized(_))));
    assert!(matches!(bob_pc.next(0).await, Ok(Some(_))), "bob's token still works");
    let e =
        alice_pc.done(&order_done_path(all as u64), &OrderDone { ok: true, message: String::new() }).await.unwrap_err();
    assert!(matches!(e, ShipError::Unauthorized(_)), "{e}");
}

#[tokio::test]
async fn a_long_poll_without_an_order_ends_empty_and_the_agent_polls_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
    let cert = ApplianceCert::load_or_create(&dir.path().join("endpoints")).unwrap();
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    let router = ingest::router_waiting(db.clone(), std::time::Duration::from_millis(200));
    tokio::spawn(tls::serve(listener, router, cert.server_config().unwrap(), async {
        let _ = stopped.await;
    }));
    let (_, secret) = db.create_token(None).await.unwrap();
    let client = OrderClient::new(&appliance(addr, &secret, cert.fingerprint()), "pc-01", false).unwrap();
    assert_eq!(client.next(0).await.unwrap(), None, "204: no order in the wait");
    let id = db.push_iocs(&PushTarget::All, "day 1", &iocs("a.example")).await.unwrap();
    assert_eq!(client.next(0).await.unwrap().map(|o| o.id as i64), Some(id));
    assert_eq!(client.next(id as u64).await.unwrap(), None, "nothing newer");
}

#[tokio::test]
async fn an_agents_order_loop_writes_the_push_reloads_and_reports() {
    use ioclab_agent::remote::orders::{self, PushedIocs, Reload};
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), loopback().await).await;
    let (_, secret) = app.db.create_token(None).await.unwrap();
    let client = OrderClient::new(&appliance(app.addr, &secret, app.fingerprint), "pc-01", false).unwrap();
    let pushed = PushedIocs::beside(&dir.path().join("agent").join("spool"));
    // the sensor's reload, without eBPF: the pushed file loaded as the agent loads it
    let file = pushed.path().to_path_buf();
    let reload: Arc<Reload> = Arc::new(move || {
        let (_, report) =
            ioclab_agent::ioc::loader::load_files(std::slice::from_ref(&file)).map_err(|e| e.to_string())?;
        Ok(format!("IoCs loaded: {}", report.counts()))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (stop, pushed) = (stop.clone(), pushed.clone());
        tokio::spawn(async move { orders::run(&client, &pushed, reload, None, &stop).await })
    };
    let report = |id: i64| {
        let db = app.db.clone();
        async move {
            loop {
                let pushes = db.pushes().await.unwrap();
                if let Some(a) = pushes.iter().find(|p| p.id == id).and_then(|p| p.applied.first()) {
                    return a.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let t = std::time::Instant::now();
    let first = app.db.push_iocs(&PushTarget::All, "day 1", &iocs("a.example")).await.unwrap();
    let a = report(first).await;
    // the figure (push by the appliance's own process -> the agent's report), not a target
    eprintln!("push -> order written, loaded, reported: {} ms", t.elapsed().as_millis());
    assert!(a.ok && a.message.contains("1 IoCs"), "{a:?}");
    assert_eq!(pushed.applied(), first as u64);
    let kept = std::fs::read_to_string(pushed.path()).unwrap();
    assert!(kept.contains("a.example"), "{kept}");

    // the next push replaces the kept set
    let second = app.db.push_iocs(&PushTarget::All, "day 2", &iocs("b.example")).await.unwrap();
    let b = report(second).await;
    assert!(b.ok, "{b:?}");
    let kept = std::fs::read_to_string(pushed.path()).unwrap();
    assert!(kept.contains("b.example") && !kept.contains("a.example"), "a set, not a diff: {kept}");
    assert_eq!(pushed.applied(), second as u64);
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
}

#[tokio::test]
async fn a_store_made_before_pushes_gets_their_columns_and_keeps_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.db");
    {
        // the tables as the first release made them
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        for sql in [
            "CREATE TABLE endpoint_tokens (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                 digest TEXT NOT NULL UNIQUE, created INTEGER NOT NULL, revoked INTEGER)",
            "CREATE TABLE endpoints (token INTEGER NOT NULL REFERENCES endpoint_tokens(id), endpoint TEXT NOT NULL,
                 agent_version TEXT NOT NULL, last_seen INTEGER NOT NULL, events INTEGER NOT NULL,
                 PRIMARY KEY (token, endpoint))",
            "INSERT INTO endpoint_tokens (name, digest, created) VALUES ('old-pc', 'x', 1)",
            "INSERT INTO endpoints VALUES (1, 'pc-old', '0.1.0', 1, 5)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let db = EndpointDb::open(&path).await.unwrap();
    let tokens = db.tokens().await.unwrap();
    assert_eq!((tokens[0].name.as_str(), &tokens[0].group), ("old-pc", &None));
    let rows = db.endpoints().await.unwrap();
    assert_eq!((rows[0].endpoint.as_str(), rows[0].events, &rows[0].last_push), ("pc-old", 5, &None));
    let id = db.push_iocs(&PushTarget::All, "day 1", &iocs("a.example")).await.unwrap();
    assert_eq!(db.push_for(&tokens[0], "pc-old", 0).await.unwrap().map(|o| o.id as i64), Some(id));
    // opened again (the CLI while the appliance runs): nothing to add twice
    EndpointDb::open(&path).await.unwrap();
}

#[tokio::test]
async fn an_agent_loop_with_allow_steps_runs_its_steps_order_once_and_one_without_is_never_sent_one() {
    use ioclab_agent::remote::orders::{self, PushedIocs, Reload, StepsRunner};
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), loopback().await).await;
    let (_, secret) = app.db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    let alice: UserName = "alice".parse().unwrap();
    let reload: Arc<Reload> = Arc::new(|| Ok("IoCs loaded".to_string()));
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    // the runner the binary gives with --allow-steps (here without namespaces): what it was sent
    let runner: Arc<StepsRunner> = {
        let ran = ran.clone();
        Arc::new(move |id, body| {
            ran.lock().unwrap().push((id, body.clone()));
            OrderDone { ok: true, message: "dig exited 0".into() }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let agent = |endpoint: &str, steps: Option<Arc<StepsRunner>>| {
        let client =
            OrderClient::new(&appliance(app.addr, &secret, app.fingerprint), endpoint, steps.is_some()).unwrap();
        let pushed = PushedIocs::beside(&dir.path().join(endpoint).join("spool"));
        let (stop, reload) = (stop.clone(), reload.clone());
        let task = {
            let pushed = pushed.clone();
            tokio::spawn(async move { orders::run(&client, &pushed, reload, steps, &stop).await })
        };
        (task, pushed)
    };
    let (laptop, laptop_iocs) = agent("laptop", Some(runner));
    let (desktop, _) = agent("desktop", None);
    let announced = |endpoint: &'static str, allowed: bool| {
        let (db, alice) = (app.db.clone(), alice.clone());
        async move {
            // its row shows the poll: the desktop's must exist before its refusal means anything
            while !db.endpoints().await.unwrap().iter().any(|e| e.endpoint == endpoint)
                || db.allows_steps(&alice, endpoint).await.unwrap() != allowed
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    announced("laptop", true).await;
    announced("desktop", false).await;

    let body = r#"{"scenario":"dns-ioc-why-kunai-rocks","run":"r1","network":{},"steps":[]}"#;
    let ttl = std::time::Duration::from_secs(60);
    let id = app.db.queue_steps(&alice, "laptop", body, ttl).await.unwrap();
    let done = loop {
        if let Some(d) = app.db.steps_done(id).await.unwrap() {
            break d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(done, OrderDone { ok: true, message: "dig exited 0".into() });
    assert_eq!(*ran.lock().unwrap(), vec![(id as u64, serde_json::from_str(body).unwrap())], "run once");
    // the steps order's id does not count as an applied push: push 1 still comes
    let push = app.db.push_iocs(&PushTarget::All, "day 1", &iocs("a.example")).await.unwrap();
    assert_eq!((id, push), (1, 1), "ids apart, both 1");
    while laptop_iocs.applied() != push as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // the agent without --allow-steps: refused on the appliance, nothing queued
    let e = app.db.queue_steps(&alice, "desktop", body, ttl).await.unwrap_err();
    assert!(e.to_string().contains("did not join with --allow-steps"), "{e}");
    assert_eq!(app.db.steps_orders_for(&alice, "desktop").await.unwrap(), 0);
    assert_eq!(ran.lock().unwrap().len(), 1);
    stop.store(true, Ordering::Relaxed);
    laptop.await.unwrap();
    desktop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_reports_are_recorded_while_batches_are_stored() {
    // record_done read the push, then wrote: a batch committed in between
    // made SQLite refuse the write at once (SQLITE_BUSY_SNAPSHOT), and the
    // agents got HTTP 500 under load
    let dir = tempfile::tempdir().unwrap();
    let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
    let (token, _) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    let push = db.push_iocs(&PushTarget::All, "day 1", &iocs("all.example")).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (db, token, stop) = (db.clone(), token.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<String> = (0..200).map(|k| synthetic::file_create("pc-01", n * 200 + k)).collect();
                let body = batch(&format!("w{w}-{n}"), &events);
                let parsed = ioclab_agent::remote::wire::Batch::parse(&body).unwrap();
                db.store_batch(&token, parsed).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut failures = Vec::new();
    for i in 0..200 {
        let done = OrderDone { ok: true, message: format!("report {i}") };
        match db.record_done(&token, &format!("pc-{}", i % 20), push as u64, &done).await {
            Ok(true) => {}
            other => failures.push(format!("report {i}: {other:?}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut batches = 0;
    for w in writers {
        batches += w.await.unwrap();
    }
    assert!(batches > 0, "no batch was stored alongside the reports");
    assert!(
        failures.is_empty(),
        "{} of 200 reports failed while {batches} batches were stored: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        !db.record_done(&token, "pc-1", push as u64 + 1000, &OrderDone { ok: true, message: String::new() })
            .await
            .unwrap(),
        "no such push"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_stored_at_once_are_each_acked_with_their_own_counts() {
    // batches arriving together share one transaction (group commit): each
    // ack must still count its own events, a uuid in two batches once
    let dir = tempfile::tempdir().unwrap();
    let db = EndpointDb::open(&dir.path().join("web.db")).await.unwrap();
    let (token, _) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    let shared: Vec<String> = (0..50).map(|n| synthetic::file_create("pc-01", n)).collect();
    let mut tasks = Vec::new();
    for b in 0..16u64 {
        let (db, token, shared) = (db.clone(), token.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut events: Vec<String> =
                (0..300).map(|k| synthetic::file_create("pc-01", 1000 + b * 300 + k)).collect();
            events.extend(shared);
            let body = batch(&format!("b-{b}"), &events);
            let parsed = ioclab_agent::remote::wire::Batch::parse(&body).unwrap();
            db.store_batch(&token, parsed).await.unwrap()
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.push(t.await.unwrap());
    }
    for a in &acks {
        assert_eq!(a.stored + a.duplicates, 350, "{a:?}");
        assert!(a.stored >= 300, "a batch's own events are all stored: {a:?}");
    }
    assert_eq!(acks.iter().map(|a| a.stored).sum::<u64>(), 16 * 300 + 50, "the shared 50 stored once: {acks:?}");
    assert_eq!(db.event_uuids().await.unwrap().len(), 16 * 300 + 50);
}

//! A scenario on the trainee's own endpoint (`expect.endpoint: trainee`),
//! live (root, eBPF), through the web app, the real endpoint store and
//! batches stored as the ingest stores an agent's: the run's IoCs are
//! pushed to alice's endpoint and the run goes on only once it reported
//! applying them; the steps are not sent (no `--allow-steps`) but shown to
//! alice with an "I ran them" button; the run passes on her endpoint's
//! detection and her question is answered from that endpoint's event; a
//! second run, where her endpoint sees the query without a detection,
//! fails naming the expectation, the endpoint and that nearest event.
//! Under `CI=true` it fails where the lab cannot run; elsewhere it skips.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, StatusCode};
use common::*;
use ioclab_agent::remote::wire::{Batch, BatchHeader, OrderDone, OrderKind, OrdersQuery};
use ioclab_lab::engine::remote::{RemoteEndpoint, RemoteError, RemoteEvent, StepsOrder};
use ioclab_lab::engine::{EngineError, RunOptions};
use ioclab_lab::run::{RunEvent, RunEventKind, RunFolder, StageResult};
use ioclab_lab::scenario::{load, Loaded, Stage};
use ioclab_web::endpoints::{EndpointDb, EnrolToken, PushTarget};
use ioclab_web::limit::{LimitConfig, LoginLimiter};
use ioclab_web::runs::{Engine, Runs};
use ioclab_web::state::{AppState, Links};
use ioclab_web::users::UserDb;
use serde_json::{json, Value};

/// One live lab at a time: each loads the eBPF programs.
static LIVE: Mutex<()> = Mutex::new(());

/// A copy of the shipped scenario in `scenarios`, on the trainee's endpoint.
fn on_trainee(scenarios: &std::path::Path) -> Loaded {
    let copy = scenarios.join(SCENARIO);
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(shipped()).unwrap().flatten().filter(|f| f.path().is_file()) {
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    let yaml = copy.join("scenario.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replacen("expect:\n", "expect:\n  endpoint: trainee\n", 1)).unwrap();
    load::load(&copy).unwrap()
}

fn shipped() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios").join(SCENARIO)
}

const ENDPOINT: &str = "laptop";

/// A Kunai dns_query event of alice's endpoint for why.kunai.rocks, detected or not.
fn dns_query(n: u32, detected: bool) -> Value {
    let mut e = json!({
        "data": {"query": "why.kunai.rocks", "proto": "udp", "response": "kunai-project.github.io;127.0.66.80",
                 "dns_server": {"ip": "192.168.56.1", "port": 53}},
        "info": {
            "host": {"uuid": "0d7a5e1c-0000-4000-8000-000000000001", "name": "alice-laptop"},
            "event": {"source": "kunai", "id": 61, "name": "dns_query",
                      "uuid": format!("7e57a11c-0000-4000-8000-{n:012}"), "batch": n},
            "task": {"name": "dig", "pid": 4242, "tgid": 4242, "uid": 1000, "namespaces": {"mnt": 4026531841u64}},
            "utc_time": "2026-11-30T15:00:00.000000000Z"
        }
    });
    if detected {
        e["detection"] = json!({"iocs": ["why.kunai.rocks"], "severity": 7});
    }
    e
}

/// Stores `events` as alice's endpoint's agent would send them.
async fn ship(db: &EndpointDb, token: &EnrolToken, batch: &str, events: &[Value]) {
    let header = BatchHeader { batch: batch.into(), endpoint: ENDPOINT.into(), agent_version: "test".into() };
    let mut body = header.to_line();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    let batch = Batch::parse(&body).unwrap();
    db.store_batch(token, batch).await.unwrap();
}

/// Plays alice's agent's order loop: applies each IoC push for her endpoint
/// (reports it done); returns the lines of the pushes seen, once `until` says so.
async fn agent_orders(db: EndpointDb, token: EnrolToken, stop: Arc<tokio::sync::Notify>) -> Vec<String> {
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let q = OrdersQuery { endpoint: ENDPOINT.into(), after, allow_steps: false };
        if let Some(order) = db.order_for(&token, &q).await.unwrap() {
            // IoC orders only: steps are never sent to an endpoint without --allow-steps
            let OrderKind::Iocs { lines, .. } = &order.kind else {
                panic!("steps sent without --allow-steps: {order:?}")
            };
            let done = OrderDone { ok: true, message: format!("{} IoCs loaded", lines.lines().count()) };
            assert!(db.record_done(&token, ENDPOINT, order.id, &done).await.unwrap());
            seen.push(lines.clone());
            after = order.id;
        }
        tokio::select! {
            _ = stop.notified() => return seen,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn start(app: &App, who: &mut Client, endpoint: &str) -> (StatusCode, String) {
    let csrf = who.csrf.clone();
    let fields = [("csrf", csrf.as_str()), ("scenario", SCENARIO), ("endpoint", endpoint)];
    let resp = app.post_form(who, "/runs", &fields).await;
    let status = resp.status();
    let to = resp.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_string());
    (status, to.map(|t| t.trim_start_matches("/runs/").to_string()).unwrap_or(text(resp).await))
}

/// Waits until run `id` asks its trainee to run the steps; returns its events then.
async fn until_asked(app: &App, id: &str) -> Vec<RunEvent> {
    loop {
        let events = app.state.runs().events(id).unwrap();
        if events.iter().any(|e| matches!(e.kind, RunEventKind::StepsAsked { .. })) {
            return events;
        }
        let text: Vec<String> = events.iter().map(ioclab_lab::run::timeline::line).collect();
        assert!(
            !events.iter().any(|e| matches!(e.kind, RunEventKind::Finished { .. })),
            "the run ended without asking for the steps:\n{}",
            text.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stage_result(events: &[RunEvent], stage: Stage) -> Option<(StageResult, String)> {
    events.iter().find_map(|e| match &e.kind {
        RunEventKind::StageFinished { stage: s, result, summary, .. } if *s == stage => {
            Some((result.clone(), summary.clone()))
        }
        _ => None,
    })
}

#[test]
fn a_run_on_a_trainees_endpoint_pushes_asks_and_judges_from_that_endpoints_events() {
    let _one = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let Some((dir, data, lab)) = live_lab() else { return };
    let scenarios = dir.path().join("scenarios");
    on_trainee(&scenarios);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (app, db) = rt.block_on(async {
        let users = UserDb::open(&ioclab_web::web_db(&data)).await.unwrap();
        for (name, role, pw) in USERS {
            users.add(&name.parse().unwrap(), *role, pw).await.unwrap();
        }
        let db = EndpointDb::open(&ioclab_web::web_db(&data)).await.unwrap();
        let runs = Runs::open(users.pool().clone(), data.clone(), scenarios, Engine::Live(lab.clone()))
            .await
            .unwrap()
            .with_endpoints(db.clone());
        let limiter = LoginLimiter::new(LimitConfig {
            per_account: LOGIN_LIMIT,
            per_address: 100,
            window: Duration::from_secs(600),
        });
        let state = AppState::new(users, runs, limiter, Links::default());
        let sessions = ioclab_web::session_layer(&state, 60).await.unwrap();
        let router = ioclab_web::router(state.clone(), sessions);
        (App { router, state, dir: tempfile::tempdir().unwrap() }, db)
    });

    rt.block_on(async {
        let (token, _) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
        // her endpoint joined: an event from before any run (never a run's)
        ship(&db, &token, "b0", &[dns_query(0, true)]).await;
        let mut alice = app.login("alice").await;
        let mut bob = app.login("bob").await;

        // alice is offered her endpoint; bob may not run on it
        let page = text(app.get(&mut alice, "/").await).await;
        assert!(page.contains("my endpoint alice/laptop"), "{page}");
        let (status, body) = start(&app, &mut bob, "alice/laptop").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = start(&app, &mut alice, "alice/desktop").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "an endpoint that never reported: {body}");

        // the class's IoC set, pushed to every endpoint before the run: the run's push keeps it
        let class = r#"{"type":"domain","uuid":"c1a55000-0000-4000-8000-000000000001","source":"class","value":"class.example","event_uuid":"e","severity":5}"#;
        db.push_iocs(&PushTarget::All, "class set", &format!("{class}\n")).await.unwrap();

        // --- run 1: the detection arrives from alice's endpoint
        let stop = Arc::new(tokio::sync::Notify::new());
        let agent = tokio::spawn(agent_orders(db.clone(), token.clone(), stop.clone()));
        let (status, id) = start(&app, &mut alice, "alice/laptop").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{id}");
        let events = until_asked(&app, &id).await;
        // the IoCs reached her endpoint, and it reported them applied, before the steps
        let (result, summary) = stage_result(&events, Stage::Agent).expect("the agent stage ended");
        assert_eq!(result, StageResult::Passed, "{summary}");
        assert!(
            summary.contains("pushed to endpoint alice/laptop (its 1 kept), applied:") && summary.contains("IoCs loaded"),
            "{summary}"
        );
        let pushes = db.pushes().await.unwrap();
        assert_eq!(pushes.len(), 2, "the class's and the run's: {pushes:?}");
        let target = PushTarget::Endpoint { token: "alice".parse().unwrap(), endpoint: ENDPOINT.into() };
        assert_eq!((pushes[0].target.clone(), pushes[0].label.clone()), (target, format!("run {id}")));
        // asked, not sent: the commands are on her run page with the button
        let asked = events.iter().find_map(|e| match &e.kind {
            RunEventKind::StepsAsked { endpoint, steps, .. } => Some((endpoint.clone(), steps.clone())),
            _ => None,
        });
        let (endpoint, steps) = asked.unwrap();
        assert_eq!(endpoint, "alice/laptop");
        assert_eq!(steps.iter().map(|s| s.command.as_str()).collect::<Vec<_>>(), ["dig why.kunai.rocks"]);
        let page = text(app.get(&mut alice, &format!("/runs/{id}")).await).await;
        assert!(page.contains("Run these on your endpoint alice/laptop"), "{page}");
        assert!(page.contains("<code>dig why.kunai.rocks</code>") && page.contains("I ran them"), "{page}");
        assert!(page.contains(&format!("action=\"/runs/{id}/ran-steps\"")), "{page}");
        // bob cannot click for her, nor without the CSRF token
        let csrf = bob.csrf.clone();
        let resp = app.post_form(&mut bob, &format!("/runs/{id}/ran-steps"), &[("csrf", &csrf)]).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let resp = app.post_form(&mut alice, &format!("/runs/{id}/ran-steps"), &[("csrf", "forged")]).await;
        assert!(resp.status().is_client_error(), "{}", resp.status());
        // her endpoint sees the query with its detection: the run goes on without her click
        ship(&db, &token, "b1", &[dns_query(1, true)]).await;
        app.follow(&mut alice, &id).await;
        let events = app.state.runs().events(&id).unwrap();
        let lines: Vec<String> = events.iter().map(ioclab_lab::run::timeline::line).collect();
        let (result, summary) = stage_result(&events, Stage::Detection).expect("the detection stage ended");
        assert_eq!(result, StageResult::Passed, "{}", lines.join("\n"));
        assert!(summary.contains("1/1 expected detections seen"), "{summary}");
        let (_, steps_summary) = stage_result(&events, Stage::Steps).unwrap();
        assert!(steps_summary.contains("not sent: no --allow-steps"), "{steps_summary}");
        let folder = RunFolder::open(data.runs().join(&id));
        assert!(folder.manifest().unwrap().passed == Some(true));
        // nothing ran on the lab's machine: no work folder, no step logs
        assert!(!folder.path(RunFolder::WORK_DIR).exists() && !folder.path(RunFolder::STEPS_DIR).exists());
        // events.jsonl holds her endpoint's events of the run, not the one from before
        let kept = std::fs::read_to_string(folder.path(RunFolder::EVENTS)).unwrap();
        let uuids: Vec<String> = kept
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["info"]["event"]["uuid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(uuids, [dns_query(1, true)["info"]["event"]["uuid"].as_str().unwrap()]);
        // her question is answered from her endpoint's event
        let csrf = alice.csrf.clone();
        let uuid = uuids[0].clone();
        let fields =
            [("csrf", csrf.as_str()), ("question", "answer-ip"), ("action", "answer"), ("answer", uuid.as_str())];
        let resp = app.post_form(&mut alice, &format!("/runs/{id}/questions"), &fields).await;
        let page = text(resp).await;
        assert!(page.contains("Right"), "{page}");
        stop.notify_one();
        let pushed = agent.await.unwrap();
        assert_eq!(pushed.len(), 2, "the class's set, then the run's");
        assert!(pushed[1].contains("why.kunai.rocks") && pushed[1].contains(class), "{}", pushed[1]);

        // --- run 2: her endpoint sees the query, without a detection; she clicks
        let stop = Arc::new(tokio::sync::Notify::new());
        let agent = tokio::spawn(agent_orders(db.clone(), token.clone(), stop.clone()));
        let (status, id) = start(&app, &mut alice, "alice/laptop").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{id}");
        until_asked(&app, &id).await;
        ship(&db, &token, "b2", &[dns_query(2, false)]).await;
        let csrf = alice.csrf.clone();
        let resp = app.post_form(&mut alice, &format!("/runs/{id}/ran-steps"), &[("csrf", &csrf)]).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
        app.follow(&mut alice, &id).await;
        let events = app.state.runs().events(&id).unwrap();
        let lines: Vec<String> = events.iter().map(ioclab_lab::run::timeline::line).collect();
        let (_, steps_summary) = stage_result(&events, Stage::Steps).unwrap();
        assert!(steps_summary.contains("the trainee ran them"), "{steps_summary}");
        let failed = events.iter().find_map(|e| match &e.kind {
            RunEventKind::ExpectationFailed { expected, reason, nearest } => Some((expected, reason, nearest)),
            _ => None,
        });
        let (expected, reason, nearest) =
            failed.unwrap_or_else(|| panic!("no failed expectation:\n{}", lines.join("\n")));
        assert_eq!(expected, "dig-detected");
        assert!(reason.contains("on the trainee's endpoint alice/laptop"), "{reason}");
        let nearest = nearest.as_ref().expect("the nearest event is named");
        assert_eq!(nearest["info"]["event"]["uuid"], dns_query(2, false)["info"]["event"]["uuid"]);
        assert_eq!(RunFolder::open(data.runs().join(&id)).manifest().unwrap().passed, Some(false));
        stop.notify_one();
        agent.await.unwrap();
    });
    drop(app);
    rt.shutdown_timeout(Duration::from_secs(10));
    drop(lab);
}

/// A trainee endpoint played by the test: it records the IoCs pushed and
/// the steps sent, and when it runs the steps it "sees" the query detected.
#[derive(Debug, Default)]
struct Fake {
    allow: bool,
    events: Mutex<Vec<Value>>,
    pushed: Mutex<Vec<String>>,
    sent: Mutex<Vec<StepsOrder>>,
}

impl RemoteEndpoint for Fake {
    fn name(&self) -> String {
        "bob/vm".into()
    }
    fn push_iocs(&self, _: &str, lines: &str, _: Duration) -> Result<String, RemoteError> {
        self.pushed.lock().unwrap().push(lines.to_string());
        Ok("applied".into())
    }
    fn current_iocs(&self) -> Result<String, RemoteError> {
        Ok(self.pushed.lock().unwrap().last().cloned().unwrap_or_default())
    }
    fn position(&self) -> Result<u64, RemoteError> {
        Ok(self.events.lock().unwrap().len() as u64)
    }
    fn events_after(&self, position: u64, limit: usize) -> Result<Vec<RemoteEvent>, RemoteError> {
        let all = self.events.lock().unwrap();
        Ok(all
            .iter()
            .enumerate()
            .skip(position as usize)
            .take(limit)
            .map(|(i, e)| RemoteEvent { position: i as u64 + 1, event: e.clone() })
            .collect())
    }
    fn allows_steps(&self) -> bool {
        self.allow
    }
    fn run_steps(&self, order: &StepsOrder, _: Duration) -> Result<String, RemoteError> {
        // what the appliance must never do: the test fails the run, and says so below
        if !self.allow {
            return Err(RemoteError("steps sent to an endpoint without --allow-steps".into()));
        }
        self.sent.lock().unwrap().push(order.clone());
        self.events.lock().unwrap().push(dns_query(10, true));
        Ok("dig exited 0".into())
    }
}

/// The engine alone, with an endpoint played by the test: steps are sent
/// only to an endpoint that allows them (and the run passes on what it saw);
/// one that does not gets none and the trainee is asked; a scenario awaiting
/// the lab's endpoint refuses a trainee's.
#[test]
fn steps_go_only_to_an_endpoint_that_allows_them() {
    let _one = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let Some((dir, _data, lab)) = live_lab() else { return };
    let loaded = on_trainee(&dir.path().join("scenarios"));

    let allows = Arc::new(Fake { allow: true, ..Fake::default() });
    let opts = RunOptions { endpoint: Some(allows.clone()), ..RunOptions::default() };
    let run = lab.start_run(&loaded, opts).unwrap();
    let log = run.log.clone();
    let passed = run.wait();
    let lines: Vec<String> = log.events().iter().map(ioclab_lab::run::timeline::line).collect();
    assert!(passed, "{}", lines.join("\n"));
    let sent = allows.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "the steps were sent once");
    assert_eq!(sent[0].steps.iter().map(|s| s.command.as_str()).collect::<Vec<_>>(), ["dig why.kunai.rocks"]);
    assert!(
        sent[0].network.dns.iter().any(|r| r.name == "why.kunai.rocks"),
        "the lab network goes along: {:?}",
        sent[0].network
    );
    assert!(!log.events().iter().any(|e| matches!(e.kind, RunEventKind::StepsAsked { .. })), "not asked when sent");
    assert!(allows.pushed.lock().unwrap()[0].contains("why.kunai.rocks"));

    let refuses = Arc::new(Fake::default());
    let opts = RunOptions { endpoint: Some(refuses.clone()), ..RunOptions::default() };
    let run = lab.start_run(&loaded, opts).unwrap();
    let (log, control) = (run.log.clone(), run.control.clone());
    while !log.events().iter().any(|e| matches!(e.kind, RunEventKind::StepsAsked { .. })) {
        assert!(!log.finished(), "the run ended without asking: {:#?}", log.events());
        std::thread::sleep(Duration::from_millis(100));
    }
    control.ran_steps();
    let passed = run.wait();
    assert!(!passed, "nothing was detected on the endpoint");
    assert!(refuses.sent.lock().unwrap().is_empty(), "steps were sent to an endpoint without --allow-steps");
    let events = log.events();
    let (result, summary) = stage_result(&events, Stage::Steps).unwrap();
    assert_eq!(result, StageResult::Passed, "{summary}");
    assert!(summary.contains("not sent"), "{summary}");

    // the shipped scenario awaits the lab's endpoint: no trainee's
    let lab_scenario = load::load(&shipped()).unwrap();
    let opts = RunOptions { endpoint: Some(Arc::new(Fake::default())), ..RunOptions::default() };
    let err = lab.start_run(&lab_scenario, opts).unwrap_err();
    assert!(matches!(err, EngineError::Endpoint(_)) && err.to_string().contains("expect.endpoint: trainee"), "{err}");
    drop(lab);
}

/// Without the live lab: who may start a run on which endpoint, through the API.
#[tokio::test]
async fn the_api_starts_on_ones_own_endpoint_only_and_needs_the_live_lab() {
    let app = App::new().await;
    let post = |endpoint: &'static str| {
        axum::http::Request::post("/api/runs")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(json!({"scenario": SCENARIO, "endpoint": endpoint}).to_string()))
            .unwrap()
    };
    let mut bob = app.with_token("bob").await;
    let resp = app.send(&mut bob, post("alice/laptop")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(json_of(resp).await["error"].as_str().unwrap().contains("not yours"));
    let mut alice = app.with_token("alice").await;
    let resp = app.send(&mut alice, post("laptop")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(resp).await["error"].as_str().unwrap().contains("TOKEN/ENDPOINT"));
    let resp = app.send(&mut alice, post("alice/laptop")).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(json_of(resp).await["error"].as_str().unwrap().contains("needs the live lab"));
    // the lab's endpoint (no field): a recorded run, as before
    let resp = app.send(&mut alice, post("")).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", text(resp).await);
}

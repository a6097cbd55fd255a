//! The class on one screen: the endpoints' list and counts, an endpoint's
//! events, enrolment tokens and IoC pushes from the web; instructors only.
//! Batches go through the ingest API's router in-process, as an agent's would.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use ioclab_agent::remote::pin::Fingerprint;
use ioclab_agent::remote::synthetic;
use ioclab_agent::remote::wire::{BatchHeader, BATCH_PATH};
use ioclab_web::endpoints::db::PushTarget;
use ioclab_web::endpoints::view::EndpointView;
use ioclab_web::endpoints::{ingest, EndpointDb};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The test appliance with an endpoint store, its listener on every address (port 8443).
async fn class_app() -> (App, EndpointDb) {
    let app = App::new().await;
    let db = EndpointDb::open(&app.dir.path().join("data").join("web.db")).await.unwrap();
    let view = EndpointView::open(db.clone(), "0.0.0.0:8443".parse().unwrap(), fingerprint()).await.unwrap();
    let state = app.state.clone().with_endpoints(view);
    let sessions = ioclab_web::session_layer(&state, 60).await.unwrap();
    let router = ioclab_web::router(state.clone(), sessions);
    (App { router, state, dir: app.dir }, db)
}

fn fingerprint() -> Fingerprint {
    Fingerprint::of(b"the test appliance's certificate")
}

/// Posts a batch of `events` from `endpoint` with enrolment token `secret`; the status and body.
async fn ship(db: &EndpointDb, secret: &str, endpoint: &str, events: &[String]) -> (StatusCode, String) {
    let mut body = BatchHeader {
        batch: format!("b-{}", events.len()),
        endpoint: endpoint.into(),
        agent_version: "0.9.test".into(),
    }
    .to_line();
    for e in events {
        body.extend_from_slice(e.as_bytes());
        body.push(b'\n');
    }
    let req = Request::post(BATCH_PATH)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::from(body))
        .unwrap();
    let resp = ingest::router(db.clone()).oneshot(req).await.unwrap();
    (resp.status(), text(resp).await)
}

/// An IoC line as the export writes it.
const IOC: &str =
    r#"{"uuid": "b1a4c1c0-0000-4000-8000-000000000001", "source": "class", "value": "why.kunai.rocks", "severity": 4}"#;

/// A detection: a file_create whose command line carries markup, with the `detection` section the agent adds.
fn detection(host: &str, n: u64) -> String {
    let mut v: Value = serde_json::from_str(&synthetic::file_create(host, n)).unwrap();
    v["data"]["command_line"] = json!(format!("sh -c '{MARKUP}'"));
    v["detection"] = json!({"iocs": ["why.kunai.rocks"], "severity": 10});
    v.to_string()
}

/// An `event_loss` event saying `lost` events were dropped.
fn loss(host: &str, n: u64, lost: u64) -> String {
    let mut v: Value = serde_json::from_str(&synthetic::file_create(host, n)).unwrap();
    v["info"]["event"]["name"] = json!("event_loss");
    v["info"]["event"]["id"] = json!(1100);
    v["data"] = json!({"read": 100, "lost": lost, "eps": 10});
    v.to_string()
}

/// Three quiet events, a detection, two losses (5 and 7 events).
fn mixed(host: &str) -> Vec<String> {
    let mut events: Vec<String> = (0..3).map(|n| synthetic::file_create(host, n)).collect();
    events.push(detection(host, 3));
    events.push(loss(host, 4, 5));
    events.push(loss(host, 5, 7));
    events
}

#[tokio::test]
async fn trainees_get_403_on_every_class_route_and_strangers_the_login() {
    let (app, db) = class_app().await;
    let (_, secret) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    assert_eq!(ship(&db, &secret, "pc-01", &mixed("pc-01")).await.0, StatusCode::OK);
    let gets = [
        "/class",
        "/class/endpoints/alice/pc-01",
        "/class/tokens",
        "/api/endpoints",
        "/api/endpoints/alice/pc-01/events",
        "/api/endpoints/alice/pc-01/events?detections=true",
        "/api/class/changes",
        "/class/push",
    ];
    let mut alice = app.login("alice").await;
    for path in gets {
        let resp = app.get(&mut alice, path).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "GET {path} as a trainee");
    }
    let csrf = alice.csrf.clone();
    let posts: [(&str, &[(&str, &str)]); 3] = [
        ("/class/tokens", &[("name", "mallory")]),
        ("/class/tokens/alice/revoke", &[("confirm", "yes")]),
        ("/class/push", &[("target", "all"), ("lines", IOC)]),
    ];
    for (path, fields) in posts {
        let mut fields = fields.to_vec();
        fields.push(("csrf", &csrf));
        let resp = app.post_form(&mut alice, path, &fields).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "POST {path} as a trainee");
    }
    let tokens = db.tokens().await.unwrap();
    assert_eq!(tokens.len(), 1, "no token made by a trainee");
    assert!(tokens[0].revoked.is_none(), "no token revoked by a trainee");
    assert!(db.pushes().await.unwrap().is_empty(), "no push by a trainee");
    // a trainee's API token is refused the same way
    let mut by_token = app.with_token("alice").await;
    assert_eq!(app.get(&mut by_token, "/api/endpoints").await.status(), StatusCode::FORBIDDEN);

    let mut stranger = Client::default();
    assert_eq!(app.get(&mut stranger, "/api/endpoints").await.status(), StatusCode::UNAUTHORIZED);
    let resp = app.get(&mut stranger, "/class").await;
    assert_eq!(resp.headers()[header::LOCATION], "/login");
}

#[tokio::test]
async fn the_list_shows_a_shipped_batch_with_its_counts() {
    let (app, db) = class_app().await;
    let (_, secret) = db.create_token(Some("team-blue".parse().unwrap())).await.unwrap();
    let host = "pc<b>01</b>";
    assert_eq!(ship(&db, &secret, host, &mixed(host)).await.0, StatusCode::OK);
    let mut teacher = app.login("teacher").await;

    let listed = json_of(app.get(&mut teacher, "/api/endpoints").await).await;
    let e = &listed[0];
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(e["token"], "team-blue");
    assert_eq!(e["endpoint"], host);
    assert_eq!(e["agent_version"], "0.9.test");
    assert_eq!((e["events"].as_i64(), e["detections"].as_i64()), (Some(6), Some(1)), "{e}");
    assert_eq!((e["losses"].as_i64(), e["lost"].as_i64()), (Some(2), Some(12)), "{e}");
    assert_eq!(e["stale"], false);
    assert_eq!(e["revoked"], false);
    // six events within the last minute
    assert!((e["per_second"].as_f64().unwrap() - 0.1).abs() < 1e-9, "{e}");

    let page = text(app.get(&mut teacher, "/class").await).await;
    assert!(
        page.contains("pc&#60;b&#62;01&#60;/b&#62;") && !page.contains("<b>01</b>"),
        "the agent name is escaped: {page}"
    );
    assert!(page.contains("/class/endpoints/team-blue/pc%3Cb%3E01%3C%2Fb%3E"), "the link encodes it");
    let own = app.get(&mut teacher, "/class/endpoints/team-blue/pc%3Cb%3E01%3C%2Fb%3E").await;
    assert_eq!(own.status(), StatusCode::OK, "the link leads to the endpoint's page");
    let own = text(own).await;
    assert_eq!(own.matches("<tr id=\"e").count(), 6, "its events");
    assert!(own.contains("pc&#60;b&#62;01&#60;/b&#62;") && !own.contains("<b>01</b>"));
    assert!(page.contains("12 events lost"), "losses shown");
    assert!(page.contains("data-sse=\"/api/class/changes\""), "the list follows the changes live");
    assert!(!page.contains("stale</strong>"));
}

#[tokio::test]
async fn the_endpoint_page_shows_its_detection_and_pages_its_events() {
    let (app, db) = class_app().await;
    let (_, secret) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    ship(&db, &secret, "pc-01", &mixed("pc-01")).await;
    // another endpoint's events stay out of this one's pages
    let (_, other) = db.create_token(Some("bob".parse().unwrap())).await.unwrap();
    ship(&db, &other, "pc-01", &[detection("pc-01", 9)]).await;
    let mut teacher = app.login("teacher").await;

    let only = json_of(app.get(&mut teacher, "/api/endpoints/alice/pc-01/events?detections=true").await).await;
    let events = only["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{only}");
    assert_eq!(events[0]["detection"], true);
    assert_eq!(events[0]["event"]["detection"]["iocs"][0], "why.kunai.rocks", "the event itself, as JSON");
    assert_eq!(only["next"], Value::Null);

    // newest first, two at a time, each page below the last one's cursor
    let mut names = Vec::new();
    let mut before = String::new();
    loop {
        let page =
            json_of(app.get(&mut teacher, &format!("/api/endpoints/alice/pc-01/events?limit=2{before}")).await).await;
        names.extend(page["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()));
        match page["next"].as_i64() {
            Some(n) => before = format!("&before={n}"),
            None => break,
        }
    }
    assert_eq!(names, ["event_loss", "event_loss", "file_create", "file_create", "file_create", "file_create"]);

    let html = text(app.get(&mut teacher, "/class/endpoints/alice/pc-01?detections=on").await).await;
    assert!(html.contains("<strong>detection</strong>"), "{html}");
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
    assert!(!html.contains(MARKUP), "the event's markup is escaped");
    assert!(html.contains("why.kunai.rocks"), "the event's JSON is on the page");
    assert_eq!(html.matches("<tr id=\"e").count(), 1, "detections only");
    let all = text(app.get(&mut teacher, "/class/endpoints/alice/pc-01").await).await;
    assert_eq!(all.matches("<tr id=\"e").count(), 6);

    let resp = app.get(&mut teacher, "/class/endpoints/alice/nothing-here").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = app.get(&mut teacher, "/api/endpoints/Not%20A%20Name/pc-01/events").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let at = html.find(start).unwrap_or_else(|| panic!("{start} in {html}")) + start.len();
    html[at..].split(end).next().unwrap()
}

#[tokio::test]
async fn a_token_made_on_the_web_ships_and_revoking_it_gives_401() {
    let (app, db) = class_app().await;
    let mut teacher = app.login("teacher").await;
    let csrf = teacher.csrf.clone();
    let resp = app.post_form(&mut teacher, "/class/tokens", &[("name", "team-red")]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "no CSRF token, no token");
    assert!(db.tokens().await.unwrap().is_empty());

    let form = format!("csrf={csrf}&name=team-red");
    let req = Request::post("/class/tokens")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "lab.example:8000")
        .body(Body::from(form))
        .unwrap();
    let resp = app.send(&mut teacher, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = text(resp).await;
    let secret = between(&html, "<code id=\"secret\">", "</code>").to_string();
    let command = between(&html, "<pre id=\"command\">", "</pre>");
    assert_eq!(
        command,
        format!(
            "sudo ioclab agent --appliance https://lab.example:8443 --token {secret} --fingerprint {}",
            fingerprint()
        ),
        "the whole command line, on the host the browser used"
    );
    let resp = app.post_form(&mut teacher, "/class/tokens", &[("csrf", &csrf), ("name", "team-red")]).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT, "names are unique");

    assert_eq!(ship(&db, &secret, "pc-07", &[synthetic::file_create("pc-07", 1)]).await.0, StatusCode::OK);
    let tokens = text(app.get(&mut teacher, "/class/tokens").await).await;
    assert!(tokens.contains("team-red") && tokens.contains("Revoke team-red"));
    assert!(!tokens.contains(&secret), "the secret is shown once");

    let resp = app.post_form(&mut teacher, "/class/tokens/team-red/revoke", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "unconfirmed");
    assert_eq!(ship(&db, &secret, "pc-07", &[synthetic::file_create("pc-07", 2)]).await.0, StatusCode::OK);
    let resp =
        app.post_form(&mut teacher, "/class/tokens/team-red/revoke", &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(ship(&db, &secret, "pc-07", &[synthetic::file_create("pc-07", 3)]).await.0, StatusCode::UNAUTHORIZED);
    let listed = json_of(app.get(&mut teacher, "/api/endpoints").await).await;
    assert_eq!((listed[0]["revoked"].as_bool(), listed[0]["events"].as_i64()), (Some(true), Some(2)), "{listed}");
    let resp = app.post_form(&mut teacher, "/class/tokens/nobody/revoke", &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_an_endpoint_listener_the_pages_say_so() {
    let app = App::new().await;
    let mut teacher = app.login("teacher").await;
    let resp = app.get(&mut teacher, "/class").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(resp).await.contains("no endpoint listener"));
    assert_eq!(app.get(&mut teacher, "/api/endpoints").await.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_push_form_stores_the_push_for_its_target_and_lists_who_applied_it() {
    let (app, db) = class_app().await;
    let (alice, secret) =
        db.create_token_in(Some("alice".parse().unwrap()), Some("blue".parse().unwrap())).await.unwrap();
    ship(&db, &secret, "pc-01", &[synthetic::file_create("pc-01", 1)]).await;
    let mut teacher = app.login("teacher").await;
    let csrf = teacher.csrf.clone();
    let form = text(app.get(&mut teacher, "/class/push").await).await;
    for choice in ["value=\"all\"", "value=\"group:blue\"", "value=\"endpoint:alice/pc-01\""] {
        assert!(form.contains(choice), "{choice} in {form}");
    }

    let label = format!("day 2 {MARKUP}");
    let lines = format!("# the class's set\n{IOC}\n");
    let targets = [
        ("group:blue", PushTarget::Group("blue".parse().unwrap())),
        ("endpoint:alice/pc-01", PushTarget::Endpoint { token: "alice".parse().unwrap(), endpoint: "pc-01".into() }),
        ("all", PushTarget::All),
    ];
    for (target, _) in &targets {
        let fields = [("csrf", csrf.as_str()), ("target", target), ("label", &label), ("lines", &lines)];
        let resp = app.post_form(&mut teacher, "/class/push", &fields).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{target}: {}", text(resp).await);
    }
    let pushes = db.pushes().await.unwrap();
    assert_eq!(pushes.len(), 3);
    // newest first
    for (p, (target, want)) in pushes.iter().rev().zip(&targets) {
        assert_eq!(&p.target, want, "{target}");
        assert_eq!(p.label, label);
    }
    // only the newest push waits for pc-01: an agent gets the newest that reaches it
    let page = text(app.get(&mut teacher, "/class/push").await).await;
    assert_eq!(page.matches("waiting for: alice/pc-01").count(), 1, "{page}");
    // the agent's side sees the newest, and reports it
    let order = db.order_for(&alice, "pc-01", 0).await.unwrap().expect("an order for pc-01");
    assert_eq!(order.id as i64, pushes[0].id);
    let done = ioclab_agent::remote::wire::OrderDone { ok: true, message: "1 IoCs from 1 file(s)".into() };
    assert!(db.record_done(&alice, "pc-01", order.id, &done).await.unwrap());

    let page = text(app.get(&mut teacher, "/class/push").await).await;
    assert!(page.contains("alice/pc-01 applied"), "{page}");
    assert!(!page.contains("waiting for:"), "{page}");
    assert!(page.contains("day 2 &#60;script&#62;") && !page.contains(MARKUP), "the label is escaped");
    let list = text(app.get(&mut teacher, "/class").await).await;
    assert!(list.contains(&format!("push {} applied", order.id)), "{list}");

    // refused: a bad line (named), an empty set, an unknown group or target; nothing stored
    let refused = [
        ("all", format!("{IOC}\n{{\"value\": \"x.example\"}}\n"), "IoCs pasted on the web:2: "),
        ("all", "# nothing\n".to_string(), "no IoC"),
        ("group:red", IOC.to_string(), "group red"),
        ("everyone", IOC.to_string(), "target"),
    ];
    for (target, lines, says) in refused {
        let fields = [("csrf", csrf.as_str()), ("target", target), ("lines", &lines)];
        let resp = app.post_form(&mut teacher, "/class/push", &fields).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{target}");
        let body = text(resp).await;
        assert!(body.contains(says), "{says} in {body}");
    }
    let resp = app.post_form(&mut teacher, "/class/push", &[("target", "all"), ("lines", IOC)]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "no CSRF token, no push");
    assert_eq!(db.pushes().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_run_s_export_or_the_lab_agent_s_iocs_can_be_pushed() {
    let (app, db) = class_app().await;
    db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    let mut teacher = app.login("teacher").await;
    let csrf = teacher.csrf.clone();
    let run = app.start_run(&mut teacher).await;
    app.follow(&mut teacher, &run).await;
    // what the export stage writes in a live run
    let folder = app.state.runs().data().runs().join(&run);
    std::fs::write(folder.join(ioclab_lab::run::RunFolder::IOCS), format!("{IOC}\n")).unwrap();
    let form = text(app.get(&mut teacher, "/class/push").await).await;
    assert!(form.contains(&format!("<option value=\"run:{run}\">")), "{form}");
    assert!(!form.contains("value=\"lab\""), "the lab's agent has no IoC file yet");
    let from = format!("run:{run}");
    let fields = [("csrf", csrf.as_str()), ("target", "all"), ("from", &from)];
    let resp = app.post_form(&mut teacher, "/class/push", &fields).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
    let pushes = db.pushes().await.unwrap();
    assert_eq!(pushes[0].label, format!("IoCs of run {run}"));
    assert_eq!(pushes[0].bytes as usize, IOC.len() + 1);
    for bad in ["run:no-such-run", "elsewhere", "lab"] {
        let fields = [("csrf", csrf.as_str()), ("target", "all"), ("from", bad)];
        assert_eq!(
            app.post_form(&mut teacher, "/class/push", &fields).await.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // the lab agent's IoC file, as the lab's runs leave it
    let lab = app.state.runs().data().agent_iocs();
    std::fs::create_dir_all(lab.parent().unwrap()).unwrap();
    std::fs::write(&lab, format!("{IOC}\n{IOC}\n")).unwrap();
    let form = text(app.get(&mut teacher, "/class/push").await).await;
    assert!(form.contains("value=\"lab\""), "{form}");
    let fields = [("csrf", csrf.as_str()), ("target", "all"), ("from", "lab"), ("label", "today's")];
    assert_eq!(app.post_form(&mut teacher, "/class/push", &fields).await.status(), StatusCode::SEE_OTHER);
    let pushes = db.pushes().await.unwrap();
    assert_eq!((pushes[0].label.as_str(), pushes[0].bytes as usize), ("today's", 2 * (IOC.len() + 1)));
    let both = [("csrf", csrf.as_str()), ("target", "all"), ("from", "lab"), ("lines", IOC)];
    assert_eq!(app.post_form(&mut teacher, "/class/push", &both).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_list_changes_with_batches_and_revocations_and_goes_stale() {
    let (app, db) = class_app().await;
    let view = app.state.endpoints().unwrap().clone();
    let (token, secret) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    let before = view.generation().await.unwrap();
    assert_eq!(view.generation().await.unwrap(), before, "nothing happened");
    ship(&db, &secret, "pc-01", &[synthetic::file_create("pc-01", 1)]).await;
    let shipped = view.generation().await.unwrap();
    assert_ne!(shipped, before, "a batch changes the list");
    db.revoke(&token.name).await.unwrap();
    assert_ne!(view.generation().await.unwrap(), shipped, "a revocation changes the list");

    // seen from a minute later: stale, and no event in the last minute
    let later = view
        .endpoints(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 61)
        .await
        .unwrap();
    assert!(later[0].stale && later[0].per_second == 0.0, "{later:?}");
    assert!(later[0].ago >= 61 && later[0].ago_text().ends_with(" s"), "{later:?}");
}

#[tokio::test]
async fn the_live_stream_says_class_on_a_change_and_ends_when_the_appliance_stops() {
    use http_body_util::BodyExt;
    let (app, db) = class_app().await;
    let (_, secret) = db.create_token(Some("alice".parse().unwrap())).await.unwrap();
    let mut teacher = app.login("teacher").await;
    let resp = app.get(&mut teacher, "/api/class/changes").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    ship(&db, &secret, "pc-01", &[synthetic::file_create("pc-01", 1)]).await;
    let mut said = String::new();
    while !said.contains("event: class") {
        let frame = body.frame().await.expect("the stream goes on until a change").unwrap();
        if let Ok(data) = frame.into_data() {
            said.push_str(&String::from_utf8_lossy(&data));
        }
    }
    app.state.endpoints().unwrap().close();
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
}

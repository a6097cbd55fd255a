//! Every route, for every role: who gets in, who is refused, and how.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use serde_json::json;

const API_GETS: &[&str] = &["/api/me", "/api/scenarios", "/api/runs", "/api/events", "/api/scores", "/api/users"];
const PAGES: &[&str] = &["/", "/runs"];

#[tokio::test]
async fn the_api_answers_401_without_a_session_or_token_and_pages_send_to_the_login() {
    let app = App::new().await;
    let mut nobody = Client::default();
    for path in API_GETS.iter().chain(["/api/runs/x", "/api/runs/x/events"].iter()) {
        let resp = app.get(&mut nobody, path).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE), "{path}");
    }
    let resp = app
        .send(
            &mut nobody,
            Request::post("/api/runs").header("content-type", "application/json").body(Body::from("{}")).unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    for path in PAGES.iter().chain(["/runs/x"].iter()) {
        let resp = app.get(&mut nobody, path).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(resp.headers()[header::LOCATION], "/login", "{path}");
    }
    let mut forged = Client { token: Some("0".repeat(64)), ..Client::default() };
    assert_eq!(app.get(&mut forged, "/api/me").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_route_answers_each_role() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let mut teacher = app.login("teacher").await;
    for path in API_GETS.iter().chain(PAGES) {
        let want = if *path == "/api/users" { StatusCode::FORBIDDEN } else { StatusCode::OK };
        assert_eq!(app.get(&mut alice, path).await.status(), want, "trainee {path}");
        assert_eq!(app.get(&mut teacher, path).await.status(), StatusCode::OK, "instructor {path}");
    }
    let users = json_of(app.get(&mut teacher, "/api/users").await).await;
    assert_eq!(users["users"].as_array().unwrap().len(), USERS.len());
    let me = json_of(app.get(&mut alice, "/api/me").await).await;
    assert_eq!(me["user"]["name"], "alice");
    assert_eq!(me["user"]["role"], "trainee");
    let catalogue = json_of(app.get(&mut alice, "/api/scenarios").await).await;
    assert_eq!(catalogue["mode"], "replay");
    assert_eq!(catalogue["scenarios"][0]["id"], SCENARIO);
    let css = app.get(&mut Client::default(), "/static/ioclab.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
}

#[tokio::test]
async fn an_api_token_stands_for_its_user_and_its_role() {
    let app = App::new().await;
    let mut alice = app.with_token("alice").await;
    assert_eq!(json_of(app.get(&mut alice, "/api/me").await).await["user"]["name"], "alice");
    assert_eq!(app.get(&mut alice, "/api/users").await.status(), StatusCode::FORBIDDEN);
    let mut teacher = app.with_token("teacher").await;
    assert_eq!(app.get(&mut teacher, "/api/users").await.status(), StatusCode::OK);
    // a token needs no CSRF header: it is not a cookie a page could ride on
    let req = Request::post("/api/runs")
        .header("content-type", "application/json")
        .body(Body::from(json!({"scenario": SCENARIO}).to_string()))
        .unwrap();
    let resp = app.send(&mut alice, req).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let run = json_of(resp).await;
    assert_eq!(run["run"]["owner"], "alice");
}

#[tokio::test]
async fn the_home_page_is_the_catalogue_with_level_duration_attack_and_objectives() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let html = text(app.get(&mut alice, "/").await).await;
    let loaded = ioclab_lab::scenario::load::load(&app.dir.path().join("scenarios").join(SCENARIO)).unwrap();
    let s = &loaded.scenario;
    assert!(html.contains(&format!("{} min", s.duration_minutes)), "{html}");
    assert!(html.contains(&s.level.to_string()));
    for a in &s.attack {
        assert!(html.contains(a.as_str()), "{a} missing");
    }
    assert!(!s.objectives.is_empty());
    // askama escapes: compare with the escaped objective text
    let first = s.objectives[0].replace('&', "&#38;").replace('\'', "&#39;").replace('"', "&#34;");
    assert!(html.contains(&first) || html.contains(&s.objectives[0]), "objective missing");
    assert!(html.contains("Replay mode"), "the replay banner is on every page");
}

#[tokio::test]
async fn forms_without_the_csrf_token_or_with_a_wrong_one_are_refused() {
    let app = App::new().await;
    let mut v = app.visitor().await;
    for fields in [
        vec![("name", "alice"), ("password", "alice-pw")],
        vec![("csrf", "0000"), ("name", "alice"), ("password", "alice-pw")],
    ] {
        let resp = app.post_form(&mut v, "/login", &fields).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(text(resp).await.contains("CSRF"));
    }
    let mut alice = app.login("alice").await;
    let resp = app.post_form(&mut alice, "/runs", &[("scenario", SCENARIO)]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app.post_form(&mut alice, "/runs", &[("csrf", "wrong"), ("scenario", SCENARIO)]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // another session's token is wrong too
    let bob = app.login("bob").await;
    let resp = app.post_form(&mut alice, "/runs", &[("csrf", &bob.csrf), ("scenario", SCENARIO)]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(json_of(app.get(&mut alice, "/api/runs").await).await["runs"].as_array().unwrap().is_empty());
    // the API from a session needs the header
    let post = |csrf: Option<&str>| {
        let mut r = Request::post("/api/runs").header("content-type", "application/json");
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.body(Body::from(json!({"scenario": SCENARIO}).to_string())).unwrap()
    };
    assert_eq!(app.send(&mut alice, post(None)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.send(&mut alice, post(Some("nope"))).await.status(), StatusCode::FORBIDDEN);
    let csrf = alice.csrf.clone();
    assert_eq!(app.send(&mut alice, post(Some(&csrf))).await.status(), StatusCode::CREATED);
    // logout is a form too
    assert_eq!(app.post_form(&mut alice, "/logout", &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get(&mut alice, "/api/me").await.status(), StatusCode::OK);
    let resp = app.post_form(&mut alice, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get(&mut alice, "/api/me").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logins_are_refused_after_too_many_failures_even_with_the_right_password() {
    let app = App::new().await;
    let mut v = app.visitor().await;
    let csrf = v.csrf.clone();
    for _ in 0..LOGIN_LIMIT {
        let resp = app.post_form(&mut v, "/login", &[("csrf", &csrf), ("name", "alice"), ("password", "guess")]).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(text(resp).await.contains("Wrong user name or password"));
    }
    let resp = app.post_form(&mut v, "/login", &[("csrf", &csrf), ("name", "alice"), ("password", "alice-pw")]).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(text(resp).await.contains("Too many failed logins"));
    // another account is not blocked by alice's failures
    app.login("bob").await;
}

#[tokio::test]
async fn the_session_cookie_is_httponly_samesite_strict_and_expires() {
    let app = App::new().await;
    let resp = app.get(&mut Client::default(), "/login").await;
    let cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.starts_with(&format!("{}=", ioclab_web::SESSION_COOKIE)), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Max-Age=3600"), "{cookie}");
}

#[tokio::test]
async fn login_gives_a_new_session_id() {
    let app = App::new().await;
    let mut v = app.visitor().await;
    let before = v.cookie.clone().unwrap();
    let csrf = v.csrf.clone();
    let resp = app.post_form(&mut v, "/login", &[("csrf", &csrf), ("name", "alice"), ("password", "alice-pw")]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_ne!(v.cookie.clone().unwrap(), before, "the session id changes at login");
    let mut planted = Client { cookie: Some(before), ..Client::default() };
    assert_eq!(app.get(&mut planted, "/api/me").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_run_plays_its_events_to_sse_and_pages_and_markup_stays_text() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = app.start_run(&mut alice).await;
    let stream = app.follow(&mut alice, &id).await;
    assert!(stream.contains("event: run"), "{stream}");
    assert!(stream.trim_end().ends_with(r#""kind":"finished","passed":true}"#), "{stream}");

    let api = json_of(app.get(&mut alice, &format!("/api/runs/{id}")).await).await;
    assert_eq!(api["run"]["passed"], true);
    assert_eq!(api["run"]["running"], false);
    assert_eq!(api["events"].as_array().unwrap().len(), 7);
    assert!(api["artifacts"].as_array().unwrap().iter().any(|a| a == "events.jsonl"), "{api}");

    let html = text(app.get(&mut alice, &format!("/runs/{id}")).await).await;
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
    assert!(!html.contains(MARKUP), "markup from a run is rendered as text");
    assert!(html.contains("report written"));

    let list = text(app.get(&mut alice, "/runs").await).await;
    assert!(list.contains(&id) && list.contains("passed"));

    let events = json_of(app.get(&mut alice, "/api/events?detections=true").await).await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"]["data"]["command_line"], format!("sh -c '{MARKUP}'"));
    let dns = json_of(app.get(&mut alice, "/api/events?name=dns_query&process=dig").await).await;
    assert_eq!(dns["events"].as_array().unwrap().len(), 1);

    let scores = json_of(app.get(&mut alice, "/api/scores").await).await;
    let mine = &scores["scores"];
    assert_eq!(mine.as_array().unwrap().len(), 1, "{scores}");
    assert_eq!((&mine[0]["user"], &mine[0]["runs"]), (&json!("alice"), &json!(1)), "{scores}");
    assert_eq!(mine[0]["scenarios_passed"], json!([SCENARIO]), "{scores}");
}

#[tokio::test]
async fn a_trainee_sees_only_their_own_runs_and_an_instructor_sees_all() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let mut bob = app.login("bob").await;
    let mut teacher = app.login("teacher").await;
    let id = app.start_run(&mut alice).await;
    app.follow(&mut alice, &id).await;
    for path in [
        format!("/runs/{id}"),
        format!("/api/runs/{id}"),
        format!("/api/runs/{id}/events"),
        format!("/api/events?run={id}"),
    ] {
        assert_eq!(app.get(&mut bob, &path).await.status(), StatusCode::FORBIDDEN, "bob {path}");
        assert_eq!(app.get(&mut teacher, &path).await.status(), StatusCode::OK, "teacher {path}");
    }
    assert!(json_of(app.get(&mut bob, "/api/runs").await).await["runs"].as_array().unwrap().is_empty());
    assert!(json_of(app.get(&mut bob, "/api/events").await).await["events"].as_array().unwrap().is_empty());
    assert_eq!(json_of(app.get(&mut bob, "/api/scores").await).await["scores"], json!([]));
    assert!(!text(app.get(&mut bob, "/runs").await).await.contains(&id));
    assert_eq!(json_of(app.get(&mut teacher, "/api/runs").await).await["runs"][0]["id"], id);
    assert_eq!(app.get(&mut alice, "/api/runs/nope").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&mut alice, "/runs/nope").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_scenario_is_a_clear_404() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let csrf = alice.csrf.clone();
    let resp = app.post_form(&mut alice, "/runs", &[("csrf", &csrf), ("scenario", "<b>nope</b>")]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let html = text(resp).await;
    assert!(html.contains("no scenario &#60;b&#62;nope&#60;/b&#62; in the catalogue"), "{html}");
}

#[tokio::test]
async fn a_removed_account_loses_its_session_at_once() {
    let app = App::new().await;
    let mut bob = app.login("bob").await;
    app.state.users().remove(&"bob".parse().unwrap()).await.unwrap();
    assert_eq!(app.get(&mut bob, "/api/me").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn publishing_a_run_is_for_instructors_with_the_csrf_header() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let mut teacher = app.login("teacher").await;
    let id = app.start_run(&mut alice).await;
    app.follow(&mut alice, &id).await;
    let publish = |csrf: Option<&str>| {
        let mut r = Request::post(format!("/api/runs/{id}/publish"));
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.body(Body::empty()).unwrap()
    };
    let csrf = alice.csrf.clone();
    assert_eq!(app.send(&mut alice, publish(Some(&csrf))).await.status(), StatusCode::FORBIDDEN);
    let mut alice_token = app.with_token("alice").await;
    assert_eq!(app.send(&mut alice_token, publish(None)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.send(&mut teacher, publish(None)).await.status(), StatusCode::FORBIDDEN, "no CSRF header");
    let csrf = teacher.csrf.clone();
    let resp = app.send(&mut teacher, publish(Some(&csrf))).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT, "a finished replay has nothing to publish");
    assert!(json_of(resp).await["error"].as_str().unwrap().contains("not a live run"));
}

//! The instructor's dashboard: instructors only; scores, hints, CSV, reset
//! (scores and the lab state of runs), starting a run for the class, and
//! the per-question points of /api/scores.

mod common;

use axum::http::{header, StatusCode};
use common::*;
use ioclab_intel::store::{Role as MispRole, Store, StoreError};
use ioclab_lab::run::RunFolder;
use ioclab_sandbox::api::db::{NewTask, TaskDb};
use ioclab_sandbox::api::queue::task_dir;
use serde_json::json;

/// alice's history on a run: a wrong answer, then a right one after the hint (10 - 2 points).
const EIGHT_POINTS: &str = r#"{"questions":{"ioc-domain":{"attempts":[{"answer":"example.org","right":false,"points":0},{"answer":"why.kunai.rocks","right":true,"points":8}],"hints_taken":1}}}"#;

/// Gives `trainee` the history `h` on run `id`.
async fn scored(app: &App, trainee: &str, id: &str, h: &str) {
    let pool = app.state.users().pool();
    ioclab_web::questions::history(pool, trainee, id).await.unwrap();
    sqlx::query("INSERT OR REPLACE INTO scores (trainee, run, history, updated) VALUES (?, ?, ?, 1.0)")
        .bind(trainee)
        .bind(id)
        .bind(h)
        .execute(pool)
        .await
        .unwrap();
}

/// What a live run leaves in the lab, made for run `id` as the engine
/// would: a MISP event and a sandbox task (with its folder), listed in its
/// run.json's `created`. Returns (event uuid, task id).
async fn made_in_the_lab(app: &App, id: &str) -> (String, u64) {
    let data = app.state.runs().data();
    let store = Store::open(&data.misp_db()).await.unwrap();
    let key = store.create_key(&format!("{id}@lab.example"), MispRole::Publisher).await.unwrap();
    let user = store.user_for_key(&key).await.unwrap().unwrap();
    let ev = serde_json::from_value(json!({"info": id, "Attribute": [
        {"type": "domain", "value": "why.kunai.rocks", "to_ids": true}]}))
    .unwrap();
    let n = store.add_event(&user, ev).await.unwrap();
    let uuid = store.event(&n.to_string()).await.unwrap()["Event"]["uuid"].as_str().unwrap().to_string();
    let tasks = TaskDb::open(&data.sandbox_db()).await.unwrap();
    let t = NewTask { category: "file", target: "sample.sh".into(), timeout: 10, ..Default::default() };
    let task = tasks.create_reported(&t, 1.0, 2.0).await.unwrap();
    std::fs::create_dir_all(task_dir(&data.sandbox(), task).join("reports")).unwrap();
    let folder = RunFolder::open(data.runs().join(id));
    // the replay writes run.json once more after its last event: wait for that write
    let mut m = loop {
        match folder.manifest() {
            Ok(m) if m.finished.is_some() => break m,
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    m.created.misp_events.push(uuid.clone());
    m.created.sandbox_tasks.push(task as u64);
    folder.write_manifest(&m).unwrap();
    (uuid, task as u64)
}

/// Whether the lab still holds MISP event `uuid` and sandbox task `task` (row and folder alike).
async fn in_the_lab(app: &App, uuid: &str, task: u64) -> (bool, bool) {
    let data = app.state.runs().data();
    let event = match Store::open(&data.misp_db()).await.unwrap().event(uuid).await {
        Ok(_) => true,
        Err(StoreError::NotFound(_)) => false,
        Err(e) => panic!("{e}"),
    };
    let row = TaskDb::open(&data.sandbox_db()).await.unwrap().view(task as i64).await.unwrap().is_some();
    assert_eq!(row, task_dir(&data.sandbox(), task as i64).exists(), "task {task}: row and folder go together");
    (event, row)
}

/// A finished run of alice's and one of bob's, each scored and with its lab state.
struct Class {
    alice: (String, String, u64),
    bob: (String, String, u64),
}

async fn class_with_runs(app: &App) -> Class {
    let mut out = Vec::new();
    for name in ["alice", "bob"] {
        let mut c = app.login(name).await;
        let id = app.start_run(&mut c).await;
        app.follow(&mut c, &id).await;
        scored(app, name, &id, EIGHT_POINTS).await;
        let (uuid, task) = made_in_the_lab(app, &id).await;
        assert_eq!(in_the_lab(app, &uuid, task).await, (true, true));
        out.push((id, uuid, task));
    }
    let bob = out.pop().unwrap();
    Class { alice: out.pop().unwrap(), bob }
}

/// The score column of the CSV line of `trainee`.
async fn csv_score(app: &App, teacher: &mut Client, trainee: &str) -> String {
    let csv = text(app.get(teacher, "/dashboard.csv").await).await;
    let line = csv.lines().find(|l| l.starts_with(&format!("{trainee},"))).unwrap_or_else(|| panic!("{csv}"));
    line.split(',').nth(4).unwrap().to_string()
}

async fn reset_form(app: &App, c: &mut Client, trainee: &str, confirm: bool) -> axum::http::Response<axum::body::Body> {
    let csrf = c.csrf.clone();
    let mut fields = vec![("csrf", csrf.as_str()), ("trainee", trainee)];
    if confirm {
        fields.push(("confirm", "yes"));
    }
    app.post_form(c, "/dashboard/reset", &fields).await
}

#[tokio::test]
async fn the_dashboard_is_the_instructors_and_shows_the_class() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let mut teacher = app.login("teacher").await;
    for path in ["/dashboard", "/dashboard.csv"] {
        assert_eq!(app.get(&mut alice, path).await.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(app.get(&mut Client::default(), path).await.status(), StatusCode::SEE_OTHER, "{path}");
    }
    let csrf = alice.csrf.clone();
    let resp = app.post_form(&mut alice, "/dashboard/reset", &[("csrf", &csrf), ("trainee", "")]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "a trainee cannot reset the class");
    let id = app.start_run(&mut alice).await;
    app.follow(&mut alice, &id).await;
    // alice answered a question after a hint: 8 points, 1 hint
    let pool = app.state.users().pool();
    ioclab_web::questions::history(pool, "alice", &id).await.unwrap();
    let h = r#"{"questions":{"ioc-domain":{"attempts":[{"answer":"x","right":true,"points":8}],"hints_taken":1}}}"#;
    sqlx::query("INSERT INTO scores (trainee, run, history, updated) VALUES ('alice', ?, ?, 1.0)")
        .bind(&id)
        .bind(h)
        .execute(pool)
        .await
        .unwrap();
    let page = text(app.get(&mut teacher, "/dashboard").await).await;
    assert!(page.contains("<td>alice</td>") && page.contains("<td>bob</td>"), "{page}");
    assert!(page.contains(&format!("<code>{SCENARIO}</code> 1/1 passed")), "{page}");
    assert!(!page.contains("<td>teacher</td>"), "instructors are not trainees");
    let resp = app.get(&mut teacher, "/dashboard.csv").await;
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let csv = text(resp).await;
    assert!(csv.starts_with("trainee,scenario,runs,passed,score,hints,last_activity\n"), "{csv}");
    assert!(csv.contains(&format!("alice,{SCENARIO},1,1,8,1,")), "{csv}");
    assert!(csv.contains("bob,,0,0,0,0,never"), "{csv}");
    // reset without CSRF: refused; with it: back to the dashboard
    let resp = app.post_form(&mut teacher, "/dashboard/reset", &[("trainee", "alice")]).await;
    assert!(resp.status().is_client_error());
    assert!(text(app.get(&mut teacher, "/dashboard.csv").await).await.contains(",1,1,8,1,"), "nothing reset");
    let resp = reset_form(&app, &mut teacher, "alice", true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let csv = text(app.get(&mut teacher, "/dashboard.csv").await).await;
    assert!(csv.contains(&format!("alice,{SCENARIO},1,1,0,0,")), "alice's scores are gone: {csv}");
}

#[tokio::test]
async fn a_trainee_gets_403_for_every_instructor_action() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = app.start_run(&mut alice).await;
    app.follow(&mut alice, &id).await;
    scored(&app, "alice", &id, EIGHT_POINTS).await;
    let csrf = alice.csrf.clone();
    let forms: &[(&str, &[(&str, &str)])] = &[
        ("/dashboard/reset", &[("trainee", ""), ("confirm", "yes")]),
        ("/dashboard/reset", &[("trainee", "bob"), ("confirm", "yes")]),
        ("/dashboard/reset", &[("trainee", "alice"), ("confirm", "yes")]),
        ("/dashboard/start", &[("scenario", SCENARIO), ("play", "replay"), ("speed", "0")]),
    ];
    for (path, fields) in forms {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        assert_eq!(app.post_form(&mut alice, path, &all).await.status(), StatusCode::FORBIDDEN, "{path} {fields:?}");
    }
    let mut token = app.with_token("alice").await;
    for path in ["/api/scores?trainee=bob", "/api/scores?trainee=teacher"] {
        assert_eq!(app.get(&mut alice, path).await.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(app.get(&mut token, path).await.status(), StatusCode::FORBIDDEN, "{path} by token");
    }
    assert_eq!(app.get(&mut alice, "/api/scores?trainee=alice").await.status(), StatusCode::OK);
    // nothing happened: alice's score is there, no run was started
    let mut teacher = app.login("teacher").await;
    assert_eq!(csv_score(&app, &mut teacher, "alice").await, "8");
    assert_eq!(app.state.runs().list(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn class_reset_asks_for_confirmation_then_clears_scores_and_the_runs_lab_state() {
    let app = App::new().await;
    let class = class_with_runs(&app).await;
    let mut teacher = app.login("teacher").await;
    let page = text(app.get(&mut teacher, "/dashboard").await).await;
    assert!(page.contains("name=\"confirm\" value=\"yes\" required"), "a confirmation box: {page}");
    // without the box ticked (one click on a projector): nothing happens
    let resp = reset_form(&app, &mut teacher, "", false).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(text(resp).await.contains("tick the box"));
    let resp = app.post_form(&mut teacher, "/dashboard/reset", &[("trainee", ""), ("confirm", "yes")]).await;
    assert!(resp.status().is_client_error(), "no CSRF token: refused");
    for (name, (_, uuid, task)) in [("alice", &class.alice), ("bob", &class.bob)] {
        assert_eq!(csv_score(&app, &mut teacher, name).await, "8", "{name}");
        assert_eq!(in_the_lab(&app, uuid, *task).await, (true, true), "{name}");
    }
    let resp = reset_form(&app, &mut teacher, "", true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains("Reset of the whole class"), "{page}");
    assert!(page.contains("2 score histories erased; 2 runs undone"), "{page}");
    assert!(!page.contains("class=\"failed\""), "{page}");
    for (name, (id, uuid, task)) in [("alice", &class.alice), ("bob", &class.bob)] {
        assert_eq!(csv_score(&app, &mut teacher, name).await, "0", "{name}");
        assert_eq!(in_the_lab(&app, uuid, *task).await, (false, false), "{name}'s run's event and task are gone");
        let m = RunFolder::open(app.state.runs().data().runs().join(id)).manifest().unwrap();
        assert!(m.created.reset.is_some(), "{id} is recorded as reset");
        assert!(RunFolder::open(app.state.runs().data().runs().join(id)).root().is_dir(), "the run folder stays");
    }
    // a second reset finds the runs already undone
    let page = text(reset_form(&app, &mut teacher, "", true).await).await;
    assert!(page.contains("0 score histories erased; 0 runs undone in the lab, 2 already undone"), "{page}");
}

#[tokio::test]
async fn resetting_one_trainee_leaves_the_others_intact() {
    let app = App::new().await;
    let class = class_with_runs(&app).await;
    let mut teacher = app.login("teacher").await;
    let resp = reset_form(&app, &mut teacher, "alice", true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("Reset of alice"));
    assert_eq!(csv_score(&app, &mut teacher, "alice").await, "0");
    assert_eq!(in_the_lab(&app, &class.alice.1, class.alice.2).await, (false, false));
    assert_eq!(csv_score(&app, &mut teacher, "bob").await, "8", "bob's score stays");
    assert_eq!(in_the_lab(&app, &class.bob.1, class.bob.2).await, (true, true), "bob's run's lab state stays");
    let m = RunFolder::open(app.state.runs().data().runs().join(&class.bob.0)).manifest().unwrap();
    assert!(m.created.reset.is_none());
    assert_eq!(reset_form(&app, &mut teacher, "nobody<x>", true).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_class_run_started_from_the_dashboard_is_seen_by_trainees_and_blocks_a_reset_until_it_ends() {
    let app = App::new().await;
    let mut teacher = app.login("teacher").await;
    let mut bob = app.login("bob").await;
    let csrf = teacher.csrf.clone();
    // a fresh class, nobody answered anything yet: the dashboard shows (once failed: no scores table)
    let resp = app.get(&mut teacher, "/dashboard").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains("action=\"/dashboard/start\""), "{page}");
    let bad = [("csrf", csrf.as_str()), ("scenario", SCENARIO), ("play", "replay"), ("speed", "fast")];
    assert_eq!(app.post_form(&mut teacher, "/dashboard/start", &bad).await.status(), StatusCode::BAD_REQUEST);
    let unknown = [("csrf", csrf.as_str()), ("scenario", "nope"), ("play", "default")];
    assert_eq!(app.post_form(&mut teacher, "/dashboard/start", &unknown).await.status(), StatusCode::NOT_FOUND);
    // a replay at a fifth of real time (300 ms): bob follows it from before its end, and the
    // stream ends with its `finished` (it once waited for a message after it, forever)
    let fifth = [("csrf", csrf.as_str()), ("scenario", SCENARIO), ("play", "replay"), ("speed", "0.2")];
    let resp = app.post_form(&mut teacher, "/dashboard/start", &fifth).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
    let first = resp.headers()[header::LOCATION].to_str().unwrap().strip_prefix("/runs/").unwrap().to_string();
    let followed = app.follow(&mut bob, &first).await;
    assert!(followed.trim_end().ends_with(r#""kind":"finished","passed":true}"#), "{followed}");
    // a replay slowed down so that it is still going on during the checks (its timeline spans 60 ms)
    let slow = [("csrf", csrf.as_str()), ("scenario", SCENARIO), ("play", "replay"), ("speed", "0.0001")];
    let resp = app.post_form(&mut teacher, "/dashboard/start", &slow).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
    let id = resp.headers()[header::LOCATION].to_str().unwrap().strip_prefix("/runs/").unwrap().to_string();
    let run = json_of(app.get(&mut bob, &format!("/api/runs/{id}")).await).await;
    assert_eq!(run["run"]["class"], json!(true), "{run}");
    assert_eq!(run["run"]["mode"], json!("replay"), "{run}");
    assert!(text(app.get(&mut bob, "/runs").await).await.contains(&id), "bob sees the class run");
    assert_eq!(app.get(&mut bob, &format!("/runs/{id}")).await.status(), StatusCode::OK);
    let runs = json_of(app.get(&mut bob, "/api/runs").await).await;
    assert_eq!(runs["runs"][0]["id"], json!(id), "{runs}");
    assert_eq!(runs["runs"][1]["id"], json!(first), "{runs}");
    assert_eq!(json_of(app.get(&mut bob, "/api/scores").await).await["scores"], json!([]), "not bob's score");
    // the class reset is refused while it runs, and says which run
    let resp = reset_form(&app, &mut teacher, "", true).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let page = text(resp).await;
    assert!(page.contains("nothing was reset") && page.contains(&id), "{page}");
    // a trainee without a run going on can be reset on a replay appliance
    assert_eq!(reset_form(&app, &mut teacher, "bob", true).await.status(), StatusCode::OK);
    app.state.runs().stop_all();
    assert_eq!(reset_form(&app, &mut teacher, "", true).await.status(), StatusCode::OK, "the run ended");
}

#[tokio::test]
async fn api_scores_give_each_questions_points_hints_and_attempts() {
    let app = App::new().await;
    let class = class_with_runs(&app).await;
    let mut alice = app.login("alice").await;
    let mut teacher = app.login("teacher").await;
    let mine = json_of(app.get(&mut alice, "/api/scores").await).await;
    let scores = mine["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 1, "alice sees her own only: {mine}");
    let a = &scores[0];
    assert_eq!((&a["user"], &a["points"], &a["hints_taken"]), (&json!("alice"), &json!(8), &json!(1)), "{a}");
    let s = &a["scenarios"][0];
    assert_eq!((&s["scenario"], &s["points"]), (&json!(SCENARIO), &json!(8)), "{s}");
    let run = &s["runs"][0];
    assert_eq!((&run["run"], &run["points"]), (&json!(class.alice.0), &json!(8)), "{run}");
    let q = run["questions"].as_array().unwrap();
    let ioc = q.iter().find(|q| q["question"] == "ioc-domain").unwrap_or_else(|| panic!("{run}"));
    assert_eq!(
        ioc,
        &json!({"question": "ioc-domain", "points": 8, "solved": true, "hints_taken": 1, "hints_cost": 2,
                "attempts_used": 2, "attempts_left": 0, "solution_revealed": false})
    );
    let untouched = q.iter().find(|q| q["question"] == "dns-event").unwrap_or_else(|| panic!("{run}"));
    assert_eq!((&untouched["points"], &untouched["attempts_used"]), (&json!(0), &json!(0)), "{untouched}");
    let all = json_of(app.get(&mut teacher, "/api/scores").await).await;
    let users: Vec<&str> = all["scores"].as_array().unwrap().iter().map(|t| t["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice", "bob"]);
    let bob = json_of(app.get(&mut teacher, "/api/scores?trainee=bob").await).await;
    assert_eq!(bob["scores"].as_array().unwrap().len(), 1);
    assert_eq!(bob["scores"][0]["user"], "bob");
    assert_eq!(app.get(&mut teacher, "/api/scores?trainee=Bad%20Name").await.status(), StatusCode::BAD_REQUEST);
}

//! The instructor's dashboard: instructors only; scores, hints, CSV, reset.

mod common;

use axum::http::{header, StatusCode};
use common::*;

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
    let csrf = teacher.csrf.clone();
    let resp = app.post_form(&mut teacher, "/dashboard/reset", &[("csrf", &csrf), ("trainee", "alice")]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let csv = text(app.get(&mut teacher, "/dashboard.csv").await).await;
    assert!(csv.contains(&format!("alice,{SCENARIO},1,1,0,0,")), "alice's scores are gone: {csv}");
}

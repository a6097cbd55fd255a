//! The questions of a run: answers, hints (cost shown first), attempts,
//! score; and what a trainee never receives, whatever they call.

mod common;

use axum::http::StatusCode;
use common::*;

/// The fixture's recording, with the misp and steps stages passed too (so
/// `ioc-domain` and `dns-event` unlock; the `dig-detected` questions stay locked).
fn unlock_first_questions(app: &App) {
    let timeline = app.state.runs().scenario_dir().join(SCENARIO).join("replay/timeline.jsonl");
    let text = std::fs::read_to_string(&timeline).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let last = lines.pop().unwrap();
    for stage in ["misp", "steps"] {
        lines.push(format!(
            r#"{{"at_ms":55,"kind":"stage_finished","stage":"{stage}","result":{{"result":"passed"}},"summary":"ok"}}"#
        ));
    }
    lines.push(last);
    std::fs::write(&timeline, lines.join("\n") + "\n").unwrap();
}

async fn setup() -> (App, Client, String) {
    let app = App::new().await;
    unlock_first_questions(&app);
    let mut alice = app.login("alice").await;
    let id = app.start_run(&mut alice).await;
    app.follow(&mut alice, &id).await;
    (app, alice, id)
}

async fn act(app: &App, c: &mut Client, id: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let csrf = c.csrf.clone();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let resp = app.post_form(c, &format!("/runs/{id}/questions"), &all).await;
    let status = resp.status();
    (status, text(resp).await)
}

const SOLUTION: &str = "lists the lookup of why.kunai.rocks";
const HINT: &str = "Open the MISP event: look at the domain attributes.";
const LOCKED_HINT: &str = "The answer is in data.response.";

#[tokio::test]
async fn a_trainee_answers_wrong_then_right_takes_a_hint_and_sees_the_score() {
    let (app, mut alice, id) = setup().await;
    let page = text(app.get(&mut alice, &format!("/runs/{id}/questions")).await).await;
    assert!(page.contains("Which domain did the sandbox report send to MISP"), "{page}");
    assert!(page.contains("Take a hint (costs 2 points)"), "the cost is shown before: {page}");
    assert!(!page.contains(HINT), "no hint text before it is taken");
    assert!(!page.contains(SOLUTION));
    assert!(page.contains("Score: <strong>0</strong>"));
    let (s, page) =
        act(&app, &mut alice, &id, &[("question", "ioc-domain"), ("action", "answer"), ("answer", "evil.example")])
            .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("Not right. 2 attempts left."), "{page}");
    let (_, page) = act(&app, &mut alice, &id, &[("question", "ioc-domain"), ("action", "hint"), ("hint", "0")]).await;
    assert!(page.contains("Hint taken (−2 points)."), "{page}");
    assert!(page.contains(HINT));
    let (_, page) = act(
        &app,
        &mut alice,
        &id,
        &[("question", "ioc-domain"), ("action", "answer"), ("answer", " Why.Kunai.Rocks ")],
    )
    .await;
    assert!(page.contains("Right: 8 points."), "{page}");
    assert!(page.contains("Score: <strong>8</strong>"));
    // the history is kept: a fresh page shows the score and the tries
    let page = text(app.get(&mut alice, &format!("/runs/{id}/questions")).await).await;
    assert!(page.contains("Score: <strong>8</strong>"), "{page}");
    assert!(page.contains("solved: 8 points"));
    let (_, page) =
        act(&app, &mut alice, &id, &[("question", "ioc-domain"), ("action", "answer"), ("answer", "x")]).await;
    assert!(page.contains("takes no more answers"), "{page}");
}

#[tokio::test]
async fn a_solution_is_shown_only_when_revealed_at_its_cost() {
    let (app, mut alice, id) = setup().await;
    let page = text(app.get(&mut alice, &format!("/runs/{id}/questions")).await).await;
    assert!(page.contains("Reveal the solution (costs 10 points)"));
    assert!(!page.contains(SOLUTION));
    let (_, page) = act(&app, &mut alice, &id, &[("question", "ioc-domain"), ("action", "solution")]).await;
    assert!(page.contains(SOLUTION), "{page}");
    assert!(page.contains("Solution revealed (−10 points)."));
}

#[tokio::test]
async fn locked_questions_give_nothing_away() {
    let (app, mut alice, id) = setup().await;
    let page = text(app.get(&mut alice, &format!("/runs/{id}/questions")).await).await;
    assert!(page.contains("<h2>Locked</h2>"), "{page}");
    assert!(!page.contains("Pick the"), "a locked question's text is not shown");
    let (_, page) = act(&app, &mut alice, &id, &[("question", "answer-ip"), ("action", "hint"), ("hint", "0")]).await;
    assert!(page.contains("is locked"), "{page}");
    assert!(!page.contains(LOCKED_HINT));
    let (_, page) = act(&app, &mut alice, &id, &[("question", "answer-ip"), ("action", "solution")]).await;
    assert!(page.contains("is locked"), "{page}");
    assert!(!page.contains("127.0.66.80"));
    let (_, page) =
        act(&app, &mut alice, &id, &[("question", "answer-ip"), ("action", "answer"), ("answer", "127.0.66.80")]).await;
    assert!(page.contains("is locked"), "{page}");
    assert!(page.contains("Score: <strong>0</strong>"));
}

#[tokio::test]
async fn other_trainees_instructors_and_forged_forms_cannot_act_on_a_trainees_questions() {
    let (app, mut alice, id) = setup().await;
    act(&app, &mut alice, &id, &[("question", "ioc-domain"), ("action", "answer"), ("answer", "alice-secret-try")])
        .await;
    let mut bob = app.login("bob").await;
    let resp = app.get(&mut bob, &format!("/runs/{id}/questions")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!text(resp).await.contains("alice-secret-try"), "another trainee's answers are never sent");
    let (s, body) = act(&app, &mut bob, &id, &[("question", "ioc-domain"), ("action", "solution")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(!body.contains(SOLUTION));
    let mut teacher = app.login("teacher").await;
    let page = text(app.get(&mut teacher, &format!("/runs/{id}/questions")).await).await;
    assert!(page.contains("alice-secret-try"), "the instructor follows the trainee's tries");
    assert!(!page.contains("name=\"action\" value=\"answer\""), "but has no answer form");
    let (s, _) = act(&app, &mut teacher, &id, &[("question", "ioc-domain"), ("action", "hint"), ("hint", "0")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // no CSRF token: refused, nothing recorded
    let resp = app
        .post_form(&mut alice, &format!("/runs/{id}/questions"), &[("question", "ioc-domain"), ("action", "solution")])
        .await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let page = text(app.get(&mut alice, &format!("/runs/{id}/questions")).await).await;
    assert!(page.contains("Reveal the solution (costs 10 points)"), "the forged reveal did nothing");
    assert_eq!(app.get(&mut Client::default(), &format!("/runs/{id}/questions")).await.status(), StatusCode::SEE_OTHER);
}

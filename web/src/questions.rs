//! The questions of a run (lab's scoring): the unlocked ones, hints with
//! their cost shown before taking one, attempts left, the score. Each
//! trainee's history on a run is kept in web.db (`scores`). Only the run's
//! owner answers; the page never carries an answer, a solution not revealed
//! at the trainee's cost, or a hint not taken.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ioclab_lab::run::RunFolder;
use ioclab_lab::scenario::Loaded;
use ioclab_lab::scoring::{History, Quiz, RunData};
use serde::Deserialize;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;
use tower_sessions::Session;

use crate::auth::Trainee;
use crate::csrf::CsrfForm;
use crate::pages::{render, Page};
use crate::run_pages::visible;
use crate::runs::RunSummary;
use crate::state::AppState;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS scores (
    trainee TEXT NOT NULL,
    run TEXT NOT NULL,
    history TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (trainee, run)
)";

/// Makes the `scores` table unless it exists (it is made on first use).
pub async fn scores_table(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(SCHEMA).execute(pool).await.map(|_| ())
}

/// The history of `trainee` on `run` (empty when none).
pub async fn history(pool: &SqlitePool, trainee: &str, run: &str) -> Result<History, sqlx::Error> {
    scores_table(pool).await?;
    let row = sqlx::query("SELECT history FROM scores WHERE trainee = ? AND run = ?")
        .bind(trainee)
        .bind(run)
        .fetch_optional(pool)
        .await?;
    Ok(row.and_then(|r| serde_json::from_str(&r.get::<String, _>("history")).ok()).unwrap_or_default())
}

async fn save(pool: &SqlitePool, trainee: &str, run: &str, h: &History) -> Result<(), sqlx::Error> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    sqlx::query(
        "INSERT INTO scores (trainee, run, history, updated) VALUES (?, ?, ?, ?)
         ON CONFLICT (trainee, run) DO UPDATE SET history = excluded.history, updated = excluded.updated",
    )
    .bind(trainee)
    .bind(run)
    .bind(serde_json::to_string(h).unwrap_or_default())
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// A question as the page shows it.
struct QuestionView {
    id: String,
    prompt: String,
    choices: Vec<String>,
    unlocked: bool,
    waiting_for: String,
    solved: bool,
    closed: bool,
    attempts_left: String,
    points: u32,
    points_now: u32,
    hints: Vec<(String, u32)>,
    next_hint: Option<(usize, u32)>,
    solution_penalty: Option<u32>,
    tries: Vec<(String, bool)>,
}

#[derive(Template)]
#[template(path = "questions.html")]
struct QuestionsPage {
    page: Page,
    run: RunSummary,
    owner: bool,
    total: u32,
    message: Option<String>,
    solution: Option<String>,
    questions: Vec<QuestionView>,
}

/// The scenario and the run's data; the endpoint events only when an answer
/// is judged (`judging`): showing the questions reads the timeline alone, and
/// parsing 100,000 stored events took seconds and gigabytes per page.
pub(crate) fn quiz_parts(
    state: &AppState,
    run: &RunSummary,
    folder: &RunFolder,
    judging: bool,
) -> Result<(Loaded, RunData), String> {
    let loaded = state.runs().scenario(&run.scenario).map_err(|e| e.to_string())?;
    let timeline = state.runs().events(&run.id).unwrap_or_default();
    let events = if judging { folder.events().unwrap_or_default() } else { Vec::new() };
    Ok((loaded, RunData::new(timeline, events)))
}

async fn show(
    state: &AppState,
    session: &Session,
    who: &Trainee,
    run: RunSummary,
    folder: &RunFolder,
    message: Option<String>,
    solution: Option<String>,
) -> Response {
    let (loaded, data) = match quiz_parts(state, &run, folder, false) {
        Ok(p) => p,
        Err(e) => return (StatusCode::NOT_FOUND, e).into_response(),
    };
    let quiz = match Quiz::new(&loaded, data) {
        Ok(q) => q,
        Err(e) => return (StatusCode::CONFLICT, e.to_string()).into_response(),
    };
    let h = match history(state.users().pool(), &run.owner, &run.id).await {
        Ok(h) => h,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let questions = quiz
        .status(&h)
        .into_iter()
        .filter_map(|st| {
            let q = loaded.scenario.questions.iter().find(|q| q.id == st.question)?;
            let qh = h.of(&q.id);
            Some(QuestionView {
                id: q.id.to_string(),
                // a locked question shows what it waits for, not its text
                prompt: if st.unlocked { q.prompt.clone() } else { String::new() },
                choices: if st.unlocked { q.choices.clone() } else { Vec::new() },
                unlocked: st.unlocked,
                waiting_for: st.waiting_for.join(" and "),
                solved: st.solved,
                closed: st.closed,
                attempts_left: st.attempts_left.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into()),
                points: st.points,
                points_now: st.points_now,
                hints: q.hints.iter().take(st.hints_taken).map(|h| (h.text.clone(), h.cost)).collect(),
                next_hint: st.next_hint_cost.filter(|_| st.unlocked).map(|c| (st.hints_taken, c)),
                solution_penalty: st.solution_penalty.filter(|_| st.unlocked && !st.solution_revealed),
                tries: qh.attempts.iter().map(|a| (a.answer.clone(), a.right)).collect(),
            })
        })
        .collect();
    let owner = who.user.name.as_str() == run.owner;
    render(QuestionsPage {
        page: Page::new(state, session, Some(who)).await,
        total: h.total(),
        owner,
        message,
        solution,
        questions,
        run,
    })
}

/// GET /runs/{id}/questions: the run's questions and the owner's score.
pub async fn questions_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    match visible(&state, &who, &id).await {
        Ok((run, folder)) => show(&state, &session, &who, run, &folder, None, None).await,
        Err(resp) => resp,
    }
}

/// What a question form does.
#[derive(Debug, Deserialize)]
pub struct QuestionForm {
    question: String,
    /// `answer`, `hint` or `solution`.
    action: String,
    #[serde(default)]
    answer: String,
    /// The hint's index (text: the CSRF form reads fields as strings).
    #[serde(default)]
    hint: String,
}

/// POST /runs/{id}/questions: answer, take a hint or reveal a solution (the run's owner only).
pub async fn question_post(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<QuestionForm>,
) -> Response {
    let (run, folder) = match visible(&state, &who, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if who.user.name.as_str() != run.owner {
        return (StatusCode::FORBIDDEN, "only the run's trainee answers its questions").into_response();
    }
    let (loaded, data) = match quiz_parts(&state, &run, &folder, true) {
        Ok(p) => p,
        Err(e) => return (StatusCode::NOT_FOUND, e).into_response(),
    };
    let quiz = match Quiz::new(&loaded, data) {
        Ok(q) => q,
        Err(e) => return (StatusCode::CONFLICT, e.to_string()).into_response(),
    };
    let pool = state.users().pool();
    let mut h = match history(pool, &run.owner, &run.id).await {
        Ok(h) => h,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let (message, solution) = match form.action.as_str() {
        "answer" => match quiz.answer(&mut h, &form.question, &form.answer) {
            Ok(v) if v.right => (format!("Right: {} points.", v.points), None),
            Ok(v) => (
                match v.attempts_left {
                    Some(n) => format!("Not right. {n} attempts left."),
                    None => "Not right. Try again.".to_string(),
                },
                None,
            ),
            Err(e) => (e.to_string(), None),
        },
        "hint" => match form
            .hint
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("hint {:?} is not a number", form.hint))
            .and_then(|i| quiz.hint(&mut h, &form.question, i).map_err(|e| e.to_string()))
        {
            Ok(s) => (format!("Hint taken (−{} points).", s.cost), None),
            Err(e) => (e, None),
        },
        "solution" => match quiz.reveal_solution(&mut h, &form.question) {
            Ok(s) => (format!("Solution revealed (−{} points).", s.penalty), Some(s.text)),
            Err(e) => (e.to_string(), None),
        },
        other => return (StatusCode::BAD_REQUEST, format!("no action {other:?}")).into_response(),
    };
    if let Err(e) = save(pool, &run.owner, &run.id, &h).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    show(&state, &session, &who, run, &folder, Some(message), solution).await
}

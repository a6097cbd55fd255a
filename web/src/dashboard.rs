//! The instructor's dashboard: each trainee's runs per scenario, score,
//! hints taken and last activity; resetting a trainee or the class (scores
//! and lab state, see [`crate::reset`]); starting or replaying a scenario
//! for the class; the results as CSV. Instructors only.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::Row;
use tower_sessions::Session;

use ioclab_lab::replay::Speed;

use crate::auth::Instructor;
use crate::csrf::CsrfForm;
use crate::pages::{render, status_of, ErrorPage, Page};
use crate::questions;
use crate::reset::ResetRefused;
use crate::runs::Play;
use crate::state::AppState;
use crate::users::{Role, UserName};

/// One trainee's line of the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct TraineeRow {
    /// Login name.
    pub name: String,
    /// Runs per scenario: `(scenario, runs, passed)`.
    pub progress: Vec<(String, u32, u32)>,
    /// Points over every run.
    pub score: u32,
    /// Hints taken over every run.
    pub hints: usize,
    /// Last run started or answer given, epoch seconds (0: never).
    pub last: f64,
}

impl TraineeRow {
    /// `last` as UTC text.
    pub fn last_text(&self) -> String {
        if self.last <= 0.0 {
            "never".into()
        } else {
            ioclab_lab::run::folder::utc_stamp(self.last as i64)
        }
    }
}

/// The class, from the accounts, the runs and the score histories.
pub async fn class(state: &AppState) -> Result<Vec<TraineeRow>, String> {
    let users = state.users().list().await.map_err(|e| e.to_string())?;
    let runs = state.runs().list(None).await.map_err(|e| e.to_string())?;
    let pool = state.users().pool();
    // a class nobody answered a question in yet has no scores table
    questions::scores_table(pool).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for u in users.into_iter().filter(|u| u.role == Role::Trainee) {
        let name = u.name.as_str().to_string();
        let mut progress: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        let (mut score, mut hints, mut last) = (0u32, 0usize, 0f64);
        for r in runs.iter().filter(|r| r.owner == name) {
            let p = progress.entry(r.scenario.clone()).or_default();
            p.0 += 1;
            p.1 += u32::from(r.passed == Some(true));
            last = last.max(r.started);
            let h = questions::history(pool, &name, &r.id).await.map_err(|e| e.to_string())?;
            score = score.saturating_add(h.total());
            hints += h.questions.values().map(|q| q.hints_taken).sum::<usize>();
        }
        let answered: Option<f64> = sqlx::query("SELECT MAX(updated) AS m FROM scores WHERE trainee = ?")
            .bind(&name)
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?
            .get("m");
        last = last.max(answered.unwrap_or(0.0));
        rows.push(TraineeRow {
            name,
            progress: progress.into_iter().map(|(s, (n, p))| (s, n, p)).collect(),
            score,
            hints,
            last,
        });
    }
    Ok(rows)
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    page: Page,
    rows: Vec<TraineeRow>,
    scenarios: Vec<String>,
}

/// GET /dashboard
pub async fn dashboard(State(state): State<AppState>, who: Instructor, session: Session) -> Response {
    match class(&state).await {
        Ok(rows) => render(DashboardPage {
            page: Page::new(&state, &session, Some(&who.0)).await,
            rows,
            scenarios: state.runs().catalogue().iter().map(|l| l.scenario.id.to_string()).collect(),
        }),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is
/// prefixed so that a spreadsheet does not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The class as CSV: one line per trainee and scenario.
pub fn csv(rows: &[TraineeRow]) -> String {
    let mut out = String::from("trainee,scenario,runs,passed,score,hints,last_activity\n");
    for r in rows {
        let progress = if r.progress.is_empty() { vec![(String::new(), 0, 0)] } else { r.progress.clone() };
        for (s, n, p) in progress {
            out += &format!(
                "{},{},{n},{p},{},{},{}\n",
                csv_field(&r.name),
                csv_field(&s),
                r.score,
                r.hints,
                csv_field(&r.last_text())
            );
        }
    }
    out
}

/// GET /dashboard.csv
pub async fn dashboard_csv(State(state): State<AppState>, _who: Instructor) -> Response {
    match class(&state).await {
        Ok(rows) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"ioclab-results.csv\""),
            ],
            csv(&rows),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// The reset form: one trainee, or everyone when empty; `confirm=yes` from its checkbox.
#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    trainee: String,
    #[serde(default)]
    confirm: String,
}

/// A page saying `text` under `title`, answered with `status` (the class pages' too).
pub(crate) async fn message(
    state: &AppState,
    session: &Session,
    who: &Instructor,
    status: StatusCode,
    title: &str,
    text: String,
) -> Response {
    let page = Page::new(state, session, Some(&who.0)).await;
    (status, render(ErrorPage { page, title: title.into(), message: text })).into_response()
}

/// What a reset did, action by action.
#[derive(Template)]
#[template(path = "dashboard_reset.html")]
struct ResetPage {
    page: Page,
    whom: String,
    histories: u64,
    runs: usize,
    already: usize,
    failures: usize,
    actions: Vec<(bool, String)>,
}

/// POST /dashboard/reset: resets one trainee, or the class (see [`crate::reset`]),
/// once the form's confirmation box is ticked.
pub async fn reset(
    State(state): State<AppState>,
    who: Instructor,
    session: Session,
    CsrfForm(form): CsrfForm<ResetForm>,
) -> Response {
    let trainee = match form.trainee.trim() {
        "" => None,
        name => match name.parse::<UserName>() {
            Ok(n) => Some(n),
            Err(e) => return message(&state, &session, &who, StatusCode::BAD_REQUEST, "Nothing reset", e).await,
        },
    };
    let whom = trainee.as_ref().map_or_else(|| "the whole class".to_string(), |t| t.to_string());
    if form.confirm != "yes" {
        let text = format!("Nothing was reset: tick the box to confirm that {whom} is to be reset.");
        return message(&state, &session, &who, StatusCode::BAD_REQUEST, "Nothing reset", text).await;
    }
    match crate::reset::reset(&state, trainee.as_ref()).await {
        Ok(done) => {
            tracing::info!(by = %who.0.user.name, %whom, histories = done.histories, runs = done.lab.reset.len(), "reset");
            let page = Page::new(&state, &session, Some(&who.0)).await;
            render(ResetPage {
                page,
                whom,
                histories: done.histories,
                runs: done.lab.reset.len(),
                already: done.lab.already_reset.len(),
                failures: done.lab.actions.iter().filter(|a| a.failed()).count(),
                actions: done.lab.actions.iter().map(|a| (a.failed(), a.to_string())).collect(),
            })
        }
        Err(e @ ResetRefused::Running(_)) => {
            message(&state, &session, &who, StatusCode::CONFLICT, "Nothing reset", e.to_string()).await
        }
        Err(e) => {
            message(&state, &session, &who, StatusCode::INTERNAL_SERVER_ERROR, "Reset failed", e.to_string()).await
        }
    }
}

/// The start form: a scenario, `play` (`default`: live when the lab is;
/// `replay`: the recorded replay) and the replay's `speed` (`0`: instant).
#[derive(Debug, Deserialize)]
pub struct StartForm {
    scenario: String,
    #[serde(default)]
    play: String,
    #[serde(default)]
    speed: String,
}

/// POST /dashboard/start: starts a run for the class (every trainee sees
/// it in /runs), then shows it.
pub async fn start(
    State(state): State<AppState>,
    who: Instructor,
    session: Session,
    CsrfForm(form): CsrfForm<StartForm>,
) -> Response {
    let play = match form.play.as_str() {
        "" | "default" => Play::Default,
        "replay" => match form.speed.trim() {
            "" => Play::Replay(Speed::Times(1.0)),
            s => match s.parse::<Speed>() {
                Ok(speed) => Play::Replay(speed),
                Err(e) => {
                    let text = format!("replay speed {s:?}: {e}");
                    return message(&state, &session, &who, StatusCode::BAD_REQUEST, "Not started", text).await;
                }
            },
        },
        other => {
            let text = format!("unknown way to play {other:?}: default or replay");
            return message(&state, &session, &who, StatusCode::BAD_REQUEST, "Not started", text).await;
        }
    };
    match state.runs().start_as(&form.scenario, &who.0.user.name, play, true).await {
        Ok(run) => Redirect::to(&format!("/runs/{}", run.id)).into_response(),
        Err(e) => message(&state, &session, &who, status_of(&e), "Not started", e.to_string()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let rows = vec![TraineeRow {
            name: "alice".into(),
            progress: vec![("dns,x".into(), 2, 1), ("=cmd|' /c calc'!A0".into(), 1, 0)],
            score: 8,
            hints: 1,
            last: 0.0,
        }];
        let out = csv(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "trainee,scenario,runs,passed,score,hints,last_activity");
        assert_eq!(lines[1], "alice,\"dns,x\",2,1,8,1,never");
        assert_eq!(lines[2], "alice,'=cmd|' /c calc'!A0,1,0,8,1,never");
        assert_eq!(csv_field("a\"b,"), "\"a\"\"b,\"");
    }
}

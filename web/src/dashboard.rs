//! The instructor's dashboard: each trainee's runs per scenario, score,
//! hints taken and last activity; resetting a trainee's (or the class's)
//! score history; the results as CSV. Instructors only.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sqlx::Row;
use tower_sessions::Session;

use crate::auth::Instructor;
use crate::csrf::CsrfForm;
use crate::pages::{render, Page};
use crate::questions;
use crate::state::AppState;
use crate::users::Role;

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

/// The reset form: one trainee, or everyone when empty.
#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    trainee: String,
}

/// POST /dashboard/reset: forgets the score history of one trainee, or of the class.
pub async fn reset_scores(
    State(state): State<AppState>,
    who: Instructor,
    CsrfForm(form): CsrfForm<ResetForm>,
) -> Response {
    let pool = state.users().pool();
    // the table exists once anyone looked at questions; make sure it does
    if let Err(e) = questions::history(pool, "", "").await {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let q = if form.trainee.trim().is_empty() {
        sqlx::query("DELETE FROM scores")
    } else {
        sqlx::query("DELETE FROM scores WHERE trainee = ?").bind(form.trainee.trim().to_string())
    };
    match q.execute(pool).await {
        Ok(r) => {
            tracing::info!(by = %who.0.user.name, trainee = %form.trainee, rows = r.rows_affected(), "scores reset");
            Redirect::to("/dashboard").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
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

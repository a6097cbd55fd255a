//! The JSON API under `/api/`: what the pages show, for scripts and for
//! the pages' live parts. Same role checks as the pages; 401 without a
//! session or `Authorization: Bearer` token. POSTs from a session must
//! carry the session's CSRF token in `X-CSRF-Token` (`GET /api/me` gives it).

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tower_sessions::Session;

use crate::auth::{Instructor, Trainee};
use crate::csrf;
use crate::endpoint::{feed_page, run_sources};
use crate::feed::Params;
use crate::pages::{cards, status_of};
use crate::runs::{Engine, RunError, RunSummary};
use crate::state::AppState;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

fn run_error(e: RunError) -> Response {
    error(status_of(&e), e)
}

/// GET /api/me: who is calling, and the session's CSRF token for POSTs.
pub async fn me(who: Trainee, session: Session) -> Json<Value> {
    let token = if who.by_token { None } else { Some(csrf::token(&session).await) };
    Json(json!({"user": who.user, "csrf": token}))
}

/// GET /api/scenarios: the catalogue.
pub async fn scenarios(State(state): State<AppState>, _who: Trainee) -> Json<Value> {
    Json(json!({"scenarios": cards(&state), "mode": mode(&state)}))
}

fn mode(state: &AppState) -> &'static str {
    match state.runs().engine() {
        Engine::Live(_) => "live",
        Engine::Replay { .. } => "replay",
    }
}

/// GET /api/runs: the caller's runs and the class's (every run for an instructor).
pub async fn runs(State(state): State<AppState>, who: Trainee) -> Response {
    match state.runs().visible(&who).await {
        Ok(runs) => Json(json!({"runs": runs})).into_response(),
        Err(e) => run_error(e),
    }
}

/// POST /api/runs's body.
#[derive(Debug, Deserialize)]
pub struct StartRun {
    /// The scenario's id.
    pub scenario: String,
    /// `TOKEN/ENDPOINT`: run a trainee-endpoint scenario on that enrolled endpoint (a trainee's own only).
    #[serde(default)]
    pub endpoint: String,
}

/// POST /api/runs: starts a scenario for the caller (trainees run for themselves; instructors too).
pub async fn start_run(State(state): State<AppState>, who: Trainee, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Err(resp) = session_post_ok(&state, &who, &mut parts).await {
        return resp;
    }
    let req = Request::from_parts(parts, body);
    let Json(start) = match <Json<StartRun> as axum::extract::FromRequest<AppState>>::from_request(req, &state).await {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let endpoint = match crate::trainee_runs::chosen_endpoint(&who, &start.endpoint) {
        Ok(e) => e,
        Err((status, why)) => return error(status, why),
    };
    let started = state.runs().start_on(&start.scenario, &who.user.name, crate::runs::Play::Default, false, endpoint);
    match started.await {
        Ok(run) => (StatusCode::CREATED, Json(json!({"run": run}))).into_response(),
        Err(e) => run_error(e),
    }
}

/// Checks the CSRF header of a session-authenticated POST (a token needs none).
pub(crate) async fn session_post_ok(
    state: &AppState,
    who: &Trainee,
    parts: &mut axum::http::request::Parts,
) -> Result<(), Response> {
    if who.by_token {
        return Ok(());
    }
    let Ok(session) = Session::from_request_parts(parts, state).await else {
        return Err(error(StatusCode::UNAUTHORIZED, "no session"));
    };
    csrf::check_header(parts, &session).await.map_err(IntoResponse::into_response)
}

/// POST /api/runs/{id}/publish: the instructor publishes the run's MISP event
/// when the run waits for it (409 when the run is not live and waiting).
pub async fn publish(State(state): State<AppState>, Instructor(who): Instructor, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    if let Err(resp) = session_post_ok(&state, &who, &mut parts).await {
        return resp;
    }
    let Ok(Path(id)) = Path::<String>::from_request_parts(&mut parts, &state).await else {
        return error(StatusCode::BAD_REQUEST, "no run id");
    };
    if let Err(resp) = visible_run(&state, &who, &id).await {
        return resp;
    }
    if state.runs().publish(&id) {
        Json(json!({"published": id})).into_response()
    } else {
        error(StatusCode::CONFLICT, format!("run {id} is not a live run going on: nothing to publish"))
    }
}

/// The run `id` when the caller may see it.
async fn visible_run(state: &AppState, who: &Trainee, id: &str) -> Result<RunSummary, Response> {
    match state.runs().summary(id).await {
        Ok(Some(run)) if run.visible_to(&who) => Ok(run),
        Ok(Some(_)) => Err(error(StatusCode::FORBIDDEN, "this run is another trainee's")),
        Ok(None) => Err(run_error(RunError::UnknownRun(id.to_string()))),
        Err(e) => Err(run_error(e)),
    }
}

/// GET /api/runs/{id}: the run, its events so far and its artifacts.
pub async fn run(State(state): State<AppState>, who: Trainee, Path(id): Path<String>) -> Response {
    let run = match visible_run(&state, &who, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match state.runs().events(&id) {
        Ok(events) => {
            Json(json!({"run": run, "events": events, "artifacts": state.runs().artifacts(&id)})).into_response()
        }
        Err(e) => run_error(e),
    }
}

/// GET /api/runs/{id}/events: the run's events as server-sent events (`event: run`,
/// data: one RunEvent as JSON), the past ones first; the stream ends after `finished`.
pub async fn run_events(State(state): State<AppState>, who: Trainee, Path(id): Path<String>) -> Response {
    if let Err(resp) = visible_run(&state, &who, &id).await {
        return resp;
    }
    let (past, rx) = match state.runs().live_log(&id) {
        Some(log) => {
            let (past, rx) = log.watch();
            (past, Some(rx))
        }
        None => match state.runs().events(&id) {
            Ok(past) => (past, None),
            Err(e) => return run_error(e),
        },
    };
    let done = past.iter().any(|e| matches!(e.kind, ioclab_lab::run::RunEventKind::Finished { .. }));
    let to_sse = |e: &ioclab_lab::run::RunEvent| {
        Event::default().event("run").json_data(e).unwrap_or_else(|_| Event::default().comment("unserialisable"))
    };
    let past_stream = stream::iter(past.iter().map(to_sse).collect::<Vec<_>>());
    let live: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>> = match rx {
        // ends right after `finished`: the log's sender lives on, so waiting
        // for the next message to notice the end would hold the stream open
        Some(rx) if !done => Box::pin(stream::unfold(Some(rx), move |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(e) => {
                    let last = matches!(e.kind, ioclab_lab::run::RunEventKind::Finished { .. });
                    Some((to_sse(&e), (!last).then_some(rx)))
                }
                // a slow client missed some: it re-reads /api/runs/{id}
                Err(RecvError::Lagged(n)) => Some((Event::default().event("lagged").data(n.to_string()), Some(rx))),
                Err(RecvError::Closed) => None,
            }
        })),
        _ => Box::pin(stream::empty()),
    };
    let all = past_stream.chain(live).map(Ok::<_, Infallible>);
    Sse::new(all).keep_alive(KeepAlive::default()).into_response()
}

/// GET /api/events: endpoint events of the caller's runs (every run for an
/// instructor), newest first, filtered, a page at a time:
/// `?name=dns_query&process=curl&detections=true&run=ID&limit=100&before=<next>`
/// (`limit`: 500 by default, at most 5000; `next` in the answer: the cursor
/// of the following page, `null` on the last).
pub async fn events(State(state): State<AppState>, who: Trainee, Query(params): Query<Params>) -> Response {
    let page = match run_sources(&state, &who, params.run.as_deref()).await {
        Ok(sources) => feed_page(&state, sources, &params).await,
        Err(refusal) => Err(refusal),
    };
    let (_, page) = match page {
        Ok(p) => p,
        Err((status, message)) => return error(status, message),
    };
    let feed = state.runs().feed().clone();
    let rows = page.rows;
    let (rows, full) = match tokio::task::spawn_blocking(move || {
        let full = feed.events(&rows);
        (rows, full)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the endpoint events: {e}")),
    };
    let events: Vec<Value> = rows
        .iter()
        .zip(full)
        .filter_map(|(r, e)| Some(json!({"run": r.at.source.as_str(), "at": r.at.to_string(), "event": e?})))
        .collect();
    Json(json!({
        "events": events,
        "total": page.total,
        "next": page.next.map(|n| n.to_string()),
        "not_kept": page.not_kept,
        "unreadable": page.unreadable,
    }))
    .into_response()
}

/// Which trainee's scores: `?trainee=NAME` (instructors; a trainee may name only themselves).
#[derive(Debug, Deserialize)]
pub struct ScoresQuery {
    trainee: Option<String>,
}

/// GET /api/scores: per trainee and scenario, each run's question points,
/// hints (and their cost) and attempts (see [`crate::scores`]); a trainee
/// gets their own only, and 403 for another's.
pub async fn scores(State(state): State<AppState>, who: Trainee, Query(q): Query<ScoresQuery>) -> Response {
    let asked = match q.trainee.as_deref().map(str::parse::<crate::users::UserName>).transpose() {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let whom = match (who.is_instructor(), asked) {
        (true, asked) => asked,
        (false, Some(a)) if a != who.user.name => {
            return error(StatusCode::FORBIDDEN, "a trainee sees their own scores only")
        }
        (false, _) => Some(who.user.name.clone()),
    };
    match crate::scores::scores(&state, whom.as_ref()).await {
        Ok(scores) => Json(json!({"scores": scores})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// GET /api/users: the accounts (instructors only).
pub async fn users(State(state): State<AppState>, _who: Instructor) -> Response {
    match state.users().list().await {
        Ok(users) => Json(json!({"users": users})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

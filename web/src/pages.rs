//! The server-rendered pages: login, the scenario catalogue (home), the
//! runs and a run's stage events. Handlers are thin: they check who asks,
//! ask the lab, and render a template (askama escapes every value).
//!
//! A page handler looks like [`catalogue`]: take the user extractor
//! ([`Trainee`] or [`Instructor`]) and the [`Session`] (for the page's CSRF
//! token), build the template with [`Page::new`], return [`render`]`(t)`.
//! POST handlers take a [`CsrfForm`] last (it reads the body).

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use ioclab_lab::run::{RunEvent, RunEventKind, StageResult};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::{CurrentUser, Trainee, USER_KEY};
use crate::csrf::{self, CsrfForm};
use crate::runs::{RunError, RunSummary};
use crate::state::AppState;
use crate::users::{User, UserName};

/// What every page shows: who is logged in, the CSRF token of its forms, the replay banner.
#[derive(Debug, Clone)]
pub struct Page {
    /// The user, when logged in.
    pub user: Option<User>,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
    /// Why the appliance runs replays (the banner), if it does.
    pub replay: Option<String>,
}

impl Page {
    /// The page context for `user` in `session`.
    pub async fn new(state: &AppState, session: &Session, user: Option<&CurrentUser>) -> Page {
        Page {
            user: user.map(|u| u.user.clone()),
            csrf: csrf::token(session).await,
            replay: state.replay_reason().map(str::to_string),
        }
    }
}

/// A template as an HTML response (500 with a log line if it fails to render).
pub fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("rendering a page: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; see the server's log").into_response()
        }
    }
}

/// An error page (or any page saying one thing: a title and a message).
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) page: Page,
    pub(crate) title: String,
    pub(crate) message: String,
}

async fn error_page(
    state: &AppState,
    session: &Session,
    who: &CurrentUser,
    status: StatusCode,
    e: &RunError,
) -> Response {
    let title = match e {
        RunError::UnknownScenario(_) | RunError::UnknownRun(_) => "Not found",
        RunError::Unavailable(_) => "Not available here",
        _ => "Error",
    };
    let page = Page::new(state, session, Some(who)).await;
    let t = ErrorPage { page, title: title.into(), message: e.to_string() };
    (status, render(t)).into_response()
}

/// The status a run error answers with.
pub fn status_of(e: &RunError) -> StatusCode {
    match e {
        RunError::UnknownScenario(_) | RunError::UnknownRun(_) | RunError::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
        RunError::Unavailable(_) => StatusCode::CONFLICT,
        RunError::Engine(_) => StatusCode::CONFLICT,
        RunError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The client's address (absent when the server was not given it, as in handler tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Page,
    error: Option<String>,
    name: String,
}

/// GET /login
pub async fn login_form(State(state): State<AppState>, session: Session) -> Response {
    if session.get::<UserName>(USER_KEY).await.ok().flatten().is_some() {
        return Redirect::to("/").into_response();
    }
    let page = Page::new(&state, &session, None).await;
    render(LoginPage { page, error: None, name: String::new() })
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
}

/// POST /login: rate-limited per account and per client address.
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    session: Session,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Response {
    let name = form.name.trim().to_lowercase();
    let again = |status: StatusCode, error: String| {
        let state = state.clone();
        let session = session.clone();
        let name = name.clone();
        async move {
            let page = Page::new(&state, &session, None).await;
            (status, render(LoginPage { page, error: Some(error), name })).into_response()
        }
    };
    if let Err(blocked) = state.limiter().check(&name, addr) {
        return again(StatusCode::TOO_MANY_REQUESTS, blocked.message()).await;
    }
    let user = match name.parse::<UserName>() {
        Ok(n) => state.users().verify(&n, &form.password).await,
        Err(_) => Ok(None),
    };
    match user {
        Ok(Some(user)) => {
            state.limiter().succeeded(&name);
            // a new session id at login: a planted session cookie is worth nothing
            if let Err(e) = session.cycle_id().await {
                tracing::error!("session: {e}");
            }
            if let Err(e) = session.insert(USER_KEY, &user.name).await {
                tracing::error!("session: {e}");
                return (StatusCode::INTERNAL_SERVER_ERROR, "the session store failed").into_response();
            }
            tracing::info!(user = %user.name, role = %user.role, "logged in");
            Redirect::to("/").into_response()
        }
        Ok(None) => {
            state.limiter().failed(&name, addr);
            again(StatusCode::UNAUTHORIZED, "Wrong user name or password.".into()).await
        }
        Err(e) => {
            tracing::error!("login: {e}");
            again(StatusCode::INTERNAL_SERVER_ERROR, "The account store failed; see the server's log.".into()).await
        }
    }
}

/// A form with no field but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct NoFields {}

/// POST /logout
pub async fn logout(session: Session, CsrfForm(_): CsrfForm<NoFields>) -> Response {
    if let Err(e) = session.flush().await {
        tracing::error!("session: {e}");
    }
    Redirect::to("/login").into_response()
}

/// A scenario as the catalogue shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioCard {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its level.
    pub level: String,
    /// Minutes it takes.
    pub duration_minutes: u32,
    /// ATT&CK technique ids.
    pub attack: Vec<String>,
    /// What the trainee learns.
    pub objectives: Vec<String>,
    /// Whether it runs on the trainee's own endpoint (`expect.endpoint: trainee`).
    pub on_trainee: bool,
}

/// The catalogue's scenarios.
pub fn cards(state: &AppState) -> Vec<ScenarioCard> {
    state
        .runs()
        .catalogue()
        .into_iter()
        .map(|l| {
            let s = l.scenario;
            ScenarioCard {
                id: s.id.as_str().to_string(),
                title: s.title,
                level: s.level.to_string(),
                duration_minutes: s.duration_minutes,
                attack: s.attack.iter().map(|a| a.as_str().to_string()).collect(),
                on_trainee: s.expect.endpoint == ioclab_lab::scenario::EndpointRole::Trainee,
                objectives: s.objectives,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "catalogue.html")]
struct CataloguePage {
    page: Page,
    scenarios: Vec<ScenarioCard>,
    dir: String,
    /// The endpoints the user may run a trainee scenario on (`token/endpoint`).
    endpoints: Vec<String>,
}

/// GET /: the scenario catalogue.
pub async fn catalogue(State(state): State<AppState>, who: Trainee, session: Session) -> Response {
    let page = Page::new(&state, &session, Some(&who)).await;
    let dir = state.runs().scenario_dir().display().to_string();
    let endpoints = crate::trainee_runs::usable_endpoints(&state, &who).await;
    render(CataloguePage { page, scenarios: cards(&state), dir, endpoints })
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    page: Page,
    runs: Vec<RunSummary>,
}

/// GET /runs: the user's runs (every run for an instructor).
pub async fn runs(State(state): State<AppState>, who: Trainee, session: Session) -> Response {
    match state.runs().visible(&who).await {
        Ok(runs) => render(RunsPage { page: Page::new(&state, &session, Some(&who)).await, runs }),
        Err(e) => error_page(&state, &session, &who, status_of(&e), &e).await,
    }
}

/// The start form's fields.
#[derive(Debug, Deserialize)]
pub struct StartForm {
    scenario: String,
    /// `token/endpoint`: run on that trainee endpoint (empty or absent: the lab's).
    #[serde(default)]
    endpoint: String,
}

/// POST /runs: starts a scenario for the user, then shows its run.
pub async fn start_run(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    CsrfForm(form): CsrfForm<StartForm>,
) -> Response {
    let endpoint = match crate::trainee_runs::chosen_endpoint(&who, &form.endpoint) {
        Ok(e) => e,
        Err(refused) => return refused.into_response(),
    };
    let started = state.runs().start_on(&form.scenario, &who.user.name, crate::runs::Play::Default, false, endpoint);
    match started.await {
        Ok(run) => Redirect::to(&format!("/runs/{}", run.id)).into_response(),
        Err(e) => error_page(&state, &session, &who, status_of(&e), &e).await,
    }
}

/// One row of a run's event table.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Seconds since the start (`12.3 s`).
    pub at: String,
    /// The event's kind.
    pub kind: &'static str,
    /// Its stage or step.
    pub stage: String,
    /// What it says.
    pub text: String,
    /// Its CSS class (passed, failed, waiting, detection).
    pub class: &'static str,
}

/// How a run event reads in a table.
pub fn event_row(e: &RunEvent) -> EventRow {
    let at = format!("{:.1} s", e.at_ms as f64 / 1000.0);
    let stage = e.kind.stage().map(|s| s.to_string()).unwrap_or_default();
    let (kind, stage, text, class) = match &e.kind {
        RunEventKind::Started { scenario, mode, .. } => {
            ("started", stage, format!("{scenario} ({mode:?})").to_lowercase(), "")
        }
        RunEventKind::StageStarted { .. } => ("stage started", stage, String::new(), ""),
        RunEventKind::StageWaiting { reason, .. } => ("waiting", stage, reason.clone(), "waiting"),
        RunEventKind::StageFinished { result, summary, artifact, .. } => {
            let (class, why) = match result {
                StageResult::Passed => ("passed", String::new()),
                StageResult::Failed { reason } => ("failed", format!(" — failed: {reason}")),
                StageResult::Skipped { reason } => ("", format!(" — skipped: {reason}")),
            };
            let art = artifact.as_ref().map(|a| format!(" [{a}]")).unwrap_or_default();
            ("stage finished", stage, format!("{summary}{why}{art}"), class)
        }
        RunEventKind::StepsAsked { endpoint, steps, .. } => {
            let commands: Vec<&str> = steps.iter().map(|a| a.command.as_str()).collect();
            (
                "steps asked",
                ioclab_lab::scenario::Stage::Steps.to_string(),
                format!("on {endpoint}: {}", commands.join(" ; ")),
                "waiting",
            )
        }
        RunEventKind::StepStarted { step, command } => ("step started", step.to_string(), command.clone(), ""),
        RunEventKind::StepOutput { step, line, .. } => ("output", step.to_string(), line.clone(), ""),
        RunEventKind::StepFinished { step, exit_code } => {
            let text = exit_code.map(|c| format!("exit code {c}")).unwrap_or_else(|| "killed at its timeout".into());
            ("step finished", step.to_string(), text, "")
        }
        RunEventKind::Detection { expected, event } => {
            ("detection", expected.to_string(), event_summary(event), "detection")
        }
        RunEventKind::ExpectationFailed { expected, reason, .. } => {
            ("expectation failed", expected.clone(), reason.clone(), "failed")
        }
        RunEventKind::Finished { passed } => (
            "finished",
            String::new(),
            if *passed { "passed" } else { "failed" }.into(),
            if *passed { "passed" } else { "failed" },
        ),
    };
    EventRow { at, kind, stage, text, class }
}

/// One line about an endpoint event: its name, process and command line.
fn event_summary(event: &serde_json::Value) -> String {
    let name = event.pointer("/info/event/name").and_then(|v| v.as_str()).unwrap_or("event");
    let exe = event.pointer("/info/task/name").and_then(|v| v.as_str()).unwrap_or("");
    let cmd = event.pointer("/data/command_line").and_then(|v| v.as_str()).unwrap_or("");
    format!("{name} {exe} {cmd}").trim().to_string()
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    page: Page,
    run: RunSummary,
    events: Vec<EventRow>,
    /// The commands the trainee is asked to run on their endpoint, while the run waits for them.
    asked: Option<crate::trainee_runs::Asked>,
}

/// GET /runs/{id}: a run's stage events (its owner and instructors).
pub async fn run_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let run = match state.runs().summary(&id).await {
        Ok(Some(run)) if run.visible_to(&who) => run,
        Ok(Some(_)) => return (StatusCode::FORBIDDEN, "this run is another trainee's").into_response(),
        Ok(None) => return error_page(&state, &session, &who, StatusCode::NOT_FOUND, &RunError::UnknownRun(id)).await,
        Err(e) => return error_page(&state, &session, &who, status_of(&e), &e).await,
    };
    match state.runs().events(&id) {
        Ok(events) => {
            let page = Page::new(&state, &session, Some(&who)).await;
            let asked = crate::trainee_runs::asked(&run, &events);
            render(RunPage { page, run, events: events.iter().map(event_row).collect(), asked })
        }
        Err(e) => error_page(&state, &session, &who, status_of(&e), &e).await,
    }
}

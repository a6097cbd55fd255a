//! ioclab's appliance web UI and JSON API (`ioclab serve`): accounts and
//! sessions, the scenario catalogue, runs and their events, on top of the
//! lab engine (`ioclab_lab`), which does the work; the handlers only check
//! who asks and render.
//!
//! Layout: [`router`] wires the routes; [`state::AppState`] is what they
//! share; [`auth`] holds the role extractors, [`csrf`] the form check,
//! [`limit`] the login rate limit, [`users`] the accounts, [`runs`] the
//! runs, [`pages`] the HTML pages, [`api`] the JSON API, [`assets`] the
//! embedded static files. Templates are in the repository's `templates/`.

#![warn(missing_docs)]

pub mod api;
pub mod assets;
pub mod auth;
pub mod class_forms;
pub mod class_pages;
pub mod class_push;
pub mod config;
pub mod csrf;
pub mod dashboard;
pub mod endpoint;
pub mod endpoints;
pub mod feed;
pub mod limit;
pub mod misp_pages;
pub mod misp_view;
pub mod pages;
pub mod password;
pub mod pipeline;
pub mod questions;
pub mod report_view;
pub mod reset;
pub mod run_pages;
pub mod runs;
pub mod sandbox_pages;
pub mod scores;
pub mod service;
pub mod state;
pub mod svg;
pub mod users;

use axum::routing::{get, post};
use axum::Router;
use tower_sessions::cookie::time::Duration;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;

use crate::state::AppState;

/// The appliance's accounts and sessions: `<data>/web.db`.
pub fn web_db(data: &ioclab_lab::data_dir::DataDir) -> std::path::PathBuf {
    data.root().join("web.db")
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ioclab_session";

/// The sessions, in SQLite beside the accounts: `HttpOnly`, `SameSite=Strict`,
/// expiring after `idle_minutes` without a request.
pub async fn session_layer(
    state: &AppState,
    idle_minutes: i64,
) -> Result<SessionManagerLayer<SqliteStore>, sqlx::Error> {
    let store = SqliteStore::new(state.users().pool().clone());
    store.migrate().await?;
    Ok(SessionManagerLayer::new(store)
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        // plain HTTP on a lab VM: a Secure cookie would never come back
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(Duration::minutes(idle_minutes))))
}

/// The pages of the "pages" helper (run pipeline, artifacts, pictures): kept in one block.
fn page_routes() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/pipeline", get(run_pages::pipeline_page))
        .route("/runs/{id}/flow.svg", get(run_pages::flow_svg))
        .route("/runs/{id}/report", get(run_pages::report_page))
        .route("/runs/{id}/tree.svg", get(run_pages::tree_svg))
        .route("/runs/{id}/contacts.svg", get(run_pages::contacts_svg))
        .route("/runs/{id}/misp", get(run_pages::misp_page))
        .route("/runs/{id}/iocs", get(run_pages::iocs_page))
        .route("/runs/{id}/detection", get(run_pages::detection_page))
        .route("/runs/{id}/questions", get(questions::questions_page).post(questions::question_post))
        .route("/endpoint", get(endpoint::stream_page))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/dashboard.csv", get(dashboard::dashboard_csv))
        .route("/dashboard/reset", post(dashboard::reset))
        .route("/dashboard/start", post(dashboard::start))
        .route("/endpoint/{source}/{n}", get(endpoint::detail_page))
}

/// The class's endpoints, their tokens and IoC pushes (the "class" helper's block).
fn class_routes() -> Router<AppState> {
    Router::new()
        .route("/class", get(class_pages::class_page))
        .route("/class/endpoints/{token}/{endpoint}", get(class_pages::endpoint_page))
        .route("/class/tokens", get(class_forms::tokens_page).post(class_forms::create_token))
        .route("/class/tokens/{name}/revoke", post(class_forms::revoke_token))
        .route("/class/push", get(class_push::push_page).post(class_push::push_post))
        .route("/api/endpoints", get(class_pages::api_endpoints))
        .route("/api/endpoints/{token}/{endpoint}/events", get(class_pages::api_events))
        .route("/api/class/changes", get(class_pages::changes))
}

/// The MISP and sandbox pages and their API (the "misp-sandbox" helper's block).
fn service_routes() -> Router<AppState> {
    use axum::extract::DefaultBodyLimit;
    Router::new()
        .route("/api/misp/events", get(misp_pages::api_events))
        .route("/api/misp/events/{id}", get(misp_pages::api_event))
        .route("/api/misp/events/{id}/publish", post(misp_pages::api_publish))
        .route("/api/sandbox/tasks", get(sandbox_pages::api_tasks))
        .route("/api/sandbox/tasks/{id}", get(sandbox_pages::api_task))
        .route("/misp", get(misp_pages::events_page))
        .route("/misp/events/{id}", get(misp_pages::event_page_html))
        .route("/misp/events/{id}/publish", post(misp_pages::publish_form))
        .route("/sandbox", get(sandbox_pages::tasks_page))
        .route("/sandbox/tasks/{id}", get(sandbox_pages::task_page_html))
        .route("/sandbox/tasks/{id}/tree.svg", get(sandbox_pages::tree_svg))
        .route("/sandbox/tasks/{id}/contacts.svg", get(sandbox_pages::contacts_svg))
        // the handler enforces the configured limit itself, naming it (axum's default is 2 MB)
        .route(
            "/sandbox/submit",
            get(sandbox_pages::submit_form).post(sandbox_pages::submit_post).layer(DefaultBodyLimit::disable()),
        )
}

/// Every route of the appliance's web UI and API.
pub fn router(state: AppState, sessions: SessionManagerLayer<SqliteStore>) -> Router {
    let api = Router::new()
        .route("/me", get(api::me))
        .route("/scenarios", get(api::scenarios))
        .route("/runs", get(api::runs).post(api::start_run))
        .route("/runs/{id}", get(api::run))
        .route("/runs/{id}/events", get(api::run_events))
        .route("/runs/{id}/publish", post(api::publish))
        .route("/events", get(api::events))
        .route("/scores", get(api::scores))
        .route("/users", get(api::users));
    Router::new()
        .route("/", get(pages::catalogue))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/runs", get(pages::runs).post(pages::start_run))
        .route("/runs/{id}", get(pages::run_page))
        .route("/static/{*path}", get(assets::asset))
        .merge(page_routes())
        .merge(service_routes())
        .merge(class_routes())
        .nest("/api", api)
        .layer(sessions)
        .with_state(state)
}

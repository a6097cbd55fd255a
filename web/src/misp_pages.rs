//! The embedded MISP's pages and API: its events newest first, paged
//! (`/misp`), one event with its attributes, objects, tags and warninglist
//! hits (`/misp/events/{id}`), read-only for trainees; instructors publish
//! an event (`POST /misp/events/{id}/publish`), and a run waiting in its
//! publish stage for that event goes on.
//!
//! The pages work on intel's [`Store`] itself, the one the MISP REST API
//! serves (the lab holds it): no HTTP round trip, no API key to keep, typed
//! errors; publishing is what the API's `/events/publish` does
//! ([`Store::set_published`]).

use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ioclab_intel::store::filter::Filters;
use ioclab_intel::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower_sessions::Session;

use crate::auth::{CurrentUser, Instructor, Trainee};
use crate::csrf::CsrfForm;
use crate::misp_view::{event_view, text, EventView};
use crate::pages::{render, NoFields, Page};
use crate::service::{self, ServiceError};
use crate::state::AppState;

/// Events per page.
pub const PER_PAGE: usize = 50;

/// What a MISP page or call could not do.
#[derive(Debug, thiserror::Error)]
pub enum MispError {
    /// The appliance runs no MISP (a test appliance).
    #[error("the embedded MISP is not running in this appliance")]
    NotRunning,
    /// No such event.
    #[error("no MISP event {0}")]
    NoEvent(String),
    /// The store refused (busy, a bad request).
    #[error("the MISP store: {0}")]
    Store(StoreError),
    /// The store failed (logged: its message may show paths or SQL).
    #[error("the MISP store failed; see the server's log")]
    Failed,
}

impl ServiceError for MispError {
    fn status(&self) -> StatusCode {
        match self {
            MispError::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
            MispError::NoEvent(_) => StatusCode::NOT_FOUND,
            MispError::Store(StoreError::Busy { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            MispError::Store(StoreError::Invalid(_)) => StatusCode::BAD_REQUEST,
            MispError::Store(_) | MispError::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl MispError {
    fn of(e: StoreError, id: &str) -> MispError {
        match e {
            StoreError::NotFound(_) => MispError::NoEvent(id.to_string()),
            StoreError::Db(_) | StoreError::Migrate(_) => {
                tracing::error!("MISP store: {e}");
                MispError::Failed
            }
            e => MispError::Store(e),
        }
    }
}

fn store(state: &AppState) -> Result<&Store, MispError> {
    state.misp().ok_or(MispError::NotRunning)
}

/// An event as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// Its id.
    pub id: String,
    /// Its uuid.
    pub uuid: String,
    /// `info`.
    pub info: String,
    /// `date`.
    pub date: String,
    /// Whether it is published.
    pub published: bool,
    /// Attributes (its own and its objects').
    pub attribute_count: u64,
    /// Tag names.
    pub tags: Vec<String>,
    /// The threat level's name.
    pub threat_level: String,
}

/// A page of events, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventRow>,
    /// This page (from 1).
    pub page: usize,
    /// How many pages.
    pub pages: usize,
    /// How many events.
    pub total: usize,
}

fn event_id(e: &Value) -> i64 {
    text(e, "id").parse().unwrap_or(0)
}

/// Page `page` (from 1) of the store's events, newest first.
pub async fn event_page(store: &Store, page: usize) -> Result<EventPage, StoreError> {
    let page = page.max(1);
    // the ids of all (a small row each), then the page's events rendered
    let all = store.index(&Filters { minimal: true, ..Filters::default() }).await?;
    let total = all.len();
    let mut ids: Vec<i64> = all.iter().map(event_id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let ids: Vec<i64> = ids.into_iter().skip((page - 1).saturating_mul(PER_PAGE)).take(PER_PAGE).collect();
    let mut events = if ids.is_empty() {
        Vec::new()
    } else {
        store.index(&Filters::from_index_body(&json!({ "eventid": ids }))?).await?
    };
    events.sort_by_key(|e| std::cmp::Reverse(event_id(e)));
    let events = events
        .iter()
        .map(|e| {
            let v = event_view(e);
            EventRow {
                id: v.id,
                uuid: v.uuid,
                info: v.info,
                date: v.date,
                published: v.published,
                attribute_count: v.attribute_count,
                tags: v.tags,
                threat_level: v.threat_level,
            }
        })
        .collect();
    Ok(EventPage { events, page, pages: total.div_ceil(PER_PAGE).max(1), total })
}

/// The event `id` (its number or uuid).
pub async fn event(state: &AppState, id: &str) -> Result<EventView, MispError> {
    let doc = store(state)?.event(id).await.map_err(|e| MispError::of(e, id))?;
    Ok(event_view(&doc))
}

/// What a publish did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The event's id.
    pub id: String,
    /// Its uuid.
    pub uuid: String,
    /// The runs waiting for it that were told.
    pub runs_told: Vec<String>,
}

/// Publishes event `id`, then tells the live runs that created it (one waiting in its publish stage goes on).
pub async fn publish(state: &AppState, who: &CurrentUser, id: &str) -> Result<Published, MispError> {
    let store = store(state)?;
    store.set_published(id, true).await.map_err(|e| MispError::of(e, id))?;
    let ev = event(state, id).await?;
    let runs_told = state.runs().publish_event(&ev.uuid);
    tracing::info!(user = %who.user.name, event = %ev.uuid, runs = ?runs_told, "MISP event published");
    Ok(Published { id: ev.id, uuid: ev.uuid, runs_told })
}

/// `?page=N`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// The page, from 1.
    pub page: Option<usize>,
}

#[derive(Template)]
#[template(path = "misp_events.html")]
struct EventsPage {
    page: Page,
    error: Option<String>,
    list: Option<EventPage>,
}

/// GET /misp: the events, newest first, paged.
pub async fn events_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Query(q): Query<PageQuery>,
) -> Response {
    let page = Page::new(&state, &session, Some(&who)).await;
    service::html(events(&state, q.page).await, |error, list| render(EventsPage { page, error, list }))
}

/// Page `page` of the events (the first when not given).
async fn events(state: &AppState, page: Option<usize>) -> Result<EventPage, MispError> {
    event_page(store(state)?, page.unwrap_or(1)).await.map_err(|e| MispError::of(e, ""))
}

#[derive(Template)]
#[template(path = "misp_event.html")]
struct EventPageTemplate {
    page: Page,
    error: Option<String>,
    event: Option<EventView>,
    /// Whether the page shows the publish button (instructors).
    can_publish: bool,
}

/// GET /misp/events/{id}: one event; instructors see the publish button.
pub async fn event_page_html(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let page = Page::new(&state, &session, Some(&who)).await;
    let can_publish = who.is_instructor();
    service::html(event(&state, &id).await, |error, event| {
        render(EventPageTemplate { page, error, event, can_publish })
    })
}

/// POST /misp/events/{id}/publish: an instructor publishes the event, then sees it.
pub async fn publish_form(
    State(state): State<AppState>,
    Instructor(who): Instructor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<NoFields>,
) -> Response {
    match publish(&state, &who, &id).await {
        Ok(p) => Redirect::to(&format!("/misp/events/{}", p.id)).into_response(),
        Err(e) => (e.status(), e.to_string()).into_response(),
    }
}

/// GET /api/misp/events?page=N: the page of events `/misp` shows.
pub async fn api_events(State(state): State<AppState>, _who: Trainee, Query(q): Query<PageQuery>) -> Response {
    service::json(events(&state, q.page).await)
}

/// GET /api/misp/events/{id}: the event `/misp/events/{id}` shows.
pub async fn api_event(State(state): State<AppState>, _who: Trainee, Path(id): Path<String>) -> Response {
    service::json(event(&state, &id).await.map(|ev| json!({ "event": ev })))
}

/// POST /api/misp/events/{id}/publish: instructors; a session call sends `X-CSRF-Token`.
pub async fn api_publish(State(state): State<AppState>, Instructor(who): Instructor, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    if let Err(resp) = crate::api::session_post_ok(&state, &who, &mut parts).await {
        return resp;
    }
    let id = match <Path<String> as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state)
        .await
    {
        Ok(Path(id)) => id,
        Err(e) => return e.into_response(),
    };
    service::json(publish(&state, &who, &id).await.map(|p| json!({ "published": p })))
}

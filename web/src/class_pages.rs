//! The class on one screen (instructors only): every remote endpoint with
//! its trainee or team, agent version, last seen, events per second,
//! losses and detections, refreshed live; an endpoint's events, newest
//! first, a page at a time; and the same as JSON under `/api/endpoints`.
//! The queries are [`crate::endpoints::view`]'s; the enrolment tokens and
//! IoC pushes are [`crate::class_forms`]'.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tower_sessions::Session;

use crate::auth::Instructor;
use crate::endpoints::view::{
    endpoint_href, ClassEndpoint, EndpointView, EventsPage, EventsQuery, StoredEvent, RATE_WINDOW_SECS,
    STALE_AFTER_SECS,
};
use crate::feed::Summary;
use crate::pages::{render, Page};
use crate::state::AppState;
use crate::users::{now, UserName};

/// Events in one page of an endpoint's events, unless `limit` says otherwise.
const PAGE_EVENTS: u32 = 100;
/// How often the live stream looks for changes: under load the list
/// changes every second, and one render of it counts the last minute's
/// events of every endpoint (about 150 ms for 20 endpoints at 1,000 events/s).
const LOOK_EVERY: Duration = Duration::from_secs(3);
/// The live stream says "refresh" at least this often, for the stale flags.
const REFRESH_AT_LEAST: Duration = Duration::from_secs(10);

/// Why a class page or call could not be answered.
pub(crate) enum Refused {
    /// The appliance runs no endpoint listener.
    Off,
    /// No such endpoint.
    Unknown(String),
    /// The store failed.
    Store(String),
}

impl Refused {
    fn status(&self) -> StatusCode {
        match self {
            Refused::Off => StatusCode::SERVICE_UNAVAILABLE,
            Refused::Unknown(_) => StatusCode::NOT_FOUND,
            Refused::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            Refused::Off => "this appliance runs no endpoint listener (`ioclab serve` starts one)".into(),
            Refused::Unknown(what) => format!("no endpoint {what}"),
            Refused::Store(e) => e.clone(),
        }
    }

    /// As a JSON error.
    pub(crate) fn api(self) -> Response {
        (self.status(), Json(serde_json::json!({"error": self.message()}))).into_response()
    }

    /// As an error page.
    pub(crate) async fn page(self, state: &AppState, session: &Session, who: &Instructor) -> Response {
        crate::dashboard::message(state, session, who, self.status(), "The class's endpoints", self.message()).await
    }
}

/// The endpoint view, or why there is none.
pub(crate) fn view(state: &AppState) -> Result<&EndpointView, Refused> {
    state.endpoints().ok_or(Refused::Off)
}

fn store(e: impl std::fmt::Display) -> Refused {
    Refused::Store(e.to_string())
}

#[derive(Template)]
#[template(path = "class.html")]
struct ClassPage {
    page: Page,
    rows: Vec<ClassEndpoint>,
    stale_after: i64,
    window: i64,
}

/// GET /class: the class's endpoints, refreshed live (`/api/class/changes`).
pub async fn class_page(State(state): State<AppState>, who: Instructor, session: Session) -> Response {
    let rows = match view(&state) {
        Ok(v) => v.endpoints(now()).await.map_err(store),
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => render(ClassPage {
            page: Page::new(&state, &session, Some(&who.0)).await,
            rows,
            stale_after: STALE_AFTER_SECS,
            window: RATE_WINDOW_SECS,
        }),
        Err(e) => e.page(&state, &session, &who).await,
    }
}

/// GET /api/endpoints: the class's endpoints as JSON.
pub async fn api_endpoints(State(state): State<AppState>, _who: Instructor) -> Response {
    let rows = match view(&state) {
        Ok(v) => v.endpoints(now()).await.map_err(store),
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.api(),
    }
}

/// GET /api/class/changes: server-sent events, `class` whenever the
/// endpoint list changed (looked at every 3 s, and said every 10 s anyway, for the stale flags);
/// ends when the appliance stops (the browser reconnects to a new one).
pub async fn changes(State(state): State<AppState>, _who: Instructor) -> Response {
    let view = match view(&state) {
        Ok(v) => v.clone(),
        Err(e) => return e.api(),
    };
    // what the page shows already: the first event is for a change after it
    let seen = view.generation().await.ok();
    let start = (view, seen, tokio::time::Instant::now());
    let events = stream::unfold(start, |(view, seen, mut told)| async move {
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            if view.closed() {
                return None;
            }
            let now = view.generation().await.ok();
            if now != seen || told.elapsed() >= REFRESH_AT_LEAST {
                told = tokio::time::Instant::now();
                return Some((Ok::<_, Infallible>(Event::default().event("class").data("changed")), (view, now, told)));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// The query of an endpoint's events: `detections=true|on`, `before=ID`, `limit`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsParams {
    #[serde(default)]
    detections: String,
    before: Option<i64>,
    limit: Option<u32>,
}

impl EventsParams {
    fn query(&self) -> EventsQuery {
        EventsQuery {
            detections: matches!(self.detections.as_str(), "true" | "on" | "1" | "yes"),
            before: self.before,
            limit: self.limit.unwrap_or(PAGE_EVENTS),
        }
    }
}

/// A page of the endpoint `token`/`endpoint`'s events (404 when it never sent any).
async fn events_of(state: &AppState, token: &str, endpoint: &str, q: EventsQuery) -> Result<EventsPage, Refused> {
    let v = view(state)?;
    let unknown = || Refused::Unknown(format!("{endpoint:?} of {token:?}"));
    let token: UserName = token.parse().map_err(|_| unknown())?;
    let page = v.events(&token, endpoint, q).await.map_err(store)?;
    // an empty first page: is there such an endpoint at all?
    if page.events.is_empty() && !v.exists(&token, endpoint).await.map_err(store)? {
        return Err(unknown());
    }
    Ok(page)
}

/// An event of the API: its columns and the event itself, as the agent sent it.
#[derive(Serialize)]
struct ApiEvent {
    id: i64,
    uuid: String,
    name: String,
    detection: bool,
    received: i64,
    event: Box<RawValue>,
}

/// `GET /api/endpoints/{token}/{endpoint}/events?detections=true&before=ID&limit=N`:
/// the endpoint's events, newest first; `next` is the following page's `before` (`null` on the last).
pub async fn api_events(
    State(state): State<AppState>,
    _who: Instructor,
    Path((token, endpoint)): Path<(String, String)>,
    Query(params): Query<EventsParams>,
) -> Response {
    let page = match events_of(&state, &token, &endpoint, params.query()).await {
        Ok(p) => p,
        Err(e) => return e.api(),
    };
    let events: Vec<ApiEvent> = page
        .events
        .into_iter()
        .filter_map(|e| {
            // stored lines were parsed at ingest: JSON; one that is not is left out rather than failing the page
            let event = RawValue::from_string(e.line).ok()?;
            Some(ApiEvent { id: e.id, uuid: e.uuid, name: e.name, detection: e.detection, received: e.received, event })
        })
        .collect();
    Json(serde_json::json!({"events": events, "next": page.next})).into_response()
}

/// A row of an endpoint's page.
struct EventRow {
    id: i64,
    name: String,
    detection: bool,
    time: String,
    process: String,
    command_line: String,
    json: String,
}

fn event_row(e: &StoredEvent) -> EventRow {
    let summary = Summary::of_line(e.line.as_bytes()).unwrap_or_default();
    let json = serde_json::from_str::<serde_json::Value>(&e.line)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| e.line.clone());
    let time =
        if summary.time.is_empty() { ioclab_lab::run::folder::utc_stamp(e.received) } else { summary.time.to_string() };
    EventRow {
        id: e.id,
        name: e.name.clone(),
        detection: e.detection,
        time,
        process: summary.process(),
        command_line: summary.command_line.to_string(),
        json,
    }
}

#[derive(Template)]
#[template(path = "class_endpoint.html")]
struct EndpointPage {
    page: Page,
    token: String,
    endpoint: String,
    row: Option<ClassEndpoint>,
    rows: Vec<EventRow>,
    detections: bool,
    paged: bool,
    older: Option<String>,
    here: String,
}

/// GET /class/endpoints/{token}/{endpoint}: the endpoint's events, newest
/// first (`detections=on`: its detections only; `before=ID`: older ones).
pub async fn endpoint_page(
    State(state): State<AppState>,
    who: Instructor,
    session: Session,
    Path((token, endpoint)): Path<(String, String)>,
    Query(params): Query<EventsParams>,
) -> Response {
    let q = params.query();
    let page = match events_of(&state, &token, &endpoint, q).await {
        Ok(p) => p,
        Err(e) => return e.page(&state, &session, &who).await,
    };
    let row =
        match view(&state) {
            Ok(v) => v.endpoints(now()).await.ok().and_then(|rows| {
                rows.into_iter().find(|r| r.row.token.as_str() == token && r.row.endpoint == endpoint)
            }),
            Err(_) => None,
        };
    let here = token.parse::<UserName>().map(|t| endpoint_href(&t, &endpoint)).unwrap_or_default();
    let older = page.next.map(|n| {
        let d = if q.detections { "detections=on&" } else { "" };
        format!("{here}?{d}before={n}")
    });
    render(EndpointPage {
        page: Page::new(&state, &session, Some(&who.0)).await,
        rows: page.events.iter().map(event_row).collect(),
        detections: q.detections,
        paged: q.before.is_some(),
        older,
        here,
        row,
        token,
        endpoint,
    })
}

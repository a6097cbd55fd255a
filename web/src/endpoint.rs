//! The endpoint agent's event stream as a page: the lab's feed when it runs
//! live, the runs' kept events otherwise (a trainee's own runs only), with
//! filters (event name, process, detections only), pages below a cursor,
//! and a detail view showing the process's ancestry. The events come from
//! the [`crate::feed`], which never parses or clones them all per request.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tower_sessions::Session;

use crate::auth::Trainee;
use crate::feed::{Cursor, FeedPage, FeedQuery, Found, Params, Source};
use crate::pages::{render, Page};
use crate::runs::Engine;
use crate::state::AppState;

/// Why a page of events could not be served: the status and what to say.
pub type Refusal = (StatusCode, String);

/// The run sources `who` may read: `run` alone when given (and theirs), else their runs (every run for an instructor), newest first.
pub async fn run_sources(state: &AppState, who: &Trainee, run: Option<&str>) -> Result<Vec<Source>, Refusal> {
    if let Some(id) = run {
        return match (Source::parse(id), state.runs().summary(id).await) {
            (Some(s @ Source::Run(_)), Ok(Some(r))) if who.may_see(&r.owner) => Ok(vec![s]),
            (_, Ok(Some(_))) => Err((StatusCode::FORBIDDEN, "this run is another trainee's".into())),
            (_, Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
            _ => Err((StatusCode::NOT_FOUND, format!("no run {id}"))),
        };
    }
    let owner = (!who.is_instructor()).then_some(&who.user.name);
    let runs = state.runs().list(owner).await.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(runs.iter().filter_map(|r| Source::parse(&r.id)).collect())
}

/// A page of `sources`' events as `params` ask (a bad cursor: 400, saying why), read off the async workers.
pub async fn feed_page(
    state: &AppState,
    sources: Vec<Source>,
    params: &Params,
) -> Result<(FeedQuery, FeedPage), Refusal> {
    let q = params.query().map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let feed = state.runs().feed().clone();
    let lab = match state.runs().engine() {
        Engine::Live(lab) if sources.contains(&Source::Live) => Some(lab.clone()),
        _ => None,
    };
    let query = q.clone();
    let page = tokio::task::spawn_blocking(move || {
        if let Some(lab) = lab {
            feed.sync_live(&lab);
        }
        feed.page(&sources, &query)
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the endpoint events: {e}")))?
    .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((q, page))
}

/// A row of the stream.
pub struct Row {
    /// The detail page.
    pub href: String,
    /// Event name.
    pub name: String,
    /// Process name and pid.
    pub process: String,
    /// Command line.
    pub command_line: String,
    /// Whether it matched an IoC.
    pub detection: bool,
    /// Its UTC time.
    pub time: String,
}

fn href(at: &Cursor) -> String {
    format!("/endpoint/{}/{}", at.source, at.n)
}

fn row(f: &Found) -> Row {
    let s = &f.summary;
    Row {
        href: href(&f.at),
        name: s.name.to_string(),
        process: s.process(),
        command_line: s.command_line.to_string(),
        detection: s.detection,
        time: s.time.to_string(),
    }
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct StreamPage {
    page: Page,
    rows: Vec<Row>,
    total: u64,
    name: String,
    process: String,
    detections: bool,
    /// The next page's URL, when there are more.
    older: Option<String>,
    /// Whether this is not the first page.
    paged: bool,
    not_kept: u64,
    memory: usize,
    unreadable: u64,
    unreadable_why: String,
}

/// The URL of the page after `next`, keeping the filters.
fn older_href(q: &FeedQuery, run: Option<&str>, next: &Cursor) -> String {
    let mut pairs = vec![("name", q.filters.name.clone()), ("process", q.filters.process.clone())];
    if q.filters.detections {
        pairs.push(("detections", "on".into()));
    }
    if let Some(r) = run {
        pairs.push(("run", r.into()));
    }
    pairs.push(("before", next.to_string()));
    let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("/endpoint?{query}")
}

/// GET /endpoint: the endpoint events, newest first, filtered, a page at a
/// time (`before=<cursor>`): the live lab's when it runs, else the runs'.
pub async fn stream_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Query(params): Query<Params>,
) -> Response {
    let sources = match (state.runs().engine(), params.run.as_deref()) {
        (Engine::Live(_), None) => Ok(vec![Source::Live]),
        (_, run) => run_sources(&state, &who, run).await,
    };
    let (q, page) = match sources {
        Ok(sources) => match feed_page(&state, sources, &params).await {
            Ok(p) => p,
            Err(refusal) => return refusal.into_response(),
        },
        Err(refusal) => return refusal.into_response(),
    };
    render(StreamPage {
        page: Page::new(&state, &session, Some(&who)).await,
        rows: page.rows.iter().map(row).collect(),
        total: page.total,
        older: page.next.as_ref().map(|n| older_href(&q, params.run.as_deref(), n)),
        paged: q.before.is_some(),
        not_kept: page.not_kept,
        memory: state.runs().feed().capacity(),
        unreadable: page.unreadable,
        unreadable_why: page.unreadable_why.unwrap_or_default(),
        detections: q.filters.detections,
        name: q.filters.name,
        process: q.filters.process,
    })
}

fn s<'a>(e: &'a Value, pointer: &str) -> &'a str {
    e.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The ancestry of an event's process: its ancestors' executables (root first), its parent, itself.
pub fn ancestry(e: &Value) -> Vec<String> {
    let mut out: Vec<String> =
        s(e, "/data/ancestors").split('|').filter(|a| !a.is_empty()).map(str::to_string).collect();
    let parent = s(e, "/info/parent_task/name");
    if !parent.is_empty() {
        let pid = e.pointer("/info/parent_task/pid").map(|p| format!(" ({p})")).unwrap_or_default();
        out.push(format!("parent: {parent}{pid}"));
    }
    let me = s(e, "/data/exe/path");
    let me = if me.is_empty() { s(e, "/info/task/name") } else { me };
    let pid = e.pointer("/info/task/pid").map(|p| format!(" ({p})")).unwrap_or_default();
    out.push(format!("{me}{pid}"));
    out
}

/// A process seen before: the event that shows it.
pub struct Seen {
    /// Its event's page.
    pub href: String,
    /// Its executable (or name) and pid.
    pub process: String,
    /// Its command line.
    pub command_line: String,
}

#[derive(Template)]
#[template(path = "endpoint_event.html")]
struct DetailPage {
    page: Page,
    row: Row,
    ancestry: Vec<String>,
    seen: Vec<Seen>,
    detection: Option<String>,
    json: String,
}

/// Whether `who` may read `source`: the live feed when the lab runs, a run of theirs (any for an instructor).
async fn may_read(state: &AppState, who: &Trainee, source: &Source) -> bool {
    match source {
        Source::Live => matches!(state.runs().engine(), Engine::Live(_)),
        Source::Run(id) => {
            state.runs().summary(id.as_str()).await.ok().flatten().is_some_and(|r| who.may_see(&r.owner))
        }
    }
}

/// GET /endpoint/{source}/{n}: one event with its process's ancestry (from
/// the event, and the events of its parents the feed keeps, found by guid).
pub async fn detail_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path((source, n)): Path<(String, u64)>,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such endpoint event (or not one of yours)").into_response();
    let Some(source) = Source::parse(&source) else { return not_found() };
    if !may_read(&state, &who, &source).await {
        return not_found();
    }
    let feed = state.runs().feed().clone();
    let lab = match state.runs().engine() {
        Engine::Live(lab) if source == Source::Live => Some(lab.clone()),
        _ => None,
    };
    let detail = tokio::task::spawn_blocking(move || {
        if let Some(lab) = lab {
            feed.sync_live(&lab);
        }
        feed.detail(&source, n)
    })
    .await;
    let Ok(Some(d)) = detail else { return not_found() };
    let mut rest = d.event.clone();
    let detection = rest
        .as_object_mut()
        .and_then(|o| o.remove("detection"))
        .filter(|d| !d.is_null())
        .map(|d| serde_json::to_string_pretty(&d).unwrap_or_default());
    let seen = d
        .ancestors
        .iter()
        .map(|a| Seen {
            href: href(&a.at),
            process: match a.summary.exe.is_empty() {
                true => a.summary.process(),
                false => format!("{} ({})", a.summary.exe, a.summary.pid.map(|p| p.to_string()).unwrap_or_default()),
            },
            command_line: a.summary.command_line.to_string(),
        })
        .collect();
    render(DetailPage {
        page: Page::new(&state, &session, Some(&who)).await,
        row: row(&d.found),
        ancestry: ancestry(&d.event),
        seen,
        detection,
        json: serde_json::to_string_pretty(&rest).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev() -> Value {
        json!({"info": {"event": {"name": "execve"}, "task": {"name": "dig", "pid": 12},
                        "parent_task": {"name": "sh", "pid": 10}},
               "data": {"ancestors": "/usr/lib/systemd/systemd|/usr/bin/bash", "command_line": "dig why.kunai.rocks",
                        "exe": {"path": "/usr/bin/dig"}}})
    }

    #[test]
    fn ancestry_goes_from_the_root_to_the_process() {
        assert_eq!(
            ancestry(&ev()),
            vec!["/usr/lib/systemd/systemd", "/usr/bin/bash", "parent: sh (10)", "/usr/bin/dig (12)"]
        );
    }
}

//! The endpoint agent's event stream as a page: the lab's feed when it runs
//! live (`Lab::endpoint_events_since`), the runs' kept events otherwise
//! (a trainee's own runs only), with filters (event name, process,
//! detections only) and a detail view showing the process's ancestry.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tower_sessions::Session;

use crate::auth::Trainee;
use crate::pages::{render, Page};
use crate::runs::Engine;
use crate::state::AppState;

/// How many events the stream page shows at most (newest first).
pub const SHOWN: usize = 500;

/// An endpoint event and where it comes from: `live` (the lab's feed, `n` = its position) or a run id (`n` = its line).
#[derive(Debug, Clone)]
pub struct SourcedEvent {
    /// `live` or the run's id.
    pub source: String,
    /// Its position in the source.
    pub n: u64,
    /// The Kunai event.
    pub event: Value,
}

/// The stream page's filters (a GET form: shareable URLs, no CSRF needed).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    /// Event name (`execve`, `dns_query`...), exact.
    #[serde(default)]
    pub name: String,
    /// Part of the process name, executable or command line.
    #[serde(default)]
    pub process: String,
    /// Only events carrying a `detection`.
    #[serde(default)]
    pub detections: Option<String>,
}

fn s<'a>(e: &'a Value, pointer: &str) -> &'a str {
    e.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

impl Filters {
    /// Whether `e` passes.
    pub fn keep(&self, e: &Value) -> bool {
        let name = self.name.trim();
        if !name.is_empty() && s(e, "/info/event/name") != name {
            return false;
        }
        let process = self.process.trim();
        if !process.is_empty()
            && ![s(e, "/info/task/name"), s(e, "/data/exe/path"), s(e, "/data/command_line")]
                .iter()
                .any(|f| f.contains(process))
        {
            return false;
        }
        if self.detections.as_deref().is_some_and(|d| !d.is_empty()) && e.get("detection").is_none_or(Value::is_null) {
            return false;
        }
        true
    }
}

/// The events `who` may see, oldest first.
async fn events_for(state: &AppState, who: &Trainee) -> Vec<SourcedEvent> {
    if let Engine::Live(lab) = state.runs().engine() {
        return lab
            .endpoint_events_since(0)
            .into_iter()
            .map(|f| SourcedEvent { source: "live".into(), n: f.seq, event: (*f.event).clone() })
            .collect();
    }
    let owner = (!who.is_instructor()).then_some(&who.user.name);
    let mut runs = state.runs().list(owner).await.unwrap_or_default();
    runs.reverse();
    runs.into_iter()
        .flat_map(|r| {
            state.runs().endpoint_events(&r.id).into_iter().enumerate().map(move |(i, event)| SourcedEvent {
                source: r.id.clone(),
                n: i as u64,
                event,
            })
        })
        .collect()
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

fn row(e: &SourcedEvent) -> Row {
    let pid = e.event.pointer("/info/task/pid").map(|p| format!(" ({p})")).unwrap_or_default();
    Row {
        href: format!("/endpoint/{}/{}", e.source, e.n),
        name: s(&e.event, "/info/event/name").to_string(),
        process: format!("{}{pid}", s(&e.event, "/info/task/name")),
        command_line: s(&e.event, "/data/command_line").to_string(),
        detection: e.event.get("detection").is_some_and(|d| !d.is_null()),
        time: s(&e.event, "/info/utc_time").to_string(),
    }
}

#[derive(Template)]
#[template(path = "endpoint.html")]
struct StreamPage {
    page: Page,
    rows: Vec<Row>,
    total: usize,
    name: String,
    process: String,
    detections: bool,
}

/// GET /endpoint: the endpoint events, newest first, filtered.
pub async fn stream_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Query(f): Query<Filters>,
) -> Response {
    let all = events_for(&state, &who).await;
    let kept: Vec<&SourcedEvent> = all.iter().filter(|e| f.keep(&e.event)).collect();
    let total = kept.len();
    let rows = kept.into_iter().rev().take(SHOWN).map(row).collect();
    render(StreamPage {
        page: Page::new(&state, &session, Some(&who)).await,
        rows,
        total,
        detections: f.detections.as_deref().is_some_and(|d| !d.is_empty()),
        name: f.name,
        process: f.process,
    })
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

#[derive(Template)]
#[template(path = "endpoint_event.html")]
struct DetailPage {
    page: Page,
    row: Row,
    ancestry: Vec<String>,
    detection: Option<String>,
    json: String,
}

/// GET /endpoint/{source}/{n}: one event with its process's ancestry.
pub async fn detail_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path((source, n)): Path<(String, u64)>,
) -> Response {
    let all = events_for(&state, &who).await;
    let Some(e) = all.iter().find(|e| e.source == source && e.n == n) else {
        return (StatusCode::NOT_FOUND, "no such endpoint event (or not one of yours)").into_response();
    };
    let mut rest = e.event.clone();
    let detection = rest
        .as_object_mut()
        .and_then(|o| o.remove("detection"))
        .filter(|d| !d.is_null())
        .map(|d| serde_json::to_string_pretty(&d).unwrap_or_default());
    render(DetailPage {
        page: Page::new(&state, &session, Some(&who)).await,
        row: row(e),
        ancestry: ancestry(&e.event),
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
    fn filters_keep_what_they_say() {
        let e = ev();
        let f = |name: &str, process: &str, det: Option<&str>| Filters {
            name: name.into(),
            process: process.into(),
            detections: det.map(String::from),
        };
        assert!(f("", "", None).keep(&e));
        assert!(f("execve", "", None).keep(&e));
        assert!(!f("dns_query", "", None).keep(&e));
        assert!(f("", "kunai.rocks", None).keep(&e));
        assert!(f("", "/usr/bin/dig", None).keep(&e));
        assert!(!f("", "curl", None).keep(&e));
        assert!(!f("", "", Some("on")).keep(&e));
        let mut d = e.clone();
        d["detection"] = json!({"iocs": ["why.kunai.rocks"]});
        assert!(f("", "", Some("on")).keep(&d));
    }

    #[test]
    fn ancestry_goes_from_the_root_to_the_process() {
        assert_eq!(
            ancestry(&ev()),
            vec!["/usr/lib/systemd/systemd", "/usr/bin/bash", "parent: sh (10)", "/usr/bin/dig (12)"]
        );
    }
}

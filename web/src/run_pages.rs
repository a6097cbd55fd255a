//! A run's pages beyond its event table: the pipeline that lights up live,
//! its flow timeline, and each stage's artifact one click away (the sandbox
//! report with its process tree and contacts, the MISP event, the exported
//! IoC lines, the endpoint events that matched with their `detection`).
//! The run's owner and instructors only, as for the run itself.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use ioclab_lab::run::{RunEventKind, RunFolder, RunId};
use ioclab_sandbox::report::Report;
use serde_json::Value;
use tower_sessions::Session;

use crate::auth::Trainee;
use crate::feed::{FeedQuery, Filters, Source};
use crate::pages::{render, Page};
use crate::pipeline::{pipeline, StageView};
use crate::runs::RunSummary;
use crate::state::AppState;
use crate::svg;

/// The run `id` if `who` may see it, else the answer to send (404 or 403).
pub async fn visible(state: &AppState, who: &Trainee, id: &str) -> Result<(RunSummary, RunFolder), Response> {
    let not_found = || (StatusCode::NOT_FOUND, format!("no run {id}")).into_response();
    let Some(rid) = RunId::parse(id) else { return Err(not_found()) };
    match state.runs().summary(id).await {
        Ok(Some(run)) if who.may_see(&run.owner) => {
            Ok((run, RunFolder::open(state.runs().data().runs().join(rid.as_str()))))
        }
        Ok(Some(_)) => Err((StatusCode::FORBIDDEN, "this run is another trainee's").into_response()),
        Ok(None) => Err(not_found()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()),
    }
}

fn svg_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn stages_of(state: &AppState, id: &str) -> Vec<StageView> {
    pipeline(&state.runs().events(id).unwrap_or_default())
}

#[derive(Template)]
#[template(path = "run_pipeline.html")]
struct PipelinePage {
    page: Page,
    run: RunSummary,
    stages: Vec<StageView>,
}

/// GET /runs/{id}/pipeline: the stages, lit as they go (SSE; a refresh without JavaScript).
pub async fn pipeline_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (run, _) = match visible(&state, &who, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let stages = stages_of(&state, &id);
    render(PipelinePage { page: Page::new(&state, &session, Some(&who)).await, run, stages })
}

/// GET /runs/{id}/flow.svg: the flow timeline of the stages.
pub async fn flow_svg(State(state): State<AppState>, who: Trainee, Path(id): Path<String>) -> Response {
    if let Err(resp) = visible(&state, &who, &id).await {
        return resp;
    }
    svg_response(svg::flow_timeline(&stages_of(&state, &id)))
}

/// Reads the run's sandbox report, or says why not.
fn report_of(folder: &RunFolder) -> Result<Report, String> {
    let path = folder.path(RunFolder::REPORT);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("no sandbox report yet ({}: {e})", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: line {}, column {}: {e}", path.display(), e.line(), e.column()))
}

/// A signature as the report page lists it.
struct SignatureRow {
    name: String,
    severity: u32,
    description: String,
    marks: Vec<String>,
}

/// A dropped file.
struct DroppedRow {
    path: String,
    size: u64,
    sha256: String,
}

#[derive(Template)]
#[template(path = "run_report.html")]
struct ReportPage {
    page: Page,
    run: RunSummary,
    error: Option<String>,
    target: String,
    sha256: String,
    signatures: Vec<SignatureRow>,
    dropped: Vec<DroppedRow>,
    hosts: Vec<String>,
}

/// GET /runs/{id}/report: the sandbox report (process tree, contacts, signatures with marks, dropped files).
pub async fn report_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (run, folder) = match visible(&state, &who, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let page = Page::new(&state, &session, Some(&who)).await;
    let mut t = ReportPage {
        page,
        run,
        error: None,
        target: String::new(),
        sha256: String::new(),
        signatures: Vec::new(),
        dropped: Vec::new(),
        hosts: Vec::new(),
    };
    match report_of(&folder) {
        Err(e) => t.error = Some(e),
        Ok(r) => {
            if let Some(f) = &r.target.file {
                t.target = f.name.clone();
                t.sha256 = f.sha256.as_ref().map(|h| h.to_string()).unwrap_or_default();
            } else if let Some(u) = &r.target.url {
                t.target = u.clone();
            }
            t.signatures = r
                .signatures
                .iter()
                .map(|s| SignatureRow {
                    name: s.name.clone(),
                    severity: s.severity,
                    description: s.description.clone(),
                    marks: s.marks.iter().map(|m| serde_json::to_string(m).unwrap_or_default()).collect(),
                })
                .collect();
            t.dropped = r
                .dropped
                .iter()
                .map(|d| DroppedRow {
                    path: d.filepath.clone(),
                    size: d.file.size,
                    sha256: d.file.sha256.as_ref().map(|h| h.to_string()).unwrap_or_default(),
                })
                .collect();
            t.hosts = r
                .network
                .hosts
                .iter()
                .map(|h| match &h.hostname {
                    Some(n) if !n.is_empty() => format!("{} ({n})", h.ip),
                    _ => h.ip.clone(),
                })
                .collect();
        }
    }
    render(t)
}

/// Which picture of the report.
fn report_svg(folder: &RunFolder, draw: fn(&Report) -> String) -> Response {
    match report_of(folder) {
        Ok(r) => svg_response(draw(&r)),
        Err(e) => (StatusCode::NOT_FOUND, e).into_response(),
    }
}

/// GET /runs/{id}/tree.svg: the report's process tree.
pub async fn tree_svg(State(state): State<AppState>, who: Trainee, Path(id): Path<String>) -> Response {
    match visible(&state, &who, &id).await {
        Ok((_, folder)) => report_svg(&folder, svg::process_tree),
        Err(resp) => resp,
    }
}

/// GET /runs/{id}/contacts.svg: processes → hosts.
pub async fn contacts_svg(State(state): State<AppState>, who: Trainee, Path(id): Path<String>) -> Response {
    match visible(&state, &who, &id).await {
        Ok((_, folder)) => report_svg(&folder, svg::contacts),
        Err(resp) => resp,
    }
}

/// A MISP attribute as the pages list it.
pub struct AttributeRow {
    /// Category.
    pub category: String,
    /// Type.
    pub kind: String,
    /// Value.
    pub value: String,
    /// Whether it is an IoC to export.
    pub to_ids: bool,
    /// Comment.
    pub comment: String,
}

/// A MISP event as the pages show it (from MISP's JSON: `{"Event": {...}}` or the event itself).
pub struct EventView {
    /// `info`.
    pub info: String,
    /// `uuid`.
    pub uuid: String,
    /// Whether it is published.
    pub published: bool,
    /// Tag names.
    pub tags: Vec<String>,
    /// Its attributes and its objects' attributes.
    pub attributes: Vec<AttributeRow>,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "1" || s == "true",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// The event in MISP's JSON `doc`.
pub fn event_view(doc: &Value) -> EventView {
    let e = doc.get("Event").unwrap_or(doc);
    let attr = |a: &Value| AttributeRow {
        category: text(a, "category"),
        kind: text(a, "type"),
        value: text(a, "value"),
        to_ids: truthy(a.get("to_ids")),
        comment: text(a, "comment"),
    };
    let list = |v: &Value, k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut attributes: Vec<AttributeRow> = list(e, "Attribute").iter().map(attr).collect();
    for o in list(e, "Object") {
        attributes.extend(list(&o, "Attribute").iter().map(attr));
    }
    EventView {
        info: text(e, "info"),
        uuid: text(e, "uuid"),
        published: truthy(e.get("published")),
        tags: list(e, "Tag").iter().map(|t| text(t, "name")).collect(),
        attributes,
    }
}

#[derive(Template)]
#[template(path = "run_misp.html")]
struct MispPage {
    page: Page,
    run: RunSummary,
    error: Option<String>,
    event: Option<EventView>,
    warninglists: Vec<String>,
}

/// The stage summaries that name warninglist hits (misp's "left out", export's "left out by warninglists").
fn warninglist_notes(state: &AppState, id: &str) -> Vec<String> {
    state
        .runs()
        .events(id)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e.kind {
            RunEventKind::StageFinished { stage, summary, .. } if summary.contains("left out") => {
                Some(format!("{stage}: {summary}"))
            }
            _ => None,
        })
        .collect()
}

/// GET /runs/{id}/misp: the run's MISP event.
pub async fn misp_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (run, folder) = match visible(&state, &who, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (event, error) = match ioclab_lab::run::folder::read_json::<Value>(&folder.path(RunFolder::MISP_EVENT)) {
        Ok(doc) => (Some(event_view(&doc)), None),
        Err(e) => (None, Some(format!("no MISP event yet: {e}"))),
    };
    let warninglists = warninglist_notes(&state, &id);
    render(MispPage { page: Page::new(&state, &session, Some(&who)).await, run, error, event, warninglists })
}

/// An exported IoC line.
struct IocRow {
    value: String,
    source: String,
    line: String,
}

#[derive(Template)]
#[template(path = "run_iocs.html")]
struct IocsPage {
    page: Page,
    run: RunSummary,
    error: Option<String>,
    iocs: Vec<IocRow>,
}

/// GET /runs/{id}/iocs: the IoC lines the export wrote for the agent.
pub async fn iocs_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (run, folder) = match visible(&state, &who, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let path = folder.path(RunFolder::IOCS);
    let (iocs, error) = match std::fs::read_to_string(&path) {
        Ok(t) => (
            t.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                    IocRow { value: text(&v, "value"), source: text(&v, "source"), line: l.to_string() }
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("no IoC export yet ({}: {e})", RunFolder::IOCS))),
    };
    render(IocsPage { page: Page::new(&state, &session, Some(&who)).await, run, error, iocs })
}

/// An endpoint event that matched: its summary, the event without its `detection`, and the `detection`.
pub struct DetectionView {
    /// `name process command line`.
    pub title: String,
    /// The event, pretty JSON, without `detection`.
    pub event: String,
    /// The `detection` section, pretty JSON.
    pub detection: String,
}

/// The view of `event`, if it carries a `detection` section.
pub fn detection_view(event: &Value) -> Option<DetectionView> {
    let det = event.get("detection").filter(|d| !d.is_null())?;
    let mut rest = event.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("detection");
    }
    let s = |p: &str| event.pointer(p).and_then(Value::as_str).unwrap_or("");
    Some(DetectionView {
        title: format!("{} {} {}", s("/info/event/name"), s("/info/task/name"), s("/data/command_line"))
            .trim()
            .to_string(),
        event: serde_json::to_string_pretty(&rest).unwrap_or_default(),
        detection: serde_json::to_string_pretty(det).unwrap_or_default(),
    })
}

/// How many of a run's kept detections its page shows at most.
const DETECTIONS_SHOWN: usize = 100;

/// The newest detections of run `id`'s `events.jsonl`, through the feed's index (not every event parsed).
async fn kept_detections(state: &AppState, id: &str) -> Vec<Value> {
    let Some(source) = Source::parse(id).filter(|s| *s != Source::Live) else { return Vec::new() };
    let feed = state.runs().feed().clone();
    let q = FeedQuery {
        filters: Filters { detections: true, ..Filters::default() },
        before: None,
        limit: DETECTIONS_SHOWN,
    };
    tokio::task::spawn_blocking(move || match feed.page(&[source], &q) {
        // the page is newest first; the run page reads in the run's order
        Ok(page) => feed.events(&page.rows).into_iter().rev().flatten().collect(),
        Err(_) => Vec::new(),
    })
    .await
    .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "run_detection.html")]
struct DetectionPage {
    page: Page,
    run: RunSummary,
    detections: Vec<DetectionView>,
}

/// GET /runs/{id}/detection: the endpoint events that matched, their `detection` highlighted.
pub async fn detection_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (run, _) = match visible(&state, &who, &id).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // the run's detection events (live ones as they come), else its kept endpoint events
    let mut detections: Vec<DetectionView> = state
        .runs()
        .events(&id)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::Detection { event, .. } => detection_view(event),
            _ => None,
        })
        .collect();
    if detections.is_empty() {
        detections = kept_detections(&state, &id).await.iter().filter_map(detection_view).collect();
    }
    render(DetectionPage { page: Page::new(&state, &session, Some(&who)).await, run, detections })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_misp_event_reads_with_its_objects_attributes_and_tags() {
        let doc = json!({"Event": {
            "info": "dns", "uuid": "u", "published": false,
            "Tag": [{"name": "tlp:white"}],
            "Attribute": [{"category": "Network activity", "type": "domain", "value": "why.kunai.rocks", "to_ids": true}],
            "Object": [{"Attribute": [{"type": "ip-dst", "value": "10.0.0.1", "to_ids": "0"}]}]
        }});
        let v = event_view(&doc);
        assert_eq!(v.info, "dns");
        assert!(!v.published);
        assert_eq!(v.tags, vec!["tlp:white"]);
        assert_eq!(v.attributes.len(), 2);
        assert!(v.attributes[0].to_ids);
        assert!(!v.attributes[1].to_ids);
        assert_eq!(v.attributes[1].kind, "ip-dst");
        assert!(event_view(&json!({"published": true})).published);
    }

    #[test]
    fn the_detection_section_is_split_from_the_event() {
        let e = json!({"info": {"event": {"name": "dns_query"}, "task": {"name": "dig"}}, "data": {}, "detection": {"iocs": ["x"]}});
        let v = detection_view(&e).unwrap();
        assert_eq!(v.title, "dns_query dig");
        assert!(v.detection.contains("\"iocs\""));
        assert!(!v.event.contains("detection"));
        assert!(detection_view(&json!({"data": {}})).is_none());
    }
}

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
use crate::misp_view::{event_view, text, EventView};
use crate::pages::{render, Page};
use crate::pipeline::{pipeline, StageView};
use crate::report_view::{read_report, ReportView};
use crate::runs::RunSummary;
use crate::state::AppState;
use crate::svg;

/// The run `id` if `who` may see it, else the answer to send (404 or 403).
pub async fn visible(state: &AppState, who: &Trainee, id: &str) -> Result<(RunSummary, RunFolder), Response> {
    let not_found = || (StatusCode::NOT_FOUND, format!("no run {id}")).into_response();
    let Some(rid) = RunId::parse(id) else { return Err(not_found()) };
    match state.runs().summary(id).await {
        Ok(Some(run)) if run.visible_to(&who) => {
            Ok((run, RunFolder::open(state.runs().data().runs().join(rid.as_str()))))
        }
        Ok(Some(_)) => Err((StatusCode::FORBIDDEN, "this run is another trainee's").into_response()),
        Ok(None) => Err(not_found()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()),
    }
}

/// An SVG picture, never cached (a run's pictures change as it goes).
pub fn svg_response(body: String) -> Response {
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
    read_report(&folder.path(RunFolder::REPORT))
}

#[derive(Template)]
#[template(path = "run_report.html")]
struct ReportPage {
    page: Page,
    run: RunSummary,
    error: Option<String>,
    report: ReportView,
    /// Where report_body.html finds tree.svg and contacts.svg.
    base: String,
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
    let (report, error) = match report_of(&folder) {
        Ok(r) => (ReportView::of(&r), None),
        Err(e) => (ReportView::default(), Some(e)),
    };
    let base = format!("/runs/{}", run.id);
    render(ReportPage { page, run, error, report, base })
}

/// The report at `path` drawn by `draw` (a 404 saying why when there is none).
pub fn report_svg(path: &std::path::Path, draw: fn(&Report) -> String) -> Response {
    match read_report(path) {
        Ok(r) => svg_response(draw(&r)),
        Err(e) => (StatusCode::NOT_FOUND, e).into_response(),
    }
}

/// GET /runs/{id}/tree.svg: the report's process tree.
pub async fn tree_svg(State(state): State<AppState>, who: Trainee, Path(id): Path<String>) -> Response {
    match visible(&state, &who, &id).await {
        Ok((_, folder)) => report_svg(&folder.path(RunFolder::REPORT), svg::process_tree),
        Err(resp) => resp,
    }
}

/// GET /runs/{id}/contacts.svg: processes → hosts.
pub async fn contacts_svg(State(state): State<AppState>, who: Trainee, Path(id): Path<String>) -> Response {
    match visible(&state, &who, &id).await {
        Ok((_, folder)) => report_svg(&folder.path(RunFolder::REPORT), svg::contacts),
        Err(resp) => resp,
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
    fn the_detection_section_is_split_from_the_event() {
        let e = json!({"info": {"event": {"name": "dns_query"}, "task": {"name": "dig"}}, "data": {}, "detection": {"iocs": ["x"]}});
        let v = detection_view(&e).unwrap();
        assert_eq!(v.title, "dns_query dig");
        assert!(v.detection.contains("\"iocs\""));
        assert!(!v.event.contains("detection"));
        assert!(detection_view(&json!({"data": {}})).is_none());
    }
}

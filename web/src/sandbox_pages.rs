//! The sandbox's pages and API, on its task store (the Cuckoo API's): the
//! tasks newest first (`/sandbox`), a task with its report drawn as the run
//! report page draws it (`/sandbox/tasks/{id}`), and for instructors a
//! file upload (`/sandbox/submit`) queued through the Cuckoo API's own
//! submission ([`SandboxState::submit_file`]), within the upload limit of
//! the appliance's configuration (`sandbox_max_upload_mib`).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use ioclab_sandbox::api::db::DbError;
use ioclab_sandbox::api::queue::report_path;
use ioclab_sandbox::api::AppState as SandboxState;
use serde::Serialize;
use serde_json::{json, Value};
use tower_sessions::Session;

use crate::auth::{Instructor, Trainee};
use crate::csrf;
use crate::misp_pages::PageQuery;
use crate::misp_view::text;
use crate::pages::{render, Page};
use crate::report_view::{read_report, ReportView};
use crate::run_pages::report_svg;
use crate::service::{self, ServiceError};
use crate::state::AppState;
use crate::svg;

/// Tasks per page.
pub const PER_PAGE: i64 = 50;
/// Room for the form's other fields and the multipart framing, above the file's limit.
const FORM_SLACK: u64 = 1 << 20;
/// The longest text field of the submit form.
const MAX_FIELD: usize = 64 << 10;

/// What a sandbox page or call could not do.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The appliance runs no sandbox (replay mode, a test appliance).
    #[error("the sandbox is not running in this appliance (replay mode runs no sandbox: start ioclab serve as root)")]
    NotRunning,
    /// No such task.
    #[error("no sandbox task {0}")]
    NoTask(String),
    /// The task store failed.
    #[error("the sandbox task store failed; see the server's log")]
    Db,
}

impl ServiceError for SandboxError {
    fn status(&self) -> StatusCode {
        match self {
            SandboxError::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
            SandboxError::NoTask(_) => StatusCode::NOT_FOUND,
            SandboxError::Db => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DbError> for SandboxError {
    fn from(e: DbError) -> SandboxError {
        tracing::error!("sandbox task store: {e}");
        SandboxError::Db
    }
}

fn sandbox(state: &AppState) -> Result<&SandboxState, SandboxError> {
    state.sandbox().ok_or(SandboxError::NotRunning)
}

/// A task as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    /// Its id.
    pub id: i64,
    /// `file` or `url`.
    pub category: String,
    /// The file's name or the URL.
    pub target: String,
    /// Cuckoo's status (`pending`, `running`, `reported`, `failed_analysis`...).
    pub status: String,
    /// The report's score, once reported.
    pub score: Option<f64>,
    /// When the analysis started (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// Why it failed, if it did.
    pub errors: Vec<String>,
}

fn task_row(sb: &SandboxState, v: &Value) -> TaskRow {
    let id = v.get("id").and_then(Value::as_i64).unwrap_or(0);
    let status = text(v, "status");
    let score = (status == "reported").then(|| read_report(&report_path(sb.storage(), id)).ok()).flatten();
    TaskRow {
        id,
        category: text(v, "category"),
        target: text(v, "target"),
        score: score.map(|r| r.info.score),
        started: text(v, "started_on"),
        finished: text(v, "completed_on"),
        errors: v
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        status,
    }
}

/// A page of tasks, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<TaskRow>,
    /// This page (from 1).
    pub page: i64,
    /// How many pages.
    pub pages: i64,
    /// How many tasks.
    pub total: i64,
}

/// Page `page` (from 1) of the tasks, newest first.
pub async fn task_page(sb: &SandboxState, page: usize) -> Result<TaskPage, SandboxError> {
    let page = i64::try_from(page.max(1)).unwrap_or(i64::MAX);
    let total = sb.db().counts().await?.get("total").and_then(Value::as_i64).unwrap_or(0);
    // the store lists oldest first: the page's window counted from the end
    let end = total.saturating_sub((page - 1).saturating_mul(PER_PAGE));
    let start = end.saturating_sub(PER_PAGE).max(0);
    let mut views = if end > 0 { sb.db().list(end - start, start).await? } else { Vec::new() };
    views.reverse();
    let tasks = views.iter().map(|v| task_row(sb, v)).collect();
    Ok(TaskPage { tasks, page, pages: ((total + PER_PAGE - 1) / PER_PAGE).max(1), total })
}

/// Task `id` as Cuckoo's `/tasks/view` gives it, and its report when written.
pub async fn task(sb: &SandboxState, id: &str) -> Result<(Value, Result<ReportView, String>), SandboxError> {
    let n = id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| SandboxError::NoTask(id.to_string()))?;
    let view = sb.db().view(n).await?.ok_or_else(|| SandboxError::NoTask(id.to_string()))?;
    let report = read_report(&report_path(sb.storage(), n)).map(|r| ReportView::of(&r));
    Ok((view, report))
}

#[derive(Template)]
#[template(path = "sandbox_tasks.html")]
struct TasksPage {
    page: Page,
    error: Option<String>,
    list: Option<TaskPage>,
}

/// GET /sandbox: the tasks, newest first.
pub async fn tasks_page(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Query(q): Query<PageQuery>,
) -> Response {
    let page = Page::new(&state, &session, Some(&who)).await;
    service::html(tasks(&state, q.page).await, |error, list| render(TasksPage { page, error, list }))
}

/// Page `page` of the tasks (the first when not given).
async fn tasks(state: &AppState, page: Option<usize>) -> Result<TaskPage, SandboxError> {
    task_page(sandbox(state)?, page.unwrap_or(1)).await
}

#[derive(Template)]
#[template(path = "sandbox_task.html")]
struct TaskPageTemplate {
    page: Page,
    error: Option<String>,
    task: Option<TaskRow>,
    report_error: Option<String>,
    report: ReportView,
    /// Where report_body.html finds tree.svg and contacts.svg.
    base: String,
}

/// GET /sandbox/tasks/{id}: the task and its report (process tree, contacts, signatures, dropped files, network).
pub async fn task_page_html(
    State(state): State<AppState>,
    who: Trainee,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let page = Page::new(&state, &session, Some(&who)).await;
    let base = format!("/sandbox/tasks/{id}");
    let found = match sandbox(&state) {
        Ok(sb) => task(sb, &id).await.map(|(v, r)| (task_row(sb, &v), r)),
        Err(e) => Err(e),
    };
    match found {
        Ok((row, report)) => {
            let (report, report_error) = match report {
                Ok(r) => (r, None),
                Err(e) => (ReportView::default(), Some(e)),
            };
            render(TaskPageTemplate { page, error: None, task: Some(row), report_error, report, base })
        }
        Err(e) => {
            let t = TaskPageTemplate {
                page,
                error: Some(e.to_string()),
                task: None,
                report_error: None,
                report: ReportView::default(),
                base,
            };
            (e.status(), render(t)).into_response()
        }
    }
}

async fn task_svg(state: &AppState, id: &str, draw: fn(&ioclab_sandbox::report::Report) -> String) -> Response {
    let sb = match sandbox(state) {
        Ok(sb) => sb,
        Err(e) => return (e.status(), e.to_string()).into_response(),
    };
    match id.parse::<i64>() {
        Ok(n) if n > 0 => report_svg(&report_path(sb.storage(), n), draw),
        _ => (StatusCode::NOT_FOUND, format!("no sandbox task {id}")).into_response(),
    }
}

/// GET /sandbox/tasks/{id}/tree.svg: the report's process tree.
pub async fn tree_svg(State(state): State<AppState>, _who: Trainee, Path(id): Path<String>) -> Response {
    task_svg(&state, &id, svg::process_tree).await
}

/// GET /sandbox/tasks/{id}/contacts.svg: processes → hosts.
pub async fn contacts_svg(State(state): State<AppState>, _who: Trainee, Path(id): Path<String>) -> Response {
    task_svg(&state, &id, svg::contacts).await
}

/// A size for people: `32 MiB`, or bytes when not whole mebibytes.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubmitError {
    /// The file (or the whole form) is over the limit.
    #[error("the file is larger than the sandbox's upload limit of {} (sandbox_max_upload_mib in the appliance's configuration)", size_text(*.limit))]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// No file chosen.
    #[error("no file in the form: choose a file to submit (multipart field \"file\")")]
    NoFile,
    /// Not a multipart form, or a broken one.
    #[error("the form could not be read: {0}")]
    BadForm(String),
    /// The form did not come from this appliance.
    #[error(
        "this form has expired or did not come from this appliance (CSRF check failed): reload the page and try again"
    )]
    Csrf,
    /// The sandbox refused the task (an empty file, a bad name or option).
    #[error("{0}")]
    Refused(String),
}

impl SubmitError {
    fn status(&self) -> StatusCode {
        match self {
            SubmitError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            SubmitError::Csrf => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A submit form, read.
#[derive(Debug, Default)]
pub struct Submission {
    /// The file's name as the browser sent it.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The other fields (`csrf`, `package`, `timeout`, `options`).
    pub fields: BTreeMap<String, String>,
}

fn multipart_error(e: MultipartError, limit: u64) -> SubmitError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        SubmitError::TooLarge { limit }
    } else {
        SubmitError::BadForm(e.body_text())
    }
}

/// Reads the multipart form of `req`: one `file` of at most `limit` bytes, text fields of at most 64 KiB.
pub async fn read_submission(req: Request, limit: u64) -> Result<Submission, SubmitError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(FORM_SLACK)) {
        return Err(SubmitError::TooLarge { limit });
    }
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| SubmitError::BadForm(e.body_text()))?;
    let mut out = Submission::default();
    let mut has_file = false;
    while let Some(mut field) = mp.next_field().await.map_err(|e| multipart_error(e, limit))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if has_file {
                return Err(SubmitError::BadForm("more than one file: submit one file per task".into()));
            }
            has_file = true;
            out.name = field.file_name().unwrap_or_default().to_string();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                if (out.bytes.len() + chunk.len()) as u64 > limit {
                    return Err(SubmitError::TooLarge { limit });
                }
                out.bytes.extend_from_slice(&chunk);
            }
        } else {
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                if value.len() + chunk.len() > MAX_FIELD {
                    return Err(SubmitError::BadForm(format!("the field {name:?} is over 64 KiB")));
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value)
                .map_err(|_| SubmitError::BadForm(format!("the field {name:?} is not UTF-8 text")))?;
            out.fields.insert(name, value);
        }
    }
    // an empty file input is sent as a part with no name and no bytes
    if !has_file || (out.name.is_empty() && out.bytes.is_empty()) {
        return Err(SubmitError::NoFile);
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "sandbox_submit.html")]
struct SubmitPage {
    page: Page,
    error: Option<String>,
    limit: String,
}

async fn submit_page(state: &AppState, session: &Session, who: &Instructor, error: Option<String>) -> Response {
    let page = Page::new(state, session, Some(&who.0)).await;
    let limit = state.sandbox().map(|sb| size_text(sb.max_file_bytes())).unwrap_or_default();
    render(SubmitPage { page, error, limit })
}

/// GET /sandbox/submit: the upload form (instructors).
pub async fn submit_form(State(state): State<AppState>, who: Instructor, session: Session) -> Response {
    let error = sandbox(&state).err().map(|e| e.to_string());
    let status = if error.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, submit_page(&state, &session, &who, error).await).into_response()
}

/// Reads, checks and queues a submission; the new task's id.
async fn submit(
    state: &AppState,
    who: &Instructor,
    session: &Session,
    req: Request,
) -> Result<i64, (StatusCode, String)> {
    let sb = sandbox(state).map_err(|e| (e.status(), e.to_string()))?;
    let fail = |e: SubmitError| (e.status(), e.to_string());
    let mut sub = read_submission(req, sb.max_file_bytes()).await.map_err(fail)?;
    let token = sub.fields.remove("csrf").unwrap_or_default();
    if !csrf::matches(session, &token).await {
        return Err(fail(SubmitError::Csrf));
    }
    // the form's optional fields, as the Cuckoo API takes them; the submitter is the task's owner
    let mut fields: BTreeMap<String, String> = sub
        .fields
        .into_iter()
        .filter(|(k, v)| ["package", "timeout", "options"].contains(&k.as_str()) && !v.trim().is_empty())
        .collect();
    fields.insert("owner".into(), who.0.user.name.as_str().to_string());
    sb.submit_file(&sub.name, sub.bytes, &fields).await.map_err(|e| {
        fail(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            SubmitError::TooLarge { limit: sb.max_file_bytes() }
        } else {
            SubmitError::Refused(e.message().to_string())
        })
    })
}

/// POST /sandbox/submit: queues the uploaded file (instructors), then shows its task.
pub async fn submit_post(State(state): State<AppState>, who: Instructor, session: Session, req: Request) -> Response {
    match submit(&state, &who, &session, req).await {
        Ok(id) => {
            tracing::info!(user = %who.0.user.name, task = id, "sample submitted to the sandbox");
            Redirect::to(&format!("/sandbox/tasks/{id}")).into_response()
        }
        Err((status, message)) => (status, submit_page(&state, &session, &who, Some(message)).await).into_response(),
    }
}

/// GET /api/sandbox/tasks?page=N: the page of tasks `/sandbox` shows.
pub async fn api_tasks(State(state): State<AppState>, _who: Trainee, Query(q): Query<PageQuery>) -> Response {
    service::json(tasks(&state, q.page).await)
}

/// GET /api/sandbox/tasks/{id}: the task (Cuckoo's view) and its report as `/sandbox/tasks/{id}` shows it.
pub async fn api_task(State(state): State<AppState>, _who: Trainee, Path(id): Path<String>) -> Response {
    let found = match sandbox(&state) {
        Ok(sb) => task(sb, &id).await,
        Err(e) => Err(e),
    };
    service::json(found.map(|(view, report)| {
        let (report, report_error) = match report {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        json!({"task": view, "report": report, "report_error": report_error})
    }))
}

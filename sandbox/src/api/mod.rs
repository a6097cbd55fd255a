//! The Cuckoo 2.0.7 REST API subset (shared/spec/cuckoo.md) on axum, with
//! Cuckoo's paths, Bearer token, `{"message"}` errors and status codes, so
//! Cuckoo clients (misp-modules, `ioclab sandbox submit`) work unmodified.
//! Tasks live in SQLite, artifacts under the storage folder.

pub mod archive;
pub mod auth;
pub mod db;
pub mod import;
pub mod queue;
pub mod submit;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use self::db::{NewTask, TaskDb};
use self::queue::{binary_path, report_path, task_dir, Queue, TaskLimits};
use self::submit::{check_filename, check_url, TaskForm};
use crate::detonation::Detonator;
use crate::misp::SandboxToml;
use crate::report::CUCKOO_VERSION;

/// How the API runs.
#[derive(Clone)]
pub struct ApiConfig {
    /// Artifacts: samples, task folders, the token.
    pub storage: PathBuf,
    /// `Some(token)`: every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest sample accepted, bytes.
    pub max_file_bytes: u64,
    /// Concurrent detonations.
    pub workers: usize,
    /// Limits of each task.
    pub limits: TaskLimits,
    /// `sandbox.toml`: each report is looked up in MISP (`[processing.misp]`), then sent to it (`[reporting.misp]`), when enabled.
    pub misp: SandboxToml,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            storage: PathBuf::from("/var/lib/ioclab/sandbox"),
            token: None,
            max_file_bytes: submit::DEFAULT_MAX_FILE_BYTES,
            workers: 2,
            limits: TaskLimits::default(),
            misp: SandboxToml::default(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    db: TaskDb,
    config: Arc<ApiConfig>,
    queue: Arc<Queue>,
}

impl AppState {
    /// Opens the state: fails the tasks a killed server left running, then starts the queue.
    pub async fn start(db: TaskDb, config: ApiConfig, detonator: Arc<dyn Detonator>) -> Result<AppState, db::DbError> {
        for id in db.fail_interrupted().await? {
            tracing::warn!("task {id} was running when the server stopped: marked failed_analysis");
        }
        let _ = std::fs::create_dir_all(config.storage.join("binaries"));
        let queue = Queue::start(
            db.clone(),
            config.storage.clone(),
            detonator,
            config.limits.clone(),
            config.workers,
            config.misp.processing.misp.clone(),
            config.misp.reporting.misp.clone(),
        );
        Ok(AppState { db, config: Arc::new(config), queue })
    }
}

/// An error in Cuckoo's shape: `{"message": "..."}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("sandbox API: {e}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<db::DbError> for ApiError {
    fn from(e: db::DbError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"message": self.message}))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Builds the router of every endpoint, at the root of its listener (misp-modules joins `/tasks/...` onto the URL).
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_file_bytes as usize + (1 << 20);
    Router::new()
        .route("/tasks/create/file", post(create_file))
        .route("/tasks/create/url", post(create_url))
        .route("/tasks/view/{id}", get(view_task))
        .route("/tasks/list", get(list_tasks))
        .route("/tasks/list/{limit}", get(list_tasks))
        .route("/tasks/list/{limit}/{offset}", get(list_tasks))
        .route("/tasks/report/{id}", get(report))
        .route("/tasks/report/{id}/{format}", get(report))
        .route("/tasks/delete/{id}", any(delete_task))
        .route("/files/view/{kind}/{value}", get(view_file))
        .route("/files/get/{sha256}", get(get_file))
        .route("/machines/list", get(machines))
        .route("/cuckoo/status", get(status))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves the API on `addr` until Ctrl-C or SIGTERM.
pub async fn serve(state: AppState, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("Cuckoo-compatible sandbox API on http://{}", listener.local_addr()?);
    // the same connection limits as the MISP API (header timeout, connection cap)
    let limits = ioclab_intel::connections::ConnLimits::default();
    ioclab_intel::connections::serve(listener, router(state), limits, ioclab_intel::connections::shutdown_signal())
        .await
}

async fn authenticate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.config.token {
        let header = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        if !auth::accepts(token, header) {
            return ApiError::new(StatusCode::UNAUTHORIZED, auth::AUTH_REQUIRED).into_response();
        }
    }
    next.run(req).await
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("{} is not an endpoint of this Cuckoo API", uri.path()))
}

async fn wrong_method(uri: Uri, method: axum::http::Method) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

/// A submitted file, read whole (its size checked on the way).
struct Upload {
    name: String,
    bytes: Vec<u8>,
}

/// The fields of a form (multipart or urlencoded) and its `file`, when there is one.
async fn read_form(req: Request, max_file: u64) -> Result<(BTreeMap<String, String>, Option<Upload>), ApiError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map_err(|e| ApiError::bad(format!("the request body could not be read: {e}")))?;
        let fields: Vec<(String, String)> = serde_urlencoded_pairs(&bytes)?;
        return Ok((fields.into_iter().collect(), None));
    }
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad(format!("malformed multipart body: {}", e.body_text())))?;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::bad(format!("the file is larger than the {max_file}-byte limit"))
        } else {
            ApiError::bad(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    let mut fields = BTreeMap::new();
    let mut upload: Option<Upload> = None;
    while let Some(mut field) = mp.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if upload.is_some() {
                return Err(ApiError::bad("more than one file in the request; submit one file per task"));
            }
            let filename = field.file_name().map(str::to_string).unwrap_or_default();
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                if (bytes.len() + chunk.len()) as u64 > max_file {
                    return Err(ApiError::bad(format!("the file is larger than the {max_file}-byte limit")));
                }
                bytes.extend_from_slice(&chunk);
            }
            upload = Some(Upload { name: filename, bytes });
        } else {
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                if value.len() + chunk.len() > 64 << 10 {
                    return Err(ApiError::bad(format!("the form field {name:?} is over 64 KiB")));
                }
                value.extend_from_slice(&chunk);
            }
            let value =
                String::from_utf8(value).map_err(|_| ApiError::bad(format!("the form field {name:?} is not UTF-8")))?;
            fields.insert(name, value);
        }
    }
    Ok((fields, upload))
}

/// `a=1&b=2`, percent-decoded.
fn serde_urlencoded_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad("the form body is not UTF-8"))?;
    let decode = |s: &str| -> Result<String, ApiError> {
        let s = s.replace('+', " ");
        let mut out = Vec::with_capacity(s.len());
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or_else(|| ApiError::bad("the form body has a bad %-escape"))?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|_| ApiError::bad("the form body is not UTF-8"))
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn new_task(category: &'static str, target: String, form: TaskForm, st: &AppState) -> NewTask {
    NewTask {
        category,
        target,
        sample: None,
        package: form.package,
        options: form.options,
        timeout: form.timeout.unwrap_or(st.config.limits.default_timeout_s),
        priority: form.priority,
        custom: form.custom,
        owner: form.owner,
        machine: form.machine,
        platform: form.platform,
        tags: form.tags,
        memory: form.memory,
        enforce_timeout: form.enforce_timeout,
    }
}

async fn create_file(State(st): State<AppState>, req: Request) -> ApiResult {
    let (fields, upload) = read_form(req, st.config.max_file_bytes).await?;
    let upload = upload.ok_or_else(|| ApiError::bad("no file in the request (multipart field \"file\")"))?;
    let id = st.submit_file(&upload.name, upload.bytes, &fields).await?;
    Ok(Json(json!({"task_id": id})).into_response())
}

impl AppState {
    /// The task store.
    pub fn db(&self) -> &TaskDb {
        &self.db
    }

    /// Where samples, task folders and reports are kept.
    pub fn storage(&self) -> &std::path::Path {
        &self.config.storage
    }

    /// The largest sample accepted, bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.config.max_file_bytes
    }

    /// Queues the file `name` holding `bytes` with the submission's form
    /// `fields` (Cuckoo's: `package`, `options`, `timeout`...), as
    /// `/tasks/create/file` does (the appliance's submit page comes here
    /// too); returns the task id.
    pub async fn submit_file(
        &self,
        name: &str,
        bytes: Vec<u8>,
        fields: &BTreeMap<String, String>,
    ) -> Result<i64, ApiError> {
        let st = self;
        let name = check_filename(name).map_err(|e| ApiError::bad(e.0))?;
        if bytes.is_empty() {
            return Err(ApiError::bad(format!("the file {name:?} is empty")));
        }
        if bytes.len() as u64 > st.config.max_file_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the file is larger than the {}-byte limit", st.config.max_file_bytes),
            ));
        }
        let form = TaskForm::from_fields(fields).map_err(|e| ApiError::bad(e.0))?;
        // stored under its SHA-256; written to a temporary name first so a failed write leaves nothing
        let storage = st.config.storage.clone();
        let facts = tokio::task::spawn_blocking(move || -> std::io::Result<crate::detonation::FileFacts> {
            let dir = storage.join("binaries");
            std::fs::create_dir_all(&dir)?;
            let tmp = tempfile_in(&dir)?;
            std::fs::write(&tmp, &bytes)?;
            let facts = crate::sample::facts(&tmp);
            match facts {
                Ok(f) => {
                    std::fs::rename(&tmp, binary_path(&storage, &f.sha256.to_string()))?;
                    Ok(f)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        if form.unique && st.db.has_sample(&facts.sha256).await? {
            return Err(ApiError::bad("Duplicated file, disable unique option to force submission"));
        }
        let mut task = new_task("file", name, form, st);
        task.sample = Some(facts);
        let id = st.db.create(&task).await?;
        st.queue.wake();
        Ok(id)
    }
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    Ok(dir.join(format!(".upload-{n:016x}")))
}

async fn create_url(State(st): State<AppState>, req: Request) -> ApiResult {
    let (fields, _) = read_form(req, st.config.max_file_bytes).await?;
    let url = check_url(fields.get("url").map(String::as_str).unwrap_or_default()).map_err(|e| ApiError::bad(e.0))?;
    let form = TaskForm::from_fields(&fields).map_err(|e| ApiError::bad(e.0))?;
    let id = st.db.create(&new_task("url", url, form, &st)).await?;
    st.queue.wake();
    Ok(Json(json!({"task_id": id})).into_response())
}

fn task_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Task not found"))
}

async fn view_task(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult {
    match st.db.view(task_id(&id)?).await? {
        Some(task) => Ok(Json(json!({"task": task})).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "Task not found")),
    }
}

async fn list_tasks(State(st): State<AppState>, Path(params): Path<BTreeMap<String, String>>) -> ApiResult {
    let num = |k: &str, default: i64| -> Result<i64, ApiError> {
        match params.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad(format!("{k}: {v:?} is not a number"))),
        }
    };
    let (limit, offset) = (num("limit", i64::MAX)?, num("offset", 0)?);
    Ok(Json(json!({"tasks": st.db.list(limit, offset).await?})).into_response())
}

async fn report(State(st): State<AppState>, Path(params): Path<BTreeMap<String, String>>) -> ApiResult {
    let id = task_id(params.get("id").map(String::as_str).unwrap_or_default())?;
    let format = params.get("format").map(|f| f.to_ascii_lowercase()).unwrap_or_else(|| "json".into());
    let path = report_path(&st.config.storage, id);
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "Report not found");
    match format.as_str() {
        "json" => {
            let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
            Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
        }
        "all" => {
            if !path.exists() {
                return Err(not_found());
            }
            let dir = task_dir(&st.config.storage, id);
            let tarball = tokio::task::spawn_blocking(move || archive::tar_bz2(&dir))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            Ok((
                [
                    (header::CONTENT_TYPE, "application/x-tar".to_string()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename={id}.tar.bz2")),
                ],
                tarball,
            )
                .into_response())
        }
        other => Err(ApiError::bad(format!("Invalid report format {other:?} (json or all)"))),
    }
}

async fn delete_task(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = task_id(&id)?;
    match st.db.delete(id).await? {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "Task not found")),
        Some(false) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The task is currently being processed, cannot delete",
        )),
        Some(true) => {
            let dir = task_dir(&st.config.storage, id);
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("task {id} deleted, but not its folder {}: {e}", dir.display());
                }
            }
            Ok(Json(json!({"status": "OK"})).into_response())
        }
    }
}

async fn view_file(State(st): State<AppState>, Path((kind, value)): Path<(String, String)>) -> ApiResult {
    let valid = match kind.as_str() {
        "md5" => value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "sha256" => value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "id" => value.parse::<i64>().is_ok(),
        _ => return Err(ApiError::bad(format!("files/view/{kind}: use md5, sha256 or id"))),
    };
    if !valid {
        return Err(ApiError::bad(format!("Invalid {kind} value {value:?}")));
    }
    match st.db.sample(&kind, &value).await? {
        Some(s) => Ok(Json(json!({"sample": s})).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "File not found")),
    }
}

async fn get_file(State(st): State<AppState>, Path(sha256): Path<String>) -> ApiResult {
    let sha: ioclab_agent::hashes::Sha256 =
        sha256.to_ascii_lowercase().parse().map_err(|_| ApiError::bad(format!("Invalid sha256 {sha256:?}")))?;
    let path = binary_path(&st.config.storage, &sha.to_string());
    let bytes = tokio::fs::read(&path).await.map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "File not found"))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from(bytes)).into_response())
}

fn machine(st: &AppState) -> Value {
    json!({"id": 1, "name": "ioclab", "label": "namespaces", "platform": "linux", "ip": "10.66.0.2",
           "status": "poweroff", "locked": false, "locked_changed_on": null, "status_changed_on": null,
           "tags": [], "interface": null, "snapshot": null, "resultserver_ip": null, "resultserver_port": null,
           "options": [], "manager": "namespaces", "concurrent_tasks": st.config.workers})
}

async fn machines(State(st): State<AppState>) -> Json<Value> {
    Json(json!({"machines": [machine(&st)]}))
}

async fn status(State(st): State<AppState>) -> ApiResult {
    let tasks = st.db.counts().await?;
    let running = tasks["running"].as_u64().unwrap_or(0);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    Ok(Json(json!({
        "version": CUCKOO_VERSION, "hostname": hostname,
        "machines": {"total": 1, "available": u64::from(running < st.config.workers as u64)},
        "tasks": tasks, "diskspace": {}, "cpuload": [], "memory": null,
    }))
    .into_response())
}

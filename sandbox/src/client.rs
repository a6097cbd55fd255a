//! Clients of the sandboxes a trainer submits to: the Cuckoo 2.0 REST API
//! (ioclab's own server or a real Cuckoo 2.0: same paths, same Bearer token)
//! and CAPEv2's `/apiv2/` ([`cape`]); [`Backend`] drives either the same way
//! (submit, poll the status, download the report).

pub mod cape;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::report::{Report, ReportError};

/// A failed API call, with what the server said.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("{url}: {source}")]
    Http {
        /// The URL called.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Cuckoo's `message`, or the body.
        message: String,
    },
    /// The server answered HTTP 200 with an error in its envelope (CAPE's `{"error": true, "error_value"}`).
    #[error("{url}: the sandbox refused: {message}")]
    Refused {
        /// The URL called.
        url: String,
        /// What it said.
        message: String,
    },
    /// `--wait` gave up.
    #[error("task {id} is still {status} after {waited_s} s; look again later with `ioclab sandbox status {id}`")]
    StillRunning {
        /// The task.
        id: i64,
        /// Its last status.
        status: String,
        /// Seconds waited.
        waited_s: u64,
    },
    /// The answer is not what the sandbox answers.
    #[error("{url}: unexpected answer: {message}")]
    Shape {
        /// The URL called.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The report could not be read.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A local file could not be read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Optional fields of a submission.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Analysis timeout, seconds.
    pub timeout: Option<u64>,
    /// Package.
    pub package: Option<String>,
    /// `key=value,...`.
    pub options: Option<String>,
}

impl SubmitOptions {
    /// The multipart form of a submission: `file` plus the options given (both APIs name them alike).
    async fn form(&self, path: &Path) -> Result<reqwest::multipart::Form, ClientError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| ClientError::File { path: path.display().to_string(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sample".into());
        let mut form =
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
        if let Some(t) = self.timeout {
            form = form.text("timeout", t.to_string());
        }
        if let Some(p) = &self.package {
            form = form.text("package", p.clone());
        }
        if let Some(o) = &self.options {
            form = form.text("options", o.clone());
        }
        Ok(form)
    }
}

/// A task's status as Cuckoo and CAPE name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Queued.
    Pending,
    /// Being analysed (CAPE: also `distributed` to a worker).
    Running,
    /// Analysed, report being written.
    Completed,
    /// The report is ready.
    Reported,
    /// `failed_analysis`, `failed_processing` or `failed_reporting`: no report will come.
    Failed(String),
    /// A status this client does not know (CAPE adds `banned`, `recovered`...), kept as written.
    Other(String),
}

impl TaskStatus {
    /// Reads a status name.
    pub fn parse(s: &str) -> TaskStatus {
        match s {
            "pending" => TaskStatus::Pending,
            "running" | "distributed" => TaskStatus::Running,
            "completed" | "distributed_completed" => TaskStatus::Completed,
            "reported" => TaskStatus::Reported,
            f if f.starts_with("failed_") => TaskStatus::Failed(f.to_string()),
            other => TaskStatus::Other(other.to_string()),
        }
    }

    /// Its name.
    pub fn as_str(&self) -> &str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Reported => "reported",
            TaskStatus::Failed(s) | TaskStatus::Other(s) => s,
        }
    }

    /// Nothing will change any more: reported, failed, or banned (CAPE).
    pub fn is_final(&self) -> bool {
        matches!(self, TaskStatus::Reported | TaskStatus::Failed(_)) || *self == TaskStatus::Other("banned".into())
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an error answer, in a line: Cuckoo's `message`, DRF's `detail`, CAPE's `error_value`, or the start of the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "detail", "error_value"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

/// Which sandbox API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Cuckoo 2.0's REST API (ioclab's own server speaks it).
    Cuckoo,
    /// CAPEv2's `/apiv2/`.
    Cape,
}

impl BackendKind {
    /// The usual address of its API on the machine itself.
    pub fn default_url(self) -> &'static str {
        match self {
            BackendKind::Cuckoo => "http://127.0.0.1:8090",
            BackendKind::Cape => "http://127.0.0.1:8000",
        }
    }
}

/// A sandbox to submit to: Cuckoo 2.0 (or ioclab) or CAPEv2, driven the same way.
pub enum Backend {
    /// Cuckoo 2.0 or ioclab.
    Cuckoo(CuckooClient),
    /// CAPEv2.
    Cape(cape::CapeClient),
}

impl Backend {
    /// A client of `kind` at `url`, with `token` (Bearer for Cuckoo, `Token` for CAPE).
    pub fn new(kind: BackendKind, url: &str, token: Option<String>) -> Backend {
        match kind {
            BackendKind::Cuckoo => Backend::Cuckoo(CuckooClient::new(url, token)),
            BackendKind::Cape => Backend::Cape(cape::CapeClient::new(url, token)),
        }
    }

    /// Submits a file; returns the task id.
    pub async fn submit_file(&self, path: &Path, opts: &SubmitOptions) -> Result<i64, ClientError> {
        match self {
            Backend::Cuckoo(c) => c.submit_file(path, opts).await,
            Backend::Cape(c) => c.submit_file(path, opts).await,
        }
    }

    /// The task in the sandbox's own view shape (`id`, `status`, `target`, `errors`... in both).
    pub async fn task(&self, id: i64) -> Result<Value, ClientError> {
        match self {
            Backend::Cuckoo(c) => c.task(id).await,
            Backend::Cape(c) => c.task(id).await,
        }
    }

    /// The task's status.
    pub async fn status_of(&self, id: i64) -> Result<TaskStatus, ClientError> {
        match self {
            Backend::Cuckoo(c) => Ok(TaskStatus::parse(c.task(id).await?["status"].as_str().unwrap_or_default())),
            Backend::Cape(c) => c.status_of(id).await,
        }
    }

    /// Every task.
    pub async fn tasks(&self) -> Result<Vec<Value>, ClientError> {
        match self {
            Backend::Cuckoo(c) => c.tasks().await,
            Backend::Cape(c) => c.tasks().await,
        }
    }

    /// The server's status (`version`, `tasks{total, pending...}` in both).
    pub async fn server_status(&self) -> Result<Value, ClientError> {
        match self {
            Backend::Cuckoo(c) => c.status().await,
            Backend::Cape(c) => c.server_status().await,
        }
    }

    /// The report.json, raw.
    pub async fn report_bytes(&self, id: i64) -> Result<bytes::Bytes, ClientError> {
        match self {
            Backend::Cuckoo(c) => c.report_bytes(id).await,
            Backend::Cape(c) => c.report_bytes(id).await,
        }
    }

    /// Where the report is downloaded from (names it in parse errors and summaries).
    pub fn report_url(&self, id: i64) -> String {
        match self {
            Backend::Cuckoo(c) => c.url(&format!("/tasks/report/{id}")),
            Backend::Cape(c) => c.url(&format!("tasks/get/report/{id}/json/")),
        }
    }

    /// The report, parsed (one lenient parser for both shapes).
    pub async fn report(&self, id: i64) -> Result<Report, ClientError> {
        let bytes = self.report_bytes(id).await?;
        Ok(Report::from_slice(&bytes, &self.report_url(id))?)
    }

    /// Polls the task every `every` until its status is final or `max` has passed;
    /// `progress` hears each change of status and the time waited so far.
    pub async fn wait(
        &self,
        id: i64,
        every: Duration,
        max: Duration,
        mut progress: impl FnMut(&TaskStatus, Duration),
    ) -> Result<TaskStatus, ClientError> {
        let start = Instant::now();
        let mut last: Option<TaskStatus> = None;
        loop {
            let status = self.status_of(id).await?;
            if last.as_ref() != Some(&status) {
                progress(&status, start.elapsed());
            }
            if status.is_final() {
                return Ok(status);
            }
            if start.elapsed() >= max {
                return Err(ClientError::StillRunning {
                    id,
                    status: status.to_string(),
                    waited_s: start.elapsed().as_secs(),
                });
            }
            last = Some(status);
            tokio::time::sleep(every.min(max.saturating_sub(start.elapsed())).max(Duration::from_millis(10))).await;
        }
    }
}

/// A Cuckoo API endpoint.
pub struct CuckooClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl CuckooClient {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8090`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        CuckooClient { base: base.trim_end_matches('/').to_string(), token, http: reqwest::Client::new() }
    }

    /// The URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<bytes::Bytes, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let http = |source| ClientError::Http { url: url.to_string(), source };
        let r = req.send().await.map_err(http)?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(http)?;
        if status != 200 {
            return Err(ClientError::Status { url: url.to_string(), status, message: error_message(&body) });
        }
        Ok(body)
    }

    async fn json(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        let body = self.send(self.http.get(&url), &url).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Shape { url, message: e.to_string() })
    }

    /// Submits a file; returns the task id.
    pub async fn submit_file(&self, path: &Path, opts: &SubmitOptions) -> Result<i64, ClientError> {
        let form = opts.form(path).await?;
        let url = self.url("/tasks/create/file");
        let body = self.send(self.http.post(&url).multipart(form), &url).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Shape { url: url.clone(), message: e.to_string() })?;
        v["task_id"].as_i64().ok_or(ClientError::Shape { url, message: format!("no task_id in {v}") })
    }

    /// `GET /tasks/view/<id>`'s `task`.
    pub async fn task(&self, id: i64) -> Result<Value, ClientError> {
        let v = self.json(&format!("/tasks/view/{id}")).await?;
        v.get("task").cloned().ok_or(ClientError::Shape { url: self.url("/tasks/view"), message: "no task".into() })
    }

    /// `GET /tasks/list`'s `tasks`.
    pub async fn tasks(&self) -> Result<Vec<Value>, ClientError> {
        let v = self.json("/tasks/list").await?;
        Ok(v.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// `GET /cuckoo/status`.
    pub async fn status(&self) -> Result<Value, ClientError> {
        self.json("/cuckoo/status").await
    }

    /// The report, raw.
    pub async fn report_bytes(&self, id: i64) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(&format!("/tasks/report/{id}"));
        self.send(self.http.get(&url), &url).await
    }

    /// The report, parsed (leniently: a real Cuckoo's report reads too).
    pub async fn report(&self, id: i64) -> Result<Report, ClientError> {
        let bytes = self.report_bytes(id).await?;
        Ok(Report::from_slice(&bytes, &self.url(&format!("/tasks/report/{id}")))?)
    }

    /// A stored sample by SHA-256 (`GET /files/get/<sha256>`, as in Cuckoo 2.0).
    pub async fn sample(&self, sha256: &str) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(&format!("/files/get/{sha256}"));
        self.send(self.http.get(&url), &url).await
    }

    /// The task's folder as a bzip2 tarball.
    pub async fn report_all(&self, id: i64) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(&format!("/tasks/report/{id}/all"));
        self.send(self.http.get(&url), &url).await
    }
}

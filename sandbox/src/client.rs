//! A client of the Cuckoo 2.0 REST API (ioclab's own server or a real
//! Cuckoo 2.0): same paths, same Bearer token.

use std::path::Path;

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
    /// The answer is not what Cuckoo answers.
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

    fn url(&self, path: &str) -> String {
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
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
            return Err(ClientError::Status { url: url.to_string(), status, message });
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
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| ClientError::File { path: path.display().to_string(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sample".into());
        let mut form =
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
        if let Some(t) = opts.timeout {
            form = form.text("timeout", t.to_string());
        }
        if let Some(p) = &opts.package {
            form = form.text("package", p.clone());
        }
        if let Some(o) = &opts.options {
            form = form.text("options", o.clone());
        }
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

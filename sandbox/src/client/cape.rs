//! A client of CAPEv2's REST API (`/apiv2/`, shared/spec/cuckoo.md): every
//! path ends with a slash, the key goes as `Authorization: Token <key>`, and
//! answers are an envelope `{"error": false, "data": ...}` whose errors
//! (`{"error": true, "error_value": "..."}`) mostly come with HTTP 200, so
//! the status code alone says little.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{error_message, ClientError, SubmitOptions, TaskStatus};

/// A CAPEv2 API endpoint.
pub struct CapeClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The part of an envelope that says whether it is an error (the rest is skipped unread).
#[derive(Deserialize)]
struct Verdict {
    #[serde(default)]
    error: Value,
    #[serde(default)]
    error_value: Option<String>,
    #[serde(default)]
    errors: Value,
}

impl Verdict {
    /// `Some(message)` when the answer is an error: `error` is `true` (on success it is `false` or, on create, `[]`).
    fn refusal(&self) -> Option<String> {
        if self.error != Value::Bool(true) {
            return None;
        }
        let mut message = self.error_value.clone().unwrap_or_else(|| "error without error_value".into());
        if let Some(details) = self.errors.as_array().filter(|d| !d.is_empty()) {
            let details: Vec<String> = details.iter().map(Value::to_string).collect();
            message = format!("{message} ({})", details.join(", "));
        }
        Some(message)
    }
}

impl CapeClient {
    /// A client of the CAPE at `url`: its web root (`http://cape:8000`) or the API itself (`.../apiv2/`).
    pub fn new(url: &str, token: Option<String>) -> Self {
        let mut base = url.trim_end_matches('/').to_string();
        if !base.ends_with("/apiv2") {
            base.push_str("/apiv2");
        }
        CapeClient { base, token, http: reqwest::Client::new() }
    }

    /// The URL of an API path (`tasks/status/3/`: CAPE's routes need the trailing slash).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// The body of a 200 answer; other statuses become errors that say what to check.
    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<bytes::Bytes, ClientError> {
        let req = match &self.token {
            Some(t) => req.header(reqwest::header::AUTHORIZATION, format!("Token {t}")),
            None => req,
        };
        let http = |source| ClientError::Http { url: url.to_string(), source };
        let r = req.send().await.map_err(http)?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(http)?;
        if status == 200 {
            return Ok(body);
        }
        let mut message = error_message(&body);
        match status {
            401 | 403 => message.push_str(" (CAPE takes the key as `Authorization: Token <key>`: check --token)"),
            404 => message.push_str(" (is --url CAPE's web root, e.g. http://cape:8000? /apiv2/ is added)"),
            429 => message.push_str(" (CAPE's rate limit for this key: wait, or raise the user's limit)"),
            _ => {}
        }
        Err(ClientError::Status { url: url.to_string(), status, message })
    }

    /// The `data` of an enveloped answer, or the envelope's error.
    fn data(body: &[u8], url: &str) -> Result<Value, ClientError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ClientError::Shape { url: url.into(), message: e.to_string() })?;
        let verdict =
            Verdict::deserialize(&v).map_err(|e| ClientError::Shape { url: url.into(), message: e.to_string() })?;
        if let Some(message) = verdict.refusal() {
            return Err(ClientError::Refused { url: url.into(), message });
        }
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        let body = self.send(self.http.get(&url), &url).await?;
        Self::data(&body, &url)
    }

    /// Submits a file (`tasks/create/file/`); returns the task id.
    pub async fn submit_file(&self, path: &Path, opts: &SubmitOptions) -> Result<i64, ClientError> {
        let form = opts.form(path).await?;
        let url = self.url("tasks/create/file/");
        let body = self.send(self.http.post(&url).multipart(form), &url).await?;
        let data = Self::data(&body, &url)?;
        data["task_ids"].get(0).and_then(Value::as_i64).ok_or(ClientError::Shape {
            url,
            message: format!("no task id in {}", String::from_utf8_lossy(&body[..body.len().min(300)])),
        })
    }

    /// `tasks/status/<id>/`.
    pub async fn status_of(&self, id: i64) -> Result<TaskStatus, ClientError> {
        let data = self.get(&format!("tasks/status/{id}/")).await?;
        match data.as_str() {
            Some(s) => Ok(TaskStatus::parse(s)),
            None => Err(ClientError::Shape {
                url: self.url(&format!("tasks/status/{id}/")),
                message: format!("no status in {data}"),
            }),
        }
    }

    /// `tasks/view/<id>/`'s task.
    pub async fn task(&self, id: i64) -> Result<Value, ClientError> {
        self.get(&format!("tasks/view/{id}/")).await
    }

    /// `tasks/list/`.
    pub async fn tasks(&self) -> Result<Vec<Value>, ClientError> {
        Ok(self.get("tasks/list/").await?.as_array().cloned().unwrap_or_default())
    }

    /// `cuckoo/status/`.
    pub async fn server_status(&self) -> Result<Value, ClientError> {
        self.get("cuckoo/status/").await
    }

    /// `tasks/get/report/<id>/json/`: the report.json, raw (an envelope error when it is not ready).
    pub async fn report_bytes(&self, id: i64) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(&format!("tasks/get/report/{id}/json/"));
        let body = self.send(self.http.get(&url), &url).await?;
        // a report has no `error: true`; its error answers do (with HTTP 200). Skimmed, not built.
        if let Ok(verdict) = serde_json::from_slice::<Verdict>(&body) {
            if let Some(message) = verdict.refusal() {
                return Err(ClientError::Refused { url, message });
            }
        }
        Ok(body)
    }
}

//! A MISP REST client (reqwest): the API key in `Authorization`, JSON both
//! ways, TLS verified unless the config says `ssl = false`, an extra CA file
//! if given, HTTP(S)_PROXY and NO_PROXY honoured (reqwest reads them).
//! Failures are diagnosed with the likely fix, not dumped.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::diagnose::{culprit, Culprit, Diagnosis, Refusal};

/// Why a request to MISP failed. Its `Display` is the [`Diagnosis`] on
/// one line (what failed, the likely cause, what to do), so every command
/// printing it gives the same advice.
#[derive(Debug)]
pub enum ClientError {
    /// The client could not be set up.
    Setup(String),
    /// Nothing answered.
    Unreachable {
        /// The URL.
        url: String,
        /// What the network stack said.
        detail: String,
    },
    /// TLS failed.
    Tls {
        /// The URL.
        url: String,
        /// What TLS said.
        detail: String,
    },
    /// 401/403: the key was refused.
    Auth {
        /// The URL.
        url: String,
        /// 401 or 403.
        status: u16,
        /// MISP's message.
        message: String,
    },
    /// 403: the key was accepted, its role may not do this.
    Forbidden {
        /// The URL.
        url: String,
        /// MISP's message.
        message: String,
    },
    /// 404: no such endpoint (wrong base URL) or no such object.
    NotFound {
        /// The URL.
        url: String,
        /// MISP's message, when the answer was MISP's JSON.
        message: Option<String>,
    },
    /// A gateway's error (502, 503 without MISP's envelope, 504).
    Gateway {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        message: String,
    },
    /// MISP refused what was sent: validation errors, a duplicate.
    Rejected {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// MISP's envelope (boxed: errors stay small on the happy path).
        refusal: Box<Refusal>,
        /// The attribute of the request it points at, if any.
        culprit: Option<Box<Culprit>>,
    },
    /// Any other HTTP error.
    Http {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// MISP's message, or the start of the body.
        message: String,
    },
    /// The answer is bigger than the client takes.
    TooLarge {
        /// The URL.
        url: String,
        /// The limit, bytes.
        limit: usize,
    },
    /// The answer is not the JSON expected.
    NotJson {
        /// The URL.
        url: String,
        /// The parse error.
        detail: String,
    },
}

impl ClientError {
    /// The URL of the failed request (none for a setup failure).
    pub fn url(&self) -> Option<&str> {
        use ClientError as E;
        match self {
            E::Setup(_) => None,
            E::Unreachable { url, .. }
            | E::Tls { url, .. }
            | E::Auth { url, .. }
            | E::Forbidden { url, .. }
            | E::NotFound { url, .. }
            | E::Gateway { url, .. }
            | E::Rejected { url, .. }
            | E::Http { url, .. }
            | E::TooLarge { url, .. }
            | E::NotJson { url, .. } => Some(url),
        }
    }

    /// Whether MISP said the object sent exists already (add it with an edit instead).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, ClientError::Http { status: 404, message, .. } if message.contains("already exists"))
    }

    /// What it means and what to do (the proxy variables of this process considered).
    pub fn diagnose(&self) -> Diagnosis {
        Diagnosis::of(self)
    }

    /// The error for a non-2xx answer: `body` read as MISP's envelope, `sent`
    /// the request's JSON (to name the attribute a validation error is about).
    fn from_answer(url: &str, status: u16, body: &[u8], sent: Option<&Value>) -> ClientError {
        let refusal = Refusal::parse(body);
        let start = || String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
        let message = refusal.as_ref().map_or_else(start, |r| r.message.clone());
        let url = url.to_string();
        match (status, refusal) {
            (401, _) => ClientError::Auth { url, status, message },
            (403, Some(r)) if r.is_validation() && !r.is_authentication() => {
                let culprit = sent.and_then(|s| culprit(&r, s)).map(Box::new);
                ClientError::Rejected { url, status, refusal: Box::new(r), culprit }
            }
            (403, Some(r)) if r.is_permission() && !r.is_authentication() => ClientError::Forbidden { url, message },
            (403, _) => ClientError::Auth { url, status, message },
            // MISP's duplicate: kept as `Http` (callers match its message to edit instead)
            (404, Some(r)) if r.message.contains("already exists") => ClientError::Http { url, status, message },
            (404, r) => ClientError::NotFound { url, message: r.map(|r| r.message) },
            (400 | 405 | 422, Some(r)) => {
                let culprit = sent.and_then(|s| culprit(&r, s)).map(Box::new);
                ClientError::Rejected { url, status, refusal: Box::new(r), culprit }
            }
            // a gateway's page is not MISP's envelope; MISP's own 503 (busy) is
            (502 | 504, _) | (503, None) => ClientError::Gateway { url, status, message },
            _ => ClientError::Http { url, status, message },
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the advice lives in one place: diagnose.rs
        std::fmt::Display::fmt(&self.diagnose(), f)
    }
}

impl std::error::Error for ClientError {}

/// A client for one MISP.
#[derive(Clone)]
pub struct MispClient {
    http: reqwest::Client,
    base: String,
    key: String,
    answer_limit: usize,
}

/// The largest answer read by default (a CSV export of a million attributes is about 100 MiB).
pub const DEFAULT_ANSWER_LIMIT: usize = 256 << 20;

/// The body of `resp`, read until it ends or passes `limit` bytes (an error then).
async fn body_within(mut resp: reqwest::Response, url: &str, limit: usize) -> Result<bytes::Bytes, ClientError> {
    let too_large = || ClientError::TooLarge { url: url.into(), limit };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| ClientError::Unreachable { url: url.into(), detail: chain(&e) })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A size as people read it: whole MiB, or bytes.
pub(crate) fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes}-byte")
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl MispClient {
    /// A client for the MISP at `url` with `key`.
    pub fn new(url: &str, key: &str, verify_tls: bool, ca_file: Option<&Path>) -> Result<Self, ClientError> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(!verify_tls)
            .user_agent(concat!("ioclab/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ClientError::Setup(format!("{}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| ClientError::Setup(chain(&e)))?;
        Ok(MispClient {
            http,
            base: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
            answer_limit: DEFAULT_ANSWER_LIMIT,
        })
    }

    /// The same client, reading answers of at most `bytes`.
    pub fn with_answer_limit(mut self, bytes: usize) -> Self {
        self.answer_limit = bytes;
        self
    }

    /// The URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str, sent: Option<&Value>) -> Result<Value, ClientError> {
        let body = self.send_raw(req, url, sent).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::NotJson { url: url.into(), detail: e.to_string() })
    }

    /// The body of a successful answer, unparsed.
    async fn send_raw(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        sent: Option<&Value>,
    ) -> Result<bytes::Bytes, ClientError> {
        let resp = req
            .header("Authorization", &self.key)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .send()
            .await
            .map_err(|e| {
                let detail = chain(&e);
                let lower = detail.to_ascii_lowercase();
                if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
                    ClientError::Tls { url: url.into(), detail }
                } else {
                    ClientError::Unreachable { url: url.into(), detail }
                }
            })?;
        let status = resp.status().as_u16();
        let body = body_within(resp, url, self.answer_limit).await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::from_answer(url, status, &body, sent));
        }
        Ok(body)
    }

    /// POST `body` to `path`; the answer's bytes (for callers that parse them into their own types).
    pub async fn post_raw(&self, path: &str, body: &Value) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(path);
        self.send_raw(self.http.post(&url).json(body), &url, Some(body)).await
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.send(self.http.get(&url), &url, None).await
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.send(self.http.post(&url).json(body), &url, Some(body)).await
    }

    /// The diagnosis of `err`, completed by asking MISP whose key this is
    /// when its role is in question (so the advice names the role it has).
    pub async fn explain(&self, err: &ClientError) -> Diagnosis {
        let mut d = err.diagnose();
        if d.problem == crate::diagnose::Problem::NoPermission {
            if let Ok(me) = self.get("/users/view/me").await {
                let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
                d.likely_cause.push_str(&format!(
                    " (this key is {}'s, whose role is `{}`)",
                    s(&me["User"]["email"]),
                    s(&me["Role"]["name"])
                ));
            }
        }
        d
    }

    /// GET an absolute URL without the API key (feeds are public files).
    pub async fn get_url(&self, url: &str) -> Result<Value, ClientError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: url.into(), detail: chain(&e) })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ClientError::Http { url: url.into(), status, message: "feed file not served".into() });
        }
        let body = body_within(resp, url, self.answer_limit).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::NotJson { url: url.into(), detail: e.to_string() })
    }
}

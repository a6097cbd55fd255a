//! A MISP REST client (reqwest): the API key in `Authorization`, JSON both
//! ways, TLS verified unless the config says `ssl = false`, an extra CA file
//! if given, HTTP(S)_PROXY and NO_PROXY honoured (reqwest reads them).
//! Failures are diagnosed with the likely fix, not dumped.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Why a request to MISP failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// Nothing answered.
    #[error("{url}: cannot connect ({detail}). Is MISP running there, and the URL (scheme, host, port) right?")]
    Unreachable {
        /// The URL.
        url: String,
        /// What the network stack said.
        detail: String,
    },
    /// TLS failed.
    #[error("{url}: TLS failure ({detail}). For a lab MISP with a self-signed certificate set `ssl = false` in the [misp] section, or give its CA with `ca_file`.")]
    Tls {
        /// The URL.
        url: String,
        /// What TLS said.
        detail: String,
    },
    /// 401/403.
    #[error("{url}: HTTP {status}, authentication failed. Check the API key (40 characters, from MISP: My Profile → Auth keys) and that the user is allowed to use the API.")]
    Auth {
        /// The URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// 404 on a path every MISP has.
    #[error("{url}: HTTP 404. Is the base URL right? It is the MISP root (e.g. https://misp.example), without /events or a trailing path.")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// A proxy's gateway error.
    #[error("{url}: HTTP {status} from a gateway. A proxy is in the way: add the MISP host to NO_PROXY, or check that the proxy can reach it.")]
    Gateway {
        /// The URL.
        url: String,
        /// 502 or 504.
        status: u16,
    },
    /// Any other HTTP error.
    #[error("{url}: HTTP {status}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// MISP's message, or the start of the body.
        message: String,
    },
    /// The answer is bigger than the client takes.
    #[error("{url}: the answer is larger than the {} limit; if that much is expected, raise `max_answer_mib` in the [misp] section", size(*limit))]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit, bytes.
        limit: usize,
    },
    /// The answer is not the JSON expected.
    #[error("{url}: the answer is not JSON ({detail}); is this a MISP?")]
    NotJson {
        /// The URL.
        url: String,
        /// The parse error.
        detail: String,
    },
}

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
fn size(bytes: usize) -> String {
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

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value, ClientError> {
        let body = self.send_raw(req, url).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::NotJson { url: url.into(), detail: e.to_string() })
    }

    /// The body of a successful answer, unparsed.
    async fn send_raw(&self, req: reqwest::RequestBuilder, url: &str) -> Result<bytes::Bytes, ClientError> {
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
        match status {
            200..=299 => {}
            401 | 403 => return Err(ClientError::Auth { url: url.into(), status }),
            404 if url.ends_with("/servers/getVersion") => return Err(ClientError::NotFound { url: url.into() }),
            502 | 504 => return Err(ClientError::Gateway { url: url.into(), status }),
            _ => {
                let message = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
                return Err(ClientError::Http { url: url.into(), status, message });
            }
        }
        Ok(body)
    }

    /// POST `body` to `path`; the answer's bytes (for callers that parse them into their own types).
    pub async fn post_raw(&self, path: &str, body: &Value) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(path);
        self.send_raw(self.http.post(&url).json(body), &url).await
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.send(self.http.get(&url), &url).await
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.send(self.http.post(&url).json(body), &url).await
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

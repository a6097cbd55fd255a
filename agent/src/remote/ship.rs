//! Sending sealed batches to the appliance, oldest first, until each is
//! acknowledged; an unreachable appliance is retried with a growing pause,
//! and the batches wait in the spool meanwhile.

use std::time::Duration;

pub use reqwest::Url;

use super::pin::{client_config, Fingerprint};
use super::spool::{Sealed, Spool};
use super::wire::{Ack, BATCH_PATH};

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Appliance {
    /// The appliance's endpoint URL (`https://host:8443`).
    pub url: reqwest::Url,
    /// The enrolment token.
    pub token: String,
    /// The appliance certificate's fingerprint.
    pub fingerprint: Fingerprint,
}

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The appliance could not be reached, or the connection broke (the batch is sent again).
    #[error("appliance {url} unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why, with its causes (a refused certificate says so).
        reason: String,
    },
    /// The token is unknown or revoked (HTTP 401).
    #[error("appliance {0} refused the enrolment token (unknown or revoked: ask the instructor for a new one)")]
    Unauthorized(String),
    /// The appliance refused the batch itself (HTTP 400): it will never take it.
    #[error("appliance refused the batch: {0}")]
    Rejected(String),
    /// Any other answer (the batch is sent again).
    #[error("appliance answered HTTP {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The body, shortened.
        body: String,
    },
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] std::io::Error),
}

/// The sending half of a remote agent.
#[derive(Clone)]
pub struct Shipper {
    client: reqwest::Client,
    url: reqwest::Url,
    token: String,
}

/// The error and its causes on one line (reqwest hides the TLS reason in its sources).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The status and body of an answer whose status is one of `expected`; any other is the error it means.
pub(crate) async fn answer(
    resp: reqwest::Response,
    url: &reqwest::Url,
    expected: &[u16],
) -> Result<(u16, String), ShipError> {
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| ShipError::Unreachable { url: url.to_string(), reason: chain(&e) })?;
    match status {
        s if expected.contains(&s) => Ok((s, text)),
        401 => Err(ShipError::Unauthorized(url.to_string())),
        400 => Err(ShipError::Rejected(text.chars().take(500).collect())),
        s => Err(ShipError::Status { status: s, body: text.chars().take(200).collect() }),
    }
}

impl Appliance {
    /// `path` on the appliance, and a client trusting only its pinned certificate.
    pub(crate) fn client(&self, path: &str) -> Result<(reqwest::Client, reqwest::Url), ShipError> {
        let url = self.url.join(path).map_err(|e| ShipError::Unreachable {
            url: self.url.to_string(),
            reason: format!("not a base URL: {e}"),
        })?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_config(self.fingerprint))
            .connect_timeout(Duration::from_secs(5))
            // above the appliance's long-poll wait
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ShipError::Unreachable { url: url.to_string(), reason: chain(&e) })?;
        Ok((client, url))
    }
}

impl Shipper {
    /// A shipper to `appliance`, trusting only its pinned certificate.
    pub fn new(appliance: &Appliance) -> Result<Shipper, ShipError> {
        let (client, url) = appliance.client(BATCH_PATH)?;
        Ok(Shipper { client, url, token: appliance.token.clone() })
    }

    /// Sends one batch body; the ack says it is stored.
    pub async fn send(&self, body: Vec<u8>) -> Result<Ack, ShipError> {
        let unreachable = |e: reqwest::Error| ShipError::Unreachable { url: self.url.to_string(), reason: chain(&e) };
        let resp = self
            .client
            .post(self.url.clone())
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let (status, text) = answer(resp, &self.url, &[200]).await?;
        serde_json::from_str(&text).map_err(|e| ShipError::Status {
            status,
            body: format!("not an ack ({e}): {}", text.chars().take(200).collect::<String>()),
        })
    }

    /// Sends the spool's oldest batch; `Ok(None)` when there is none.
    pub async fn send_oldest(&self, spool: &Spool) -> Result<Option<(Sealed, Ack)>, ShipError> {
        let Some(batch) = spool.oldest() else { return Ok(None) };
        let body = std::fs::read(&batch.path)?;
        match self.send(body).await {
            Ok(ack) => {
                spool.acked(&batch)?;
                Ok(Some((batch, ack)))
            }
            Err(ShipError::Rejected(why)) => {
                tracing::error!("batch {} set aside: {why}", batch.path.display());
                spool.reject(&batch)?;
                Err(ShipError::Rejected(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Sends batches as they are sealed until `stop` is set; errors are
    /// logged (once per kind of trouble) and retried with a pause growing to 5 s.
    pub async fn run(&self, spool: &Spool, stop: &std::sync::atomic::AtomicBool) {
        use std::sync::atomic::Ordering;
        let mut pause = Duration::from_millis(100);
        let mut last_error: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = spool.seal_if_due() {
                tracing::error!("{e}");
            }
            match self.send_oldest(spool).await {
                Ok(Some(_)) => {
                    if last_error.take().is_some() {
                        tracing::info!("appliance {} reachable again: sending the spool", self.url);
                    }
                    pause = Duration::from_millis(100);
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(ShipError::Rejected(_)) => {}
                Err(e) => {
                    let msg = e.to_string();
                    if last_error.as_deref() != Some(msg.as_str()) {
                        let (n, bytes) = spool.pending();
                        tracing::warn!("{msg}; {n} batches ({bytes} bytes) wait in the spool, retrying");
                        last_error = Some(msg);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

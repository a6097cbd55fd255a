//! Sending a built event: one `events/add` carrying every attribute and
//! object (MISP stores it whole or refuses it), `events/edit` with the full
//! content when the task's event already exists, then checking that MISP
//! kept every attribute sent. Publishing, when configured, is a last and
//! separate call: a failure there leaves a complete, unpublished event.

use std::collections::BTreeSet;

use ioclab_intel::client::{ClientError, MispClient};
use ioclab_intel::warninglists::Warninglists;
use serde_json::Value;

use super::config::{KeyError, ReportingMisp};
use super::event::{self, BelowMinScore, Built};
use crate::report::Report;

/// What MISP did with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// MISP's id of the event.
    pub id: String,
    /// Its uuid.
    pub uuid: String,
    /// Where a human sees it.
    pub url: String,
    /// A new event (false: the task's event was updated).
    pub created: bool,
    /// Published by this push.
    pub published: bool,
    /// HTTP requests made.
    pub requests: usize,
}

/// Why the event is not (wholly) in MISP.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// No API key or client.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A request failed.
    #[error("{step}: {source}")]
    Client {
        /// What was being done.
        step: &'static str,
        /// The client's diagnosis.
        source: ClientError,
    },
    /// MISP answered, but without some of the attributes sent.
    #[error("MISP kept the event {uuid} without {} of its {sent} attributes ({}); it was left unpublished: check MISP's logs for why it refused them", missing.len(), missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "))]
    Incomplete {
        /// The event.
        uuid: String,
        /// Attributes sent.
        sent: usize,
        /// `type value` of those missing.
        missing: Vec<String>,
    },
    /// MISP's answer is not an event.
    #[error("{step}: MISP's answer has no event ({detail})")]
    Shape {
        /// What was being done.
        step: &'static str,
        /// What came back.
        detail: String,
    },
}

/// The message a report keeps as `misp_error`: what failed, the likely
/// cause and what to do (MISP client errors in the words of `ioclab misp
/// check`: intel's diagnosis), and how to send it again.
pub fn misp_error(e: &PushError, task_id: u64) -> String {
    let what = match e {
        PushError::Client { step, source } => format!("{step}: {}", source.diagnose()),
        other => other.to_string(),
    };
    format!(
        "sending the report to MISP failed: {what}. Once fixed, `ioclab sandbox to-misp --task {task_id}` sends it again \
         (it updates the task's event, never adds a second one)"
    )
}

/// The result of [`report_to_misp`].
#[derive(Debug)]
pub enum Outcome {
    /// `min_malscore` kept it out.
    Skipped(BelowMinScore),
    /// Sent.
    Sent {
        /// What MISP did.
        pushed: Pushed,
        /// The event sent.
        built: Box<Built>,
    },
}

/// Builds the event of `report` and sends it to the MISP `cfg` names.
pub async fn report_to_misp(
    report: &Report,
    cfg: &ReportingMisp,
    lists: &Warninglists,
    sample: Option<&[u8]>,
) -> Result<Outcome, PushError> {
    let built = match event::build(report, cfg, lists, sample, &event::sandbox_identity(cfg)) {
        Ok(b) => b,
        Err(skip) => return Ok(Outcome::Skipped(skip)),
    };
    let client = cfg.connection().client()?;
    let pushed = push(&client, &built, cfg.publish).await?;
    Ok(Outcome::Sent { pushed, built: Box::new(built) })
}

/// After a detonation: sends the report when `[reporting.misp] enabled`, and
/// records a failure in `report.misp_error` (never failing the analysis).
/// Returns one line saying what happened, `None` when disabled.
pub async fn after_detonation(report: &mut Report, cfg: &ReportingMisp, sample: Option<&[u8]>) -> Option<String> {
    if !cfg.enabled {
        return None;
    }
    let line = match report_to_misp(report, cfg, Warninglists::embedded(), sample).await {
        Ok(outcome) => {
            report.misp_error = None;
            outcome.to_string()
        }
        Err(e) => {
            let message = misp_error(&e, report.info.id);
            report.misp_error = Some(message.clone());
            message
        }
    };
    tracing::info!("task {}: {line}", report.info.id);
    Some(line)
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Skipped(s) => write!(f, "{s}"),
            Outcome::Sent { pushed, built } => write!(
                f,
                "MISP event {} {}{}: {} attributes, {} objects, {} values left out",
                pushed.url,
                if pushed.created { "added" } else { "updated" },
                if pushed.published { " and published" } else { " (unpublished, for review)" },
                built.event.attributes.len(),
                built.event.objects.len(),
                built.left_out.len()
            ),
        }
    }
}

/// Sends `built`: add, or edit when the task's event exists; checks what MISP kept; publishes if asked.
pub async fn push(client: &MispClient, built: &Built, publish: bool) -> Result<Pushed, PushError> {
    let body = built.event.body();
    let uuid = &built.event.uuid;
    let mut requests = 1;
    let (answer, created) = match client.post("/events/add", &body).await {
        Ok(v) => (v, true),
        Err(e) if e.is_duplicate() => {
            requests += 1;
            let v = client
                .post(&format!("/events/edit/{uuid}"), &body)
                .await
                .map_err(|source| PushError::Client { step: "updating the task's event (events/edit)", source })?;
            (v, false)
        }
        Err(source) => return Err(PushError::Client { step: "adding the event (events/add)", source }),
    };
    let step = if created { "events/add" } else { "events/edit" };
    let stored = answer.get("Event").unwrap_or(&answer);
    let id = match &stored["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(PushError::Shape { step, detail: format!("id is {other}") }),
    };
    let kept: BTreeSet<&str> = stored["Attribute"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            stored["Object"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|o| o["Attribute"].as_array().into_iter().flatten()),
        )
        .filter(|a| a["deleted"] != Value::Bool(true))
        .filter_map(|a| a["uuid"].as_str())
        .collect();
    let sent: Vec<_> = built.event.all_attributes().collect();
    let missing: Vec<String> =
        sent.iter().filter(|a| !kept.contains(a.uuid.as_str())).map(|a| format!("{} {}", a.kind, a.value)).collect();
    if !missing.is_empty() {
        return Err(PushError::Incomplete { uuid: uuid.clone(), sent: sent.len(), missing });
    }
    if publish {
        requests += 1;
        client.post(&format!("/events/publish/{uuid}"), &serde_json::json!({})).await.map_err(|source| {
            PushError::Client { step: "publishing the event (it is complete, unpublished)", source }
        })?;
    }
    Ok(Pushed {
        url: client.url(&format!("/events/view/{id}")),
        id,
        uuid: uuid.clone(),
        created,
        published: publish,
        requests,
    })
}

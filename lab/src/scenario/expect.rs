//! What a run must produce: IoCs in the MISP export (and values it must
//! not hold) and detections on the endpoint.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::identity::{IocText, ScenarioId};

/// Expected IoCs and detections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Which endpoint the detections are awaited on: the lab's own agent
    /// (the default), or the trainee's machine (`endpoint: trainee`), where
    /// the steps then run too. Without a trainee endpoint (`ioclab lab run`,
    /// a trainee with none enrolled) the run uses the lab's.
    #[serde(default, skip_serializing_if = "EndpointRole::is_lab")]
    pub endpoint: EndpointRole,
    /// Values the IoC export must hold.
    #[serde(default)]
    pub iocs: Vec<ExpectedIoc>,
    /// Values the IoC export must NOT hold: false positives the filters
    /// (safelist, warninglists) must keep out (`8.8.8.8`, `google.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<AbsentIoc>,
    /// Agent events that must carry a detection.
    #[serde(default)]
    pub detections: Vec<ExpectedDetection>,
}

/// Where a scenario's detections are awaited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointRole {
    /// The appliance's own endpoint agent: the steps run in the lab network there.
    #[default]
    Lab,
    /// The trainee's own enrolled endpoint (`ioclab agent --appliance`):
    /// the run's IoCs are pushed to it, its steps sent to it when it joined
    /// with `--allow-steps` (else the trainee is asked to run them), and
    /// its events answer the questions.
    Trainee,
}

impl EndpointRole {
    /// Whether it is the lab's own endpoint (the default, left out when written).
    pub fn is_lab(&self) -> bool {
        *self == EndpointRole::Lab
    }
}

/// A value the IoC export must not hold.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbsentIoc {
    /// The value (a domain, IP, hash or path), as the agent would match it.
    pub value: IocText,
}

/// An IoC the export must hold.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedIoc {
    /// The value (a domain, IP, hash or path), as the agent matches it.
    pub value: IocText,
}

/// An agent event that must be seen with a detection.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDetection {
    /// Its name (questions unlock on it).
    pub id: ScenarioId,
    /// Kunai event name (`dns_query`, `execve_script`, `connect`...).
    pub event: String,
    /// The event field holding the value (`data.query`), if it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The IoC that must appear in `detection.iocs` (one of `expect.iocs`).
    pub ioc: IocText,
    /// Lowest `detection.severity` accepted.
    #[serde(default)]
    pub min_severity: u8,
    /// Seconds, from the start of the steps, within which it must be seen.
    pub within_secs: u32,
}

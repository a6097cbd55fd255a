//! What a run must produce: IoCs in the MISP export (and values it must
//! not hold) and detections on the endpoint.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::identity::{IocText, ScenarioId};

/// Expected IoCs and detections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
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

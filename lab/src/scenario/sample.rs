//! The sample a scenario detonates and the other files it ships.

use std::path::PathBuf;

use ioclab_agent::hashes::Sha256;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file detonated in the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Path relative to the scenario's folder.
    pub file: PathBuf,
    /// Its SHA-256 (checked when the scenario is loaded).
    #[serde(deserialize_with = "super::text::parse", serialize_with = "super::text::show")]
    #[schemars(with = "String", regex(pattern = "^[0-9a-fA-F]{64}$"))]
    pub sha256: Sha256,
    /// Which sandbox runs it.
    #[serde(default)]
    pub sandbox: SandboxKind,
    /// A recorded report (`report.json`) for `sandbox: recorded`, relative to the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// Run it as root inside the sandbox (its own namespaces, system folders
    /// read-only, a private /var): for samples installing system persistence
    /// (a crontab in /var/spool/cron). By default an unprivileged user runs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub as_root: bool,
}

/// Which sandbox detonates the sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxKind {
    /// ioclab's own sandbox (`ioclab sandbox`).
    #[default]
    Embedded,
    /// A Cuckoo 2.0 REST API.
    Cuckoo,
    /// A CAPE REST API.
    Cape,
    /// No detonation: the recorded `report` is used.
    Recorded,
}

/// Another file of the scenario, hashed so a changed file is noticed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    /// Path relative to the scenario's folder.
    pub file: PathBuf,
    /// Its SHA-256.
    #[serde(deserialize_with = "super::text::parse", serialize_with = "super::text::show")]
    #[schemars(with = "String", regex(pattern = "^[0-9a-fA-F]{64}$"))]
    pub sha256: Sha256,
}

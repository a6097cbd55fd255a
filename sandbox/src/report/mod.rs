//! The Cuckoo 2.0.7 report (`reports/report.json`) as one typed model,
//! serde both ways: the sandbox writes it, and the parser reads reports of
//! real Cuckoo 2.0 and CAPEv2 leniently (unknown keys ignored, CAPE's names
//! and shapes accepted where they differ cheaply), naming the file and the
//! JSON path of anything it cannot read.

pub mod behavior;
pub mod build;
mod lenient;
pub mod misp;
pub mod network;
pub mod signature;

use std::path::Path;

use ioclab_agent::hashes::{Md5, Sha1, Sha256, Sha512};
use serde::{Deserialize, Serialize};

pub use behavior::{Behavior, Call, Process, ProcessNode, Summary};
pub use build::build;
pub use misp::MispHit;
pub use network::{NetHost, Network};
pub use signature::{Mark, Signature, Ttp};

/// The version written in `info.version`: Cuckoo's, which clients check.
pub const CUCKOO_VERSION: &str = "2.0.7";

/// A whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// About the task.
    pub info: Info,
    /// What was analysed.
    pub target: Target,
    /// What the processes did.
    pub behavior: Behavior,
    /// What went over the network.
    pub network: Network,
    /// Files the task left.
    #[serde(deserialize_with = "lenient::list")]
    pub dropped: Vec<Dropped>,
    /// Behaviour signatures that matched.
    #[serde(deserialize_with = "lenient::list")]
    pub signatures: Vec<Signature>,
    /// Problems met while analysing.
    pub debug: Debug,
    /// CAPE's score (0-10), when the report is CAPE's.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_score")]
    pub malscore: Option<f64>,
    /// MISP events that know the report's IoCs, newest first (the `[processing.misp]` lookup).
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "lenient::list")]
    pub misp: Vec<MispHit>,
    /// Why the MISP lookup could not run, and what to do (the analysis itself went on).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_text")]
    pub misp_lookup_error: Option<String>,
    /// Why sending the report to MISP failed, and what to do (ioclab; absent when it worked or was not asked).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_text")]
    pub misp_error: Option<String>,
}

fn opt_score<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    lenient::float(d).map(Some)
}

fn opt_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    lenient::string(d).map(|s| Some(s).filter(|s| !s.is_empty()))
}

/// `info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    /// Task id.
    #[serde(deserialize_with = "lenient::uint")]
    pub id: u64,
    /// Start, epoch seconds.
    #[serde(deserialize_with = "lenient::epoch")]
    pub started: f64,
    /// End, epoch seconds.
    #[serde(deserialize_with = "lenient::epoch")]
    pub ended: f64,
    /// Whole seconds between the two.
    #[serde(deserialize_with = "lenient::uint")]
    pub duration: u64,
    /// `file` or `url`.
    #[serde(deserialize_with = "lenient::string")]
    pub category: String,
    /// The analysis package that ran the target.
    #[serde(deserialize_with = "lenient::string")]
    pub package: String,
    /// Task options, `key=value,...`.
    #[serde(deserialize_with = "lenient::options")]
    pub options: String,
    /// Guest platform (`linux`).
    #[serde(deserialize_with = "lenient::string")]
    pub platform: String,
    /// Sandbox version.
    #[serde(deserialize_with = "lenient::string")]
    pub version: String,
    /// Sum of the signatures' severities / 5, not capped (Cuckoo's formula).
    #[serde(deserialize_with = "lenient::float")]
    pub score: f64,
    /// The machine that ran it.
    pub machine: Machine,
    /// The timeout ended the task and killed its processes (ioclab).
    pub timed_out: bool,
    /// Exit code of the sample's first process, 128+N when killed by signal N (ioclab).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// `info.machine`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Machine {
    /// Machine name.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Its label in the machinery.
    #[serde(deserialize_with = "lenient::string")]
    pub label: String,
    /// The machinery (`namespaces` here; `virtualbox`, `kvm`... in Cuckoo).
    #[serde(deserialize_with = "lenient::string")]
    pub manager: String,
    /// When the task got the machine (`YYYY-MM-DD HH:MM:SS`, as Cuckoo writes it).
    #[serde(deserialize_with = "lenient::string")]
    pub started_on: String,
    /// When it gave it back.
    #[serde(deserialize_with = "lenient::string")]
    pub shutdown_on: String,
}

/// `target`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Target {
    /// `file` or `url`.
    #[serde(deserialize_with = "lenient::string")]
    pub category: String,
    /// The file, for file tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    /// The URL, for URL tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A file's identity: `target.file` and the base of each `dropped` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    /// File name.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Where the sandbox stores it.
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
    /// Size in bytes.
    #[serde(deserialize_with = "lenient::uint")]
    pub size: u64,
    /// MD5.
    #[serde(deserialize_with = "lenient::digest")]
    pub md5: Option<Md5>,
    /// SHA-1.
    #[serde(deserialize_with = "lenient::digest")]
    pub sha1: Option<Sha1>,
    /// SHA-256.
    #[serde(deserialize_with = "lenient::digest")]
    pub sha256: Option<Sha256>,
    /// SHA-512.
    #[serde(deserialize_with = "lenient::digest")]
    pub sha512: Option<Sha512>,
    /// ssdeep fuzzy hash.
    #[serde(deserialize_with = "lenient::string")]
    pub ssdeep: String,
    /// `file(1)`-style description.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
}

/// A `dropped` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropped {
    /// Name, hashes and the stored copy's path (relative to the task folder).
    #[serde(flatten)]
    pub file: FileInfo,
    /// The path the sample wrote it at, inside the sandbox (CAPE: `guest_paths`).
    #[serde(alias = "guest_paths", deserialize_with = "guest_path")]
    pub filepath: String,
    /// Processes that wrote it.
    #[serde(deserialize_with = "lenient::list")]
    pub pids: Vec<u32>,
    /// The stored copy was cut at the size cap.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// CAPE lists guest paths; Cuckoo has one.
fn guest_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => Ok(items.first().and_then(|v| v.as_str()).unwrap_or_default().to_string()),
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(serde::de::Error::custom(format!("not a path: {other}"))),
    }
}

/// `debug`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Debug {
    /// What went wrong but did not stop the analysis.
    #[serde(deserialize_with = "lenient::strings")]
    pub errors: Vec<String>,
}

/// A report that could not be read: the file, the JSON path and why.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// The JSON is malformed or a field has a shape no sandbox writes.
    #[error("{file}: at {path}: {message}")]
    Parse {
        /// The file (or what the bytes came from).
        file: String,
        /// JSON path of the problem (`.` for the document).
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Report {
    /// Parses a report from `bytes`; `origin` names them in errors.
    pub fn from_slice(bytes: &[u8], origin: &str) -> Result<Report, ReportError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let report: Report = serde_path_to_error::deserialize(&mut de).map_err(|e| ReportError::Parse {
            file: origin.to_string(),
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
        de.end().map_err(|e| ReportError::Parse {
            file: origin.to_string(),
            path: ".".into(),
            message: e.to_string(),
        })?;
        Ok(report)
    }

    /// Reads and parses the report at `path`.
    pub fn from_file(path: &Path) -> Result<Report, ReportError> {
        let bytes =
            std::fs::read(path).map_err(|source| ReportError::Io { file: path.display().to_string(), source })?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// Cuckoo's score: the sum of the signatures' severities over 5, not capped.
    pub fn cuckoo_score(signatures: &[Signature]) -> f64 {
        signatures.iter().fold(0.0, |sum, s| sum + s.severity as f64) / 5.0
    }
}

#[cfg(test)]
mod tests;

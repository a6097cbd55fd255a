//! The stages of a live run, one module each, in run order.

pub(super) mod agent;
mod detection;
mod export;
mod misp;
mod publish;
mod sandbox;
mod steps;
mod trainee_steps;

pub(crate) use crate::engine::step_exec::StepsNs;
pub(super) use detection::Watch;

use super::run::Run;
use crate::run::StageResult;
use crate::scenario::Stage;

/// How a stage ended, what it says, and its artifact.
pub(super) struct Outcome {
    pub result: StageResult,
    pub summary: String,
    pub artifact: Option<String>,
}

impl Outcome {
    pub fn passed(summary: impl Into<String>, artifact: Option<&str>) -> Outcome {
        Outcome { result: StageResult::Passed, summary: summary.into(), artifact: artifact.map(str::to_string) }
    }

    pub fn failed(reason: impl Into<String>) -> Outcome {
        Outcome { result: StageResult::Failed { reason: reason.into() }, summary: String::new(), artifact: None }
    }

    pub fn skipped(reason: impl Into<String>, summary: impl Into<String>) -> Outcome {
        Outcome { result: StageResult::Skipped { reason: reason.into() }, summary: summary.into(), artifact: None }
    }

    /// The same, with `artifact` (a failed stage may still leave one to look at).
    pub fn with_artifact(mut self, artifact: &str) -> Outcome {
        self.artifact = Some(artifact.to_string());
        self
    }

    /// The same, with `summary`.
    pub fn with_summary(mut self, summary: impl Into<String>) -> Outcome {
        self.summary = summary.into();
        self
    }
}

/// Runs `stage` of `run`.
pub(super) fn run(run: &mut Run, stage: Stage) -> Outcome {
    match stage {
        Stage::Sandbox => sandbox::run(run),
        Stage::Misp => misp::run(run),
        Stage::Publish => publish::run(run),
        Stage::Export => export::run(run),
        Stage::Agent => agent::run(run),
        Stage::Steps => steps::run(run),
        Stage::Detection => detection::run(run),
    }
}

/// The addresses the scenario declares (its services' and its A/AAAA
/// records' values): its own, so indicators even on loopback.
pub(super) fn declared_addresses(run: &Run) -> Vec<String> {
    let net = &run.loaded.scenario.network;
    let mut out: Vec<String> = net
        .services
        .iter()
        .map(|s| s.address.to_string())
        .chain(net.dns.iter().filter_map(crate::scenario::network::record_address).map(|a| a.to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

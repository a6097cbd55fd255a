//! The scenario format: `lab-scenarios/<id>/scenario.yaml`, its assets and
//! its trainer-only `answers.yaml`.
//!
//! The types here are the format (one source of truth: the loader, the
//! validator and `ioclab lab schema` all derive from them). Parts that other
//! crates already define are reused, not redefined: DNS records are the
//! sandbox's [`DnsRecord`](ioclab_sandbox::detonation::DnsRecord), MISP levels
//! are intel's, hashes and IoC values are the agent's.

pub mod answers;
pub mod expect;
pub mod identity;
pub mod load;
pub mod misp;
pub mod network;
pub mod questions;
pub mod sample;
pub mod schema;
pub mod steps;
mod text;
pub mod validate;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use answers::{Answer, AnswerFile, AnswerRule, Pattern, Solution};
pub use expect::{AbsentIoc, EndpointRole, Expectations, ExpectedDetection, ExpectedIoc};
pub use identity::{AttackId, IocText, Level, ScenarioId};
pub use load::{Diagnostic, Loaded, Severity};
pub use misp::MispSettings;
pub use network::{LabNetwork, Service, ServiceKind};
pub use questions::{Hint, Question, QuestionType, Unlock};
pub use sample::{Asset, Sample, SandboxKind};
pub use steps::{Command, Executor, InputArg, Stage, Step, Trigger};

/// The file a scenario folder must hold.
pub const SCENARIO_FILE: &str = "scenario.yaml";
/// The trainer-only file next to it (answers and solutions).
pub const ANSWERS_FILE: &str = "answers.yaml";

/// One exercise: `scenario.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short stable name, the same as the scenario's folder (`dns-ioc-why-kunai-rocks`).
    pub id: ScenarioId,
    /// Stable identity across renames (a UUID).
    pub uuid: identity::Uuid,
    /// Version of this scenario, raised on each change trainees would notice.
    pub version: u32,
    /// One-line title.
    pub title: String,
    /// Who it is for.
    pub level: Level,
    /// Estimated time for a trainee, in minutes.
    pub duration_minutes: u32,
    /// Who wrote it.
    #[serde(default)]
    pub authors: Vec<String>,
    /// The scenario's license (SPDX id).
    pub license: String,
    /// MISP-style tags (`tlp:clear`, `kunai:course="dns"`...).
    #[serde(default)]
    pub tags: Vec<String>,
    /// MITRE ATT&CK techniques the exercise shows (`T1071.004`).
    pub attack: Vec<AttackId>,
    /// The story told to trainees (markdown).
    pub story: String,
    /// What a trainee should be able to do afterwards.
    pub objectives: Vec<String>,
    /// DNS records and fake services of the lab network.
    #[serde(default)]
    pub network: LabNetwork,
    /// The file detonated in the sandbox.
    pub sample: Sample,
    /// Other files the scenario uses (scripts run by steps...), hashed.
    #[serde(default)]
    pub assets: Vec<Asset>,
    /// How the sandbox report becomes a MISP event.
    #[serde(default)]
    pub misp: MispSettings,
    /// Commands run on the endpoint (watched by the agent).
    #[serde(default)]
    pub steps: Vec<Step>,
    /// What the run must produce.
    pub expect: Expectations,
    /// Questions asked to trainees (their answers are in `answers.yaml`).
    #[serde(default)]
    pub questions: Vec<Question>,
    /// Commands undoing what the steps did; safe to run twice.
    #[serde(default)]
    pub cleanup: Vec<Command>,
}

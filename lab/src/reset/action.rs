//! What reset does, one action at a time: the CLI prints them as they
//! happen, the web shows them, `--check` lists them without doing them.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::run::RunId;
use crate::scenario::ScenarioId;

/// One thing reset did, would do, or found already done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// What it is about.
    pub target: Target,
    /// How it went.
    pub outcome: Outcome,
}

/// What an action is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum Target {
    /// A run as a whole (already reset, now marked reset, or unreadable).
    Run {
        /// The run.
        run: RunId,
    },
    /// A folder under the runs that is not a readable run.
    Folder {
        /// The folder.
        path: PathBuf,
    },
    /// A cleanup command of a scenario, run in its lab network.
    Cleanup {
        /// The scenario.
        scenario: ScenarioId,
        /// The command as run (`#{args}` filled with their defaults); `None`
        /// when the scenario itself is the problem (not found, no commands).
        command: Option<String>,
    },
    /// A MISP event a run created in the embedded store.
    MispEvent {
        /// The run that created it.
        run: RunId,
        /// The event's uuid.
        uuid: String,
    },
    /// A sandbox task a run created (its row and its folder).
    SandboxTask {
        /// The run that created it.
        run: RunId,
        /// The task's id.
        id: u64,
    },
    /// The agent's IoC file.
    IocFile {
        /// The file.
        path: PathBuf,
    },
    /// The running endpoint agent, asked to load its IoC file again.
    AgentReload,
    /// A run's folder, removed by `--purge`.
    Purge {
        /// The run.
        run: RunId,
        /// Its folder.
        path: PathBuf,
    },
}

/// How an action went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Done; what was done.
    Done {
        /// What was done ("deleted", "restored from ...").
        detail: String,
    },
    /// `--check`: what would be done.
    WouldDo {
        /// What would be done ("delete it").
        detail: String,
    },
    /// The thing was already gone: nothing to undo (not an error).
    AlreadyGone,
    /// Nothing to do, and why.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It failed: reset is incomplete and can be run again once fixed.
    Failed {
        /// Why, with the command's output for a cleanup command.
        error: String,
    },
}

impl Action {
    /// An action about `target` that went as `outcome`.
    pub fn new(target: Target, outcome: Outcome) -> Action {
        Action { target, outcome }
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }
}

impl Outcome {
    /// [`Outcome::Done`].
    pub fn done(detail: impl Into<String>) -> Outcome {
        Outcome::Done { detail: detail.into() }
    }

    /// [`Outcome::WouldDo`].
    pub fn would(detail: impl Into<String>) -> Outcome {
        Outcome::WouldDo { detail: detail.into() }
    }

    /// [`Outcome::Skipped`].
    pub fn skipped(reason: impl Into<String>) -> Outcome {
        Outcome::Skipped { reason: reason.into() }
    }

    /// [`Outcome::Failed`].
    pub fn failed(error: impl fmt::Display) -> Outcome {
        Outcome::Failed { error: error.to_string() }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Run { run } => write!(f, "run {run}"),
            Target::Folder { path } => write!(f, "folder {}", path.display()),
            Target::Cleanup { scenario, command: Some(c) } => write!(f, "cleanup of {scenario}: {c}"),
            Target::Cleanup { scenario, command: None } => write!(f, "cleanup of {scenario}"),
            Target::MispEvent { run, uuid } => write!(f, "MISP event {uuid} (run {run})"),
            Target::SandboxTask { run, id } => write!(f, "sandbox task {id} (run {run})"),
            Target::IocFile { path } => write!(f, "agent IoC file {}", path.display()),
            Target::AgentReload => f.write_str("agent reload"),
            Target::Purge { path, .. } => write!(f, "run folder {}", path.display()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done { detail } => f.write_str(detail),
            Outcome::WouldDo { detail } => write!(f, "would {detail}"),
            Outcome::AlreadyGone => f.write_str("already gone"),
            Outcome::Skipped { reason } => write!(f, "nothing to do: {reason}"),
            Outcome::Failed { error } => write!(f, "FAILED: {error}"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_as_one_line_and_serialise_tagged() {
        let a = Action::new(
            Target::MispEvent { run: RunId::parse("r-1").unwrap(), uuid: "5a25".into() },
            Outcome::AlreadyGone,
        );
        assert_eq!(a.to_string(), "MISP event 5a25 (run r-1): already gone");
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"target": {"target": "misp_event", "run": "r-1", "uuid": "5a25"},
                               "outcome": {"outcome": "already_gone"}})
        );
        let f = Action::new(Target::AgentReload, Outcome::failed("no agent"));
        assert!(f.failed() && !a.failed());
        assert_eq!(f.to_string(), "agent reload: FAILED: no agent");
        assert_eq!(Outcome::would("delete it").to_string(), "would delete it");
    }
}

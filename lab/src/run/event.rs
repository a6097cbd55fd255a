//! The stage events of a run: what the timeline prints, what the web's
//! pipeline lights up with, what a replay plays back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scenario::{ScenarioId, Stage};

/// One event of a run, `at_ms` after the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    /// Milliseconds since the run started (a replay keeps the recorded ones, scaled by its speed).
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: RunEventKind,
}

/// Whether a run happens for real or plays a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every stage for real: sandbox, MISP, agent, eBPF.
    Live,
    /// A recorded run played back (no root, no eBPF).
    Replay,
}

/// What happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunEventKind {
    /// The run began.
    Started {
        /// The scenario.
        scenario: ScenarioId,
        /// Its version.
        version: u32,
        /// The run's id (its folder's name).
        run: String,
        /// Live or replay.
        mode: Mode,
        /// Wall clock at the start, epoch seconds.
        started: f64,
    },
    /// A stage began.
    StageStarted {
        /// The stage.
        stage: Stage,
    },
    /// A stage waits for someone (an instructor's publish or click).
    StageWaiting {
        /// The stage.
        stage: Stage,
        /// What it waits for, for the trainee ("an instructor must publish MISP event 12").
        reason: String,
    },
    /// A stage ended.
    StageFinished {
        /// The stage.
        stage: Stage,
        /// How it ended.
        result: StageResult,
        /// One line saying what it produced ("3 IoCs exported, 2 left out by warninglists").
        summary: String,
        /// Its artifact, relative to the run folder (`report.json`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        artifact: Option<String>,
    },
    /// An endpoint step began.
    StepStarted {
        /// The step's id.
        step: ScenarioId,
        /// The command as run (arguments filled in).
        command: String,
    },
    /// A line a step printed.
    StepOutput {
        /// The step's id.
        step: ScenarioId,
        /// Which stream.
        stream: StreamName,
        /// The line, without its newline.
        line: String,
    },
    /// An endpoint step ended.
    StepFinished {
        /// The step's id.
        step: ScenarioId,
        /// Its exit code (`None`: killed at its timeout).
        exit_code: Option<i32>,
    },
    /// The trainee is asked to run the steps on their own endpoint (it did
    /// not join with `--allow-steps`); the run waits for their "I ran them",
    /// the detections, or its timeout.
    StepsAsked {
        /// The trainee's endpoint (`alice/laptop`).
        endpoint: String,
        /// The commands, in order, their arguments filled in.
        steps: Vec<AskedStep>,
        /// How long the run waits, in seconds.
        timeout_secs: u64,
    },
    /// An expected detection was seen on the endpoint.
    Detection {
        /// The id of the expectation (`expect.detections[].id`).
        expected: ScenarioId,
        /// The agent's event (Kunai JSON), with its `detection` section.
        event: Value,
    },
    /// An expectation failed: named, with the nearest thing seen instead.
    ExpectationFailed {
        /// The expectation's id (a detection's id, or the IoC value).
        expected: String,
        /// Why ("no dns_query event with why.kunai.rocks in detection.iocs within 10 s").
        reason: String,
        /// The nearest event seen, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nearest: Option<Value>,
    },
    /// The run ended.
    Finished {
        /// Every stage and expectation passed.
        passed: bool,
    },
}

/// One command a trainee is asked to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskedStep {
    /// The step's id.
    pub step: ScenarioId,
    /// What it shows.
    pub description: String,
    /// The command (arguments filled in).
    pub command: String,
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StageResult {
    /// It did its job.
    Passed,
    /// It did not; the run stops here (or, for detections, fails).
    Failed {
        /// Why, for the timeline.
        reason: String,
    },
    /// The scenario does not need it (a publish when the event is published at creation...).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// An output stream of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamName {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl RunEventKind {
    /// The stage this event is about, if any.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            RunEventKind::StageStarted { stage }
            | RunEventKind::StageWaiting { stage, .. }
            | RunEventKind::StageFinished { stage, .. } => Some(*stage),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_time_reads_back_equal() {
        // the time a fresh clone's CI once read back 1 ULP off, failing the replay's "file holds what watchers saw"
        let e = RunEvent {
            at_ms: 0,
            kind: RunEventKind::Started {
                scenario: "malicious-script-dropper".parse().unwrap(),
                version: 2,
                run: "r".into(),
                mode: Mode::Replay,
                started: 1796061196.4620507,
            },
        };
        let back: RunEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn events_are_flat_json_lines_that_read_back() {
        let e = RunEvent {
            at_ms: 1250,
            kind: RunEventKind::StageFinished {
                stage: Stage::Export,
                result: StageResult::Failed { reason: "no IoC".into() },
                summary: "0 IoCs".into(),
                artifact: Some("iocs.json".into()),
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"at_ms":1250,"kind":"stage_finished","stage":"export","result":{"result":"failed","reason":"no IoC"},"summary":"0 IoCs","artifact":"iocs.json"}"#
        );
        assert_eq!(serde_json::from_str::<RunEvent>(&line).unwrap(), e);
        assert_eq!(e.kind.stage(), Some(Stage::Export));
    }
}

//! A run as a pipeline: the state of each stage (sandbox, misp, publish,
//! export, agent, steps, detection) folded from its [`RunEvent`]s, with its
//! timing and the page showing its artifact.

use ioclab_lab::run::{RunEvent, RunEventKind, StageResult};
use ioclab_lab::scenario::Stage;

/// Where a stage is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageState {
    /// Not started.
    Pending,
    /// Going on.
    Running,
    /// Waiting for someone (an instructor's publish).
    Waiting,
    /// Ended well.
    Passed,
    /// Ended badly.
    Failed,
    /// Not needed by this scenario.
    Skipped,
}

impl StageState {
    /// Its CSS class and word.
    pub fn class(&self) -> &'static str {
        match self {
            StageState::Pending => "pending",
            StageState::Running => "running",
            StageState::Waiting => "waiting",
            StageState::Passed => "passed",
            StageState::Failed => "failed",
            StageState::Skipped => "skipped",
        }
    }
}

/// One stage of the pipeline as the run page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageView {
    /// The stage's name.
    pub stage: String,
    /// Where it is.
    pub state: StageState,
    /// When it started, ms since the run's start.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub finished_ms: Option<u64>,
    /// Its summary, or what it waits for, or why it failed.
    pub text: String,
    /// The page of its artifact (relative to the run's URL), if it has one.
    pub artifact: Option<&'static str>,
}

impl StageView {
    /// How long it took (`1.2 s`), or since when it runs.
    pub fn timing(&self) -> String {
        match (self.started_ms, self.finished_ms) {
            (Some(a), Some(b)) => format!("{:.1} s", b.saturating_sub(a) as f64 / 1000.0),
            (Some(a), None) => format!("since {:.1} s", a as f64 / 1000.0),
            _ => String::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn test(stage: &str, state: StageState, started_ms: Option<u64>, finished_ms: Option<u64>) -> StageView {
        StageView { stage: stage.into(), state, started_ms, finished_ms, text: String::new(), artifact: None }
    }
}

/// The page showing `stage`'s artifact, under `/runs/{id}/`.
pub fn artifact_page(stage: Stage) -> Option<&'static str> {
    match stage {
        Stage::Sandbox => Some("report"),
        Stage::Misp | Stage::Publish => Some("misp"),
        Stage::Export | Stage::Agent => Some("iocs"),
        Stage::Steps => None,
        Stage::Detection => Some("detection"),
    }
}

/// The pipeline of a run from its events so far.
pub fn pipeline(events: &[RunEvent]) -> Vec<StageView> {
    let mut views: Vec<StageView> = Stage::ALL
        .iter()
        .map(|s| StageView {
            stage: s.to_string(),
            state: StageState::Pending,
            started_ms: None,
            finished_ms: None,
            text: String::new(),
            artifact: None,
        })
        .collect();
    let index = |s: &Stage| Stage::ALL.iter().position(|x| x == s);
    for e in events {
        match &e.kind {
            RunEventKind::StageStarted { stage } => {
                if let Some(v) = index(stage).map(|i| &mut views[i]) {
                    v.state = StageState::Running;
                    v.started_ms = Some(e.at_ms);
                }
            }
            RunEventKind::StageWaiting { stage, reason } => {
                if let Some(v) = index(stage).map(|i| &mut views[i]) {
                    v.state = StageState::Waiting;
                    v.started_ms.get_or_insert(e.at_ms);
                    v.text = reason.clone();
                }
            }
            RunEventKind::StageFinished { stage, result, summary, artifact } => {
                if let Some(v) = index(stage).map(|i| &mut views[i]) {
                    v.started_ms.get_or_insert(e.at_ms);
                    v.finished_ms = Some(e.at_ms);
                    let (state, text) = match result {
                        StageResult::Passed => (StageState::Passed, summary.clone()),
                        StageResult::Failed { reason } => (StageState::Failed, format!("{summary}: {reason}")),
                        StageResult::Skipped { reason } => (StageState::Skipped, reason.clone()),
                    };
                    v.state = state;
                    v.text = text;
                    if artifact.is_some() || *stage == Stage::Detection {
                        v.artifact = artifact_page(*stage);
                    }
                }
            }
            _ => {}
        }
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: u64, kind: RunEventKind) -> RunEvent {
        RunEvent { at_ms, kind }
    }

    #[test]
    fn stages_light_up_in_turn() {
        let events = vec![
            ev(0, RunEventKind::StageStarted { stage: Stage::Sandbox }),
            ev(
                1500,
                RunEventKind::StageFinished {
                    stage: Stage::Sandbox,
                    result: StageResult::Passed,
                    summary: "report".into(),
                    artifact: Some("report.json".into()),
                },
            ),
            ev(1600, RunEventKind::StageStarted { stage: Stage::Misp }),
            ev(
                1700,
                RunEventKind::StageFinished {
                    stage: Stage::Misp,
                    result: StageResult::Failed { reason: "no attribute".into() },
                    summary: "event 3".into(),
                    artifact: None,
                },
            ),
            ev(1800, RunEventKind::StageWaiting { stage: Stage::Publish, reason: "an instructor must publish".into() }),
        ];
        let p = pipeline(&events);
        assert_eq!(p.len(), 7);
        assert_eq!(p[0].state, StageState::Passed);
        assert_eq!(p[0].timing(), "1.5 s");
        assert_eq!(p[0].artifact, Some("report"));
        assert_eq!(p[1].state, StageState::Failed);
        assert_eq!(p[1].text, "event 3: no attribute");
        assert_eq!(p[1].artifact, None, "no artifact written: no link");
        assert_eq!(p[2].state, StageState::Waiting);
        assert_eq!(p[2].text, "an instructor must publish");
        assert_eq!(p[3].state, StageState::Pending);
        assert_eq!(p[6].stage, "detection");
    }
}

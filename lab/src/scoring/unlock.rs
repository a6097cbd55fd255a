//! When a question is shown: each of its unlock conditions read from the
//! run's timeline.

use crate::run::{RunEvent, RunEventKind, StageResult};
use crate::scenario::Unlock;

/// Whether `u` holds in `timeline`: a stage finished passed (or skipped:
/// the scenario did not need it, so nothing is left to wait for; never
/// failed), or an expected detection was seen.
pub fn holds(u: &Unlock, timeline: &[RunEvent]) -> bool {
    timeline.iter().any(|e| match (&e.kind, u) {
        (RunEventKind::StageFinished { stage, result, .. }, Unlock::Stage { stage: want }) => {
            stage == want && matches!(result, StageResult::Passed | StageResult::Skipped { .. })
        }
        (RunEventKind::Detection { expected, .. }, Unlock::Detection { detection }) => expected == detection,
        _ => false,
    })
}

/// The conditions of `unlock` not met yet, described for the trainee.
pub fn waiting_for(unlock: &[Unlock], timeline: &[RunEvent]) -> Vec<String> {
    unlock.iter().filter(|u| !holds(u, timeline)).map(describe).collect()
}

/// A condition in words ("the misp stage", "the detection script-hash").
pub fn describe(u: &Unlock) -> String {
    match u {
        Unlock::Stage { stage } => format!("the {stage} stage"),
        Unlock::Detection { detection } => format!("the detection {detection}"),
    }
}

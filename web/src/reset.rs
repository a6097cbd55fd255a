//! Resetting one trainee or the whole class from the dashboard: their score
//! histories (web.db) and the lab state their runs made (`ioclab_lab::reset`:
//! MISP events, sandbox tasks, the agent's IoC file, cleanup commands).
//!
//! A reset is refused while a run it concerns is going on, rather than
//! cancelling it: cancelling would throw a trainee's work away without
//! warning, and a cancelled live run must wind down (sandbox task, steps)
//! before the lab is consistent again. On a live lab every run going on
//! concerns a reset, since the IoC file and the stores are the lab's, not a
//! run's; replays make no lab state, so only the trainee's own count there.
//! No run starts while a reset is under way.

use std::collections::BTreeSet;

use ioclab_lab::reset::{self, AgentReload, ResetReport, ResetRequest, Scope};
use ioclab_lab::run::RunId;

use crate::questions;
use crate::runs::Engine;
use crate::state::AppState;
use crate::users::UserName;

/// Why a reset did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ResetRefused {
    /// Runs are going on.
    #[error(
        "nothing was reset: {} still going on ({}); wait for {} to end, then reset again",
        if .0.len() == 1 { "a run is" } else { "runs are" },
        .0.join(", "),
        if .0.len() == 1 { "it" } else { "them" }
    )]
    Running(Vec<String>),
    /// The stores failed.
    #[error("nothing was reset: {0}")]
    Failed(String),
}

/// What a reset did.
#[derive(Debug)]
pub struct ResetDone {
    /// The trainee reset (`None`: the class).
    pub trainee: Option<UserName>,
    /// Score histories deleted (one per trainee and run).
    pub histories: u64,
    /// What the lab's reset did.
    pub lab: ResetReport,
}

/// Resets `trainee` (the whole class for `None`): the lab state of their
/// runs, then their score histories.
pub async fn reset(state: &AppState, trainee: Option<&UserName>) -> Result<ResetDone, ResetRefused> {
    let runs = state.runs();
    let _no_start = runs.hold_starts().await;
    let theirs = match trainee {
        Some(t) => {
            let list = runs.list(Some(t)).await.map_err(|e| ResetRefused::Failed(e.to_string()))?;
            Some(list.into_iter().map(|r| r.id).collect::<BTreeSet<String>>())
        }
        None => None,
    };
    let live = matches!(runs.engine(), Engine::Live(_));
    let blocking: Vec<String> =
        runs.running().into_iter().filter(|id| live || theirs.as_ref().is_none_or(|mine| mine.contains(id))).collect();
    if !blocking.is_empty() {
        return Err(ResetRefused::Running(blocking));
    }
    let scope = match &theirs {
        None => Scope::All,
        Some(ids) => Scope::Runs(ids.iter().filter_map(|id| RunId::parse(id)).collect()),
    };
    let scenarios = runs.catalogue();
    let req = ResetRequest { data: runs.data(), scope, scenarios: &scenarios, check: false, purge: false };
    let agent: Option<&dyn AgentReload> = match runs.engine() {
        Engine::Live(lab) => Some(lab.as_ref()),
        Engine::Replay { .. } => None,
    };
    let mut log = |a: &reset::Action| tracing::info!(trainee = ?trainee.map(UserName::as_str), "reset: {a}");
    let lab = reset::reset(&req, agent, &mut log).await.map_err(|e| ResetRefused::Failed(e.to_string()))?;
    let histories = forget_scores(state, trainee).await.map_err(|e| ResetRefused::Failed(e.to_string()))?;
    Ok(ResetDone { trainee: trainee.cloned(), histories, lab })
}

/// Deletes the score histories of `trainee` (everyone's for `None`); how many.
async fn forget_scores(state: &AppState, trainee: Option<&UserName>) -> Result<u64, sqlx::Error> {
    let pool = state.users().pool();
    questions::scores_table(pool).await?;
    let q = match trainee {
        None => sqlx::query("DELETE FROM scores"),
        Some(t) => sqlx::query("DELETE FROM scores WHERE trainee = ?").bind(t.as_str().to_string()),
    };
    Ok(q.execute(pool).await?.rows_affected())
}

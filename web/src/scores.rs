//! The score details of `GET /api/scores`: per trainee and scenario, each
//! run's questions with the points won, the hints taken and what they cost,
//! the attempts used. Computed by the lab's scoring ([`Quiz::status`]) from
//! each run's history in web.db, so the figures are the questions page's.

use std::collections::{BTreeMap, BTreeSet};

use ioclab_lab::run::RunFolder;
use ioclab_lab::scoring::Quiz;
use serde::Serialize;

use crate::questions;
use crate::runs::RunSummary;
use crate::state::AppState;
use crate::users::UserName;

/// One trainee's scores.
#[derive(Debug, Clone, Serialize)]
pub struct TraineeScores {
    /// The trainee.
    pub user: String,
    /// Runs started.
    pub runs: usize,
    /// Scenarios with a passed run.
    pub scenarios_passed: BTreeSet<String>,
    /// Points over every run.
    pub points: u32,
    /// Hints taken over every run.
    pub hints_taken: usize,
    /// By scenario (sorted by id).
    pub scenarios: Vec<ScenarioScores>,
}

/// A trainee's runs of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioScores {
    /// The scenario's id.
    pub scenario: String,
    /// Points over its runs.
    pub points: u32,
    /// Its runs, newest first.
    pub runs: Vec<RunScores>,
}

/// The questions of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunScores {
    /// The run's id.
    pub run: String,
    /// Whether it passed (`None` while it runs).
    pub passed: Option<bool>,
    /// Points over its questions.
    pub points: u32,
    /// Its questions, in the scenario's order (empty when it has none to score).
    pub questions: Vec<QuestionScore>,
}

/// Where a trainee stands on one question of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuestionScore {
    /// The question's id.
    pub question: String,
    /// Points won (0 until answered right).
    pub points: u32,
    /// Answered right.
    pub solved: bool,
    /// Hints taken.
    pub hints_taken: usize,
    /// What they cost, together.
    pub hints_cost: u32,
    /// Answers tried.
    pub attempts_used: u32,
    /// Answers still allowed (`null`: unlimited).
    pub attempts_left: Option<u32>,
    /// Whether the solution was revealed.
    pub solution_revealed: bool,
}

/// The scores of `trainee`'s runs (every trainee's for `None`), by trainee name.
pub async fn scores(state: &AppState, trainee: Option<&UserName>) -> Result<Vec<TraineeScores>, String> {
    let runs = state.runs().list(trainee).await.map_err(|e| e.to_string())?;
    let mut by_user: BTreeMap<String, BTreeMap<String, Vec<RunSummary>>> = BTreeMap::new();
    for r in runs {
        by_user.entry(r.owner.clone()).or_default().entry(r.scenario.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (user, scenarios) in by_user {
        let mut t = TraineeScores {
            user,
            runs: 0,
            scenarios_passed: BTreeSet::new(),
            points: 0,
            hints_taken: 0,
            scenarios: Vec::new(),
        };
        for (scenario, runs) in scenarios {
            let mut s = ScenarioScores { scenario, points: 0, runs: Vec::new() };
            for r in runs {
                let run = run_scores(state, &r).await?;
                t.runs += 1;
                if r.passed == Some(true) {
                    t.scenarios_passed.insert(r.scenario.clone());
                }
                t.hints_taken += run.questions.iter().map(|q| q.hints_taken).sum::<usize>();
                s.points = s.points.saturating_add(run.points);
                s.runs.push(run);
            }
            t.points = t.points.saturating_add(s.points);
            t.scenarios.push(s);
        }
        out.push(t);
    }
    Ok(out)
}

/// The questions of run `r` as its owner stands on them.
async fn run_scores(state: &AppState, r: &RunSummary) -> Result<RunScores, String> {
    let history = questions::history(state.users().pool(), &r.owner, &r.id).await.map_err(|e| e.to_string())?;
    let folder = RunFolder::open(state.runs().data().runs().join(&r.id));
    // scores come from the answer history: the run's events are not read
    // a scenario gone from the catalogue, or without answers: no question to score
    let statuses = match questions::quiz_parts(state, r, &folder, false) {
        Ok((loaded, data)) => match Quiz::new(&loaded, data) {
            Ok(quiz) => quiz.status(&history),
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    let questions: Vec<QuestionScore> = statuses
        .into_iter()
        .map(|s| QuestionScore {
            question: s.question.as_str().to_string(),
            points: s.points,
            solved: s.solved,
            hints_taken: s.hints_taken,
            hints_cost: s.hints_cost,
            attempts_used: s.tries,
            attempts_left: s.attempts_left,
            solution_revealed: s.solution_revealed,
        })
        .collect();
    Ok(RunScores { run: r.id.clone(), passed: r.passed, points: history.total(), questions })
}

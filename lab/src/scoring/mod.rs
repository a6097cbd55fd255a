//! Scoring trainees' answers (the web UI's questions): given a scenario's
//! questions and `answers.yaml`, a run (its timeline and endpoint events) and
//! a trainee's [`History`] on that run, judge answers, show hints and
//! solutions, and say which questions are shown.
//!
//! Rules:
//! - a question is shown once each of its `unlock` conditions holds in the
//!   run's timeline (a stage finished passed or skipped, an expected detection
//!   seen); a locked question takes no answer, hint or solution;
//! - answers are trimmed; exact answers compare case-insensitively unless
//!   `case_sensitive`; regex answers must match whole; choice answers must be
//!   one of the choices (compared like exact answers, never counted as an
//!   attempt otherwise); event answers must be the field of an event of this
//!   run (see [`rule::judge`]), so each run has its own answer;
//! - a right answer earns the question's points minus the costs of the hints
//!   taken and the solution's penalty if revealed, never below 0;
//! - a question takes no answer once answered right, or once its attempts
//!   are used up (wrong answers cost nothing else);
//! - hints are shown in order and their cost is known before
//!   ([`QuestionStatus::next_hint_cost`]); asking again for a hint already
//!   shown shows it again, free.

pub mod history;
pub mod rule;
pub mod run_data;
pub mod unlock;
pub mod verdict;

pub use history::{Attempt, History, QuestionHistory};
pub use run_data::RunData;
pub use verdict::{HintShown, QuestionStatus, ScoringError, SolutionShown, Verdict};

use crate::scenario::{Answer, AnswerFile, Loaded, Question, QuestionType, Scenario, ScenarioId};

/// The questions of one scenario on one run.
#[derive(Debug, Clone)]
pub struct Quiz<'a> {
    scenario: &'a Scenario,
    answers: &'a AnswerFile,
    run: RunData,
}

/// How much of a trainee's answer an error message quotes.
const QUOTED: usize = 80;

impl<'a> Quiz<'a> {
    /// The quiz of `loaded` on the run `run` (see [`RunData::read`]).
    pub fn new(loaded: &'a Loaded, run: RunData) -> Result<Quiz<'a>, ScoringError> {
        let answers = loaded.answers.as_ref().ok_or_else(|| ScoringError::NoAnswers(loaded.scenario.id.clone()))?;
        Ok(Quiz { scenario: &loaded.scenario, answers, run })
    }

    /// The run's data.
    pub fn run(&self) -> &RunData {
        &self.run
    }

    /// The questions shown now, in the scenario's order.
    pub fn unlocked(&self) -> Vec<ScenarioId> {
        let shown = self.scenario.questions.iter().filter(|q| self.is_unlocked(q));
        shown.map(|q| q.id.clone()).collect()
    }

    /// Where the trainee stands on every question.
    pub fn status(&self, history: &History) -> Vec<QuestionStatus> {
        self.scenario.questions.iter().map(|q| self.status_of(q, history)).collect()
    }

    /// Judges `answer` to `question` and records it in `history`.
    pub fn answer(&self, history: &mut History, question: &str, answer: &str) -> Result<Verdict, ScoringError> {
        let (q, a) = self.open(question)?;
        let h = history.of(&q.id);
        if let Some(why) = closed(q, &h) {
            return Err(ScoringError::Closed { question: q.id.clone(), why });
        }
        let given = answer.trim();
        let given = if q.kind == QuestionType::Choice {
            let choice = q.choices.iter().find(|c| c.trim().to_lowercase() == given.to_lowercase());
            choice
                .map(|c| c.trim())
                .ok_or_else(|| ScoringError::NotAChoice { question: q.id.clone(), answer: quote(answer) })?
        } else {
            given
        };
        let judged = rule::judge(q, &a.rule, given, &self.run);
        let points = if judged.right { points_now(q, a, &h) } else { 0 };
        let entry = history.questions.entry(q.id.clone()).or_default();
        entry.attempts.push(Attempt { answer: answer.to_string(), right: judged.right, points });
        let h = entry.clone();
        Ok(Verdict {
            question: q.id.clone(),
            right: judged.right,
            points,
            attempts_left: attempts_left(q, &h),
            closed: closed(q, &h).is_some(),
            value: judged.value,
            unlocked: self.unlocked(),
        })
    }

    /// Shows hint `index` (from 0) of `question`: the next one (recorded in
    /// `history`, its cost taken off a later right answer) or one already shown.
    pub fn hint(&self, history: &mut History, question: &str, index: usize) -> Result<HintShown, ScoringError> {
        let (q, _) = self.open(question)?;
        let next = history.of(&q.id).hints_taken;
        let hint = q.hints.get(index).filter(|_| index <= next);
        let hint =
            hint.ok_or(ScoringError::NoSuchHint { question: q.id.clone(), index, next, count: q.hints.len() })?;
        if index == next {
            history.questions.entry(q.id.clone()).or_default().hints_taken = next + 1;
        }
        Ok(HintShown { question: q.id.clone(), index, text: hint.text.clone(), cost: hint.cost })
    }

    /// Reveals the solution of `question` (recorded in `history`; its penalty
    /// is taken off a later right answer).
    pub fn reveal_solution(&self, history: &mut History, question: &str) -> Result<SolutionShown, ScoringError> {
        let (q, a) = self.open(question)?;
        let s = a.solution.as_ref().ok_or_else(|| ScoringError::NoSolution(q.id.clone()))?;
        history.questions.entry(q.id.clone()).or_default().solution_revealed = true;
        Ok(SolutionShown { question: q.id.clone(), text: s.text.clone(), penalty: s.penalty })
    }

    /// The question `id` and its answer, if it is shown.
    fn open(&self, id: &str) -> Result<(&'a Question, &'a Answer), ScoringError> {
        let q = self.scenario.questions.iter().find(|q| q.id.as_str() == id);
        let q = q.ok_or_else(|| ScoringError::UnknownQuestion(quote(id)))?;
        let a = self.answers.answers.get(&q.id).ok_or_else(|| ScoringError::NoAnswer(q.id.clone()))?;
        let waiting = unlock::waiting_for(&q.unlock, &self.run.timeline);
        if !waiting.is_empty() {
            return Err(ScoringError::Locked { question: q.id.clone(), waiting_for: waiting.join(" and ") });
        }
        Ok((q, a))
    }

    fn is_unlocked(&self, q: &Question) -> bool {
        q.unlock.iter().all(|u| unlock::holds(u, &self.run.timeline))
    }

    fn status_of(&self, q: &Question, history: &History) -> QuestionStatus {
        let h = history.of(&q.id);
        let a = self.answers.answers.get(&q.id);
        QuestionStatus {
            question: q.id.clone(),
            unlocked: self.is_unlocked(q),
            waiting_for: unlock::waiting_for(&q.unlock, &self.run.timeline),
            solved: h.solved(),
            closed: closed(q, &h).is_some(),
            tries: h.tries(),
            attempts_left: attempts_left(q, &h),
            points: h.points(),
            points_now: a.map_or(0, |a| points_now(q, a, &h)),
            hints_taken: h.hints_taken.min(q.hints.len()),
            hints_cost: hints_cost(q, &h),
            hints_total: q.hints.len(),
            next_hint_cost: q.hints.get(h.hints_taken).map(|x| x.cost),
            solution_penalty: a.and_then(|a| a.solution.as_ref()).map(|s| s.penalty),
            solution_revealed: h.solution_revealed,
        }
    }
}

/// Points a right answer earns after `h`'s hints and solution.
fn points_now(q: &Question, a: &Answer, h: &QuestionHistory) -> u32 {
    let hints = hints_cost(q, h);
    let solution = match (&a.solution, h.solution_revealed) {
        (Some(s), true) => s.penalty,
        _ => 0,
    };
    q.points.saturating_sub(hints).saturating_sub(solution)
}

/// What the hints `h` took of `q` cost, together.
fn hints_cost(q: &Question, h: &QuestionHistory) -> u32 {
    q.hints.iter().take(h.hints_taken).map(|x| x.cost).fold(0, u32::saturating_add)
}

/// Answers still allowed (`None`: unlimited).
fn attempts_left(q: &Question, h: &QuestionHistory) -> Option<u32> {
    if h.solved() {
        return Some(0);
    }
    q.attempts.map(|n| n.saturating_sub(h.tries()))
}

/// Why `q` takes no more answers, if it does not.
fn closed(q: &Question, h: &QuestionHistory) -> Option<String> {
    if h.solved() {
        return Some("it was answered right".into());
    }
    match q.attempts {
        Some(n) if h.tries() >= n => Some(format!("no attempt left ({n} allowed)")),
        _ => None,
    }
}

/// The first [`QUOTED`] characters of a trainee's text, for a message.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTED) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

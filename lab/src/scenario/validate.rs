//! The rules serde cannot check: references between parts, files and hashes.

use std::path::Path;

use super::answers::AnswerFile;
use super::load::{Diagnostic, Source};
use super::Scenario;

/// Every problem of a parsed scenario (its folder is `dir`).
pub fn scenario(_source: &Source, _dir: &Path, _s: &Scenario) -> Vec<Diagnostic> {
    Vec::new()
}

/// Every problem of `answers.yaml` given its scenario.
pub fn answers(_source: &Source, _s: &Scenario, _a: &AnswerFile) -> Vec<Diagnostic> {
    Vec::new()
}

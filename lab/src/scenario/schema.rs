//! `ioclab lab schema`: the JSON Schema of the format, derived from the types.

use schemars::Schema;

use super::Scenario;

/// The JSON Schema of `scenario.yaml`.
pub fn scenario() -> Schema {
    schemars::schema_for!(Scenario)
}

/// The JSON Schema of `answers.yaml`.
pub fn answers() -> Schema {
    schemars::schema_for!(super::AnswerFile)
}

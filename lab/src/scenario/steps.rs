//! Endpoint steps: commands run on the watched endpoint (inside the lab
//! network), and cleanup commands.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::identity::ScenarioId;

/// A command, as steps and cleanup run it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The shell that runs it.
    #[serde(default)]
    pub executor: Executor,
    /// The command; `#{name}` is replaced by the input argument `name`.
    pub command: String,
    /// Input arguments the command may use as `#{name}`.
    #[serde(default)]
    pub args: BTreeMap<String, InputArg>,
    /// Killed (with its children) after this many seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
}

fn default_timeout() -> u32 {
    30
}

impl Command {
    /// The `#{name}` placeholders the command uses, with their byte offsets.
    pub fn placeholders(&self) -> Vec<(usize, &str)> {
        let mut found = Vec::new();
        let mut rest = self.command.as_str();
        let mut base = 0;
        while let Some(i) = rest.find("#{") {
            let after = &rest[i + 2..];
            match after.find('}') {
                Some(end) => {
                    found.push((base + i, &after[..end]));
                    base += i + 2 + end + 1;
                    rest = &after[end + 1..];
                }
                None => break,
            }
        }
        found
    }

    /// The command with each `#{name}` replaced by `values[name]`, or its default.
    pub fn render(&self, values: &BTreeMap<String, String>) -> String {
        let mut out = self.command.clone();
        for (name, arg) in &self.args {
            let v = values.get(name).unwrap_or(&arg.default);
            out = out.replace(&format!("#{{{name}}}"), v);
        }
        out
    }
}

/// An input argument of a command.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputArg {
    /// What it is.
    pub description: String,
    /// Its value when the instructor gives none.
    pub default: String,
}

/// The shell running a command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// `/bin/sh -c`.
    #[default]
    Sh,
    /// `bash -c`.
    Bash,
}

/// One endpoint step.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Its name (unique in the scenario).
    pub id: ScenarioId,
    /// What it shows, for the timeline.
    pub description: String,
    /// What it runs.
    pub run: Command,
    /// When it runs.
    #[serde(default)]
    pub trigger: Trigger,
}

/// When a step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "on", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// When a stage of the run has finished (`{on: stage, stage: agent}`).
    Stage {
        /// The stage.
        stage: Stage,
    },
    /// Some seconds after the previous step ended (`{on: delay, secs: 5}`).
    Delay {
        /// Seconds.
        secs: u32,
    },
    /// When the instructor clicks (`{on: instructor}`).
    Instructor,
}

impl Default for Trigger {
    /// Once the agent has loaded the exported IoCs: the usual moment.
    fn default() -> Self {
        Trigger::Stage { stage: Stage::Agent }
    }
}

/// The stages of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The sample was detonated and its report written.
    Sandbox,
    /// The report became a MISP event.
    Misp,
    /// The event was published.
    Publish,
    /// IoCs were exported (with warninglists).
    Export,
    /// The agent reloaded the IoCs.
    Agent,
    /// The endpoint steps ran.
    Steps,
    /// Every expected detection was seen.
    Detection,
}

impl Stage {
    /// Every stage, in run order.
    pub const ALL: &'static [Stage] =
        &[Stage::Sandbox, Stage::Misp, Stage::Publish, Stage::Export, Stage::Agent, Stage::Steps, Stage::Detection];
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str, args: &[(&str, &str)]) -> Command {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), InputArg { description: String::new(), default: v.to_string() }))
            .collect();
        Command { executor: Executor::Sh, command: text.to_string(), args, timeout_secs: 5 }
    }

    #[test]
    fn placeholders_are_found_and_rendered_with_defaults_or_values() {
        let c = cmd("dig #{domain} @#{server} #{", &[("domain", "why.kunai.rocks"), ("server", "127.0.0.1")]);
        let names: Vec<&str> = c.placeholders().into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["domain", "server"]);
        let given = [("server".to_string(), "127.0.0.53".to_string())].into();
        assert_eq!(c.render(&given), "dig why.kunai.rocks @127.0.0.53 #{");
    }
}

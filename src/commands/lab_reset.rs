//! `ioclab lab reset`: undo what lab runs created outside their folders
//! (cleanup commands, MISP events, sandbox tasks, the agent's IoC file).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ioclab_lab::engine::lock::DataLock;
use ioclab_lab::reset::{self, ResetRequest, Scope};
use ioclab_lab::scenario::{load, Loaded, ScenarioId};

use super::lab::{load_scenario, DataArg, ScenarioDir};

/// Arguments of `ioclab lab reset`.
#[derive(Args)]
pub(crate) struct ResetArgs {
    /// The scenario whose runs to reset: an id under --dir, or its folder (none: every run).
    #[arg(value_name = "ID")]
    scenario: Option<String>,
    /// Say what would be done, change nothing.
    #[arg(long)]
    check: bool,
    /// Also remove the folders of the reset runs (their artifacts: report, MISP event, IoCs, events).
    #[arg(long)]
    purge: bool,
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    dir: ScenarioDir,
}

/// `--help`'s text after the options.
pub(crate) const AFTER_HELP: &str = "\
For each run not reset yet, reset:
  - runs its scenario's cleanup commands inside the scenario's lab network (needs root),
  - deletes the MISP events it created in the embedded store (DATA/misp.db),
  - deletes its sandbox tasks (DATA/sandbox/sandbox.db and their folders),
  - puts the agent's IoC file (DATA/agent/iocs.json) back as it was before the first run not reset,
  - records in the run's run.json that it was reset: a second reset does nothing and says so.
Run folders (DATA/runs/<run>) stay for the trainees unless --purge. Something already gone
is not an error; a failing cleanup command is (exit 1, with its output), and reset can be
run again once it is fixed.

Examples:
  ioclab lab reset --check                          what a reset of every run would do
  sudo ioclab lab reset                             reset every run
  sudo ioclab lab reset dns-ioc-why-kunai-rocks     only that scenario's runs
  sudo ioclab lab reset --purge --data /srv/ioclab  and remove their folders";

/// Runs `ioclab lab reset`.
pub(crate) fn run(a: ResetArgs) -> anyhow::Result<ExitCode> {
    let data = a.data.dir();
    let (scope, scenarios) = match &a.scenario {
        Some(arg) => scenario_scope(arg, &a.dir.dir)?,
        None => (Scope::All, every_scenario(&a.dir.dir)),
    };
    // a running lab (`lab run`, the web) changes what reset undoes: one at a time
    let _lock = match a.check || !data.root().is_dir() {
        true => None,
        false => Some(DataLock::take(data.root()).context("resetting the lab")?),
    };
    let req = ResetRequest { data: &data, scope: scope.clone(), scenarios: &scenarios, check: a.check, purge: a.purge };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let mut print = |action: &reset::Action| println!("{action}");
    // the CLI runs no agent: an `ioclab agent` elsewhere reloads on SIGHUP
    let report = runtime.block_on(reset::reset(&req, None, &mut print))?;
    let which = match &scope {
        Scope::All => "runs".to_string(),
        Scope::Scenario(id) => format!("runs of {id}"),
        Scope::Runs(ids) => format!("{} chosen runs", ids.len()),
    };
    if report.actions.is_empty() {
        println!("no {which} under {}: nothing to reset", data.runs().display());
    }
    let failures = report.actions.iter().filter(|x| x.failed()).count();
    println!(
        "{which}: {} {}, {} already reset{}",
        report.reset.len(),
        if a.check { "would be reset" } else { "reset" },
        report.already_reset.len(),
        if failures > 0 { format!(", {failures} failure(s)") } else { String::new() }
    );
    Ok(if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The scope of `arg` (a scenario id, or a scenario's folder) and its scenario.
/// An id whose folder is gone still names its runs (their cleanup then fails, named).
fn scenario_scope(arg: &str, dir: &Path) -> anyhow::Result<(Scope, Vec<Loaded>)> {
    if let Ok(id) = arg.parse::<ScenarioId>() {
        if !Path::new(arg).exists() && !dir.join(arg).exists() {
            eprintln!("note: scenario {id} is not under {} (its cleanup commands cannot run)", dir.display());
            return Ok((Scope::Scenario(id), Vec::new()));
        }
    }
    let loaded = load_scenario(arg, dir)?;
    Ok((Scope::Scenario(loaded.scenario.id.clone()), vec![loaded]))
}

/// Every valid scenario under `dir` (for their cleanup commands); a missing folder is none.
fn every_scenario(dir: &Path) -> Vec<Loaded> {
    let Ok(paths) = load::find(dir) else {
        eprintln!("note: no scenario folder {} (cleanup commands cannot run; set --dir)", dir.display());
        return Vec::new();
    };
    paths.iter().filter_map(|p| load::load(p).ok()).collect()
}

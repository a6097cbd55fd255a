//! `ioclab lab record ID [--run RUN_ID|latest]`: a finished live run (or,
//! without `--run`, one run now) stored as the scenario's replay
//! (`lab-scenarios/<id>/replay/`), to be committed.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ioclab_lab::engine::{Lab, LabConfig, RunOptions};
use ioclab_lab::record::{find_run, record};
use ioclab_lab::run::{timeline, RunFolder};
use ioclab_lab::scenario::Loaded;

use super::lab::{load_scenario, DataArg, ScenarioDir};

/// Arguments of `ioclab lab record`.
#[derive(Args)]
pub(crate) struct RecordArgs {
    /// The scenario: an id under --dir, or its folder.
    scenario: String,
    /// The run to store: its id (a folder under <data>/runs) or `latest`, the scenario's last
    /// finished live run. Without it, the scenario is run live first (root, eBPF), publishing
    /// for the instructor, and that run is stored.
    #[arg(long, value_name = "RUN_ID|latest")]
    run: Option<String>,
    /// Store a run that failed an expectation too (its replay will exit 1).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    dir: ScenarioDir,
    #[command(flatten)]
    data: DataArg,
}

/// The help's text.
pub(crate) const EXAMPLES: &str = "\
Copies a finished live run into lab-scenarios/<id>/replay/, replacing the old replay in one
atomic rename, after checking the player can read it. Left out: copies of the scenario's
own sample and assets (committed beside it already), iocs.before.json (the recording machine's own IoCs), what
the run created on that machine (run.json's `created`), and that machine's host name and
uuid in the agent events; an events.jsonl above 256 KiB keeps only detections and the
event kinds the scenario needs.

Examples:
  sudo ioclab lab record dns-ioc-why-kunai-rocks            run it live now, then store that run
  sudo ioclab lab record dns-ioc-why-kunai-rocks --run latest   the last live run (ioclab lab run)
  ioclab lab record malicious-script-dropper --run malicious-script-dropper-20261130T090000Z
  git add lab-scenarios/*/replay && git commit";

/// Runs `ioclab lab record`.
pub(crate) fn run(a: RecordArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_scenario(&a.scenario, &a.dir.dir)?;
    let run = match &a.run {
        Some(which) => find_run(&a.data.dir().runs(), &loaded.scenario.id, which)?,
        None => run_live(&loaded, &a.data)?,
    };
    let r = record(&loaded, &run, a.force)?;
    println!(
        "recorded run {} ({}) as {}: {} endpoint events kept, {} left out",
        r.run,
        if r.passed { "passed" } else { "FAILED" },
        r.dir.display(),
        r.events_kept,
        r.events_dropped
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `loaded` live, publishing its MISP event when it waits for an
/// instructor (a replay shows the whole flow), printing its timeline; its folder.
fn run_live(loaded: &Loaded, data: &DataArg) -> anyhow::Result<RunFolder> {
    eprintln!("running {} live to record it (lab data: {})", loaded.scenario.id, data.data.display());
    let lab = Lab::open(LabConfig { data: data.dir() }).context("the live lab cannot start (root and eBPF needed)")?;
    let handle = lab.start_run(loaded, RunOptions { auto_publish: true, ..RunOptions::default() })?;
    let folder = handle.folder.clone();
    let printed = timeline::follow(&handle.log, &mut std::io::stdout().lock());
    handle.wait();
    drop(lab);
    printed.context("printing the timeline")?;
    eprintln!("what the run created stays until `ioclab lab reset {}`", loaded.scenario.id);
    Ok(folder)
}

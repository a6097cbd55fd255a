//! `ioclab lab record ID --run RUN_ID|latest`: a finished live run stored as
//! the scenario's replay (`lab-scenarios/<id>/replay/`), to be committed.

use std::process::ExitCode;

use clap::Args;
use ioclab_lab::record::{find_run, record};

use super::lab::{load_scenario, DataArg, ScenarioDir};

/// Arguments of `ioclab lab record`.
#[derive(Args)]
pub(crate) struct RecordArgs {
    /// The scenario: an id under --dir, or its folder.
    scenario: String,
    /// The run to store: its id (a folder under <data>/runs) or `latest`, the scenario's last finished live run.
    #[arg(long, value_name = "RUN_ID|latest")]
    run: String,
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
Copies a finished live run into lab-scenarios/<id>/replay/, replacing the old replay in
one atomic rename, after checking the player can read it. Left out: the scenario's own
sample (committed beside it already), iocs.before.json
(the recording machine's own IoCs), what the run created on that machine (run.json's
`created`), and the machine's host name and uuid in the agent events; events.jsonl
above 256 KiB keeps only detections and the event kinds the scenario needs.

Examples:
  sudo ioclab lab run dns-ioc-why-kunai-rocks && sudo ioclab lab record dns-ioc-why-kunai-rocks --run latest
  ioclab lab record malicious-script-dropper --run malicious-script-dropper-20261130T090000Z
  git add lab-scenarios/*/replay && git commit";

/// Runs `ioclab lab record`.
pub(crate) fn run(a: RecordArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_scenario(&a.scenario, &a.dir.dir)?;
    let run = find_run(&a.data.dir().runs(), &loaded.scenario.id, &a.run)?;
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

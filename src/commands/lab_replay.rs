//! `ioclab lab replay ID [--speed N]`: a scenario's recorded run played
//! back through the same stage stream and timeline as a live run, with no
//! root, no eBPF and no network; `ioclab lab run ID --replay` calls [`play`].

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ioclab_lab::record::replay_dir;
use ioclab_lab::replay::{replay, Speed};
use ioclab_lab::run::timeline;

use super::lab::{load_scenario, DataArg, ScenarioDir};

/// Arguments of `ioclab lab replay`.
#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// The scenario: an id under --dir, or its folder.
    scenario: String,
    /// Play N times faster than recorded (0.5: slower; 0: no waiting).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_speed)]
    speed: Speed,
    /// Play without waiting (the same as --speed 0).
    #[arg(long, conflicts_with = "speed")]
    instant: bool,
    #[command(flatten)]
    dir: ScenarioDir,
    #[command(flatten)]
    data: DataArg,
}

/// The help's examples.
pub(crate) const EXAMPLES: &str = "\
Plays lab-scenarios/<id>/replay/ (a real run stored by `ioclab lab record`) with its
recorded timing: the same timeline as `ioclab lab run`, artifacts appearing in a new
run folder (<data>/runs/<run-id>/) as their stage finishes. No root, no eBPF, no
network: it works on any machine. Exits 1 when the recorded run failed.

Examples:
  ioclab lab replay dns-ioc-why-kunai-rocks --data /tmp/lab        as recorded
  ioclab lab replay malicious-script-dropper --speed 4 --data /tmp/lab
  ioclab lab replay malicious-script-dropper --instant --data /tmp/lab";

/// `--speed`'s parser.
pub(crate) fn parse_speed(s: &str) -> Result<Speed, String> {
    s.parse()
}

/// Runs `ioclab lab replay`.
pub(crate) fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let speed = if a.instant { Speed::Instant } else { a.speed };
    play(&a.scenario, &a.dir.dir, &a.data, speed)
}

/// Plays the replay of scenario `arg` (an id under `dir`, or a folder) at
/// `speed` into a run folder under `data`, printing its timeline; exits 1
/// when the recorded run failed.
pub(crate) fn play(arg: &str, dir: &Path, data: &DataArg, speed: Speed) -> anyhow::Result<ExitCode> {
    let loaded = load_scenario(arg, dir)?;
    let recording = replay_dir(&loaded);
    if !recording.exists() {
        anyhow::bail!(
            "scenario {} has no replay ({} is missing): record a live run with `sudo ioclab lab record {}`",
            loaded.scenario.id,
            recording.display(),
            loaded.scenario.id
        );
    }
    let runs = data.dir().runs();
    let r = replay(&loaded, &recording, speed, &runs).with_context(|| {
        format!("replaying {} (runs go to {}; set --data or IOCLAB_DATA)", recording.display(), runs.display())
    })?;
    eprintln!("replay of {} at speed {speed}: run {} in {}", recording.display(), r.id, r.folder.root().display());
    let log = r.log.clone();
    let folder = r.folder.clone();
    let printed = timeline::follow(&log, &mut std::io::stdout().lock());
    let outcome = r.wait()?;
    printed.context("printing the timeline")?;
    println!("run folder: {}", folder.root().display());
    Ok(if outcome.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

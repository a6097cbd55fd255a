//! `ioclab lab run ID`: a scenario's every stage, live, with its timeline
//! printed as it goes and its run folder kept.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use ioclab_lab::engine::{Lab, LabConfig, RunOptions};
use ioclab_lab::replay::Speed;
use ioclab_lab::run::timeline;

use super::lab::{load_scenario, DataArg, ScenarioDir};

/// Arguments of `ioclab lab run`.
#[derive(Args)]
#[command(after_help = "\
Every stage happens for real (root, eBPF): the sample is detonated in the
embedded sandbox, its report becomes an event of the embedded MISP, the
event is published (or the run waits for an instructor to publish it), its
IoCs are exported with warninglists and loaded by the endpoint agent, the
endpoint steps run inside the lab network, and the expected detections are
awaited. The timeline prints as it goes, then a table of the stages; the
run folder keeps every artifact. Exits 1 when an expectation fails, naming
it and the nearest event seen instead.

Examples:
  sudo ioclab lab run dns-ioc-why-kunai-rocks
  sudo ioclab lab run malicious-script-dropper --publish     act as the instructor
  sudo ioclab lab run dns-ioc-why-kunai-rocks --arg dig.domain=kunai-project.github.io
  sudo ioclab lab run ./my-scenario --data /tmp/lab          a scenario folder, a scratch lab
  ioclab lab run dns-ioc-why-kunai-rocks --replay --speed 4  the recorded run, no root needed")]
pub(crate) struct RunArgs {
    /// The scenario: an id under --dir, or a scenario folder.
    scenario: String,
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    dir: ScenarioDir,
    /// Act as the instructor: publish the MISP event when the run waits for it.
    #[arg(long)]
    publish: bool,
    /// A step's input argument, STEP.NAME=VALUE (repeatable; others keep their defaults).
    #[arg(long = "arg", value_name = "STEP.NAME=VALUE", value_parser = parse_step_arg)]
    args: Vec<StepArg>,
    /// Go on when an expected IoC is missing from the export, to see what the endpoint does anyway.
    #[arg(long)]
    keep_going: bool,
    /// Play the scenario's recorded run (lab-scenarios/<id>/replay/) instead: no root, no eBPF, no network.
    #[arg(long, conflicts_with_all = ["publish", "args", "keep_going"])]
    replay: bool,
    /// With --replay: N times faster than recorded (0.5: slower; 0: no waiting).
    #[arg(long, value_name = "N", requires = "replay", value_parser = super::lab_replay::parse_speed)]
    speed: Option<Speed>,
}

/// One `--arg STEP.NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepArg {
    step: String,
    name: String,
    value: String,
}

fn parse_step_arg(s: &str) -> Result<StepArg, String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected STEP.NAME=VALUE"))?;
    let (step, name) = key.split_once('.').ok_or_else(|| format!("{key:?}: expected STEP.NAME before the ="))?;
    if step.is_empty() || name.is_empty() {
        return Err(format!("{key:?}: expected STEP.NAME before the ="));
    }
    Ok(StepArg { step: step.into(), name: name.into(), value: value.into() })
}

/// Runs `ioclab lab run`.
pub(crate) fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.replay {
        return super::lab_replay::play(&a.scenario, &a.dir.dir, &a.data, a.speed.unwrap_or(Speed::Times(1.0)));
    }
    let loaded = load_scenario(&a.scenario, &a.dir.dir)?;
    let mut args: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for sa in &a.args {
        let Some(step) = loaded.scenario.steps.iter().find(|s| s.id.as_str() == sa.step) else {
            let ids: Vec<&str> = loaded.scenario.steps.iter().map(|s| s.id.as_str()).collect();
            bail!(
                "--arg {}.{}: no step {:?} in {} (steps: {})",
                sa.step,
                sa.name,
                sa.step,
                loaded.scenario.id,
                ids.join(", ")
            );
        };
        if !step.run.args.contains_key(&sa.name) {
            let names: Vec<&str> = step.run.args.keys().map(String::as_str).collect();
            bail!(
                "--arg {}.{}: step {} has no argument {:?} (its arguments: {})",
                sa.step,
                sa.name,
                sa.step,
                sa.name,
                names.join(", ")
            );
        }
        args.entry(sa.step.clone()).or_default().insert(sa.name.clone(), sa.value.clone());
    }
    let data = a.data.dir();
    eprintln!("starting the lab on {} (endpoint agent, sandbox, embedded MISP): a few seconds", data.root().display());
    let lab = Lab::open(LabConfig { data: data.clone() }).context("the live lab cannot start")?;
    eprintln!("embedded MISP on {} (the lab's keys: {})", lab.misp_url(), data.misp_keys().display());
    let opts = RunOptions { args, auto_publish: a.publish, keep_going: a.keep_going, ..RunOptions::default() };
    let handle = lab.start_run(&loaded, opts)?;
    println!("run {} of {}, folder {}", handle.id, loaded.scenario.id, handle.folder.root().display());

    // Ctrl-C stops the run (its steps, its waits), which still writes its folder
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone()).context("handling Ctrl-C")?;
    let (control, log) = (handle.control.clone(), handle.log.clone());
    let watcher = std::thread::spawn(move || {
        while !log.finished() {
            if interrupted.load(Ordering::Relaxed) {
                control.cancel();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let log = handle.log.clone();
    let printer = std::thread::spawn(move || timeline::follow(&log, &mut std::io::stdout().lock()));
    let folder = handle.folder.clone();
    let passed = handle.wait();
    let _ = watcher.join();
    match printer.join() {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("printing the timeline: {e}"),
        Err(_) => eprintln!("the timeline printer crashed"),
    }
    println!("run folder: {}", folder.root().display());
    drop(lab);
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_args_are_step_dot_name_equals_value() {
        assert_eq!(
            parse_step_arg("dig.domain=a=b.example").unwrap(),
            StepArg { step: "dig".into(), name: "domain".into(), value: "a=b.example".into() }
        );
        assert!(parse_step_arg("dig=x").unwrap_err().contains("STEP.NAME"));
        assert!(parse_step_arg(".x=1").is_err() && parse_step_arg("x.=1").is_err() && parse_step_arg("x.y").is_err());
    }
}

//! Stage `steps`: the scenario's endpoint commands, run inside the lab
//! network (its fake internet, a private resolv.conf), with the `#{args}`
//! filled in, from a copy of the scenario's files in the run folder (so
//! `./sample.sh` works, the sample made executable, and the scenario folder
//! is never written). Each step
//! runs in a process group killed at its timeout; its output goes to
//! `steps/<id>.log` and to `step_output` events.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Outcome;
use crate::engine::control::Wake;
use crate::engine::run::Run;
use crate::engine::step_exec::{hold_mount_ns, run_command, OnLine};
use crate::network::{LabNetConfig, LabNetwork};
use crate::run::{RunEventKind, RunFolder, StreamName};
use crate::scenario::{Stage, Step, Trigger};

/// The copy of the scenario's files the steps run from, in the run folder.
pub(crate) const WORK_DIR: &str = RunFolder::WORK_DIR;

pub(super) fn run(run: &mut Run) -> Outcome {
    match run_steps(run) {
        Ok(o) => o,
        Err(why) => Outcome::failed(why),
    }
}

fn run_steps(run: &mut Run) -> Result<Outcome, String> {
    if let Some(endpoint) = run.remote.clone() {
        return super::trainee_steps::run(run, endpoint);
    }
    let steps = run.loaded.scenario.steps.clone();
    let work = copy_files(run)?;
    let logs = run.artifact(RunFolder::STEPS_DIR);
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let config = LabNetConfig::from_scenario(&run.loaded).map_err(|e| format!("the scenario's lab network: {e}"))?;
    let net = LabNetwork::start(config).map_err(|e| format!("starting the lab network: {e}"))?;
    run.steps_filter.from_seq = run.lab.feed.next_seq();
    let (ns, ino) = hold_mount_ns(&net, Some(&run.lab.roots))?;
    run.network = Some(net);
    run.step_ns = Some(ns);
    run.steps_filter.mnts.insert(ino);
    let t0 = Instant::now();
    run.steps_started = Some(t0);
    // detections light up as they come, during the steps
    run.detections = Some(super::detection::Watch::start(run, t0, super::detection::Clock::started(t0)));
    if steps.is_empty() {
        return Ok(Outcome::skipped("the scenario has no endpoint steps", ""));
    }
    let mut done = Vec::new();
    for step in &steps {
        await_trigger(run, step)?;
        let code = run_one(run, step, &work)?;
        done.push(match code {
            Some(c) => format!("{} exited {c}", step.id),
            None => format!("{} killed at its timeout", step.id),
        });
    }
    Ok(Outcome::passed(done.join(", "), Some(RunFolder::STEPS_DIR)))
}

/// Waits for what triggers `step` (a delay, the instructor's click); `Err` when the run was stopped.
pub(super) fn await_trigger(run: &Run, step: &Step) -> Result<(), String> {
    match &step.trigger {
        // earlier stages are over by now; later ones cannot trigger a step before them
        Trigger::Stage { .. } => {}
        Trigger::Delay { secs } => {
            if run.control.sleep(Duration::from_secs(u64::from(*secs))) == Wake::Cancelled {
                return Err("the run was stopped".into());
            }
        }
        Trigger::Instructor => {
            run.log.emit(RunEventKind::StageWaiting {
                stage: Stage::Steps,
                reason: format!("the instructor must click to run step {}: {}", step.id, step.description),
            });
            loop {
                match run.control.wait_click(step.id.as_str(), Duration::from_secs(3600)) {
                    Wake::Done => break,
                    Wake::Cancelled => return Err("the run was stopped".into()),
                    Wake::Timeout => continue,
                }
            }
        }
    }
    Ok(())
}

/// Copies the sample and the assets into the run folder's work directory.
fn copy_files(run: &Run) -> Result<PathBuf, String> {
    let work = run.artifact(WORK_DIR);
    let s = &run.loaded.scenario;
    for rel in std::iter::once(&s.sample.file).chain(s.assets.iter().map(|a| &a.file)) {
        let (src, dst) = (run.loaded.dir.join(rel), work.join(rel));
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        // fs::copy keeps the mode: an executable asset stays executable
        std::fs::copy(&src, &dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    // the sample is there to be run (`./sample.sh`, through its shebang: an execve_script)
    let sample = work.join(&s.sample.file);
    std::fs::set_permissions(&sample, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", sample.display()))?;
    Ok(work)
}

/// Runs one step to its end or its timeout; its exit code (`None`: killed).
fn run_one(run: &mut Run, step: &Step, work: &Path) -> Result<Option<i32>, String> {
    let values = run.opts.args.get(step.id.as_str()).cloned().unwrap_or_default();
    let command = step.run.render(&values);
    run.log.emit(RunEventKind::StepStarted { step: step.id.clone(), command: command.clone() });
    let net = run.network.as_ref().ok_or("no lab network")?;
    let ns = run.step_ns.as_ref().ok_or("no mount namespace for the steps")?;
    let log_path = run.folder.step_log(&step.id);
    let file = Mutex::new(File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?);
    let (id, log) = (step.id.clone(), run.log.clone());
    // each line to the step's log and a step_output event
    let on_line: OnLine = Arc::new(move |which: StreamName, buf: &[u8]| {
        let _ = file.lock().unwrap_or_else(|e| e.into_inner()).write_all(buf);
        let line = String::from_utf8_lossy(buf).trim_end_matches(['\n', '\r']).to_string();
        log.emit(RunEventKind::StepOutput { step: id.clone(), stream: which, line });
    });
    let timeout = Duration::from_secs(u64::from(step.run.timeout_secs.max(1)));
    let control = run.control.clone();
    let code = run_command(net, ns, work, step.run.executor, &command, timeout, &|| control.cancelled(), on_line)
        .map_err(|e| format!("step {}: {e}", step.id))?;
    run.log.emit(RunEventKind::StepFinished { step: step.id.clone(), exit_code: code });
    Ok(code)
}

//! Stage `steps`: the scenario's endpoint commands, run inside the lab
//! network (its fake internet, a private resolv.conf), with the `#{args}`
//! filled in, from a copy of the scenario's files in the run folder (so
//! `./sample.sh` works, the sample made executable, and the scenario folder
//! is never written). Each step
//! runs in a process group killed at its timeout; its output goes to
//! `steps/<id>.log` and to `step_output` events.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ioclab_agent::sensor::roots::{LentRoot, NsRoots};

use super::Outcome;
use crate::engine::control::Wake;
use crate::engine::run::Run;
use crate::network::{LabNetConfig, LabNetwork};
use crate::run::{RunEventKind, RunFolder, RunLog, StreamName};
use crate::scenario::{Executor, Stage, Step, Trigger};

/// The copy of the scenario's files the steps run from, in the run folder.
pub(crate) const WORK_DIR: &str = RunFolder::WORK_DIR;

/// How long a finished step's output readers may take to reach the end of
/// its output (a background child may hold it open: it is killed with the network).
const DRAIN: Duration = Duration::from_secs(1);

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
    let (ns, ino) = hold_mount_ns(&net, &run.lab.roots)?;
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
    let shell = match step.run.executor {
        Executor::Sh => "/bin/sh",
        Executor::Bash => "bash",
    };
    let mut cmd = Command::new(shell);
    cmd.arg("-c").arg(&command).current_dir(work).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    run.log.emit(RunEventKind::StepStarted { step: step.id.clone(), command: command.clone() });
    let net = run.network.as_ref().ok_or("no lab network")?;
    let ns = run.step_ns.as_ref().ok_or("no mount namespace for the steps")?.ns.as_raw_fd();
    net.command(&mut cmd).map_err(|e| format!("step {}: {e}", step.id))?;
    let dir = CString::new(work.as_os_str().as_bytes()).map_err(|_| "NUL in the work folder's path")?;
    // SAFETY: setns and chdir only (async-signal-safe), on an fd and a string
    // prepared beforehand. After the lab network's own setup: every step joins
    // the run's mount namespace (resolv.conf included), whose id the lab holds
    // for the whole run, so it names the run's processes and no one else's.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns, libc::CLONE_NEWNS) != 0 || libc::chdir(dir.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("step {}: starting {shell}: {e}", step.id))?;
    let pid = child.id() as i32;
    let log_path = run.folder.step_log(&step.id);
    let log_file = Arc::new(Mutex::new(File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(reader(out, StreamName::Stdout, step, &run.log, &log_file));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(reader(err, StreamName::Stderr, step, &run.log, &log_file));
    }
    let deadline = Instant::now() + Duration::from_secs(u64::from(step.run.timeout_secs.max(1)));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline || run.control.cancelled() => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("step {}: {e}", step.id)),
        }
    };
    let code = match status {
        Some(s) => s.code().or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|sig| 128 + sig)),
        None => {
            // the whole group: the shell and what it started
            // SAFETY: kill(2) on the group we created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            None
        }
    };
    let until = Instant::now() + DRAIN;
    for r in readers {
        while !r.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
    run.log.emit(RunEventKind::StepFinished { step: step.id.clone(), exit_code: code });
    Ok(code)
}

/// A thread copying one output stream of a step to its log and its events.
fn reader(
    stream: impl Read + Send + 'static,
    which: StreamName,
    step: &Step,
    log: &RunLog,
    file: &Arc<Mutex<File>>,
) -> JoinHandle<()> {
    let (id, log, file) = (step.id.clone(), log.clone(), file.clone());
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let _ = file.lock().unwrap_or_else(|e| e.into_inner()).write_all(&buf);
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
            log.emit(RunEventKind::StepOutput { step: id.clone(), stream: which, line });
        }
    })
}

/// The steps' mount namespace, held for the run.
pub(crate) struct StepsNs {
    /// The namespace: the steps join it.
    ns: File,
    /// Its root, lent to the agent: a script a step ran is read there even
    /// once every process of the namespace has ended.
    _root: LentRoot,
}

/// A mount namespace of the lab network (its resolv.conf bound in), held
/// open: the steps join it, and while the lab holds it its inode number
/// cannot go to another namespace, so the agent's `namespaces.mnt` names
/// this run's processes only. A short-lived process makes it; the fds keep it.
fn hold_mount_ns(net: &LabNetwork, roots: &NsRoots) -> Result<(StepsNs, u64), String> {
    let mut cmd = Command::new("sleep");
    cmd.arg("600").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut holder = net.spawn(&mut cmd).map_err(|e| format!("making the steps' mount namespace: {e}"))?;
    let path = format!("/proc/{}/ns/mnt", holder.id());
    let held = File::open(&path).and_then(|f| f.metadata().map(|m| (m.ino(), f))).map_err(|e| format!("{path}: {e}"));
    let root = roots.lend_of(holder.id()).map_err(|e| format!("lending the steps' root to the agent: {e}"));
    let _ = holder.kill();
    let _ = holder.wait();
    let ((ino, ns), root) = (held?, root?);
    Ok((StepsNs { ns, _root: root }, ino))
}

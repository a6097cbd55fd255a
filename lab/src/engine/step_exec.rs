//! How an endpoint step runs: a shell command inside a lab network (its
//! fake internet, a private resolv.conf) and a mount namespace held for the
//! steps, in its own process group killed (with its children) at its
//! timeout. The lab's steps stage and a remote agent started with
//! `--allow-steps` ([`run_order`]) both run steps through here.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ioclab_agent::sensor::roots::{LentRoot, NsRoots};
use serde::Serialize;

use super::remote::StepsOrder;
use crate::network::{LabNetConfig, LabNetError, LabNetwork};
use crate::run::StreamName;
use crate::scenario::{Executor, ScenarioId};

/// How long a finished step's output readers may take to reach the end of
/// its output (a background child may hold it open: it is killed with the network).
const DRAIN: Duration = Duration::from_secs(1);

/// What a step's output lines are given to, as they come.
pub type OnLine = Arc<dyn Fn(StreamName, &[u8]) + Send + Sync>;

/// The steps' mount namespace, held while steps run.
pub struct StepsNs {
    /// The namespace: the steps join it.
    ns: File,
    /// Its root, lent to the lab's agent: a script a step ran is read there
    /// even once every process of the namespace has ended.
    _root: Option<LentRoot>,
}

/// A mount namespace of the lab network (its resolv.conf bound in), held
/// open, and its inode number: while it is held that number cannot go to
/// another namespace, so an agent's `namespaces.mnt` names the steps'
/// processes only. With `roots` (the lab's own agent) its root is lent to
/// the agent. A short-lived process makes it; the fds keep it.
pub fn hold_mount_ns(net: &LabNetwork, roots: Option<&NsRoots>) -> Result<(StepsNs, u64), String> {
    let mut cmd = Command::new("sleep");
    cmd.arg("600").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut holder = net.spawn(&mut cmd).map_err(|e| format!("making the steps' mount namespace: {e}"))?;
    let path = format!("/proc/{}/ns/mnt", holder.id());
    let held = File::open(&path).and_then(|f| f.metadata().map(|m| (m.ino(), f))).map_err(|e| format!("{path}: {e}"));
    let root = roots
        .map(|r| r.lend_of(holder.id()).map_err(|e| format!("lending the steps' root to the agent: {e}")))
        .transpose();
    let _ = holder.kill();
    let _ = holder.wait();
    let ((ino, ns), root) = (held?, root?);
    Ok((StepsNs { ns, _root: root }, ino))
}

/// Runs `command` with `executor` in `net`, inside `ns`, from `work`, to
/// its end or `timeout` (or `cancelled()`), then kills its process group;
/// its exit code (`None`: killed). Its output lines go to `on_line`.
#[allow(clippy::too_many_arguments)]
pub fn run_command(
    net: &LabNetwork,
    ns: &StepsNs,
    work: &Path,
    executor: Executor,
    command: &str,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
    on_line: OnLine,
) -> Result<Option<i32>, String> {
    let shell = match executor {
        Executor::Sh => "/bin/sh",
        Executor::Bash => "bash",
    };
    let mut cmd = Command::new(shell);
    cmd.arg("-c").arg(command).current_dir(work).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    net.command(&mut cmd).map_err(|e| e.to_string())?;
    let ns = ns.ns.as_raw_fd();
    let dir = CString::new(work.as_os_str().as_bytes()).map_err(|_| "NUL in the work folder's path")?;
    // SAFETY: setns and chdir only (async-signal-safe), on an fd and a string
    // prepared beforehand. After the lab network's own setup: every step joins
    // the held mount namespace (resolv.conf included), whose id is held while
    // the steps run, so it names their processes and no one else's.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns, libc::CLONE_NEWNS) != 0 || libc::chdir(dir.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("starting {shell}: {e}"))?;
    let pid = child.id() as i32;
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(reader(out, StreamName::Stdout, on_line.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(reader(err, StreamName::Stderr, on_line));
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline || cancelled() => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                // SAFETY: kill(2) on the group we created.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = child.wait();
                return Err(e.to_string());
            }
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
    Ok(code)
}

/// A thread giving one output stream's lines (with their newline) to `on_line`.
fn reader(stream: impl Read + Send + 'static, which: StreamName, on_line: OnLine) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => on_line(which, &buf),
            }
        }
    })
}

/// How many of a step's last output lines a remote agent reports.
pub const REPORTED_LINES: usize = 10;
/// How long a reported output line may be (longer ones are cut).
const REPORTED_LINE_CHARS: usize = 200;

/// How one step of a [`StepsOrder`] ended on a remote endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepOutcome {
    /// The step.
    pub step: ScenarioId,
    /// Its exit code (`None`: killed at its timeout).
    pub exit_code: Option<i32>,
    /// Its last output lines (stdout and stderr as they came), at most [`REPORTED_LINES`].
    pub output: Vec<String>,
}

impl std::fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.exit_code {
            Some(c) => write!(f, "{} exited {c}", self.step)?,
            None => write!(f, "{} killed at its timeout", self.step)?,
        }
        if let Some(last) = self.output.last() {
            write!(f, " ({last})")?;
        }
        Ok(())
    }
}

/// Runs a steps order on this machine, as an agent started with
/// `--allow-steps` does: a lab network of the order's DNS records and
/// services (an HTTP body file is refused: the scenario's folder stays on
/// the appliance), an empty work folder removed afterwards, each step with
/// its timeout, or when `cancelled()` (the agent stops). Everything it
/// started is killed with the network.
pub fn run_order(order: &StepsOrder, cancelled: &dyn Fn() -> bool) -> Result<Vec<StepOutcome>, String> {
    let refuse_files = |file: &Path, service: &str| -> Result<Vec<u8>, LabNetError> {
        Err(LabNetError::Io {
            what: format!("service {service}'s body file {}", file.display()),
            source: std::io::Error::other("files of a scenario are not sent to a remote endpoint"),
        })
    };
    let config = LabNetConfig::from_network(&order.scenario, &order.network, &refuse_files)
        .map_err(|e| format!("the order's lab network: {e}"))?;
    let work = tempfile::Builder::new()
        .prefix("ioclab-steps-")
        .tempdir()
        .map_err(|e| format!("making the steps' work folder: {e}"))?;
    let net = LabNetwork::start(config).map_err(|e| format!("starting the lab network: {e}"))?;
    let (ns, _) = hold_mount_ns(&net, None)?;
    let mut outcomes = Vec::with_capacity(order.steps.len());
    for step in &order.steps {
        let last = Arc::new(Mutex::new(std::collections::VecDeque::with_capacity(REPORTED_LINES)));
        let keep = last.clone();
        let on_line: OnLine = Arc::new(move |_, line| {
            let text: String = String::from_utf8_lossy(line)
                .trim_end_matches(['\n', '\r'])
                .chars()
                .take(REPORTED_LINE_CHARS)
                .collect();
            let mut last = keep.lock().unwrap_or_else(|e| e.into_inner());
            if last.len() == REPORTED_LINES {
                last.pop_front();
            }
            last.push_back(text);
        });
        let timeout = Duration::from_secs(u64::from(step.timeout_secs.max(1)));
        tracing::info!("step {}: {}", step.id, step.command);
        let code = run_command(&net, &ns, work.path(), step.executor, &step.command, timeout, cancelled, on_line)
            .map_err(|e| format!("step {}: {e}", step.id))?;
        let output = last.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        outcomes.push(StepOutcome { step: step.id.clone(), exit_code: code, output });
    }
    drop(ns);
    net.stop();
    Ok(outcomes)
}

//! A scenario's cleanup commands, run where its steps ran: inside the
//! scenario's lab network, with the `#{args}` defaults. Each command gets a
//! network of its own, stopped when it ends, so nothing it started (a
//! background process, a mount) outlives it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::network::{LabNetConfig, LabNetError, LabNetwork};
use crate::scenario::{Command, Executor, Loaded};

/// Output kept per command: enough to see why it failed.
const OUTPUT_CAP: usize = 16 * 1024;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its exit code (`None`: killed at its timeout, or by a signal).
    pub exit_code: Option<i32>,
    /// It ran past its timeout and was killed.
    pub timed_out: bool,
    /// Its standard output and error, interleaved as they came (capped).
    pub output: String,
}

impl Finished {
    /// Whether it succeeded (exit 0 within its timeout).
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// One line: "exit 0", "exit 3", "killed after its 30 s timeout".
    pub fn status(&self, timeout_secs: u32) -> String {
        match (self.timed_out, self.exit_code) {
            (true, _) => format!("killed after its {timeout_secs} s timeout"),
            (false, Some(c)) => format!("exit {c}"),
            (false, None) => "killed by a signal".into(),
        }
    }
}

/// The program and arguments running `text` with `executor`.
fn shell(executor: Executor, text: &str) -> Process {
    let mut p = Process::new(match executor {
        Executor::Sh => "/bin/sh",
        Executor::Bash => "bash",
    });
    p.arg("-c").arg(text);
    p
}

/// The command as it runs: `#{args}` replaced by their defaults.
pub fn rendered(cmd: &Command) -> String {
    cmd.render(&BTreeMap::new())
}

/// Runs `cmd` of `scenario` inside the scenario's lab network, in `cwd`
/// (where the steps ran), and waits for it (at most its timeout).
pub fn run(scenario: &Loaded, cmd: &Command, cwd: &Path) -> Result<Finished, LabNetError> {
    let net = LabNetwork::start(LabNetConfig::from_scenario(scenario)?)?;
    let mut p = shell(cmd.executor, &rendered(cmd));
    p.current_dir(cwd).env("IOCLAB_LAB", "1").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = net.spawn(&mut p)?;
    let output = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = [
        child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
        child.stderr.take().map(|e| Box::new(e) as _),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
                let room = OUTPUT_CAP.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        })
    })
    .collect();
    let deadline = Instant::now() + Duration::from_secs(u64::from(cmd.timeout_secs));
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(s)) => break (Some(s), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                break (child.wait().ok(), true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                net.stop();
                return Err(LabNetError::Io { what: format!("waiting for {:?}", rendered(cmd)), source: e });
            }
        }
    };
    // kills whatever the command left running inside: the pipes close with it
    net.stop();
    for r in readers {
        let _ = r.join();
    }
    let bytes = std::mem::take(&mut *output.lock().unwrap_or_else(|e| e.into_inner()));
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if bytes.len() >= OUTPUT_CAP {
        text.push_str("\n[output cut at 16 KiB]");
    }
    Ok(Finished { exit_code: if timed_out { None } else { status.and_then(|s| s.code()) }, timed_out, output: text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_say_how_the_command_ended() {
        let f = |exit_code, timed_out| Finished { exit_code, timed_out, output: String::new() };
        assert!(f(Some(0), false).ok());
        assert!(!f(Some(3), false).ok() && !f(None, true).ok() && !f(None, false).ok());
        assert_eq!(f(Some(3), false).status(30), "exit 3");
        assert_eq!(f(None, true).status(30), "killed after its 30 s timeout");
        assert_eq!(f(None, false).status(30), "killed by a signal");
    }
}

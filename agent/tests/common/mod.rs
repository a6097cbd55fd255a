//! Runs the real agent in-process for live eBPF tests.
//!
//! Under `CI=true` a test that cannot load the eBPF programs fails; elsewhere
//! (not root, no BTF) it prints why and skips.

#![allow(dead_code)]

pub mod dns_server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ioclab_agent::config::Config;
use ioclab_agent::sensor::{self, AgentError, Control, Summary};
use serde_json::Value;

/// An output the test can read while the agent writes it.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct LiveAgent {
    pub control: Control,
    out: SharedBuf,
    thread: Option<JoinHandle<Result<Summary, AgentError>>>,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn skip_or_fail(reason: &str) -> Option<LiveAgent> {
    if in_ci() {
        panic!("CI=true and the eBPF agent cannot run: {reason}");
    }
    eprintln!("SKIPPED (not in CI): the eBPF agent cannot run here: {reason}");
    None
}

/// Starts the agent with `config`; returns once its `start` event is written.
pub fn start(config: Config) -> Option<LiveAgent> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip_or_fail("not root (eBPF needs CAP_BPF and CAP_PERFMON)");
    }
    let out = SharedBuf::default();
    let control = Control::default();
    let (c, o) = (control.clone(), out.clone());
    let thread = std::thread::spawn(move || sensor::run(config, Box::new(o) as Box<dyn Write + Send>, c));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !out.0.lock().unwrap().is_empty() {
            break;
        }
        if thread.is_finished() {
            let err = match thread.join() {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => "agent stopped before writing its start event".into(),
                Err(_) => "agent thread panicked".into(),
            };
            return skip_or_fail(&err);
        }
        assert!(Instant::now() < deadline, "agent did not start within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(LiveAgent { control, out, thread: Some(thread) })
}

/// A default config for tests: every produced event on; events wait for
/// their hashes however loaded the machine (no test depends on timing).
pub fn config() -> Config {
    Config { hash_budget_ms: 600_000, ..Config::default() }
}

impl LiveAgent {
    /// Every event written so far.
    pub fn events(&self) -> Vec<Value> {
        let buf = self.out.0.lock().unwrap().clone();
        String::from_utf8(buf)
            .expect("agent output is UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("agent wrote a non-JSON line ({e}): {l}")))
            .collect()
    }

    /// Waits (up to 30 s) for an event matching `pred`. A bound on "never
    /// came", not a speed target: a CI machine busy with other live tests
    /// (thousands of events) once took over 10 s to show one.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if Instant::now() > deadline {
                let names: Vec<String> =
                    self.events().iter().map(|e| format!("{} {}", name(e), e["info"]["task"]["tgid"])).collect();
                panic!(
                    "no {what} event within 30 s; got {} events: {:?}",
                    names.len(),
                    &names[names.len().saturating_sub(40)..]
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the agent; returns its summary and every event it wrote.
    pub fn stop(mut self) -> (Summary, Vec<Value>) {
        self.control.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let summary = self.thread.take().unwrap().join().expect("agent thread").expect("agent run");
        let events = self.events();
        (summary, events)
    }
}

impl Drop for LiveAgent {
    fn drop(&mut self) {
        self.control.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn name(e: &Value) -> &str {
    e["info"]["event"]["name"].as_str().unwrap_or("")
}

pub fn tgid(e: &Value) -> i64 {
    e["info"]["task"]["tgid"].as_i64().unwrap_or(-1)
}

/// An event of `kind` about process `pid`.
pub fn is(kind: &'static str, pid: u32) -> impl Fn(&Value) -> bool {
    move |e| name(e) == kind && tgid(e) == pid as i64
}

/// Digest of a file computed by coreutils (`sha256sum` etc.), not by ioclab.
pub fn digest(tool: &str, path: &Path) -> String {
    let out = Command::new(tool).arg(path).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(out.status.success(), "{tool} {} failed", path.display());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

pub fn realpath(p: &str) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}

/// `c` with one IoC file, written in `dir`, holding `value` at `severity`.
pub fn with_ioc(mut c: Config, dir: &Path, value: &str, severity: u8) -> Config {
    let iocs = dir.join("iocs.json");
    let line = serde_json::json!({"uuid": "u1", "source": "test", "value": value, "severity": severity});
    std::fs::write(&iocs, format!("{line}\n")).unwrap();
    c.scanner.iocs = vec![iocs];
    c
}

/// Writes an executable shell script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Runs `f` in a forked child process and waits for it; returns its pid.
/// The agent runs inside the test process and never reports its own
/// syscalls, so file and system actions must come from another process.
pub fn in_child(f: impl FnOnce()) -> u32 {
    // SAFETY: the child only runs `f` (syscalls and glibc, whose malloc is
    // fork-safe) and leaves with _exit, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child's action failed: status {status}");
    pid as u32
}

//! The endpoint agent, started once per lab: `ioclab_agent::sensor::run` in
//! a thread, loading the lab's IoC file and writing its events to a
//! [`Feed`] the runs read. Its taps are shared with the sandbox, so a
//! detonation's events never reach the feed.
//!
//! The feed keeps what a run may need, not the whole machine: the agent's
//! own events (start, IoC reloads), every detection, and every event of a
//! process outside the host's mount namespace (endpoint steps run in a
//! private one each). Events of host processes without a detection are
//! dropped after a cheap look at their bytes, without parsing.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ioclab_agent::config::Config;
use ioclab_agent::sensor::{self, AgentError, Control, Summary};
use serde_json::Value;

use super::EngineError;

/// Events the feed keeps at most (the oldest go first).
const FEED_CAPACITY: usize = 8192;

/// One event the feed kept.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    /// Its position in the feed (increasing).
    pub seq: u64,
    /// When the feed received it.
    pub at: Instant,
    /// The Kunai JSON event.
    pub event: Arc<Value>,
}

impl FeedEvent {
    /// `info.event.name`.
    pub fn name(&self) -> &str {
        self.event.pointer("/info/event/name").and_then(Value::as_str).unwrap_or("")
    }

    /// The mount namespace of the event's task.
    pub fn mnt_ns(&self) -> Option<u64> {
        self.event.pointer("/info/task/namespaces/mnt").and_then(Value::as_u64)
    }

    /// Whether it carries a detection.
    pub fn detected(&self) -> bool {
        self.event.get("detection").is_some_and(|d| !d.is_null())
    }
}

#[derive(Debug, Default)]
struct FeedState {
    next_seq: u64,
    events: VecDeque<FeedEvent>,
}

/// The agent's events a run may need, shared between the agent's writer and the runs.
#[derive(Debug, Clone)]
pub struct Feed {
    inner: Arc<(Mutex<FeedState>, Condvar)>,
    /// `"namespaces":{"mnt":<host's>}`: the bytes of a host process's task.
    host_mnt: Arc<Vec<u8>>,
}

/// `info.event.name` values of the agent's own events.
const AGENT_EVENTS: &[&str] = &["start", "ioc_reload", "error", "event_loss"];

impl Feed {
    /// An empty feed; `host_mnt` is the host's mount namespace (this process's).
    pub fn new(host_mnt: Option<u64>) -> Feed {
        let host_mnt = match host_mnt {
            Some(n) => format!("\"namespaces\":{{\"mnt\":{n}}}").into_bytes(),
            None => Vec::new(),
        };
        Feed { inner: Arc::default(), host_mnt: Arc::new(host_mnt) }
    }

    /// Whether `line` may matter to a run (false: drop it unparsed).
    fn wanted(&self, line: &[u8]) -> bool {
        let has = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
        // the task comes before the parent in `info`: the first namespaces are the task's
        let host_task = !self.host_mnt.is_empty()
            && line
                .windows(b"\"namespaces\"".len())
                .position(|w| w == b"\"namespaces\"")
                .is_some_and(|i| line[i..].starts_with(&self.host_mnt));
        !host_task
            || has(b"\"detection\":{")
            || AGENT_EVENTS.iter().any(|n| has(format!("\"name\":\"{n}\"").as_bytes()))
    }

    /// Parses and keeps one line the agent wrote (when it may matter).
    pub fn push_line(&self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) || !self.wanted(line) {
            return;
        }
        let event: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("endpoint agent wrote a line that is not JSON: {e}");
                return;
            }
        };
        self.push_value(event);
    }

    /// Keeps one parsed event (a remote endpoint's: every one of the run's window matters).
    pub fn push_value(&self, event: Value) {
        let (lock, cv) = &*self.inner;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        let seq = s.next_seq;
        s.next_seq += 1;
        if s.events.len() == FEED_CAPACITY {
            s.events.pop_front();
        }
        s.events.push_back(FeedEvent { seq, at: Instant::now(), event: Arc::new(event) });
        cv.notify_all();
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).next_seq
    }

    /// The events kept from `seq` on.
    pub fn since(&self, seq: u64) -> Vec<FeedEvent> {
        let s = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        s.events.iter().filter(|e| e.seq >= seq).cloned().collect()
    }

    /// The first event from `seq` on that `pred` accepts, waiting until `deadline`.
    pub fn wait_for(&self, seq: u64, deadline: Instant, pred: impl Fn(&FeedEvent) -> bool) -> Option<FeedEvent> {
        let (lock, cv) = &*self.inner;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut from = seq;
        loop {
            if let Some(e) = s.events.iter().filter(|e| e.seq >= from).find(|e| pred(e)) {
                return Some(e.clone());
            }
            from = s.next_seq;
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            s = cv.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The agent's output: lines cut from its writes, handed to the feed.
struct FeedWriter {
    feed: Feed,
    partial: Vec<u8>,
}

impl Write for FeedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.feed.push_line(&rest[..i]);
            } else {
                self.partial.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.partial);
                self.feed.push_line(&line);
            }
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The mount namespace of process `pid` (`self` for this one).
pub fn mnt_ns_of(pid: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    let s = link.to_string_lossy();
    s.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// The running agent.
pub struct Endpoint {
    /// Its controls (stop, reload, the taps the sandbox shares).
    pub control: Control,
    /// What it wrote that runs may need.
    pub feed: Feed,
    thread: Option<JoinHandle<Result<Summary, AgentError>>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").finish_non_exhaustive()
    }
}

/// How long the agent may take to load its programs and say `start`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Endpoint {
    /// Starts the agent on `iocs` (created empty when missing); returns once it wrote its `start` event.
    pub fn start(iocs: &Path) -> Result<Endpoint, EngineError> {
        if !iocs.exists() {
            if let Some(dir) = iocs.parent() {
                std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
            }
            std::fs::write(iocs, b"").map_err(|e| EngineError::io(iocs, e))?;
        }
        let mut config = Config::default();
        config.scanner.iocs = vec![iocs.to_path_buf()];
        config.scanner.write_unmatched = true;
        // the lab writes this file itself (export, reset): no IoC is a real
        // state (a fresh lab, or reset back to one), not a truncated file
        config.scanner.accept_partial_iocs = true;
        let feed = Feed::new(mnt_ns_of("self"));
        let control = Control::default();
        let writer: Box<dyn Write + Send> = Box::new(FeedWriter { feed: feed.clone(), partial: Vec::new() });
        let c = control.clone();
        let thread = std::thread::Builder::new()
            .name("ioclab-lab-agent".into())
            .spawn(move || sensor::run(config, writer, c))
            .map_err(|e| EngineError::Setup(format!("starting the agent's thread: {e}")))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut ep = Endpoint { control, feed, thread: Some(thread) };
        loop {
            let soon = (Instant::now() + Duration::from_millis(200)).min(deadline);
            if ep.feed.wait_for(0, soon, |e| e.name() == "start").is_some() {
                break;
            }
            let finished = ep.thread.as_ref().is_none_or(|t| t.is_finished());
            if finished || Instant::now() >= deadline {
                let why = match finished.then(|| ep.thread.take().map(JoinHandle::join)).flatten() {
                    Some(Ok(Err(e))) => e.to_string(),
                    Some(Ok(Ok(_))) => "the agent stopped before its start event".into(),
                    Some(Err(_)) => "the agent's thread panicked".into(),
                    None => format!("no start event within {} s", START_TIMEOUT.as_secs()),
                };
                return Err(EngineError::Unsupported(format!("the endpoint agent cannot run here: {why}")));
            }
        }
        Ok(ep)
    }

    /// Asks the agent to reload its IoC file; returns the feed position to wait for its outcome from.
    pub fn request_reload(&self) -> u64 {
        let seq = self.feed.next_seq();
        self.control.reload.store(true, Ordering::Relaxed);
        seq
    }

    /// Stops the agent and waits for it.
    pub fn stop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, mnt: u64, detection: bool) -> String {
        let d = if detection { r#","detection":{"iocs":["x"],"severity":5}"# } else { "" };
        format!(
            r#"{{"data":{{}},"info":{{"event":{{"name":"{name}"}},"task":{{"namespaces":{{"mnt":{mnt}}}}},"parent_task":{{"namespaces":{{"mnt":1}}}}}}{d}}}"#
        )
    }

    #[test]
    fn the_feed_keeps_detections_agent_events_and_other_namespaces_only() {
        let feed = Feed::new(Some(1));
        let mut w = FeedWriter { feed: feed.clone(), partial: Vec::new() };
        let all = [
            line("execve", 1, false),
            line("dns_query", 1, true),
            line("ioc_reload", 1, false),
            line("connect", 7, false),
        ]
        .join("\n")
            + "\n";
        // written in odd pieces, as a buffered writer may
        let (a, b) = all.as_bytes().split_at(37);
        w.write_all(a).unwrap();
        w.write_all(b).unwrap();
        let kept: Vec<(String, Option<u64>, bool)> =
            feed.since(0).iter().map(|e| (e.name().to_string(), e.mnt_ns(), e.detected())).collect();
        assert_eq!(
            kept,
            [
                ("dns_query".to_string(), Some(1), true),
                ("ioc_reload".into(), Some(1), false),
                ("connect".into(), Some(7), false)
            ]
        );
        assert_eq!(feed.next_seq(), 3);
        let found = feed.wait_for(1, Instant::now(), |e| e.name() == "connect").unwrap();
        assert_eq!(found.seq, 2);
        assert!(feed.wait_for(3, Instant::now() + Duration::from_millis(20), |_| true).is_none());
    }

    #[test]
    fn a_line_that_is_not_json_is_dropped_not_fatal() {
        let feed = Feed::new(Some(1));
        feed.push_line(b"{\"namespaces\":{\"mnt\":9} not json");
        feed.push_line(b"   ");
        assert_eq!(feed.next_seq(), 0);
    }

    #[test]
    fn this_process_has_a_mount_namespace() {
        assert!(mnt_ns_of("self").is_some_and(|n| n > 0));
    }
}

//! A run's event log: kept in memory, appended to `timeline.jsonl`, and
//! broadcast to whoever watches the run (the CLI's timeline, the web's SSE).
//! Live runs and replays emit through it alike.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::broadcast;

use super::event::{RunEvent, RunEventKind};
use super::folder::append_line;

/// Events a slow watcher may fall behind before it misses some (it is told, and re-reads [`RunLog::events`]).
const WATCH_BACKLOG: usize = 1024;

/// The event log of one run; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct RunLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    state: Mutex<State>,
    tx: broadcast::Sender<RunEvent>,
}

#[derive(Debug)]
struct State {
    events: Vec<RunEvent>,
    file: Option<File>,
    /// The first write error (the run goes on; the timeline file is incomplete).
    write_error: Option<String>,
}

impl RunLog {
    /// A log appending to `timeline` (if given), whose clock starts now.
    pub fn new(timeline: Option<&Path>) -> std::io::Result<RunLog> {
        let file = match timeline {
            Some(p) => Some(File::options().create(true).append(true).open(p)?),
            None => None,
        };
        let (tx, _) = broadcast::channel(WATCH_BACKLOG);
        Ok(RunLog {
            inner: Arc::new(Inner {
                start: Instant::now(),
                state: Mutex::new(State { events: Vec::new(), file, write_error: None }),
                tx,
            }),
        })
    }

    /// Milliseconds since the log was created.
    pub fn elapsed_ms(&self) -> u64 {
        self.inner.start.elapsed().as_millis() as u64
    }

    /// Records `kind` now.
    pub fn emit(&self, kind: RunEventKind) -> RunEvent {
        self.emit_at(self.elapsed_ms(), kind)
    }

    /// Records `kind` at `at_ms` (a replay keeps the recorded times).
    pub fn emit_at(&self, at_ms: u64, kind: RunEventKind) -> RunEvent {
        let event = RunEvent { at_ms, kind };
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = s.file.as_mut() {
            if let Err(e) = append_line(f, &event) {
                tracing::warn!("run timeline: {e}");
                s.write_error.get_or_insert(e.to_string());
            }
        }
        s.events.push(event.clone());
        // sent under the lock: a watcher that subscribed sees each event once, in order
        let _ = self.inner.tx.send(event.clone());
        event
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<RunEvent> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner()).events.clone()
    }

    /// The events so far and a receiver of the next ones (none missed, none twice).
    pub fn watch(&self) -> (Vec<RunEvent>, broadcast::Receiver<RunEvent>) {
        let s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.events.clone(), self.inner.tx.subscribe())
    }

    /// Whether the run has emitted `Finished`.
    pub fn finished(&self) -> bool {
        let s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.events.iter().any(|e| matches!(e.kind, RunEventKind::Finished { .. }))
    }

    /// The first error writing `timeline.jsonl`, if any.
    pub fn write_error(&self) -> Option<String> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner()).write_error.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::folder::read_lines;
    use crate::scenario::Stage;

    #[test]
    fn watchers_get_the_past_then_the_future_and_the_file_gets_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.jsonl");
        let log = RunLog::new(Some(&path)).unwrap();
        log.emit_at(5, RunEventKind::StageStarted { stage: Stage::Sandbox });
        let (past, mut rx) = log.watch();
        assert_eq!(past.len(), 1);
        log.emit(RunEventKind::Finished { passed: true });
        let next = rx.try_recv().unwrap();
        assert_eq!(next.kind, RunEventKind::Finished { passed: true });
        assert!(rx.try_recv().is_err() && log.finished());
        let on_disk: Vec<RunEvent> = read_lines(&path).unwrap();
        assert_eq!(on_disk, log.events());
        assert_eq!(on_disk[0].at_ms, 5);
    }
}

//! Where the events go, and what happens when they cannot go there.
//!
//! Lines are buffered (64 KB) and written at the end of each batch. A write
//! that fails keeps the unwritten bytes and later lines buffered until the
//! buffer is full; after that lines are dropped and counted, and when
//! writing works again the count is reported (an `event_loss` event) before
//! anything else. A reader that went away (EPIPE, as `| head -1` does)
//! stops the agent. A file output is reopened on request (SIGHUP, after
//! logrotate) and when it was deleted, so events never go to a file no one
//! can open.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes buffered at most: what a failing output holds before lines are dropped.
const BUFFER: usize = 64 * 1024;
/// At most one log line per this period about failing writes.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

enum Target {
    /// Standard output (`-` or no path).
    Stdout(std::io::Stdout),
    /// A file, appended to.
    File { path: PathBuf, file: File },
    /// Any writer (tests, benches).
    Stream(Box<dyn Write + Send>),
}

impl Target {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Target::Stdout(out) => out,
            Target::File { file, .. } => file,
            Target::Stream(w) => w,
        }
    }
}

/// How writing went since the last loss report.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Loss {
    /// Lines offered since writing began to fail.
    pub offered: u64,
    /// Lines dropped among them.
    pub dropped: u64,
    /// Seconds since writing began to fail.
    pub secs: f64,
}

/// The event output: a buffered, failure-aware writer of JSON lines.
pub struct Output {
    target: Target,
    buf: Vec<u8>,
    /// The buffer starts inside a line whose head was written.
    partial: bool,
    /// Lines dropped since the last report.
    dropped: u64,
    /// Lines dropped in all.
    dropped_total: u64,
    /// When writing began to fail, and lines offered since.
    failing_since: Option<Instant>,
    offered: u64,
    /// The reader is gone (EPIPE): nothing more can be written.
    closed: bool,
    last_error_log: Option<Instant>,
    errors_unlogged: u64,
}

impl From<Box<dyn Write + Send>> for Output {
    fn from(w: Box<dyn Write + Send>) -> Self {
        Output::new(Target::Stream(w))
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Output {
    fn new(target: Target) -> Self {
        Output {
            target,
            buf: Vec::with_capacity(BUFFER),
            partial: false,
            dropped: 0,
            dropped_total: 0,
            failing_since: None,
            offered: 0,
            closed: false,
            last_error_log: None,
            errors_unlogged: 0,
        }
    }

    /// Standard output.
    pub fn stdout() -> Self {
        Output::new(Target::Stdout(std::io::stdout()))
    }

    /// Appends to `path` (created if need be; earlier events are kept).
    pub fn file(path: &Path) -> std::io::Result<Self> {
        Ok(Output::new(Target::File { path: path.into(), file: open_append(path)? }))
    }

    /// `path`, or stdout for None or `-`.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        match path {
            Some(p) if p != Path::new("-") => Output::file(p),
            _ => Ok(Output::stdout()),
        }
    }

    /// Buffers one line (with its newline); drops and counts it (false)
    /// when the buffer is full of what a failing output could not take.
    pub fn write_line(&mut self, line: &[u8]) -> bool {
        if self.failing_since.is_some() {
            self.offered += 1;
        }
        if self.buf.len() + line.len() > BUFFER {
            self.flush();
        }
        if self.closed || self.buf.len() + line.len() > BUFFER.max(line.len()) {
            self.drop_lines(1);
            return false;
        }
        self.buf.extend_from_slice(line);
        true
    }

    fn drop_lines(&mut self, n: u64) {
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            self.offered = n;
        }
        if self.dropped == 0 && !self.closed {
            tracing::warn!(
                "event output is failing and its buffer is full: dropping events, counted; \
                 an event_loss event reports them once writing works"
            );
        }
        self.dropped += n;
        self.dropped_total += n;
    }

    /// Writes what is buffered; false when some of it could not be written.
    pub fn flush(&mut self) -> bool {
        while !self.buf.is_empty() && !self.closed {
            match self.target.writer().write(&self.buf) {
                Ok(0) => {
                    self.failed(std::io::Error::from(ErrorKind::WriteZero));
                    return false;
                }
                Ok(n) => {
                    self.partial = self.buf[n - 1] != b'\n';
                    self.buf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed(e);
                    return false;
                }
            }
        }
        if self.closed {
            return false;
        }
        if let Err(e) = self.target.writer().flush() {
            self.failed(e);
            return false;
        }
        if self.failing_since.is_some() && self.dropped == 0 {
            // failed for a while, but nothing was dropped: no loss to report
            self.failing_since = None;
        }
        true
    }

    fn failed(&mut self, e: std::io::Error) {
        if e.kind() == ErrorKind::BrokenPipe {
            if !self.closed {
                tracing::info!("event output closed by its reader (broken pipe): stopping");
            }
            self.closed = true;
            return;
        }
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            self.offered = 0;
        }
        let now = Instant::now();
        if self.last_error_log.is_some_and(|t| now.duration_since(t) < ERROR_LOG_EVERY) {
            self.errors_unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut self.errors_unlogged);
        let more =
            if more > 0 { format!(" ({more} more failed writes since the last message)") } else { String::new() };
        tracing::error!("cannot write events: {e}{more}; events are kept in memory, then dropped and counted");
        self.last_error_log = Some(now);
    }

    /// After a successful flush that follows drops: the loss to report, once.
    pub fn take_loss(&mut self) -> Option<Loss> {
        if self.dropped == 0 || !self.buf.is_empty() || self.closed {
            return None;
        }
        let since = self.failing_since.take()?;
        let loss = Loss { offered: self.offered, dropped: self.dropped, secs: since.elapsed().as_secs_f64() };
        self.dropped = 0;
        self.offered = 0;
        Some(loss)
    }

    /// The reader went away (a pipe's POLLERR): the agent stops without
    /// waiting for a write to fail.
    pub fn reader_gone(&mut self) {
        self.failed(std::io::Error::from(ErrorKind::BrokenPipe));
    }

    /// Whether the reader went away: the agent stops.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Lines dropped in all.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// The descriptor to watch for the reader going away (a pipe), if any.
    pub fn watch_fd(&self) -> Option<RawFd> {
        match &self.target {
            Target::Stdout(_) => Some(1),
            Target::File { .. } | Target::Stream(_) => None,
        }
    }

    /// A file output is opened again by its name (logrotate moved it; SIGHUP).
    pub fn reopen(&mut self) {
        let Target::File { path, .. } = &self.target else { return };
        let path = path.clone();
        self.flush();
        match open_append(&path) {
            Ok(file) => {
                if self.partial {
                    // the head of this line went to the old file: its tail must not start the new one
                    let end = self.buf.iter().position(|&b| b == b'\n').map_or(self.buf.len(), |i| i + 1);
                    self.buf.drain(..end);
                    self.partial = false;
                    self.drop_lines(1);
                }
                self.target = Target::File { path: path.clone(), file };
                tracing::info!("event output {} reopened", path.display());
                self.flush();
            }
            Err(e) => self.failed(std::io::Error::new(e.kind(), format!("reopening {}: {e}", path.display()))),
        }
    }

    /// Reopens a file output that was deleted (no name left): checked about once a second.
    pub fn reopen_if_deleted(&mut self) {
        let Target::File { file, path } = &self.target else { return };
        if file.metadata().is_ok_and(|m| m.nlink() == 0) {
            tracing::warn!("event output {} was deleted: creating it again", path.display());
            self.reopen();
        }
    }

    /// Last flush before stopping; what stays buffered is counted as dropped.
    /// Returns how many lines that was (they had been buffered, not written).
    pub fn finish(&mut self) -> u64 {
        self.flush();
        let mut lost = self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
        if self.partial && lost == 0 && !self.buf.is_empty() {
            lost = 1;
        }
        self.buf.clear();
        self.dropped_total += lost;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that fails while `full` is set, like a full disk.
    #[derive(Clone, Default)]
    struct Disk {
        data: Arc<Mutex<Vec<u8>>>,
        full: Arc<Mutex<Option<ErrorKind>>>,
    }

    impl Write for Disk {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Some(kind) = *self.full.lock().unwrap() {
                return Err(kind.into());
            }
            // at most 1000 bytes a call: lines are split across writes
            let n = b.len().min(1000);
            self.data.lock().unwrap().extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(i: usize) -> Vec<u8> {
        format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(300)).into_bytes()
    }

    #[test]
    fn a_full_output_keeps_then_drops_and_reports_the_loss_once_writing_resumes() {
        let disk = Disk::default();
        let mut out = Output::from(Box::new(disk.clone()) as Box<dyn Write + Send>);
        out.write_line(&line(0));
        assert!(out.flush());
        *disk.full.lock().unwrap() = Some(ErrorKind::StorageFull);
        for i in 1..=1000 {
            out.write_line(&line(i));
            if i % 10 == 0 {
                out.flush();
            }
        }
        assert!(out.take_loss().is_none(), "nothing to report while writing fails");
        *disk.full.lock().unwrap() = None;
        assert!(out.flush());
        let loss = out.take_loss().expect("a loss report once writing works");
        assert!(loss.dropped > 0 && loss.dropped < 1000, "{loss:?}");
        assert!(loss.offered >= loss.dropped && loss.offered <= 1000, "{loss:?}");
        assert!(out.take_loss().is_none(), "reported once");
        let text = String::from_utf8(disk.data.lock().unwrap().clone()).unwrap();
        // every line whole: each parses
        let written = text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count() as u64;
        assert_eq!(written, text.lines().count() as u64, "{text}");
        assert_eq!(written + loss.dropped, 1001, "every line either written whole or counted");
        assert_eq!(out.dropped_total(), loss.dropped);
    }

    #[test]
    fn a_broken_pipe_closes_the_output() {
        let disk = Disk::default();
        let mut out = Output::from(Box::new(disk.clone()) as Box<dyn Write + Send>);
        *disk.full.lock().unwrap() = Some(ErrorKind::BrokenPipe);
        out.write_line(&line(0));
        assert!(!out.flush());
        assert!(out.closed());
        out.write_line(&line(1));
        assert!(out.take_loss().is_none());
    }

    #[test]
    fn a_deleted_or_moved_file_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.json");
        let mut out = Output::file(&p).unwrap();
        out.write_line(b"{\"a\":1}\n");
        out.flush();
        std::fs::remove_file(&p).unwrap();
        out.reopen_if_deleted();
        out.write_line(b"{\"a\":2}\n");
        out.flush();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}\n");
        let moved = dir.path().join("events.json.1");
        std::fs::rename(&p, &moved).unwrap();
        out.reopen_if_deleted();
        out.write_line(b"{\"a\":3}\n");
        out.flush();
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "{\"a\":2}\n{\"a\":3}\n", "moved, not deleted");
        out.reopen();
        out.write_line(b"{\"a\":4}\n");
        out.finish();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":4}\n", "reopened on request");
    }
}

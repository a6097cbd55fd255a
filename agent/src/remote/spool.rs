//! The agent's on-disk spool: events wait here, in sealed batch files,
//! until the appliance acknowledges them.
//!
//! The sensor's output writes into a [`SpoolWriter`] (an `io::Write`):
//! complete lines gather in the open batch, sealed to `<seq>.batch` when it
//! holds `batch_events` lines or is `batch_age` old. The spool is bounded
//! (`max_bytes`): when full, the writer refuses bytes with `StorageFull`,
//! and the sensor's output then counts the lines it drops and reports them
//! with an `event_loss` event once the spool takes lines again — never a
//! silent drop. Batches survive an agent restart and are sent then.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::wire::BatchHeader;

/// How big batches are and how much the spool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// Bytes of sealed batches kept at most (the bound).
    pub max_bytes: u64,
    /// Events per batch at most.
    pub batch_events: usize,
    /// A batch is sealed when its first event is this old.
    pub batch_age: Duration,
}

impl Default for SpoolLimits {
    fn default() -> SpoolLimits {
        SpoolLimits { max_bytes: 256 * 1024 * 1024, batch_events: 1000, batch_age: Duration::from_millis(500) }
    }
}

/// A sealed batch waiting for its ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Its sequence number.
    pub seq: u64,
    /// Its file.
    pub path: PathBuf,
}

/// The spool; cheap to clone (the writer and the shipper share it).
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    limits: SpoolLimits,
    /// This spool's id (kept in `<dir>/id`): batch ids are `<id>-<seq>`.
    id: String,
    endpoint: String,
    next_seq: u64,
    /// Sealed batches: seq → size in bytes.
    sealed: BTreeMap<u64, u64>,
    sealed_bytes: u64,
    /// Complete lines of the open batch.
    open: Vec<u8>,
    open_events: usize,
    opened_at: Option<Instant>,
    /// The head of a line whose end has not been written yet.
    partial: Vec<u8>,
}

const EXT: &str = "batch";

fn io_err(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("spool {}: {what}: {e}", path.display()))
}

impl Spool {
    /// Opens (or makes) the spool in `dir`; batches left there by an earlier run are kept, to be sent.
    pub fn open(dir: &Path, endpoint: &str, limits: SpoolLimits) -> io::Result<Spool> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, "creating it", e))?;
        let id_path = dir.join("id");
        let id = match fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                fs::write(&id_path, &id).map_err(|e| io_err(&id_path, "writing", e))?;
                id
            }
        };
        let mut sealed = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| io_err(dir, "listing", e))? {
            let entry = entry.map_err(|e| io_err(dir, "listing", e))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == EXT) {
                if let Some(seq) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) {
                    sealed.insert(seq, entry.metadata().map(|m| m.len()).unwrap_or(0));
                }
            }
        }
        let next_seq = sealed.keys().next_back().map_or(0, |s| s + 1);
        let sealed_bytes = sealed.values().sum();
        Ok(Spool {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                limits,
                id,
                endpoint: endpoint.to_string(),
                next_seq,
                sealed,
                sealed_bytes,
                open: Vec::new(),
                open_events: 0,
                opened_at: None,
                partial: Vec::new(),
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding the lock leaves consistent data: nothing is half-updated in memory
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A writer for the sensor's output.
    pub fn writer(&self) -> SpoolWriter {
        SpoolWriter { spool: self.clone() }
    }

    /// Seals the open batch if it is old enough (the shipper calls this often).
    pub fn seal_if_due(&self) -> io::Result<()> {
        let mut s = self.lock();
        if s.opened_at.is_some_and(|t| t.elapsed() >= s.limits.batch_age) {
            s.seal()?;
        }
        Ok(())
    }

    /// Seals the open batch now, whatever its age (at stop).
    pub fn seal_now(&self) -> io::Result<()> {
        self.lock().seal()
    }

    /// The oldest sealed batch, if any.
    pub fn oldest(&self) -> Option<Sealed> {
        let s = self.lock();
        s.sealed.keys().next().map(|&seq| Sealed { seq, path: s.path(seq) })
    }

    /// Forgets a batch the appliance acknowledged.
    pub fn acked(&self, batch: &Sealed) -> io::Result<()> {
        let mut s = self.lock();
        match fs::remove_file(&batch.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&batch.path, "removing an acknowledged batch", e)),
        }
        if let Some(size) = s.sealed.remove(&batch.seq) {
            s.sealed_bytes -= size;
        }
        Ok(())
    }

    /// Sets a batch the appliance refused aside (`<seq>.rejected`), so the next ones go.
    pub fn reject(&self, batch: &Sealed) -> io::Result<()> {
        let mut s = self.lock();
        let to = batch.path.with_extension("rejected");
        fs::rename(&batch.path, &to).map_err(|e| io_err(&batch.path, "setting a refused batch aside", e))?;
        if let Some(size) = s.sealed.remove(&batch.seq) {
            s.sealed_bytes -= size;
        }
        Ok(())
    }

    /// Sealed batches waiting, and their bytes.
    pub fn pending(&self) -> (usize, u64) {
        let s = self.lock();
        (s.sealed.len(), s.sealed_bytes)
    }

    /// Whether nothing waits: no sealed batch, no open one.
    pub fn is_empty(&self) -> bool {
        let s = self.lock();
        s.sealed.is_empty() && s.open.is_empty()
    }
}

impl Inner {
    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{EXT}"))
    }

    /// Writes the open batch to its file (through a temporary name: a crash leaves no half batch).
    fn seal(&mut self) -> io::Result<()> {
        if self.open.is_empty() {
            return Ok(());
        }
        let seq = self.next_seq;
        let header = BatchHeader {
            batch: format!("{}-{seq}", self.id),
            endpoint: self.endpoint.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&header.to_line())?;
            f.write_all(&self.open)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&path, "sealing a batch", e));
        }
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(self.open.len() as u64);
        self.sealed.insert(seq, size);
        self.sealed_bytes += size;
        self.next_seq += 1;
        self.open.clear();
        self.open_events = 0;
        self.opened_at = None;
        Ok(())
    }

    fn full(&self) -> bool {
        self.sealed_bytes + self.open.len() as u64 >= self.limits.max_bytes
    }
}

/// The sensor output's end of the spool (see the module's documentation).
pub struct SpoolWriter {
    spool: Spool,
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.spool.lock();
        if s.full() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "spool {} is full ({} bytes, the bound): the appliance has not acknowledged them yet",
                    s.dir.display(),
                    s.sealed_bytes
                ),
            ));
        }
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(i + 1);
            if s.open_events >= s.limits.batch_events {
                s.seal()?;
            }
            let head = std::mem::take(&mut s.partial);
            s.open.extend_from_slice(&head);
            s.open.extend_from_slice(line);
            s.open_events += 1;
            if s.opened_at.is_none() {
                s.opened_at = Some(Instant::now());
            }
            rest = tail;
        }
        s.partial.extend_from_slice(rest);
        if s.open_events >= s.limits.batch_events {
            s.seal()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::output::Output;

    fn limits(max_bytes: u64, batch_events: usize) -> SpoolLimits {
        SpoolLimits { max_bytes, batch_events, batch_age: Duration::ZERO }
    }

    #[test]
    fn lines_are_sealed_in_batches_that_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), "pc-01", limits(1 << 20, 2)).unwrap();
        let mut w = spool.writer();
        // a line split over two writes stays one line
        w.write_all(b"{\"a\":1}\n{\"a\"").unwrap();
        w.write_all(b":2}\n{\"a\":3}\n").unwrap();
        assert_eq!(spool.pending().0, 1, "two lines sealed, one open");
        spool.seal_if_due().unwrap();
        assert_eq!(spool.pending().0, 2);
        let first = spool.oldest().unwrap();
        let body = fs::read_to_string(&first.path).unwrap();
        let mut lines = body.lines();
        let header: BatchHeader = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header.endpoint, "pc-01");
        assert_eq!(lines.collect::<Vec<_>>(), ["{\"a\":1}", "{\"a\":2}"]);

        let again = Spool::open(dir.path(), "pc-01", limits(1 << 20, 2)).unwrap();
        assert_eq!(again.pending().0, 2);
        again.acked(&again.oldest().unwrap()).unwrap();
        assert_eq!(again.oldest().unwrap().seq, first.seq + 1);
        // the next batch continues the numbering: an id is never reused
        again.writer().write_all(b"{\"a\":4}\n{\"a\":5}\n").unwrap();
        assert_eq!(again.pending().0, 2);
        let ids: Vec<u64> = again.lock().sealed.keys().copied().collect();
        assert_eq!(ids, [first.seq + 1, first.seq + 2]);
    }

    #[test]
    fn a_full_spool_makes_the_output_count_and_report_the_loss() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), "pc-01", limits(300, 1)).unwrap();
        let mut out = Output::from(Box::new(spool.writer()) as Box<dyn Write + Send>);
        let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(100));
        for _ in 0..3 {
            assert!(out.write_line(line.as_bytes()));
            out.flush();
        }
        assert!(spool.pending().1 >= 300, "the bound is reached");
        // with the spool full the output keeps, then drops and counts
        let mut dropped = 0;
        for _ in 0..2000 {
            if !out.write_line(line.as_bytes()) {
                dropped += 1;
            }
        }
        assert!(dropped > 0);
        assert!(!out.flush());
        assert!(out.take_loss().is_none(), "nothing to report while the spool is full");
        // the appliance acknowledges: room again, the loss is reported once
        while let Some(b) = spool.oldest() {
            spool.acked(&b).unwrap();
        }
        assert!(out.flush());
        let loss = out.take_loss().expect("an event_loss report once the spool takes lines again");
        assert_eq!(loss.dropped, dropped);
    }
}

//! The endpoint events the pages and the API show, served without parsing
//! or cloning them all per request.
//!
//! One source of truth, the agent's Kunai JSON lines: a run's
//! `events.jsonl`, or the live lab's feed. Each source gets an [`Index`]
//! built once (and extended as its file grows): a summary per event (what
//! filters and rows read) and where the full event is (its bytes in the
//! file, or an `Arc<str>` for live events no file holds). Memory is bounded
//! by a number of events: a source keeps its newest ones and counts the
//! rest (shown on the page), and the indexes of runs not asked for lately
//! are let go (rebuilt from their file when asked again). Pages start below
//! a [`Cursor`].

pub mod cursor;
pub mod index;
pub mod query;
pub mod summary;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use ioclab_lab::engine::Lab;
use ioclab_lab::run::RunFolder;
use serde_json::Value;

pub use cursor::{Cursor, CursorError, Source};
pub use index::{Entry, Index, Stored};
pub use query::{FeedQuery, Filters, Params};
pub use summary::Summary;

/// Endpoint events kept in memory by default (summaries; live events with their JSON).
pub const DEFAULT_MEMORY_EVENTS: usize = 200_000;

/// Why the feed could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The cursor names a source the reader does not see.
    #[error("the cursor before={0} names a source that is not among the events you may see")]
    UnknownSource(String),
}

/// An event found: where it is, its summary and where its full JSON is.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its position (the cursor of the page that ends with it).
    pub at: Cursor,
    /// What rows show of it.
    pub summary: Summary,
    stored: Stored,
}

/// A page of events, newest first.
#[derive(Debug, Default)]
pub struct FeedPage {
    /// The events of the page.
    pub rows: Vec<Found>,
    /// How many kept events pass the filters, on every page.
    pub total: u64,
    /// The cursor of the next page, when there are more.
    pub next: Option<Cursor>,
    /// Events of these sources not (or no longer) kept in memory.
    pub not_kept: u64,
    /// Lines of these sources that are not events.
    pub unreadable: u64,
    /// Why the first of them is not.
    pub unreadable_why: Option<String>,
}

/// One event with the events that show its process's ancestors (nearest first).
#[derive(Debug)]
pub struct Detail {
    /// The event.
    pub found: Found,
    /// Its full JSON.
    pub event: Value,
    /// The kept events showing its parent, grandparent...
    pub ancestors: Vec<Found>,
}

/// A run's `events.jsonl`, indexed as far as it was read.
struct RunFile {
    path: PathBuf,
    index: Index,
    /// Bytes read (through the last whole line).
    read: u64,
    /// Lines read (the next line's number).
    lines: u64,
    modified: Option<SystemTime>,
}

impl RunFile {
    fn new(path: PathBuf, capacity: usize) -> RunFile {
        RunFile { path, index: Index::new(capacity), read: 0, lines: 0, modified: None }
    }

    /// Reads what was appended since the last look; starts over when the file was rewritten.
    fn refresh(&mut self, capacity: usize) {
        let (len, modified) = match std::fs::metadata(&self.path) {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(_) => (0, None),
        };
        if len == self.read && modified == self.modified {
            return;
        }
        if len < self.read || (len == self.read && modified != self.modified) {
            *self = RunFile::new(std::mem::take(&mut self.path), capacity);
        }
        self.modified = modified;
        if let Err(e) = self.read_from_end() {
            tracing::warn!("{}: {e}", self.path.display());
        }
    }

    fn read_from_end(&mut self) -> std::io::Result<()> {
        let Ok(mut f) = File::open(&self.path) else { return Ok(()) };
        f.seek(SeekFrom::Start(self.read))?;
        let mut r = BufReader::with_capacity(1 << 16, f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let got = r.read_until(b'\n', &mut line)?;
            if got == 0 {
                return Ok(());
            }
            let offset = self.read;
            self.read += got as u64;
            let n = self.lines;
            self.lines += 1;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.trim_ascii().is_empty() {
                continue;
            }
            match Summary::of_line(text) {
                Ok(summary) => {
                    let stored = Stored::OnDisk { offset, len: text.len().try_into().unwrap_or(u32::MAX) };
                    self.index.push(Entry { n, summary, stored });
                }
                Err(e) => self.index.count_unreadable(format!("{} line {}: {e}", self.path.display(), n + 1)),
            }
        }
    }
}

struct Slot {
    file: Arc<Mutex<RunFile>>,
    kept: Arc<AtomicUsize>,
    used: u64,
}

#[derive(Default)]
struct RunCache {
    slots: HashMap<String, Slot>,
    clock: u64,
}

/// The live feed's events, copied from the lab as pages ask.
struct Live {
    index: Index,
    next_seq: u64,
}

struct Inner {
    capacity: usize,
    runs_dir: PathBuf,
    runs: Mutex<RunCache>,
    live: Mutex<Live>,
}

/// The endpoint events of the appliance; cheap to clone.
#[derive(Clone)]
pub struct EventFeed {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFeed").field("capacity", &self.inner.capacity).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventFeed {
    /// The feed over the run folders in `runs_dir`, keeping about `capacity` events in memory.
    pub fn new(runs_dir: PathBuf, capacity: usize) -> EventFeed {
        let capacity = capacity.max(1);
        EventFeed {
            inner: Arc::new(Inner {
                capacity,
                runs_dir,
                runs: Mutex::default(),
                live: Mutex::new(Live { index: Index::new(capacity), next_seq: 0 }),
            }),
        }
    }

    /// How many events it keeps in memory at most.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Copies the lab feed's events it has not seen yet (their JSON once, no deep clone kept).
    pub fn sync_live(&self, lab: &Lab) {
        let mut live = lock(&self.inner.live);
        let new = lab.endpoint_events_since(live.next_seq);
        for e in new {
            let event = serde_json::to_string(&*e.event).unwrap_or_default();
            self.push_live(&mut live, e.seq, &e.event, event.into());
        }
    }

    fn push_live(&self, live: &mut Live, seq: u64, event: &Value, json: Arc<str>) {
        // the lab's feed let these go before a page asked: counted, not lost silently
        live.index.count_not_kept(seq.saturating_sub(live.next_seq));
        live.next_seq = seq + 1;
        match Summary::of_value(event) {
            Ok(summary) => live.index.push(Entry { n: seq, summary, stored: Stored::InMemory(json) }),
            Err(e) => live.index.count_unreadable(format!("live event {seq}: {e}")),
        }
    }

    /// Adds one live event numbered `seq` (tests, and [`EventFeed::sync_live`]).
    pub fn push_live_event(&self, seq: u64, event: &Value) {
        let mut live = lock(&self.inner.live);
        self.push_live(&mut live, seq, event, event.to_string().into());
    }

    /// Run `id`'s index, read up to date, letting others go beyond the memory bound.
    fn run_file(&self, id: &str) -> Arc<Mutex<RunFile>> {
        let file = self.open_run(id);
        self.let_go_beyond_capacity(id);
        file
    }

    /// Run `id`'s index, read up to date.
    fn open_run(&self, id: &str) -> Arc<Mutex<RunFile>> {
        let path = self.inner.runs_dir.join(id).join(RunFolder::EVENTS);
        let (file, kept) = {
            let mut cache = lock(&self.inner.runs);
            cache.clock += 1;
            let now = cache.clock;
            let cap = self.inner.capacity;
            let slot = cache.slots.entry(id.to_string()).or_insert_with(|| Slot {
                file: Arc::new(Mutex::new(RunFile::new(path, cap))),
                kept: Arc::default(),
                used: 0,
            });
            slot.used = now;
            (slot.file.clone(), slot.kept.clone())
        };
        {
            let mut f = lock(&file);
            f.refresh(self.inner.capacity);
            kept.store(f.index.entries().len(), Ordering::Relaxed);
        }
        file
    }

    /// Drops the least recently read run indexes (not `keep`) while they hold more than the capacity.
    fn let_go_beyond_capacity(&self, keep: &str) {
        let mut cache = lock(&self.inner.runs);
        loop {
            let total: usize = cache.slots.values().map(|s| s.kept.load(Ordering::Relaxed)).sum();
            if total <= self.inner.capacity {
                return;
            }
            let oldest = cache
                .slots
                .iter()
                .filter(|(id, _)| id.as_str() != keep)
                .min_by_key(|(_, s)| s.used)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    tracing::debug!("endpoint events of run {id} let go from memory (read again when asked)");
                    cache.slots.remove(&id);
                }
                None => return,
            }
        }
    }

    /// Indexes runs `ids` (newest first) until they fill the memory bound;
    /// when the last one overflows it, the oldest are let go, not the newest.
    pub fn warm(&self, ids: &[String]) {
        let mut warmed: Vec<(&str, usize)> = Vec::new();
        for id in ids.iter().filter(|id| Source::parse(id).is_some_and(|s| s != Source::Live)) {
            let kept = lock(&self.open_run(id)).index.entries().len();
            warmed.push((id, kept));
            if warmed.iter().map(|w| w.1).sum::<usize>() >= self.inner.capacity {
                break;
            }
        }
        let mut cache = lock(&self.inner.runs);
        while warmed.len() > 1 && warmed.iter().map(|w| w.1).sum::<usize>() > self.inner.capacity {
            if let Some((id, _)) = warmed.pop() {
                cache.slots.remove(id);
            }
        }
    }

    /// Forgets run `id`'s index (its folder was removed or rewritten).
    pub fn forget_run(&self, id: &str) {
        lock(&self.inner.runs).slots.remove(id);
    }

    fn with_source<T>(&self, source: &Source, f: impl FnOnce(&Index) -> T) -> T {
        match source {
            Source::Live => f(&lock(&self.inner.live).index),
            Source::Run(id) => {
                let file = self.run_file(id.as_str());
                let held = lock(&file);
                f(&held.index)
            }
        }
    }

    /// A page of the events of `sources` (newest source first), newest first.
    pub fn page(&self, sources: &[Source], q: &FeedQuery) -> Result<FeedPage, FeedError> {
        let start = match &q.before {
            None => None,
            Some(c) => Some(
                sources.iter().position(|s| *s == c.source).ok_or_else(|| FeedError::UnknownSource(c.to_string()))?,
            ),
        };
        let mut page = FeedPage::default();
        for (i, source) in sources.iter().enumerate() {
            self.with_source(source, |index| {
                page.not_kept += index.not_kept();
                let (bad, why) = index.unreadable();
                page.unreadable += bad;
                if page.unreadable_why.is_none() {
                    page.unreadable_why = why.map(str::to_string);
                }
                for e in index.entries().iter().rev() {
                    if !q.filters.keep(&e.summary) {
                        continue;
                    }
                    page.total += 1;
                    let below = match (&q.before, start) {
                        (Some(c), Some(s)) => i > s || (i == s && e.n < c.n),
                        _ => true,
                    };
                    if !below {
                        continue;
                    }
                    if page.rows.len() < q.limit {
                        page.rows.push(found(source, e));
                    } else if page.next.is_none() {
                        page.next = page.rows.last().map(|r| r.at.clone());
                    }
                }
            });
        }
        Ok(page)
    }

    /// Event `n` of `source`, with the events showing its ancestors.
    pub fn detail(&self, source: &Source, n: u64) -> Option<Detail> {
        let (found, ancestors) = self.with_source(source, |index| {
            let e = index.get(n)?;
            Some((found(source, e), index.ancestors(e).into_iter().map(|a| found(source, a)).collect::<Vec<_>>()))
        })?;
        let event = self.events(std::slice::from_ref(&found)).pop().flatten()?;
        Some(Detail { found, event, ancestors })
    }

    /// The full events of `rows` (`None` where the file changed under them).
    pub fn events(&self, rows: &[Found]) -> Vec<Option<Value>> {
        let mut files: HashMap<&str, Option<File>> = HashMap::new();
        rows.iter()
            .map(|r| match (&r.stored, &r.at.source) {
                (Stored::InMemory(json), _) => serde_json::from_str(json).ok(),
                (Stored::OnDisk { offset, len }, source) => {
                    let file = files.entry(source.as_str()).or_insert_with(|| {
                        File::open(self.inner.runs_dir.join(source.as_str()).join(RunFolder::EVENTS)).ok()
                    });
                    let mut buf = vec![0; *len as usize];
                    file.as_ref()?.read_exact_at(&mut buf, *offset).ok()?;
                    serde_json::from_slice(&buf).ok()
                }
            })
            .collect()
    }
}

fn found(source: &Source, e: &Entry) -> Found {
    Found { at: Cursor { source: source.clone(), n: e.n }, summary: e.summary.clone(), stored: e.stored.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioclab_lab::run::RunId;
    use serde_json::json;
    use std::io::Write;

    fn line(i: u64) -> String {
        let name = if i % 2 == 0 { "execve" } else { "dns_query" };
        let mut e = json!({"info": {"event": {"name": name}, "task": {"name": format!("p{i}"), "pid": i, "guuid": format!("g{i}")}},
                           "data": {"command_line": format!("cmd {i}")}});
        if i % 5 == 0 {
            e["detection"] = json!({"iocs": ["x"]});
        }
        e.to_string() + "\n"
    }

    fn run(dir: &std::path::Path, id: &str, lines: std::ops::Range<u64>) -> Source {
        let folder = dir.join(id);
        std::fs::create_dir_all(&folder).unwrap();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(folder.join(RunFolder::EVENTS)).unwrap();
        for i in lines {
            f.write_all(line(i).as_bytes()).unwrap();
        }
        Source::Run(RunId::parse(id).unwrap())
    }

    fn q(limit: usize, before: Option<Cursor>) -> FeedQuery {
        FeedQuery { filters: Filters::default(), before, limit }
    }

    fn ns(page: &FeedPage) -> Vec<(String, u64)> {
        page.rows.iter().map(|r| (r.at.source.to_string(), r.at.n)).collect()
    }

    #[test]
    fn pages_follow_each_other_across_sources_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (run(dir.path(), "new", 0..3), run(dir.path(), "old", 0..4));
        let feed = EventFeed::new(dir.path().to_path_buf(), 100);
        let sources = [new, old];
        let p1 = feed.page(&sources, &q(2, None)).unwrap();
        assert_eq!(ns(&p1), [("new".into(), 2), ("new".into(), 1)]);
        assert_eq!(p1.total, 7);
        let p2 = feed.page(&sources, &q(2, p1.next.clone())).unwrap();
        assert_eq!(ns(&p2), [("new".into(), 0), ("old".into(), 3)]);
        let p3 = feed.page(&sources, &q(10, p2.next.clone())).unwrap();
        assert_eq!(ns(&p3), [("old".into(), 2), ("old".into(), 1), ("old".into(), 0)]);
        assert!(p3.next.is_none(), "the last page has no next");
        let det = FeedQuery { filters: Filters { detections: true, ..Filters::default() }, before: None, limit: 10 };
        assert_eq!(ns(&feed.page(&sources, &det).unwrap()), [("new".into(), 0), ("old".into(), 0)]);
        let elsewhere = Cursor { source: Source::Live, n: 1 };
        assert!(matches!(feed.page(&sources, &q(2, Some(elsewhere))), Err(FeedError::UnknownSource(_))));
    }

    #[test]
    fn a_growing_file_is_read_from_where_it_stopped_and_a_rewritten_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let src = run(dir.path(), "r", 0..3);
        let feed = EventFeed::new(dir.path().to_path_buf(), 100);
        assert_eq!(feed.page(std::slice::from_ref(&src), &q(10, None)).unwrap().total, 3);
        run(dir.path(), "r", 3..5);
        let p = feed.page(std::slice::from_ref(&src), &q(10, None)).unwrap();
        assert_eq!(p.total, 5);
        assert_eq!(p.rows[0].at.n, 4);
        std::fs::write(dir.path().join("r").join(RunFolder::EVENTS), line(9)).unwrap();
        let p = feed.page(std::slice::from_ref(&src), &q(10, None)).unwrap();
        assert_eq!(p.total, 1);
        assert_eq!(&*p.rows[0].summary.command_line, "cmd 9");
        let d = feed.detail(&src, 0).unwrap();
        assert_eq!(d.event["data"]["command_line"], "cmd 9", "the full event is read from the file");
        std::fs::remove_dir_all(dir.path().join("r")).unwrap();
        assert_eq!(feed.page(&[src], &q(10, None)).unwrap().total, 0, "a removed run has no events left");
    }

    #[test]
    fn memory_holds_the_newest_events_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (run(dir.path(), "a", 0..8), run(dir.path(), "b", 0..3));
        let feed = EventFeed::new(dir.path().to_path_buf(), 5);
        let p = feed.page(std::slice::from_ref(&a), &q(100, None)).unwrap();
        assert_eq!((p.total, p.not_kept), (5, 3));
        assert_eq!(p.rows.last().unwrap().at.n, 3);
        assert!(feed.detail(&a, 2).is_none() && feed.detail(&a, 3).is_some());
        // reading b lets a's index go (5 + 3 > 5); a is read again from its file when asked
        assert_eq!(feed.page(std::slice::from_ref(&b), &q(100, None)).unwrap().total, 3);
        assert_eq!(lock(&feed.inner.runs).slots.len(), 1);
        assert_eq!(feed.page(&[a], &q(100, None)).unwrap().total, 5);
    }

    #[test]
    fn warming_indexes_the_newest_runs_until_memory_is_full() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["a", "b", "c"] {
            run(dir.path(), id, 0..3);
        }
        let ids = ["../x".to_string(), "c".into(), "b".into(), "a".into()];
        let indexed = |capacity| {
            let feed = EventFeed::new(dir.path().to_path_buf(), capacity);
            feed.warm(&ids);
            let mut indexed: Vec<String> = lock(&feed.inner.runs).slots.keys().cloned().collect();
            indexed.sort();
            indexed
        };
        assert_eq!(indexed(6), ["b", "c"]);
        assert_eq!(indexed(5), ["c"], "b overflowed the bound: let go, not the newer c");
        assert_eq!(indexed(2), ["c"], "the newest run stays, its oldest events counted");
    }

    #[test]
    fn live_events_are_kept_bounded_and_gaps_counted() {
        let dir = tempfile::tempdir().unwrap();
        let feed = EventFeed::new(dir.path().to_path_buf(), 3);
        for seq in [0, 1, 4, 5, 6] {
            let e: Value = serde_json::from_str(&line(seq)).unwrap();
            feed.push_live_event(seq, &e);
        }
        let p = feed.page(&[Source::Live], &q(10, None)).unwrap();
        assert_eq!(ns(&p), [("live".into(), 6), ("live".into(), 5), ("live".into(), 4)]);
        // 2 and 3 never reached the page (the lab let them go), 0 and 1 went for the bound
        assert_eq!(p.not_kept, 4);
        assert_eq!(feed.detail(&Source::Live, 5).unwrap().event["data"]["command_line"], "cmd 5");
    }

    #[test]
    fn lines_that_are_not_events_are_counted_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let src = run(dir.path(), "r", 0..2);
        let path = dir.path().join("r").join(RunFolder::EVENTS);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"\nnot json\n").unwrap();
        drop(f);
        run(dir.path(), "r", 2..3);
        let feed = EventFeed::new(dir.path().to_path_buf(), 100);
        let p = feed.page(&[src], &q(10, None)).unwrap();
        assert_eq!((p.total, p.unreadable), (3, 1));
        assert!(p.unreadable_why.unwrap().contains("line 4"), "blank line 3 is skipped, line 4 named");
        assert_eq!(p.rows[0].at.n, 4, "events keep their line numbers");
    }
}

//! One source's events in memory, bounded: their summaries, where each
//! full event is, and which event shows each process (for ancestry).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::summary::Summary;

/// The most ancestors a detail page follows (a real process tree is far shallower).
pub const MAX_ANCESTORS: usize = 64;

/// Where an event's full JSON is.
#[derive(Debug, Clone)]
pub enum Stored {
    /// In the source's file: `len` bytes at `offset`.
    OnDisk {
        /// Its first byte.
        offset: u64,
        /// Its length, without the newline.
        len: u32,
    },
    /// In memory (the live feed's events, which no file holds).
    InMemory(Arc<str>),
}

/// One event of a source.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its number in the source (increasing).
    pub n: u64,
    /// What the pages read of it.
    pub summary: Summary,
    /// Where the full event is.
    pub stored: Stored,
}

/// The newest `capacity` events of a source, oldest first; older ones are counted, never dropped silently.
#[derive(Debug)]
pub struct Index {
    capacity: usize,
    entries: VecDeque<Entry>,
    not_kept: u64,
    unreadable: u64,
    first_error: Option<String>,
    /// The event that shows each process: its newest `execve`, else its first event.
    by_guid: HashMap<Box<str>, u64>,
}

impl Index {
    /// An empty index keeping at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Index {
        Index {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            not_kept: 0,
            unreadable: 0,
            first_error: None,
            by_guid: HashMap::new(),
        }
    }

    /// Keeps `entry` (its `n` above every kept one), letting the oldest go when full.
    pub fn push(&mut self, entry: Entry) {
        if self.entries.len() == self.capacity {
            if let Some(old) = self.entries.pop_front() {
                self.not_kept += 1;
                if let Some(g) = &old.summary.guid {
                    if self.by_guid.get(g) == Some(&old.n) {
                        self.by_guid.remove(g);
                    }
                }
            }
        }
        if let Some(g) = &entry.summary.guid {
            if &*entry.summary.name == "execve" || !self.by_guid.contains_key(g) {
                self.by_guid.insert(g.clone(), entry.n);
            }
        }
        self.entries.push_back(entry);
    }

    /// Counts `n` events that never reached the index (dropped upstream).
    pub fn count_not_kept(&mut self, n: u64) {
        self.not_kept += n;
    }

    /// Counts a line that is not an event, keeping the first reason.
    pub fn count_unreadable(&mut self, why: String) {
        self.unreadable += 1;
        self.first_error.get_or_insert(why);
    }

    /// The events kept, oldest first.
    pub fn entries(&self) -> &VecDeque<Entry> {
        &self.entries
    }

    /// How many events of the source are not (or no longer) in memory.
    pub fn not_kept(&self) -> u64 {
        self.not_kept
    }

    /// How many lines were not events, and why the first was not.
    pub fn unreadable(&self) -> (u64, Option<&str>) {
        (self.unreadable, self.first_error.as_deref())
    }

    /// The event numbered `n`, if kept.
    pub fn get(&self, n: u64) -> Option<&Entry> {
        let i = self.entries.binary_search_by_key(&n, |e| e.n).ok()?;
        self.entries.get(i)
    }

    /// The kept event that shows the process `guid`.
    pub fn process(&self, guid: &str) -> Option<&Entry> {
        self.by_guid.get(guid).and_then(|n| self.get(*n))
    }

    /// The chain of kept events showing the parent, grandparent... of
    /// `entry`'s process (nearest first, at most [`MAX_ANCESTORS`]).
    pub fn ancestors(&self, entry: &Entry) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = Vec::new();
        let mut parent = entry.summary.parent_guid.as_deref();
        while let Some(g) = parent.filter(|_| out.len() < MAX_ANCESTORS) {
            // a guid seen twice is a loop in bad data: stop there
            let Some(e) = self.process(g).filter(|e| e.n != entry.n && !out.iter().any(|o| o.n == e.n)) else {
                break;
            };
            out.push(e);
            parent = e.summary.parent_guid.as_deref();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(n: u64, name: &str, guid: &str, parent: Option<&str>) -> Entry {
        Entry {
            n,
            summary: Summary {
                name: name.into(),
                guid: Some(guid.into()),
                parent_guid: parent.map(Into::into),
                ..Summary::default()
            },
            stored: Stored::InMemory(Arc::from("{}")),
        }
    }

    #[test]
    fn the_oldest_go_first_and_are_counted() {
        let mut idx = Index::new(3);
        for n in 0..5 {
            idx.push(entry(n, "execve", &format!("g{n}"), None));
        }
        assert_eq!(idx.entries().iter().map(|e| e.n).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(idx.not_kept(), 2);
        assert!(idx.get(1).is_none() && idx.get(3).is_some());
        assert!(idx.process("g0").is_none(), "an evicted process is forgotten");
        idx.count_not_kept(7);
        assert_eq!(idx.not_kept(), 9);
    }

    #[test]
    fn ancestry_follows_parent_guids_through_the_index_and_stops_on_loops() {
        let mut idx = Index::new(10);
        idx.push(entry(0, "execve", "init", None));
        idx.push(entry(1, "execve", "bash", Some("init")));
        idx.push(entry(2, "connect", "bash", Some("init")));
        idx.push(entry(3, "execve", "dig", Some("bash")));
        idx.push(entry(4, "dns_query", "dig", Some("bash")));
        let me = idx.get(4).unwrap();
        assert_eq!(idx.ancestors(me).iter().map(|e| e.n).collect::<Vec<_>>(), [1, 0], "execve shows a process");
        idx.push(entry(5, "execve", "a", Some("b")));
        idx.push(entry(6, "execve", "b", Some("a")));
        let looped = idx.get(5).unwrap();
        assert_eq!(idx.ancestors(looped).iter().map(|e| e.n).collect::<Vec<_>>(), [6]);
    }

    #[test]
    fn unreadable_lines_are_counted_with_the_first_reason() {
        let mut idx = Index::new(1);
        idx.count_unreadable("line 3: expected value".into());
        idx.count_unreadable("line 9: eof".into());
        assert_eq!(idx.unreadable(), (2, Some("line 3: expected value")));
    }
}

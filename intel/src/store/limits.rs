//! What the store bounds, and by how much: waits for the writer and for a
//! search slot, the SQLite time of one search, how many heavy searches run
//! at once, and how many values one filter may hold. Each bound, when hit,
//! is an answer that states it (400, or 503 with `Retry-After`), never a
//! hung request or a 500.

use std::time::Duration;

/// Seconds a client is told to wait (`Retry-After`) when the store is busy.
pub const RETRY_AFTER_S: u64 = 5;

/// Most values one filter may hold (after `|` splitting and `OR`/`AND`/`NOT`
/// lists together). Filters become `json_each` lookups, so this is not
/// SQLite's expression depth (about 1,000 terms) but a bound on one
/// request's work.
pub const MAX_FILTER_VALUES: usize = 5_000;

/// The store's limits (see each field); `Default` is what `ioclab misp serve` uses.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// Longest wait for the writer (queued writes, or another process's lock)
    /// before a write is refused with 503 + `Retry-After`.
    pub write_wait: Duration,
    /// Longest wait for a search slot or a read connection before 503 + `Retry-After`.
    pub queue_wait: Duration,
    /// SQLite time one search may take (its chunks together) before it is
    /// stopped (time spent waiting for a slow client is not counted).
    pub search_budget: Duration,
    /// Searches (restSearch, index) running at once; more wait their turn.
    pub heavy_searches: usize,
    /// Read connections besides the searches' (event views, lookups).
    pub light_readers: u32,
    /// Attributes per chunk of a streamed answer: a search's memory is this
    /// many rendered attributes, whatever the size of the answer.
    pub chunk_rows: u32,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            write_wait: Duration::from_secs(15),
            queue_wait: Duration::from_secs(30),
            search_budget: Duration::from_secs(30),
            heavy_searches: 4,
            light_readers: 4,
            chunk_rows: 2_000,
        }
    }
}

impl StoreLimits {
    /// Connections of the read pool: one per search slot, and the light readers'.
    pub fn read_connections(&self) -> u32 {
        self.heavy_searches as u32 + self.light_readers.max(1)
    }
}

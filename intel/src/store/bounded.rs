//! Searches with bounds: a slot among `heavy_searches`, a read connection,
//! and an SQLite progress handler that stops the statement when the search's
//! time budget is spent or when its owner is dropped (the client left: axum
//! drops the handler's future, and without this the statement would run on
//! in sqlx's worker thread for minutes, holding the connection).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnection, SqlitePoolOptions};
use sqlx::Sqlite;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Store, StoreError, StoreLimits};

/// SQLite virtual-machine steps between two checks of the budget (well under a millisecond).
const CHECK_EVERY_OPS: i32 = 10_000;

/// SQLite's result code of an interrupted statement.
const SQLITE_INTERRUPT: &str = "9";

/// The limits and the heavy-search slots of a store.
pub(super) struct Bounds {
    pub(super) limits: StoreLimits,
    slots: Arc<Semaphore>,
}

impl Bounds {
    pub(super) fn new(limits: StoreLimits) -> Self {
        Bounds { slots: Arc::new(Semaphore::new(limits.heavy_searches.max(1))), limits }
    }
}

/// Pool options every pool of the store gets: a connection going back to the
/// pool loses the progress handler a search set on it.
pub(super) fn pool_options(o: SqlitePoolOptions) -> SqlitePoolOptions {
    o.after_release(|conn, _| {
        Box::pin(async move {
            conn.lock_handle().await?.remove_progress_handler();
            Ok(true)
        })
    })
}

/// What the progress handler reads.
struct Watch {
    start: Instant,
    /// Nanoseconds after `start` past which the running statement stops.
    deadline_ns: AtomicU64,
    /// The owner was dropped.
    cancelled: AtomicBool,
    /// The last stop was the budget's.
    timed_out: AtomicBool,
}

/// A search slot and a read connection whose statements stop past the
/// budget or once this is dropped.
pub struct Bounded {
    conn: PoolConnection<Sqlite>,
    watch: Arc<Watch>,
    budget: Duration,
    spent: Duration,
    armed_at: Option<Instant>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Bounded {
    fn drop(&mut self) {
        // a statement still running (its future dropped with us) stops at the next check
        self.watch.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Store {
    /// A search slot (waiting at most `queue_wait`) and a bounded read connection.
    pub async fn bounded(&self) -> Result<Bounded, StoreError> {
        let limits = &self.bounds.limits;
        let busy = || StoreError::Busy {
            what: format!(
                "{} searches are already running and none ended within {} s",
                limits.heavy_searches,
                limits.queue_wait.as_secs()
            ),
            retry_after: super::limits::RETRY_AFTER_S,
        };
        let slot = tokio::time::timeout(limits.queue_wait, self.bounds.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let mut conn = self.reader.acquire().await?;
        let watch = Arc::new(Watch {
            start: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
            cancelled: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
        });
        let w = watch.clone();
        conn.lock_handle().await?.set_progress_handler(CHECK_EVERY_OPS, move || {
            if w.cancelled.load(Ordering::Relaxed) {
                return false;
            }
            if w.start.elapsed().as_nanos() as u64 > w.deadline_ns.load(Ordering::Relaxed) {
                w.timed_out.store(true, Ordering::Relaxed);
                return false;
            }
            true
        });
        Ok(Bounded { conn, watch, budget: limits.search_budget, spent: Duration::ZERO, armed_at: None, _slot: slot })
    }
}

impl Bounded {
    /// The connection, with the rest of the budget armed for the statements
    /// run on it until [`Bounded::settle`] counts their time.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        let left = self.budget.saturating_sub(self.spent);
        let now = self.watch.start.elapsed();
        self.watch.deadline_ns.store((now + left).as_nanos() as u64, Ordering::Relaxed);
        self.armed_at = Some(Instant::now());
        &mut self.conn
    }

    /// Counts the time since [`Bounded::conn`] against the budget, and says
    /// which bound stopped a statement that was interrupted.
    pub fn settle<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Some(t) = self.armed_at.take() {
            self.spent += t.elapsed();
        }
        self.watch.deadline_ns.store(u64::MAX, Ordering::Relaxed);
        r.map_err(|e| self.explain(e))
    }

    /// An interruption in words: which bound stopped the search.
    fn explain(&self, e: StoreError) -> StoreError {
        let interrupted =
            matches!(&e, StoreError::Db(sqlx::Error::Database(d)) if d.code().as_deref() == Some(SQLITE_INTERRUPT));
        if !interrupted {
            return e;
        }
        if self.watch.timed_out.load(Ordering::Relaxed) {
            StoreError::Interrupted(format!(
                "the search ran over its budget of {} s and was stopped: narrow it (type, value, fewer tags, \
                 a time range) or page it (limit and page)",
                self.budget.as_secs_f64()
            ))
        } else {
            StoreError::Interrupted("the search was stopped: its client left".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement that never ends on its own.
    const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c";

    async fn endless(b: &mut Bounded) -> Result<i64, StoreError> {
        let r = sqlx::query_scalar(ENDLESS).fetch_one(b.conn()).await.map_err(StoreError::from);
        b.settle(r)
    }

    #[tokio::test]
    async fn a_search_over_its_budget_is_stopped_and_says_why() {
        let limits = StoreLimits { search_budget: Duration::from_millis(50), ..StoreLimits::default() };
        let store = Store::in_memory_with(limits).await.unwrap();
        let mut b = store.bounded().await.unwrap();
        let e = endless(&mut b).await.unwrap_err();
        assert!(matches!(&e, StoreError::Interrupted(m) if m.contains("budget")), "{e}");
        drop(b);
        // the connection went back without the handler: a plain query on the same (only) connection works
        let n: i64 = sqlx::query_scalar("SELECT 1").fetch_one(store.reader()).await.unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn a_dropped_search_stops_and_frees_its_connection() {
        // an hour of budget: only the drop can stop the statement
        let limits = StoreLimits { search_budget: Duration::from_secs(3600), ..StoreLimits::default() };
        let store = Store::in_memory_with(limits).await.unwrap();
        let s = store.clone();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let search = tokio::spawn(async move {
            let mut b = s.bounded().await.unwrap();
            let _ = started_tx.send(());
            endless(&mut b).await
        });
        started.await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        search.abort();
        // the in-memory store has one connection: this waits for the endless statement to stop
        let n: i64 = sqlx::query_scalar("SELECT 2").fetch_one(store.reader()).await.unwrap();
        assert_eq!(n, 2);
    }
}

//! Enrolment tokens and received events, in `web.db`.
//!
//! A token is a random secret shown once; only its SHA-256 is stored (as
//! the API tokens of accounts). Events are stored one row each, unique by
//! `info.event.uuid`: a batch resent after a lost ack stores nothing twice.
//! A batch is stored in one transaction, committed before the ack is sent.
//!
//! IoC pushes are rows too: each push names its target (all endpoints, a
//! group of tokens, or one endpoint) and the newest push targeting an
//! endpoint is its order. A push wakes the long-polls of this process at
//! once ([`EndpointDb::push_watch`]); another process's pushes (the CLI)
//! are seen by the long-polls' fallback look at the table.
//!
//! Steps orders (a run's steps for an endpoint that joined with
//! `--allow-steps`) live in their own table: each is for one endpoint,
//! handed out once, answered once, and never replaced by a newer push; one
//! not handed out before it expires is never sent (an agent joining later
//! gets no stale steps). Each long-poll records whether its agent allows
//! steps, and when ([`EndpointDb::allows_steps`]).

use std::path::Path;

use ioclab_agent::remote::wire::{Ack, Batch, Order, OrderDone, OrderKind, OrdersQuery, ORDERS_WAIT};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use crate::password;
use crate::users::UserName;

/// Why the endpoint store failed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The database failed.
    #[error("the endpoint store {path}: {source}")]
    Db {
        /// The database file.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The name is taken by another token.
    #[error("an enrolment token named {0} exists already (`ioclab endpoints token list`)")]
    Exists(UserName),
    /// No such token.
    #[error("no enrolment token named {0} (`ioclab endpoints token list`)")]
    Unknown(UserName),
    /// A push whose IoCs the agents would refuse.
    #[error("IoCs refused, nothing pushed: {0}")]
    BadIocs(String),
    /// A push to a group no token is in.
    #[error("no enrolment token is in group {0} (`ioclab endpoints token create --group {0}`)")]
    EmptyGroup(UserName),
    /// Steps for an endpoint whose agent is not polling with `--allow-steps`.
    #[error("endpoint {0} did not join with --allow-steps (or its agent is not polling): steps are never sent to it")]
    StepsNotAllowed(String),
}

/// An enrolment token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrolToken {
    /// Its row id.
    pub id: i64,
    /// Who the endpoint belongs to: a trainee or a team (spelled as login names).
    pub name: UserName,
    /// When it was made, epoch seconds.
    pub created: i64,
    /// When it was revoked, epoch seconds; a revoked token is refused (401).
    pub revoked: Option<i64>,
    /// Events stored with it.
    pub events: i64,
    /// Its group (a team, a room), for pushes to a group.
    pub group: Option<UserName>,
}

/// Which endpoints a push is for.
// externally tagged ("all", {"group": "blue"}, {"endpoint": {..}}): an
// internally tagged enum cannot serialise the group's bare name
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushTarget {
    /// Every endpoint, those that join later too.
    All,
    /// The endpoints of the tokens in this group.
    Group(UserName),
    /// One endpoint: its token and its name.
    Endpoint {
        /// The token's name.
        token: UserName,
        /// The endpoint's name (`--name` of its agent).
        endpoint: String,
    },
}

impl PushTarget {
    /// One endpoint, spelled `TOKEN/NAME` (`alice/pc-07`) as the CLI and the push form take it.
    pub fn endpoint_of(s: &str) -> Result<PushTarget, String> {
        let (token, endpoint) = s.split_once('/').ok_or("expected TOKEN/NAME, e.g. alice/pc-07")?;
        if endpoint.is_empty() {
            return Err("the endpoint name after / is empty".into());
        }
        Ok(PushTarget::Endpoint { token: token.parse()?, endpoint: endpoint.to_string() })
    }
}

impl std::fmt::Display for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushTarget::All => f.write_str("all"),
            PushTarget::Group(g) => write!(f, "group {g}"),
            PushTarget::Endpoint { token, endpoint } => write!(f, "{token}/{endpoint}"),
        }
    }
}

/// An endpoint's report on a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The endpoint's token.
    pub token: UserName,
    /// The endpoint's name.
    pub endpoint: String,
    /// Whether its agent loaded the IoCs.
    pub ok: bool,
    /// The agent's message: the load's counts, or why it refused.
    pub message: String,
    /// When it reported, epoch seconds.
    pub at: i64,
}

/// An endpoint that sent events or reported a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRow {
    /// Its token.
    pub token: UserName,
    /// The token's group.
    pub group: Option<UserName>,
    /// Its name (`--name` of its agent).
    pub endpoint: String,
    /// Its agent's version (empty until its first batch).
    pub agent_version: String,
    /// Its last batch or report, epoch seconds.
    pub last_seen: i64,
    /// Events stored from it.
    pub events: i64,
    /// The last push it reported, and how it went.
    pub last_push: Option<LastPush>,
}

/// The last push an endpoint reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastPush {
    /// The push's id.
    pub id: i64,
    /// Whether it is in use there.
    pub ok: bool,
    /// The agent's message.
    pub message: String,
    /// When, epoch seconds.
    pub at: i64,
}

/// An IoC push, without its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    /// Its id: the order id agents see.
    pub id: i64,
    /// Whom it is for.
    pub target: PushTarget,
    /// The instructor's label.
    pub label: String,
    /// The IoC lines' size, bytes.
    pub bytes: i64,
    /// When it was made, epoch seconds.
    pub created: i64,
    /// The endpoints that reported it, first report first.
    pub applied: Vec<Applied>,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS endpoint_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        digest TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        revoked INTEGER
    )",
    "CREATE TABLE IF NOT EXISTS endpoint_pushes (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL CHECK (target IN ('all', 'group', 'endpoint')),
        target_group TEXT,
        target_token INTEGER REFERENCES endpoint_tokens(id),
        target_endpoint TEXT,
        label TEXT NOT NULL,
        lines TEXT NOT NULL,
        created INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS endpoint_push_done (
        push INTEGER NOT NULL REFERENCES endpoint_pushes(id),
        token INTEGER NOT NULL REFERENCES endpoint_tokens(id),
        endpoint TEXT NOT NULL,
        ok INTEGER NOT NULL,
        message TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (push, token, endpoint)
    )",
    "CREATE TABLE IF NOT EXISTS endpoint_events (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        token INTEGER NOT NULL REFERENCES endpoint_tokens(id),
        endpoint TEXT NOT NULL,
        name TEXT NOT NULL,
        detection INTEGER NOT NULL,
        line TEXT NOT NULL,
        received INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS endpoint_steps (
        id INTEGER PRIMARY KEY,
        token INTEGER NOT NULL REFERENCES endpoint_tokens(id),
        endpoint TEXT NOT NULL,
        body TEXT NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        delivered INTEGER,
        done_ok INTEGER,
        done_message TEXT,
        done_at INTEGER
    )",
    "CREATE INDEX IF NOT EXISTS endpoint_steps_pending ON endpoint_steps (token, endpoint, delivered)",
    "CREATE INDEX IF NOT EXISTS endpoint_events_by_token ON endpoint_events (token, id)",
    "CREATE TABLE IF NOT EXISTS endpoints (
        token INTEGER NOT NULL REFERENCES endpoint_tokens(id),
        endpoint TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        last_seen INTEGER NOT NULL,
        events INTEGER NOT NULL,
        PRIMARY KEY (token, endpoint)
    )",
];

/// Columns added after the first release: (table, column, definition), added when missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("endpoint_tokens", "grp", "TEXT"),
    // the last push the endpoint reported, and how it went
    ("endpoints", "push", "INTEGER"),
    ("endpoints", "push_ok", "INTEGER"),
    ("endpoints", "push_message", "TEXT"),
    ("endpoints", "push_at", "INTEGER"),
    // whether its agent's last long-poll said --allow-steps, and when that poll came
    ("endpoints", "allow_steps", "INTEGER"),
    ("endpoints", "allow_steps_at", "INTEGER"),
];

/// How recent the agent's last poll must be for steps to be sent to it: a
/// long-poll lasts [`ORDERS_WAIT`], so a live agent polls well within this.
const STEPS_FRESH_SECS: i64 = 2 * ORDERS_WAIT.as_secs() as i64 + 10;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Events inserted by one statement (7 values each, far below SQLite's 32,766).
const INSERT_ROWS: usize = 100;

/// A batch waiting for the writer, and where its outcome goes.
#[derive(Debug)]
struct Queued {
    token: i64,
    batch: Batch,
    reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

/// Inserts `batch`'s events (a hundred rows a statement: the per-statement
/// round trip to SQLite's thread was most of ingest) and counts them on
/// the endpoint's row; the events stored.
async fn insert_batch(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    token: i64,
    batch: &Batch,
) -> Result<u64, sqlx::Error> {
    let received = now();
    let mut stored = 0u64;
    for events in batch.events.chunks(INSERT_ROWS) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO endpoint_events (uuid, token, endpoint, name, detection, line, received) ",
        );
        q.push_values(events, |mut row, ev| {
            row.push_bind(ev.uuid.to_string())
                .push_bind(token)
                .push_bind(batch.header.endpoint.as_str())
                .push_bind(ev.name.as_str())
                .push_bind(ev.detection)
                .push_bind(ev.line.as_str())
                .push_bind(received);
        });
        q.push(" ON CONFLICT (uuid) DO NOTHING");
        stored += q.build().execute(&mut **tx).await?.rows_affected();
    }
    sqlx::query(
        "INSERT INTO endpoints (token, endpoint, agent_version, last_seen, events) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (token, endpoint) DO UPDATE SET agent_version = excluded.agent_version,
             last_seen = excluded.last_seen, events = events + excluded.events",
    )
    .bind(token)
    .bind(&batch.header.endpoint)
    .bind(&batch.header.agent_version)
    .bind(received)
    .bind(stored as i64)
    .execute(&mut **tx)
    .await?;
    Ok(stored)
}

/// The endpoint store.
#[derive(Debug, Clone)]
pub struct EndpointDb {
    pool: SqlitePool,
    path: String,
    /// The newest push id made through this store (0: none yet).
    pushed: std::sync::Arc<tokio::sync::watch::Sender<i64>>,
    /// Held by every write: SQLite takes one writer at a time, and pool
    /// connections racing for its lock sleep in its busy handler (writes
    /// of over a second under 20 endpoints), or fail at once when a
    /// transaction that read first must become a writer (SQLITE_BUSY_SNAPSHOT).
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Batches waiting for the writer: whoever gets it next commits them all.
    queue: std::sync::Arc<std::sync::Mutex<Vec<Queued>>>,
}

impl EndpointDb {
    /// Opens (or makes) the store in `path` (the appliance's `web.db`).
    pub async fn open(path: &Path) -> Result<EndpointDb, EndpointError> {
        let shown = path.display().to_string();
        let db = |source| EndpointError::Db { path: shown.clone(), source };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // an ack promises the batch is on disk: every commit is synced
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(db)?;
        for sql in SCHEMA {
            sqlx::query(sql).execute(&pool).await.map_err(db)?;
        }
        for (table, column, def) in ADDED_COLUMNS {
            let has: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?"))
                    .bind(column)
                    .fetch_one(&pool)
                    .await
                    .map_err(db)?;
            if has == 0 {
                match sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {def}")).execute(&pool).await {
                    // another process added it meanwhile
                    Err(sqlx::Error::Database(e)) if e.message().contains("duplicate column") => {}
                    r => {
                        r.map_err(db)?;
                    }
                }
            }
        }
        let (pushed, _) = tokio::sync::watch::channel(0);
        Ok(EndpointDb {
            pool,
            path: shown,
            pushed: std::sync::Arc::new(pushed),
            writer: Default::default(),
            queue: Default::default(),
        })
    }

    fn err(&self, source: sqlx::Error) -> EndpointError {
        EndpointError::Db { path: self.path.clone(), source }
    }

    /// Makes a token named `name` (default `endpoint-NN`); returns it and its secret, shown once.
    pub async fn create_token(&self, name: Option<UserName>) -> Result<(EnrolToken, String), EndpointError> {
        self.create_token_in(name, None).await
    }

    /// Makes a token named `name` (default `endpoint-NN`) in `group`; returns it and its secret, shown once.
    pub async fn create_token_in(
        &self,
        name: Option<UserName>,
        group: Option<UserName>,
    ) -> Result<(EnrolToken, String), EndpointError> {
        let name = match name {
            Some(n) => n,
            None => {
                let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM endpoint_tokens")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                format!("endpoint-{next:02}").parse().expect("a valid generated name")
            }
        };
        let secret = password::token();
        let created = now();
        let _writing = self.writer.lock().await;
        let r = sqlx::query("INSERT INTO endpoint_tokens (name, digest, created, grp) VALUES (?, ?, ?, ?)")
            .bind(name.as_str())
            .bind(password::token_digest(&secret))
            .bind(created)
            .bind(group.as_ref().map(|g| g.as_str()))
            .execute(&self.pool)
            .await;
        match r {
            Ok(r) => {
                Ok((EnrolToken { id: r.last_insert_rowid(), name, created, revoked: None, events: 0, group }, secret))
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(EndpointError::Exists(name)),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every token, oldest first, with the count of events stored with it.
    pub async fn tokens(&self) -> Result<Vec<EnrolToken>, EndpointError> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.created, t.revoked, t.grp,
                    (SELECT COUNT(*) FROM endpoint_events e WHERE e.token = t.id) AS events
             FROM endpoint_tokens t ORDER BY t.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows.iter().filter_map(row_token).collect())
    }

    /// Revokes `name`'s token: its agents get 401 from now on (their events stay).
    pub async fn revoke(&self, name: &UserName) -> Result<(), EndpointError> {
        let _writing = self.writer.lock().await;
        let r = sqlx::query("UPDATE endpoint_tokens SET revoked = COALESCE(revoked, ?) WHERE name = ?")
            .bind(now())
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if r.rows_affected() == 0 {
            return Err(EndpointError::Unknown(name.clone()));
        }
        Ok(())
    }

    /// The live (not revoked) token whose secret is `secret`.
    pub async fn token_by_secret(&self, secret: &str) -> Result<Option<EnrolToken>, EndpointError> {
        let row = sqlx::query(
            "SELECT id, name, created, revoked, grp, 0 AS events FROM endpoint_tokens
             WHERE digest = ? AND revoked IS NULL",
        )
        .bind(password::token_digest(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(row.as_ref().and_then(row_token))
    }

    /// Stores a batch sent with `token`; events already held (same uuid)
    /// are counted, not stored again. Returns once its transaction is
    /// committed (synced). Batches that arrive while another commit runs
    /// wait for the writer together and are committed in one transaction
    /// (group commit): one sync for many endpoints' batches.
    pub async fn store_batch(&self, token: &EnrolToken, batch: Batch) -> Result<Ack, EndpointError> {
        let (id, events) = (batch.header.batch.clone(), batch.events.len() as u64);
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        // the batch itself goes to whoever writes it: no copy of its lines
        let queued = Queued { token: token.id, batch, reply };
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(queued);
        let stored = {
            let _writing = self.writer.lock().await;
            match answer.try_recv() {
                // the writer before us took our batch into its group
                Ok(stored) => stored,
                Err(_) => {
                    let group = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
                    self.write_group(group).await;
                    answer.await.unwrap_or_else(|_| Err("the batch's writer went away".into()))
                }
            }
        };
        let stored = stored.map_err(|why| self.err(sqlx::Error::Protocol(why)))?;
        Ok(Ack { batch: id, stored, duplicates: events - stored })
    }

    /// Writes queued batches in one transaction and answers each (its
    /// events stored, or why nothing of the group was); the caller holds the writer.
    async fn write_group(&self, group: Vec<Queued>) {
        let result = async {
            let mut tx = self.pool.begin().await?;
            let mut stored = Vec::with_capacity(group.len());
            for q in &group {
                stored.push(insert_batch(&mut tx, q.token, &q.batch).await?);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(stored)
        }
        .await;
        match result {
            Ok(stored) => {
                for (q, n) in group.into_iter().zip(stored) {
                    let _ = q.reply.send(Ok(n));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for q in group {
                    let _ = q.reply.send(Err(why.clone()));
                }
            }
        }
    }

    /// Stores an IoC push for `target` (the IoC file's `lines`, refused
    /// naming `label` and the line if the agents would refuse them) and
    /// wakes this process's long-polls; returns its id.
    pub async fn push_iocs(&self, target: &PushTarget, label: &str, lines: &str) -> Result<i64, EndpointError> {
        // the agents' own check: a set they would refuse is not stored
        let report = ioclab_agent::ioc::loader::check_data(Path::new(label), lines.as_bytes());
        if let Some(why) = report.refusal() {
            return Err(EndpointError::BadIocs(why));
        }
        let (kind, group, token, endpoint) = match target {
            PushTarget::All => ("all", None, None, None),
            PushTarget::Group(g) => {
                let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM endpoint_tokens WHERE grp = ?")
                    .bind(g.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                if members == 0 {
                    return Err(EndpointError::EmptyGroup(g.clone()));
                }
                ("group", Some(g.as_str()), None, None)
            }
            PushTarget::Endpoint { token, endpoint } => {
                let id: Option<i64> = sqlx::query_scalar("SELECT id FROM endpoint_tokens WHERE name = ?")
                    .bind(token.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| self.err(e))?;
                let id = id.ok_or_else(|| EndpointError::Unknown(token.clone()))?;
                ("endpoint", None, Some(id), Some(endpoint.as_str()))
            }
        };
        let _writing = self.writer.lock().await;
        let id = sqlx::query(
            "INSERT INTO endpoint_pushes (target, target_group, target_token, target_endpoint, label, lines, created)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(kind)
        .bind(group)
        .bind(token)
        .bind(endpoint)
        .bind(label)
        .bind(lines)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?
        .last_insert_rowid();
        self.pushed.send_modify(|newest| *newest = (*newest).max(id));
        Ok(id)
    }

    /// Changes when this process makes a push: a long-poll waits on it
    /// (pushes of other processes show only in the table).
    pub fn push_watch(&self) -> tokio::sync::watch::Receiver<i64> {
        self.pushed.subscribe()
    }

    /// The order a long-poll of `token`'s agent answers: its pending steps
    /// order first (only when the poll says `--allow-steps`; it is then
    /// handed out, never again), else the newest push above `q.after`.
    pub async fn order_for(&self, token: &EnrolToken, q: &OrdersQuery) -> Result<Option<Order>, EndpointError> {
        if q.allow_steps {
            if let Some(order) = self.take_steps(token, &q.endpoint).await? {
                return Ok(Some(order));
            }
        }
        self.push_for(token, &q.endpoint, q.after).await
    }

    /// The newest push for `token`'s endpoint `endpoint` with an id above
    /// `after`, as an order; `None` when there is none (the newest wins:
    /// older ones are never sent once a newer exists).
    pub async fn push_for(
        &self,
        token: &EnrolToken,
        endpoint: &str,
        after: u64,
    ) -> Result<Option<Order>, EndpointError> {
        let row = sqlx::query(
            "SELECT id, label, lines FROM endpoint_pushes
             WHERE id > ? AND (target = 'all'
                OR (target = 'group' AND target_group = ?)
                OR (target = 'endpoint' AND target_token = ? AND target_endpoint = ?))
             ORDER BY id DESC LIMIT 1",
        )
        .bind(after.min(i64::MAX as u64) as i64)
        .bind(token.group.as_ref().map(|g| g.as_str()))
        .bind(token.id)
        .bind(endpoint)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let get = |c: &str| row.try_get::<String, _>(c).map_err(|e| self.err(e));
        Ok(Some(Order {
            id: row.try_get::<i64, _>("id").map_err(|e| self.err(e))? as u64,
            kind: OrderKind::Iocs { label: get("label")?, lines: get("lines")? },
        }))
    }

    /// Records what `token`'s agent on `endpoint` said in its long-poll:
    /// whether it allows steps, and that it said so now.
    pub async fn announce(&self, token: &EnrolToken, endpoint: &str, allow_steps: bool) -> Result<(), EndpointError> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO endpoints (token, endpoint, agent_version, last_seen, events, allow_steps, allow_steps_at)
             VALUES (?1, ?2, '', ?4, 0, ?3, ?4)
             ON CONFLICT (token, endpoint) DO UPDATE SET allow_steps = excluded.allow_steps,
                 allow_steps_at = excluded.allow_steps_at",
        )
        .bind(token.id)
        .bind(endpoint)
        .bind(allow_steps)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether the agent of token `token`'s endpoint `endpoint` polls now with `--allow-steps`.
    pub async fn allows_steps(&self, token: &UserName, endpoint: &str) -> Result<bool, EndpointError> {
        let allowed: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoints e JOIN endpoint_tokens t ON t.id = e.token
             WHERE t.name = ? AND t.revoked IS NULL AND e.endpoint = ? AND e.allow_steps = 1 AND e.allow_steps_at >= ?",
        )
        .bind(token.as_str())
        .bind(endpoint)
        .bind(now() - STEPS_FRESH_SECS)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(allowed.unwrap_or(0) > 0)
    }

    /// Queues a steps order (`body`, the lab's `StepsOrder` as JSON) for
    /// one endpoint, refused unless its agent polls with `--allow-steps`;
    /// not handed out within `ttl`, it is never sent. Wakes the long-polls; its id.
    pub async fn queue_steps(
        &self,
        token: &UserName,
        endpoint: &str,
        body: &str,
        ttl: std::time::Duration,
    ) -> Result<i64, EndpointError> {
        if !self.allows_steps(token, endpoint).await? {
            return Err(EndpointError::StepsNotAllowed(format!("{token}/{endpoint}")));
        }
        let created = now();
        let _writing = self.writer.lock().await;
        let id = sqlx::query(
            "INSERT INTO endpoint_steps (token, endpoint, body, created, expires)
             SELECT id, ?, ?, ?, ? FROM endpoint_tokens WHERE name = ?",
        )
        .bind(endpoint)
        .bind(body)
        .bind(created)
        .bind(created.saturating_add(ttl.as_secs().min(i64::MAX as u64 / 2) as i64))
        .bind(token.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?
        .last_insert_rowid();
        // the watch counts pushes; a change notification (same value) wakes the polls all the same
        self.pushed.send_modify(|_| {});
        Ok(id)
    }

    /// Hands out `token`'s endpoint's oldest pending, unexpired steps order, marking it delivered.
    async fn take_steps(&self, token: &EnrolToken, endpoint: &str) -> Result<Option<Order>, EndpointError> {
        // a waiting poll looks twice a second: a read (WAL: beside the
        // writer) first, the writer only when there is an order to take
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM endpoint_steps WHERE token = ? AND endpoint = ? AND delivered IS NULL AND expires > ? LIMIT 1",
        )
        .bind(token.id)
        .bind(endpoint)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if pending.is_none() {
            return Ok(None);
        }
        let writing = self.writer.lock().await;
        let row = sqlx::query(
            "UPDATE endpoint_steps SET delivered = ?1 WHERE id = (
                 SELECT id FROM endpoint_steps WHERE token = ?2 AND endpoint = ?3
                     AND delivered IS NULL AND expires > ?1 ORDER BY id LIMIT 1)
             RETURNING id, body",
        )
        .bind(now())
        .bind(token.id)
        .bind(endpoint)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        drop(writing);
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get("id").map_err(|e| self.err(e))?;
        let body: String = row.try_get("body").map_err(|e| self.err(e))?;
        // stored by queue_steps from a serialised order: bad JSON here is the store's fault, said
        let order = serde_json::from_str(&body)
            .map_err(|e| self.err(sqlx::Error::Decode(format!("steps order {id} is not JSON: {e}").into())))?;
        Ok(Some(Order { id: id as u64, kind: OrderKind::Steps { order } }))
    }

    /// Records the report of steps order `id` by its own endpoint, once:
    /// `false` when no such order was handed to it, or it was answered already.
    pub async fn record_steps_done(
        &self,
        token: &EnrolToken,
        endpoint: &str,
        id: u64,
        done: &OrderDone,
    ) -> Result<bool, EndpointError> {
        let _writing = self.writer.lock().await;
        let r = sqlx::query(
            "UPDATE endpoint_steps SET done_ok = ?, done_message = ?, done_at = ?
             WHERE id = ? AND token = ? AND endpoint = ? AND delivered IS NOT NULL AND done_at IS NULL",
        )
        .bind(done.ok)
        .bind(&done.message)
        .bind(now())
        .bind(id.min(i64::MAX as u64) as i64)
        .bind(token.id)
        .bind(endpoint)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(r.rows_affected() == 1)
    }

    /// The report on steps order `id`, once its agent answered.
    pub async fn steps_done(&self, id: i64) -> Result<Option<OrderDone>, EndpointError> {
        let row = sqlx::query("SELECT done_ok, done_message FROM endpoint_steps WHERE id = ? AND done_at IS NOT NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| OrderDone {
            ok: r.try_get("done_ok").unwrap_or(false),
            message: r.try_get("done_message").unwrap_or_default(),
        }))
    }

    /// How many steps orders were ever queued for token `token`'s endpoint `endpoint`.
    pub async fn steps_orders_for(&self, token: &UserName, endpoint: &str) -> Result<i64, EndpointError> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM endpoint_steps s JOIN endpoint_tokens t ON t.id = s.token
             WHERE t.name = ? AND s.endpoint = ?",
        )
        .bind(token.as_str())
        .bind(endpoint)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))
    }

    /// Withdraws steps order `id` if it was not handed out yet (its run gave up on it).
    pub async fn withdraw_steps(&self, id: i64) -> Result<(), EndpointError> {
        let _writing = self.writer.lock().await;
        sqlx::query("UPDATE endpoint_steps SET expires = 0 WHERE id = ? AND delivered IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records `token`'s endpoint's report on order `id`, on the push and as
    /// the endpoint's last push. `false` when no such push exists.
    pub async fn record_done(
        &self,
        token: &EnrolToken,
        endpoint: &str,
        id: u64,
        done: &OrderDone,
    ) -> Result<bool, EndpointError> {
        let id = id.min(i64::MAX as u64) as i64;
        let at = now();
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        // writes only, the first one checking the push exists: a transaction
        // that read first and then wrote failed at once with SQLITE_BUSY_SNAPSHOT
        // when a batch committed in between (the agents saw HTTP 500 and backed off)
        // ?1 push, ?2 token, ?3 endpoint, ?4 ok, ?5 message, ?6 when
        let statements = [
            "INSERT INTO endpoint_push_done (push, token, endpoint, ok, message, at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM endpoint_pushes WHERE id = ?1)
             ON CONFLICT (push, token, endpoint) DO UPDATE SET ok = excluded.ok, message = excluded.message, at = excluded.at",
            // an agent may report before its first batch: its row starts here
            "INSERT INTO endpoints (token, endpoint, agent_version, last_seen, events, push, push_ok, push_message, push_at)
             VALUES (?2, ?3, '', ?6, 0, ?1, ?4, ?5, ?6)
             ON CONFLICT (token, endpoint) DO UPDATE SET last_seen = excluded.last_seen, push = excluded.push,
                 push_ok = excluded.push_ok, push_message = excluded.push_message, push_at = excluded.push_at",
        ];
        for (i, sql) in statements.into_iter().enumerate() {
            let r = sqlx::query(sql)
                .bind(id)
                .bind(token.id)
                .bind(endpoint)
                .bind(done.ok)
                .bind(&done.message)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            if i == 0 && r.rows_affected() == 0 {
                // no such push: nothing written, the transaction rolls back on drop
                return Ok(false);
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Every endpoint seen, by token then name, with the last push it reported.
    pub async fn endpoints(&self) -> Result<Vec<EndpointRow>, EndpointError> {
        let rows = sqlx::query(
            "SELECT t.name, t.grp, e.endpoint, e.agent_version, e.last_seen, e.events,
                    e.push, e.push_ok, e.push_message, e.push_at
             FROM endpoints e JOIN endpoint_tokens t ON t.id = e.token ORDER BY t.name, e.endpoint",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let last_push = match r.try_get::<Option<i64>, _>("push").ok()? {
                    Some(id) => Some(LastPush {
                        id,
                        ok: r.try_get::<Option<bool>, _>("push_ok").ok()?.unwrap_or(false),
                        message: r.try_get::<Option<String>, _>("push_message").ok()?.unwrap_or_default(),
                        at: r.try_get::<Option<i64>, _>("push_at").ok()?.unwrap_or(0),
                    }),
                    None => None,
                };
                Some(EndpointRow {
                    token: r.try_get::<String, _>("name").ok()?.parse().ok()?,
                    group: r.try_get::<Option<String>, _>("grp").ok()?.and_then(|g| g.parse().ok()),
                    endpoint: r.try_get("endpoint").ok()?,
                    agent_version: r.try_get("agent_version").ok()?,
                    last_seen: r.try_get("last_seen").ok()?,
                    events: r.try_get("events").ok()?,
                    last_push,
                })
            })
            .collect())
    }

    /// Every push, newest first, with the endpoints that reported it.
    pub async fn pushes(&self) -> Result<Vec<Push>, EndpointError> {
        let rows = sqlx::query(
            "SELECT p.id, p.target, p.target_group, t.name AS token, p.target_endpoint, p.label,
                    length(CAST(p.lines AS BLOB)) AS bytes, p.created
             FROM endpoint_pushes p LEFT JOIN endpoint_tokens t ON t.id = p.target_token ORDER BY p.id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let done = sqlx::query(
            "SELECT d.push, t.name, d.endpoint, d.ok, d.message, d.at
             FROM endpoint_push_done d JOIN endpoint_tokens t ON t.id = d.token ORDER BY d.at, d.rowid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut pushes: Vec<Push> = rows.iter().filter_map(row_push).collect();
        for d in &done {
            let (Ok(push), Ok(Ok(token))) =
                (d.try_get::<i64, _>("push"), d.try_get::<String, _>("name").map(|n| n.parse::<UserName>()))
            else {
                continue;
            };
            if let Some(p) = pushes.iter_mut().find(|p| p.id == push) {
                p.applied.push(Applied {
                    token,
                    endpoint: d.try_get("endpoint").unwrap_or_default(),
                    ok: d.try_get("ok").unwrap_or(false),
                    message: d.try_get("message").unwrap_or_default(),
                    at: d.try_get("at").unwrap_or(0),
                });
            }
        }
        Ok(pushes)
    }

    /// The stored event lines of endpoint `endpoint` (any token), oldest first.
    pub async fn event_lines(&self, endpoint: &str) -> Result<Vec<String>, EndpointError> {
        sqlx::query_scalar("SELECT line FROM endpoint_events WHERE endpoint = ? ORDER BY id")
            .bind(endpoint)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    /// The uuids of every stored event, and how many rows hold them (tests, checks).
    pub async fn event_uuids(&self) -> Result<Vec<String>, EndpointError> {
        sqlx::query_scalar("SELECT uuid FROM endpoint_events ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }
}

fn row_push(r: &sqlx::sqlite::SqliteRow) -> Option<Push> {
    let name = |c: &str| r.try_get::<Option<String>, _>(c).ok().flatten().and_then(|n| n.parse::<UserName>().ok());
    let target = match r.try_get::<String, _>("target").ok()?.as_str() {
        "all" => PushTarget::All,
        "group" => PushTarget::Group(name("target_group")?),
        _ => PushTarget::Endpoint { token: name("token")?, endpoint: r.try_get("target_endpoint").ok()? },
    };
    Some(Push {
        id: r.try_get("id").ok()?,
        target,
        label: r.try_get("label").ok()?,
        bytes: r.try_get("bytes").ok()?,
        created: r.try_get("created").ok()?,
        applied: Vec::new(),
    })
}

fn row_token(r: &sqlx::sqlite::SqliteRow) -> Option<EnrolToken> {
    Some(EnrolToken {
        id: r.try_get("id").ok()?,
        name: r.try_get::<String, _>("name").ok()?.parse().ok()?,
        created: r.try_get("created").ok()?,
        revoked: r.try_get("revoked").ok()?,
        events: r.try_get("events").ok()?,
        group: r.try_get::<Option<String>, _>("grp").ok()?.and_then(|g| g.parse().ok()),
    })
}

/// What the class view ([`super::view`]) reads through: its queries live there.
impl EndpointDb {
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn error(&self, source: sqlx::Error) -> EndpointError {
        self.err(source)
    }
}

//! Enrolment tokens and received events, in `web.db`.
//!
//! A token is a random secret shown once; only its SHA-256 is stored (as
//! the API tokens of accounts). Events are stored one row each, unique by
//! `info.event.uuid`: a batch resent after a lost ack stores nothing twice.
//! A batch is stored in one transaction, committed before the ack is sent.

use std::path::Path;

use ioclab_agent::remote::wire::{Ack, Batch};
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
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS endpoint_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        digest TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        revoked INTEGER
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

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The endpoint store.
#[derive(Debug, Clone)]
pub struct EndpointDb {
    pool: SqlitePool,
    path: String,
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
        Ok(EndpointDb { pool, path: shown })
    }

    fn err(&self, source: sqlx::Error) -> EndpointError {
        EndpointError::Db { path: self.path.clone(), source }
    }

    /// Makes a token named `name` (default `endpoint-NN`); returns it and its secret, shown once.
    pub async fn create_token(&self, name: Option<UserName>) -> Result<(EnrolToken, String), EndpointError> {
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
        let r = sqlx::query("INSERT INTO endpoint_tokens (name, digest, created) VALUES (?, ?, ?)")
            .bind(name.as_str())
            .bind(password::token_digest(&secret))
            .bind(created)
            .execute(&self.pool)
            .await;
        match r {
            Ok(r) => Ok((EnrolToken { id: r.last_insert_rowid(), name, created, revoked: None, events: 0 }, secret)),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(EndpointError::Exists(name)),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every token, oldest first, with the count of events stored with it.
    pub async fn tokens(&self) -> Result<Vec<EnrolToken>, EndpointError> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.created, t.revoked,
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
            "SELECT id, name, created, revoked, 0 AS events FROM endpoint_tokens
             WHERE digest = ? AND revoked IS NULL",
        )
        .bind(password::token_digest(secret))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(row.as_ref().and_then(row_token))
    }

    /// Stores a batch sent with `token`, in one transaction; events already
    /// held (same uuid) are counted, not stored again.
    pub async fn store_batch(&self, token: &EnrolToken, batch: &Batch) -> Result<Ack, EndpointError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let received = now();
        let mut stored = 0u64;
        for ev in &batch.events {
            let r = sqlx::query(
                "INSERT INTO endpoint_events (uuid, token, endpoint, name, detection, line, received)
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uuid) DO NOTHING",
            )
            .bind(ev.uuid.to_string())
            .bind(token.id)
            .bind(&batch.header.endpoint)
            .bind(&ev.name)
            .bind(ev.detection)
            .bind(&ev.line)
            .bind(received)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            stored += r.rows_affected();
        }
        sqlx::query(
            "INSERT INTO endpoints (token, endpoint, agent_version, last_seen, events) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (token, endpoint) DO UPDATE SET agent_version = excluded.agent_version,
                 last_seen = excluded.last_seen, events = events + excluded.events",
        )
        .bind(token.id)
        .bind(&batch.header.endpoint)
        .bind(&batch.header.agent_version)
        .bind(received)
        .bind(stored as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(Ack { batch: batch.header.batch.clone(), stored, duplicates: batch.events.len() as u64 - stored })
    }

    /// The uuids of every stored event, and how many rows hold them (tests, checks).
    pub async fn event_uuids(&self) -> Result<Vec<String>, EndpointError> {
        sqlx::query_scalar("SELECT uuid FROM endpoint_events ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }
}

fn row_token(r: &sqlx::sqlite::SqliteRow) -> Option<EnrolToken> {
    Some(EnrolToken {
        id: r.try_get("id").ok()?,
        name: r.try_get::<String, _>("name").ok()?.parse().ok()?,
        created: r.try_get("created").ok()?,
        revoked: r.try_get("revoked").ok()?,
        events: r.try_get("events").ok()?,
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

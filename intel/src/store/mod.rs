//! The embedded MISP-compatible store: events, attributes, objects, tags and
//! sightings in SQLite (schema in `migrations/`), with MISP's validation and
//! normalisation of attribute values. The HTTP side is in `crate::server`.

pub mod bounded;
mod bulk;
pub mod csv;
pub mod filter;
pub mod keys;
pub mod limits;
pub mod render;
pub mod stream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::model::input::{AttributeIn, EventIn};
use crate::model::{date_of, now, types};

pub use keys::{Role, User};
pub use limits::StoreLimits;

/// A store operation that failed. `NotFound` and `Invalid` messages are for
/// API clients; `Db` and `Migrate` are logged, never sent (they may show
/// paths, SQL or schema).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// A wait for the database or a search slot would exceed its bound:
    /// the client should retry after `retry_after` seconds.
    #[error("{what}; retry in {retry_after} s")]
    Busy {
        /// What waited too long, with the bound.
        what: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// A search ran over its time budget (or its client left) and was stopped.
    #[error("{0}")]
    Interrupted(String),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The request names nothing that exists.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or breaks MISP's rules.
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        const SQLITE_BUSY: &str = "5";
        match &e {
            // the writer pool's wait is the bound stated in StoreLimits
            sqlx::Error::PoolTimedOut => StoreError::Busy {
                what: "the store is busy: no database connection came free in time".into(),
                retry_after: limits::RETRY_AFTER_S,
            },
            // another process (e.g. `ioclab misp keys create`) held the lock past busy_timeout
            sqlx::Error::Database(d) if d.code().as_deref() == Some(SQLITE_BUSY) => StoreError::Busy {
                what: "the database is locked by another process".into(),
                retry_after: limits::RETRY_AFTER_S,
            },
            _ => StoreError::Db(e),
        }
    }
}

/// The store: SQLite behind three pools, so that no kind of request waits
/// behind another: writes queue for the one writer connection (SQLite has one
/// writer at a time: queueing here, not in SQLite's lock, is what makes
/// concurrent writers wait instead of failing with "database is locked"),
/// reads and searches share `reader`, and key lookups have `keys` to
/// themselves (authentication never waits behind a search). In memory the
/// three are one connection (each would otherwise be its own database).
#[derive(Clone)]
pub struct Store {
    /// The writer: one connection; also simple lookups before a write.
    pool: SqlitePool,
    /// Reads and searches (searches through [`bounded`]).
    reader: SqlitePool,
    /// API keys: lookups on every request, key management.
    keys: SqlitePool,
    /// Bounds of searches and waits, and the heavy-search slots.
    bounds: Arc<bounded::Bounds>,
}

/// An event's id or uuid, as the endpoints accept either.
fn id_or_uuid(s: &str) -> (Option<i64>, Option<String>) {
    match s.parse::<i64>() {
        Ok(id) => (Some(id), None),
        Err(_) => (None, Some(s.to_ascii_lowercase())),
    }
}

/// The uuid given (checked), or a new one.
fn uuid_or_new(u: &Option<String>) -> Result<String, StoreError> {
    match u {
        Some(u) => check_uuid(u),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

fn check_uuid(u: &str) -> Result<String, StoreError> {
    uuid::Uuid::parse_str(u).map(|u| u.to_string()).map_err(|_| StoreError::Invalid(format!("{u:?} is not a UUID")))
}

impl Store {
    /// Opens (creating it if needed, mode 0600) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreLimits::default()).await
    }

    /// [`Store::open`] with other limits (tests, benches).
    pub async fn open_with(path: &Path, limits: StoreLimits) -> Result<Self, StoreError> {
        create_private(path)?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            // table statistics for the planner, as SQLite advises on opening: without
            // them a big export walks the type index instead of scanning (1.7x slower)
            .pragma("analysis_limit", "1000")
            .pragma("optimize", "0x10002")
            // another process writing (a CLI key command) is waited for as long as our own writers are
            .busy_timeout(limits.write_wait);
        let pools = |n: u32, wait: Duration| {
            bounded::pool_options(SqlitePoolOptions::new().max_connections(n).acquire_timeout(wait))
        };
        let pool = pools(1, limits.write_wait).connect_with(opts.clone()).await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        let reader = pools(limits.read_connections(), limits.queue_wait).connect_with(opts.clone()).await?;
        let keys = pools(2, limits.write_wait).connect_with(opts).await?;
        Ok(Store { pool, reader, keys, bounds: Arc::new(bounded::Bounds::new(limits)) })
    }

    /// A store in memory (tests, demos): gone when dropped.
    pub async fn in_memory() -> Result<Self, StoreError> {
        Self::in_memory_with(StoreLimits::default()).await
    }

    /// [`Store::in_memory`] with other limits.
    pub async fn in_memory_with(limits: StoreLimits) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::new().in_memory(true).foreign_keys(true);
        // one connection shared by all (each would have its own database)
        let pool =
            bounded::pool_options(SqlitePoolOptions::new().max_connections(1).acquire_timeout(limits.queue_wait))
                .connect_with(opts)
                .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Store { reader: pool.clone(), keys: pool.clone(), pool, bounds: Arc::new(bounded::Bounds::new(limits)) })
    }

    /// The pool of API keys, for `keys`: its own connections, so that
    /// authentication never waits behind a search or a write.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.keys
    }

    /// The pool of reads and searches.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &StoreLimits {
        &self.bounds.limits
    }

    /// A write transaction on the writer connection, started `IMMEDIATE`: it
    /// takes SQLite's write lock at once (a deferred one that reads first
    /// fails on the upgrade instead of waiting). Waits for the writer at most
    /// `write_wait`, then [`StoreError::Busy`].
    async fn write_tx(&self) -> Result<Tx<'static>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn event_id(&self, key: &str) -> Result<i64, StoreError> {
        let (id, uuid) = id_or_uuid(key);
        let row = sqlx::query("SELECT id FROM events WHERE id = ?1 OR uuid = ?2")
            .bind(id)
            .bind(uuid)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| r.get(0)).ok_or_else(|| StoreError::NotFound("Invalid event".into()))
    }

    /// Adds an event (with its attributes, objects and tags) for `user`;
    /// returns its id.
    pub async fn add_event(&self, user: &User, e: EventIn) -> Result<i64, StoreError> {
        let info = e.info.as_deref().map(str::trim).unwrap_or("");
        if info.is_empty() {
            return Err(StoreError::Invalid("Event: info is required".into()));
        }
        let info = check_text("Event: info", info)?;
        let distribution = check_range("distribution", e.distribution.unwrap_or(0), 0, 4)?;
        let threat = check_range("threat_level_id", e.threat_level_id.unwrap_or(4), 1, 4)?;
        let analysis = check_range("analysis", e.analysis.unwrap_or(0), 0, 2)?;
        let uuid = uuid_or_new(&e.uuid)?;
        let ts = e.timestamp.unwrap_or_else(now);
        let date = match &e.date {
            Some(d) if is_date(d) => d.clone(),
            Some(d) => return Err(StoreError::Invalid(format!("Event: date {d:?} is not YYYY-MM-DD"))),
            None => date_of(now()),
        };
        // everything checked before the write lock is taken
        let mut batch = bulk::Batch::default();
        for (i, a) in e.attributes.iter().enumerate() {
            batch.attribute(None, a, ts).map_err(|err| at("Attribute", i, err))?;
        }
        for (i, o) in e.objects.iter().enumerate() {
            batch.object(o, ts).map_err(|err| at("Object", i, err))?;
        }
        let event_tags = e
            .tags
            .iter()
            .map(|t| Ok((tag_name(&t.name)?, t.local.unwrap_or(false))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM events WHERE uuid = ?1").bind(&uuid).fetch_optional(&mut *tx).await?;
        if exists.is_some() {
            return Err(StoreError::NotFound("Event already exists".into()));
        }
        let published = e.published.unwrap_or(false);
        let id: i64 = sqlx::query(
            "INSERT INTO events (uuid, info, date, threat_level_id, analysis, distribution, published, timestamp, \
             publish_timestamp, org_id, orgc_id, creator_email) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11) \
             RETURNING id",
        )
        .bind(&uuid)
        .bind(info)
        .bind(&date)
        .bind(threat)
        .bind(analysis)
        .bind(distribution)
        .bind(published)
        .bind(ts)
        .bind(if published { now() } else { 0 })
        .bind(user.org_id)
        .bind(&user.email)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let big = batch.len() >= 1000;
        batch.insert(&mut tx, id).await?;
        for (name, local) in event_tags {
            let tag = tag_id(&mut tx, &name).await?;
            link_tag(&mut tx, Tagged::Event(id), tag, local).await?;
        }
        tx.commit().await?;
        if big {
            // a big import can change the best plans: fresh statistics (cheap when nothing changed)
            sqlx::query("PRAGMA optimize").execute(&self.pool).await?;
        }
        Ok(id)
    }

    /// Applies an edit: only when the incoming timestamp is absent or newer;
    /// attributes and objects matched by uuid (new ones added); a missing
    /// `published` unpublishes, as in MISP.
    pub async fn edit_event(&self, key: &str, e: EventIn) -> Result<i64, StoreError> {
        let id = self.event_id(key).await?;
        let current: i64 =
            sqlx::query("SELECT timestamp FROM events WHERE id = ?1").bind(id).fetch_one(&self.reader).await?.get(0);
        if let Some(ts) = e.timestamp {
            if ts <= current {
                return Ok(id);
            }
        }
        let ts = e.timestamp.unwrap_or_else(now).max(current.saturating_add(1));
        let info = match e.info.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
            Some(info) => Some(check_text("info", info)?),
            None => None,
        };
        let mut fields = Vec::new();
        for (field, v, lo, hi) in [
            ("distribution", e.distribution, 0, 4),
            ("threat_level_id", e.threat_level_id, 1, 4),
            ("analysis", e.analysis, 0, 2),
        ] {
            if let Some(v) = v {
                fields.push((field, check_range(field, v, lo, hi)?));
            }
        }
        let mut tx = self.write_tx().await?;
        if let Some(info) = info {
            sqlx::query("UPDATE events SET info = ?1 WHERE id = ?2").bind(info).bind(id).execute(&mut *tx).await?;
        }
        for (field, v) in fields {
            sqlx::query(&format!("UPDATE events SET {field} = ?1 WHERE id = ?2"))
                .bind(v)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let published = e.published.unwrap_or(false);
        sqlx::query("UPDATE events SET timestamp = ?1, published = ?2 WHERE id = ?3")
            .bind(ts)
            .bind(published)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // attributes and objects matched by uuid: known ones updated, the others added in one batch
        let uuids = |list: &mut dyn Iterator<Item = &Option<String>>| -> Vec<String> {
            list.filter_map(|u| u.as_deref().map(bulk::stored_uuid)).collect()
        };
        let all_attributes =
            e.attributes.iter().chain(e.objects.iter().flat_map(|o| o.attributes.iter())).map(|a| &a.uuid);
        let known_attributes = bulk::known(&mut tx, "attributes", id, &uuids(&mut all_attributes.into_iter())).await?;
        let known_objects = bulk::known(&mut tx, "objects", id, &uuids(&mut e.objects.iter().map(|o| &o.uuid))).await?;
        let known = |u: &Option<String>, map: &std::collections::HashMap<String, i64>| {
            u.as_deref().and_then(|u| map.get(&bulk::stored_uuid(u)).copied())
        };
        let mut batch = bulk::Batch::default();
        let mut updates = Vec::new();
        for (i, a) in e.attributes.iter().enumerate() {
            match known(&a.uuid, &known_attributes) {
                Some(aid) => updates.push(attribute_update(aid, a, ts).map_err(|err| at("Attribute", i, err))?),
                None => batch.attribute(None, a, ts).map_err(|err| at("Attribute", i, err))?,
            }
        }
        for (i, o) in e.objects.iter().enumerate() {
            let Some(oid) = known(&o.uuid, &known_objects) else {
                batch.object(o, ts).map_err(|err| at("Object", i, err))?;
                continue;
            };
            for (j, a) in o.attributes.iter().enumerate() {
                let r = match known(&a.uuid, &known_attributes) {
                    Some(aid) => attribute_update(aid, a, ts).map(|u| updates.push(u)),
                    None => batch.attribute(Some(bulk::ObjectRef::Id(oid)), a, ts),
                };
                r.map_err(|err| at("Object", i, at("Attribute", j, err)))?;
            }
        }
        for chunk in updates.chunks(5_000) {
            sqlx::query(
                "UPDATE attributes SET type = u.v->>1, category = u.v->>2, value = u.v->>3, to_ids = u.v->>4, \
                 comment = u.v->>5, deleted = u.v->>6, timestamp = u.v->>7 \
                 FROM (SELECT value AS v FROM json_each(?1)) AS u WHERE attributes.id = u.v->>0",
            )
            .bind(Value::Array(chunk.to_vec()).to_string())
            .execute(&mut *tx)
            .await?;
        }
        batch.insert(&mut tx, id).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Publishes or unpublishes an event.
    pub async fn set_published(&self, key: &str, published: bool) -> Result<i64, StoreError> {
        let id = self.event_id(key).await?;
        sqlx::query("UPDATE events SET published = ?1, publish_timestamp = CASE WHEN ?1 THEN ?2 ELSE publish_timestamp END WHERE id = ?3")
            .bind(published)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// Deletes an event (and everything in it).
    pub async fn delete_event(&self, key: &str) -> Result<(), StoreError> {
        let id = self.event_id(key).await?;
        sqlx::query("DELETE FROM events WHERE id = ?1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Marks an attribute deleted (soft delete, as MISP does by default).
    pub async fn delete_attribute(&self, uuid: &str) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE attributes SET deleted = 1, timestamp = ?1 WHERE uuid = ?2")
            .bind(now())
            .bind(uuid.to_ascii_lowercase())
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("Invalid attribute".into()));
        }
        Ok(())
    }

    /// The event `{"Event": {...}}` as MISP returns it.
    pub async fn event(&self, key: &str) -> Result<Value, StoreError> {
        let id = self.event_id(key).await?;
        render::event(&mut *self.reader.acquire().await?, id, true).await
    }

    /// Tags an event or attribute named by uuid; the tag is created if new.
    pub async fn attach_tag(&self, uuid: &str, tag: &str, local: bool) -> Result<(), StoreError> {
        let tag = tag_name(tag)?;
        let uuid = uuid.to_ascii_lowercase();
        let mut tx = self.write_tx().await?;
        let tid = tag_id(&mut tx, &tag).await?;
        let ev = sqlx::query("SELECT id FROM events WHERE uuid = ?1").bind(&uuid).fetch_optional(&mut *tx).await?;
        if let Some(ev) = ev {
            let eid: i64 = ev.get(0);
            link_tag(&mut tx, Tagged::Event(eid), tid, local).await?;
            sqlx::query("UPDATE events SET timestamp = ?1 WHERE id = ?2")
                .bind(now())
                .bind(eid)
                .execute(&mut *tx)
                .await?;
        } else {
            let attr = sqlx::query("SELECT id, event_id FROM attributes WHERE uuid = ?1")
                .bind(&uuid)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(attr) = attr else {
                return Err(StoreError::NotFound("Invalid Target.".into()));
            };
            link_tag(&mut tx, Tagged::Attribute(attr.get(0)), tid, local).await?;
            sqlx::query("UPDATE events SET timestamp = ?1 WHERE id = ?2")
                .bind(now())
                .bind(attr.get::<i64, _>(1))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records sightings of an attribute (by uuid) or of every attribute with
    /// a value, in one statement of one transaction (20,000 attributes of a
    /// value are one write, not 20,000); returns the first sighting as MISP
    /// does, and how many were recorded.
    pub async fn add_sighting(
        &self,
        user: &User,
        uuid: Option<&str>,
        value: Option<&str>,
        kind: i64,
        source: &str,
    ) -> Result<(Value, u64), StoreError> {
        let kind = check_range("type", kind, 0, 2)?;
        let source = check_text("source", source)?;
        let (column, key) = match (uuid, value) {
            (Some(u), _) => ("uuid", u.to_ascii_lowercase()),
            (None, Some(v)) => ("value", check_text("value", v)?.to_string()),
            (None, None) => return Err(StoreError::Invalid("No valid attributes found.".into())),
        };
        let date = now();
        let mut tx = self.write_tx().await?;
        let before: i64 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM sightings").fetch_one(&mut *tx).await?;
        // a v4 uuid per sighting, made by SQLite from 16 random bytes
        let added = sqlx::query(&format!(
            "INSERT INTO sightings (uuid, attribute_id, event_id, org_id, type, source, date_sighting) \
             SELECT lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-' || \
             substr('89ab', 1 + (unicode(substr(h, 17, 1)) % 4), 1) || substr(h, 18, 3) || '-' || substr(h, 21, 12)), \
             id, event_id, ?2, ?3, ?4, ?5 FROM (SELECT id, event_id, hex(randomblob(16)) AS h FROM attributes \
             WHERE {column} = ?1 AND deleted = 0 ORDER BY id)"
        ))
        .bind(&key)
        .bind(user.org_id)
        .bind(kind)
        .bind(source)
        .bind(date)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if added == 0 {
            return Err(StoreError::NotFound("No valid attributes found.".into()));
        }
        let r = sqlx::query(
            "SELECT s.id, s.attribute_id, s.event_id, s.uuid, a.uuid FROM sightings s \
             JOIN attributes a ON a.id = s.attribute_id WHERE s.id > ?1 ORDER BY s.id LIMIT 1",
        )
        .bind(before)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let sighting = serde_json::json!({"Sighting": {
            "id": r.get::<i64, _>(0).to_string(), "attribute_id": r.get::<i64, _>(1).to_string(),
            "event_id": r.get::<i64, _>(2).to_string(), "org_id": user.org_id.to_string(),
            "date_sighting": date.to_string(), "uuid": r.get::<String, _>(3), "source": source,
            "type": kind.to_string(), "attribute_uuid": r.get::<String, _>(4),
        }});
        Ok((sighting, added))
    }
}

fn is_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && d.bytes().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn check_range(field: &str, v: i64, lo: i64, hi: i64) -> Result<i64, StoreError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(StoreError::Invalid(format!("{field} must be between {lo} and {hi}, got {v}")))
    }
}

/// Prefixes an error with where it happened (`Attribute 2: ...`).
fn at(what: &str, i: usize, err: StoreError) -> StoreError {
    match err {
        StoreError::Invalid(m) => StoreError::Invalid(format!("{what} {i}: {m}")),
        other => other,
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

async fn tag_id(tx: &mut Tx<'_>, name: &str) -> Result<i64, StoreError> {
    sqlx::query("INSERT OR IGNORE INTO tags (name) VALUES (?1)").bind(name).execute(&mut **tx).await?;
    Ok(sqlx::query("SELECT id FROM tags WHERE name = ?1").bind(name).fetch_one(&mut **tx).await?.get(0))
}

/// What a tag is put on.
enum Tagged {
    Event(i64),
    Attribute(i64),
}

/// Tags an event or an attribute (once: a tag already there stays as it is).
async fn link_tag(tx: &mut Tx<'_>, on: Tagged, tag: i64, local: bool) -> Result<(), StoreError> {
    let (sql, id) = match on {
        Tagged::Event(id) => ("INSERT OR IGNORE INTO event_tags (event_id, tag_id, local) VALUES (?1, ?2, ?3)", id),
        Tagged::Attribute(id) => {
            ("INSERT OR IGNORE INTO attribute_tags (attribute_id, tag_id, local) VALUES (?1, ?2, ?3)", id)
        }
    };
    sqlx::query(sql).bind(id).bind(tag).bind(local).execute(&mut **tx).await?;
    Ok(())
}

/// The checked, normalised columns of an attribute.
struct AttrRow {
    uuid: String,
    kind: String,
    category: String,
    value: String,
    to_ids: bool,
    comment: String,
}

fn check_attribute(a: &AttributeIn) -> Result<AttrRow, StoreError> {
    let kind = a
        .kind
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| StoreError::Invalid("type is required".into()))?;
    let (default_category, default_ids) =
        types::describe(kind).ok_or_else(|| StoreError::Invalid(format!("unknown attribute type {kind:?}")))?;
    let value = check_text("value", a.value.as_deref().unwrap_or(""))?;
    let value = types::normalise(kind, value).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let comment = check_text("comment", a.comment.as_deref().unwrap_or(""))?.to_string();
    let category = match a.category.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if types::CATEGORIES.contains(&c) => c.to_string(),
        Some(c) => return Err(StoreError::Invalid(format!("unknown category {c:?}"))),
        None => default_category.to_string(),
    };
    let uuid = uuid_or_new(&a.uuid)?;
    Ok(AttrRow { uuid, kind: kind.to_string(), category, value, to_ids: a.to_ids.unwrap_or(default_ids), comment })
}

/// The new columns of a known attribute in an edit: `[id, type, category, value, to_ids, comment, deleted, timestamp]`.
fn attribute_update(id: i64, a: &AttributeIn, ts: i64) -> Result<Value, StoreError> {
    let row = check_attribute(a)?;
    Ok(serde_json::json!([
        id,
        row.kind,
        row.category,
        row.value,
        row.to_ids,
        row.comment,
        a.deleted.unwrap_or(false),
        a.timestamp.unwrap_or(ts).max(ts)
    ]))
}

/// Text a client sent, refused when it holds a NUL byte: SQLite's C
/// functions (printf of the CSV export among them) stop at the first NUL,
/// so such a value would be stored whole and exported cut.
fn check_text<'a>(field: &str, s: &'a str) -> Result<&'a str, StoreError> {
    match s.find('\0') {
        Some(at) => Err(StoreError::Invalid(format!("{field}: NUL byte at offset {at} is not allowed"))),
        None => Ok(s),
    }
}

/// A tag name as stored: trimmed, not empty, without NUL.
fn tag_name(name: &str) -> Result<String, StoreError> {
    let name = check_text("Tag name", name.trim())?;
    if name.is_empty() {
        return Err(StoreError::Invalid("Tag name missing".into()));
    }
    Ok(name.to_string())
}

/// Creates the database file readable by its owner only (it holds every
/// key's hash and the lab's intelligence); SQLite gives its -wal and -shm
/// files the same mode. An existing file keeps the mode it has.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Db(sqlx::Error::Io(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_database_and_its_wal_are_private_to_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("misp.db");
        let store = Store::open(&db).await.unwrap();
        store.create_key("t@lab.example", Role::User).await.unwrap();
        for name in ["misp.db", "misp.db-wal", "misp.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
        }
    }

    #[tokio::test]
    async fn an_import_is_all_or_nothing_and_keeps_its_order() {
        let store = Store::in_memory().await.unwrap();
        let key = store.create_key("t@lab.example", Role::User).await.unwrap();
        let user = store.user_for_key(&key).await.unwrap().unwrap();
        let attrs: Vec<Value> =
            (0..12_000).map(|i| serde_json::json!({"type": "domain", "value": format!("d{i}.example")})).collect();
        let mut bad = attrs.clone();
        bad.push(serde_json::json!({"type": "ip-dst", "value": "999.1.1.1"}));
        let e = store
            .add_event(&user, serde_json::from_value(serde_json::json!({"info": "x", "Attribute": bad})).unwrap())
            .await;
        assert!(matches!(&e, Err(StoreError::Invalid(m)) if m.starts_with("Attribute 12000")), "{e:?}");
        let ev = serde_json::json!({"info": "x", "Attribute": attrs, "Object": [{"name": "file", "Attribute": [
            {"type": "md5", "object_relation": "md5", "value": "a".repeat(32), "Tag": [{"name": "t"}]}]}]});
        store.add_event(&user, serde_json::from_value(ev).unwrap()).await.unwrap();
        let all = store.search_attributes(&filter::Filters::default()).await.unwrap();
        assert_eq!(all.len(), 12_001, "chunks of the bulk insert all written");
        assert_eq!(all[11_999].value, "d11999.example");
        assert_eq!((all[12_000].object_id, all[12_000].tags.len()), (1, 1), "object and tag linked");
        let dup = serde_json::json!({"info": "y", "Attribute": [{"uuid": all[0].uuid, "type": "domain", "value": "z.example"}]});
        let e = store.add_event(&user, serde_json::from_value(dup).unwrap()).await;
        assert!(matches!(&e, Err(StoreError::Invalid(m)) if m.contains("already exists")), "{e:?}");
    }
}

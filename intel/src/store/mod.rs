//! The embedded MISP-compatible store: events, attributes, objects, tags and
//! sightings in SQLite (schema in `migrations/`), with MISP's validation and
//! normalisation of attribute values. The HTTP side is in `crate::server`.

pub mod csv;
pub mod filter;
pub mod keys;
pub mod render;

use std::path::Path;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::model::input::{AttributeIn, EventIn, ObjectIn};
use crate::model::{date_of, now, types};

pub use keys::{Role, User};

/// A store operation that failed; the message is shown to API clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
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

/// The store: a pool of SQLite connections.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
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
    /// Opens (creating it if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            // table statistics for the planner, as SQLite advises on opening: without
            // them a big export walks the type index instead of scanning (1.7x slower)
            .pragma("analysis_limit", "1000")
            .pragma("optimize", "0x10002");
        Self::connect(opts).await
    }

    /// A store in memory (tests, demos): gone when dropped.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::new().in_memory(true).foreign_keys(true);
        Self::connect(opts).await
    }

    async fn connect(opts: SqliteConnectOptions) -> Result<Self, StoreError> {
        // one connection for an in-memory database (each would have its own), a few for a file
        let in_memory = opts.get_filename().as_os_str() == ":memory:";
        let pool = SqlitePoolOptions::new().max_connections(if in_memory { 1 } else { 4 }).connect_with(opts).await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// The pool, for the modules of the store.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn event_id(&self, key: &str) -> Result<i64, StoreError> {
        let (id, uuid) = id_or_uuid(key);
        let row = sqlx::query("SELECT id FROM events WHERE id = ?1 OR uuid = ?2")
            .bind(id)
            .bind(uuid)
            .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await?;
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
        for (i, a) in e.attributes.iter().enumerate() {
            insert_attribute(&mut tx, id, None, a, ts).await.map_err(|err| at("Attribute", i, err))?;
        }
        for (i, o) in e.objects.iter().enumerate() {
            insert_object(&mut tx, id, o, ts).await.map_err(|err| at("Object", i, err))?;
        }
        for t in &e.tags {
            let tag = tag_id(&mut tx, &t.name).await?;
            link_tag(&mut tx, Tagged::Event(id), tag, t.local.unwrap_or(false)).await?;
        }
        tx.commit().await?;
        if e.attributes.len() + e.objects.len() >= 1000 {
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
            sqlx::query("SELECT timestamp FROM events WHERE id = ?1").bind(id).fetch_one(&self.pool).await?.get(0);
        if let Some(ts) = e.timestamp {
            if ts <= current {
                return Ok(id);
            }
        }
        let ts = e.timestamp.unwrap_or_else(now).max(current + 1);
        let mut tx = self.pool.begin().await?;
        if let Some(info) = e.info.as_deref().filter(|i| !i.trim().is_empty()) {
            sqlx::query("UPDATE events SET info = ?1 WHERE id = ?2")
                .bind(info.trim())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for (field, v, lo, hi) in [
            ("distribution", e.distribution, 0, 4),
            ("threat_level_id", e.threat_level_id, 1, 4),
            ("analysis", e.analysis, 0, 2),
        ] {
            if let Some(v) = v {
                let v = check_range(field, v, lo, hi)?;
                sqlx::query(&format!("UPDATE events SET {field} = ?1 WHERE id = ?2"))
                    .bind(v)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let published = e.published.unwrap_or(false);
        sqlx::query("UPDATE events SET timestamp = ?1, published = ?2 WHERE id = ?3")
            .bind(ts)
            .bind(published)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for (i, a) in e.attributes.iter().enumerate() {
            upsert_attribute(&mut tx, id, None, a, ts).await.map_err(|err| at("Attribute", i, err))?;
        }
        for (i, o) in e.objects.iter().enumerate() {
            let existing = match &o.uuid {
                Some(u) => sqlx::query("SELECT id FROM objects WHERE uuid = ?1 AND event_id = ?2")
                    .bind(u.to_ascii_lowercase())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.get::<i64, _>(0)),
                None => None,
            };
            match existing {
                Some(oid) => {
                    for (j, a) in o.attributes.iter().enumerate() {
                        upsert_attribute(&mut tx, id, Some((oid, a.object_relation.as_deref())), a, ts)
                            .await
                            .map_err(|err| at("Object", i, at("Attribute", j, err)))?;
                    }
                }
                None => insert_object(&mut tx, id, o, ts).await.map_err(|err| at("Object", i, err))?,
            }
        }
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
        render::event(&self.pool, id, true).await
    }

    /// Tags an event or attribute named by uuid; the tag is created if new.
    pub async fn attach_tag(&self, uuid: &str, tag: &str, local: bool) -> Result<(), StoreError> {
        let tag = tag.trim();
        if tag.is_empty() {
            return Err(StoreError::Invalid("Tag name missing".into()));
        }
        let uuid = uuid.to_ascii_lowercase();
        let mut tx = self.pool.begin().await?;
        let tid = tag_id(&mut tx, tag).await?;
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
    /// a value; returns the sighting objects as MISP does.
    pub async fn add_sighting(
        &self,
        user: &User,
        uuid: Option<&str>,
        value: Option<&str>,
        kind: i64,
        source: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let kind = check_range("type", kind, 0, 2)?;
        let rows = match (uuid, value) {
            (Some(u), _) => {
                sqlx::query("SELECT id, event_id, uuid FROM attributes WHERE uuid = ?1 AND deleted = 0")
                    .bind(u.to_ascii_lowercase())
                    .fetch_all(&self.pool)
                    .await?
            }
            (None, Some(v)) => {
                sqlx::query("SELECT id, event_id, uuid FROM attributes WHERE value = ?1 AND deleted = 0")
                    .bind(v)
                    .fetch_all(&self.pool)
                    .await?
            }
            (None, None) => return Err(StoreError::Invalid("No valid attributes found.".into())),
        };
        if rows.is_empty() {
            return Err(StoreError::NotFound("No valid attributes found.".into()));
        }
        let date = now();
        let mut out = Vec::new();
        for r in rows {
            let (aid, eid, auuid): (i64, i64, String) = (r.get(0), r.get(1), r.get(2));
            let suuid = uuid::Uuid::new_v4().to_string();
            let sid: i64 = sqlx::query(
                "INSERT INTO sightings (uuid, attribute_id, event_id, org_id, type, source, date_sighting) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            )
            .bind(&suuid)
            .bind(aid)
            .bind(eid)
            .bind(user.org_id)
            .bind(kind)
            .bind(source)
            .bind(date)
            .fetch_one(&self.pool)
            .await?
            .get(0);
            out.push(serde_json::json!({"Sighting": {
                "id": sid.to_string(), "attribute_id": aid.to_string(), "event_id": eid.to_string(),
                "org_id": user.org_id.to_string(), "date_sighting": date.to_string(), "uuid": suuid,
                "source": source, "type": kind.to_string(), "attribute_uuid": auuid,
            }}));
        }
        Ok(out)
    }

    /// Events matching `filters`, for /events/index: flat event objects.
    pub async fn index(&self, filters: &filter::Filters) -> Result<Vec<Value>, StoreError> {
        if filters.minimal {
            return filter::minimal_index(&self.pool, filters).await;
        }
        let ids = filter::event_ids(&self.pool, filters).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let mut ev = render::event(&self.pool, id, false).await?;
            if let Some(e) = ev.get_mut("Event").map(Value::take) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Events matching `filters`, with their attributes, for /events/restSearch.
    pub async fn search_events(&self, filters: &filter::Filters) -> Result<Vec<Value>, StoreError> {
        let ids = filter::event_ids(&self.pool, filters).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(render::event(&self.pool, id, true).await?);
        }
        Ok(out)
    }

    /// Attributes matching `filters` as MISP's JSON array, rendered by SQLite (big searches).
    pub async fn search_attributes_json(&self, filters: &filter::Filters) -> Result<String, StoreError> {
        filter::attributes_json(&self.pool, filters).await
    }

    /// Attributes matching `filters` as MISP's CSV export (`returnFormat: "csv"`).
    pub async fn search_attributes_csv(&self, filters: &filter::Filters) -> Result<String, StoreError> {
        csv::attributes_csv(&self.pool, filters).await
    }

    /// (id, type, value) of the attributes matching `filters` (for warninglist checks).
    pub async fn search_attribute_values(
        &self,
        filters: &filter::Filters,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        filter::attribute_values(&self.pool, filters).await
    }

    /// Attributes matching `filters`, typed: what the SQLite-rendered answers
    /// of /attributes/restSearch are tested against.
    pub async fn search_attributes(&self, filters: &filter::Filters) -> Result<Vec<render::AttributeOut>, StoreError> {
        filter::attributes(&self.pool, filters).await
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
    sqlx::query("INSERT OR IGNORE INTO tags (name) VALUES (?1)").bind(name.trim()).execute(&mut **tx).await?;
    Ok(sqlx::query("SELECT id FROM tags WHERE name = ?1").bind(name.trim()).fetch_one(&mut **tx).await?.get(0))
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
    let value =
        types::normalise(kind, a.value.as_deref().unwrap_or("")).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let category = match a.category.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if types::CATEGORIES.contains(&c) => c.to_string(),
        Some(c) => return Err(StoreError::Invalid(format!("unknown category {c:?}"))),
        None => default_category.to_string(),
    };
    let uuid = uuid_or_new(&a.uuid)?;
    Ok(AttrRow { uuid, kind: kind.to_string(), category, value, to_ids: a.to_ids.unwrap_or(default_ids) })
}

async fn insert_attribute(
    tx: &mut Tx<'_>,
    event_id: i64,
    object: Option<(i64, Option<&str>)>,
    a: &AttributeIn,
    ts: i64,
) -> Result<(), StoreError> {
    let row = check_attribute(a)?;
    let distribution = check_range("distribution", a.distribution.unwrap_or(5), 0, 5)?;
    let (object_id, relation) = match object {
        Some((id, rel)) => (Some(id), rel.or(a.object_relation.as_deref()).map(str::to_string)),
        None => (None, None),
    };
    let dup = sqlx::query("SELECT 1 FROM attributes WHERE uuid = ?1").bind(&row.uuid).fetch_optional(&mut **tx).await?;
    if dup.is_some() {
        return Err(StoreError::Invalid(format!("an attribute with uuid {} already exists", row.uuid)));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO attributes (event_id, object_id, object_relation, uuid, type, category, value, to_ids, comment, \
         distribution, timestamp, deleted, disable_correlation, first_seen, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) RETURNING id",
    )
    .bind(event_id)
    .bind(object_id)
    .bind(relation)
    .bind(&row.uuid)
    .bind(&row.kind)
    .bind(&row.category)
    .bind(&row.value)
    .bind(row.to_ids)
    .bind(a.comment.as_deref().unwrap_or(""))
    .bind(distribution)
    .bind(a.timestamp.unwrap_or(ts))
    .bind(a.deleted.unwrap_or(false))
    .bind(a.disable_correlation.unwrap_or(false))
    .bind(&a.first_seen)
    .bind(&a.last_seen)
    .fetch_one(&mut **tx)
    .await?
    .get(0);
    for t in &a.tags {
        let tag = tag_id(tx, &t.name).await?;
        link_tag(tx, Tagged::Attribute(id), tag, t.local.unwrap_or(false)).await?;
    }
    Ok(())
}

/// An edited attribute: updated when its uuid is known in the event, added otherwise.
async fn upsert_attribute(
    tx: &mut Tx<'_>,
    event_id: i64,
    object: Option<(i64, Option<&str>)>,
    a: &AttributeIn,
    ts: i64,
) -> Result<(), StoreError> {
    let known = match &a.uuid {
        Some(u) => sqlx::query("SELECT id FROM attributes WHERE uuid = ?1 AND event_id = ?2")
            .bind(u.to_ascii_lowercase())
            .bind(event_id)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.get::<i64, _>(0)),
        None => None,
    };
    let Some(id) = known else {
        return insert_attribute(tx, event_id, object, a, ts).await;
    };
    let row = check_attribute(a)?;
    sqlx::query(
        "UPDATE attributes SET type = ?1, category = ?2, value = ?3, to_ids = ?4, comment = ?5, deleted = ?6, \
         timestamp = ?7 WHERE id = ?8",
    )
    .bind(&row.kind)
    .bind(&row.category)
    .bind(&row.value)
    .bind(row.to_ids)
    .bind(a.comment.as_deref().unwrap_or(""))
    .bind(a.deleted.unwrap_or(false))
    .bind(a.timestamp.unwrap_or(ts).max(ts))
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_object(tx: &mut Tx<'_>, event_id: i64, o: &ObjectIn, ts: i64) -> Result<(), StoreError> {
    let name = o
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StoreError::Invalid("name is required".into()))?;
    let uuid = uuid_or_new(&o.uuid)?;
    let id: i64 = sqlx::query(
        "INSERT INTO objects (event_id, uuid, name, meta_category, description, template_uuid, template_version, \
         comment, distribution, timestamp, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
    )
    .bind(event_id)
    .bind(&uuid)
    .bind(name)
    .bind(o.meta_category.as_deref().unwrap_or(""))
    .bind(o.description.as_deref().unwrap_or(""))
    .bind(o.template_uuid.as_deref().unwrap_or(""))
    .bind(o.template_version.as_deref().unwrap_or(""))
    .bind(o.comment.as_deref().unwrap_or(""))
    .bind(check_range("distribution", o.distribution.unwrap_or(5), 0, 5)?)
    .bind(o.timestamp.unwrap_or(ts))
    .bind(o.deleted.unwrap_or(false))
    .fetch_one(&mut **tx)
    .await?
    .get(0);
    for (i, a) in o.attributes.iter().enumerate() {
        if a.object_relation.as_deref().is_none_or(str::is_empty) {
            return Err(at("Attribute", i, StoreError::Invalid("object_relation is required in an object".into())));
        }
        insert_attribute(tx, event_id, Some((id, a.object_relation.as_deref())), a, ts)
            .await
            .map_err(|e| at("Attribute", i, e))?;
    }
    Ok(())
}

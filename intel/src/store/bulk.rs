//! Attributes, objects and their tags written in bulk: checked in Rust first,
//! then a few `INSERT ... SELECT FROM json_each(?)` statements per chunk
//! instead of several statements per attribute. A 50,000-attribute import
//! then holds the write lock for a fraction of a second, not 17 s, so the
//! writers queued behind it are not starved.

use std::collections::HashSet;

use serde_json::{json, Value};
use sqlx::Row;

use super::{check_attribute, check_range, check_text, check_uuid, tag_name, uuid_or_new, StoreError, Tx};
use crate::model::input::{AttributeIn, ObjectIn};

/// Rows per statement: bounds the JSON text bound to one statement.
const CHUNK: usize = 5_000;

/// Which object an attribute belongs to.
pub(super) enum ObjectRef {
    /// An object of this batch (or any), by uuid.
    Uuid(String),
    /// An object already stored.
    Id(i64),
}

/// Checked rows waiting for one write.
#[derive(Default)]
pub(super) struct Batch {
    /// `[object_id, object_uuid, relation, uuid, type, category, value, to_ids, comment,
    /// distribution, timestamp, deleted, disable_correlation, first_seen, last_seen]`
    attributes: Vec<Value>,
    /// `[uuid, name, meta_category, description, template_uuid, template_version, comment,
    /// distribution, timestamp, deleted]`
    objects: Vec<Value>,
    /// `[attribute uuid, tag name, local]`
    tags: Vec<Value>,
    /// Attribute and object uuids of this batch (a uuid twice is refused before writing).
    uuids: HashSet<String>,
}

impl Batch {
    /// How many attributes and objects wait.
    pub(super) fn len(&self) -> usize {
        self.attributes.len() + self.objects.len()
    }

    fn claim(&mut self, uuid: &str, what: &str) -> Result<(), StoreError> {
        if !self.uuids.insert(uuid.to_string()) {
            return Err(StoreError::Invalid(format!("{what} uuid {uuid} appears twice")));
        }
        Ok(())
    }

    /// Checks an attribute and adds it (top level when `object` is None).
    pub(super) fn attribute(&mut self, object: Option<ObjectRef>, a: &AttributeIn, ts: i64) -> Result<(), StoreError> {
        let row = check_attribute(a)?;
        let distribution = check_range("distribution", a.distribution.unwrap_or(5), 0, 5)?;
        for (field, v) in [("first_seen", &a.first_seen), ("last_seen", &a.last_seen)] {
            if let Some(v) = v {
                check_text(field, v)?;
            }
        }
        self.claim(&row.uuid, "attribute")?;
        let (object_id, object_uuid, relation) = match object {
            None => (None, None, None),
            Some(ObjectRef::Id(id)) => (Some(id), None, a.object_relation.clone()),
            Some(ObjectRef::Uuid(u)) => (None, Some(u), a.object_relation.clone()),
        };
        for t in &a.tags {
            self.tags.push(json!([row.uuid, tag_name(&t.name)?, t.local.unwrap_or(false)]));
        }
        self.attributes.push(json!([
            object_id,
            object_uuid,
            relation,
            row.uuid,
            row.kind,
            row.category,
            row.value,
            row.to_ids,
            row.comment,
            distribution,
            a.timestamp.unwrap_or(ts),
            a.deleted.unwrap_or(false),
            a.disable_correlation.unwrap_or(false),
            a.first_seen,
            a.last_seen,
        ]));
        Ok(())
    }

    /// Checks an object and adds it with its attributes.
    pub(super) fn object(&mut self, o: &ObjectIn, ts: i64) -> Result<(), StoreError> {
        let name = o
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| StoreError::Invalid("name is required".into()))?;
        let uuid = uuid_or_new(&o.uuid)?;
        self.claim(&uuid, "object")?;
        let text = |field: &str, v: &Option<String>| check_text(field, v.as_deref().unwrap_or("")).map(str::to_string);
        self.objects.push(json!([
            uuid,
            check_text("name", name)?,
            text("meta-category", &o.meta_category)?,
            text("description", &o.description)?,
            text("template_uuid", &o.template_uuid)?,
            text("template_version", &o.template_version)?,
            text("comment", &o.comment)?,
            check_range("distribution", o.distribution.unwrap_or(5), 0, 5)?,
            o.timestamp.unwrap_or(ts),
            o.deleted.unwrap_or(false),
        ]));
        for (i, a) in o.attributes.iter().enumerate() {
            if a.object_relation.as_deref().is_none_or(str::is_empty) {
                return Err(super::at(
                    "Attribute",
                    i,
                    StoreError::Invalid("object_relation is required in an object".into()),
                ));
            }
            self.attribute(Some(ObjectRef::Uuid(uuid.clone())), a, ts).map_err(|e| super::at("Attribute", i, e))?;
        }
        Ok(())
    }

    /// Writes the batch into event `event_id`, in the order it was built.
    pub(super) async fn insert(self, tx: &mut Tx<'_>, event_id: i64) -> Result<(), StoreError> {
        let uuids = serde_json::to_string(&self.uuids.iter().collect::<Vec<_>>()).unwrap_or_default();
        for (table, what) in [("attributes", "an attribute"), ("objects", "an object")] {
            let taken: Option<String> = sqlx::query_scalar(&format!(
                "SELECT t.uuid FROM json_each(?1) j JOIN {table} t ON t.uuid = j.value LIMIT 1"
            ))
            .bind(&uuids)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(u) = taken {
                return Err(StoreError::Invalid(format!("{what} with uuid {u} already exists")));
            }
        }
        for chunk in self.objects.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO objects (event_id, uuid, name, meta_category, description, template_uuid, \
                 template_version, comment, distribution, timestamp, deleted) \
                 SELECT ?1, v->>0, v->>1, v->>2, v->>3, v->>4, v->>5, v->>6, v->>7, v->>8, v->>9 \
                 FROM (SELECT value AS v FROM json_each(?2) ORDER BY key)",
            )
            .bind(event_id)
            .bind(Value::Array(chunk.to_vec()).to_string())
            .execute(&mut **tx)
            .await?;
        }
        for chunk in self.attributes.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO attributes (event_id, object_id, object_relation, uuid, type, category, value, to_ids, \
                 comment, distribution, timestamp, deleted, disable_correlation, first_seen, last_seen) \
                 SELECT ?1, COALESCE(v->>0, (SELECT o.id FROM objects o WHERE o.uuid = v->>1)), v->>2, v->>3, \
                 v->>4, v->>5, v->>6, v->>7, v->>8, v->>9, v->>10, v->>11, v->>12, v->>13, v->>14 \
                 FROM (SELECT value AS v FROM json_each(?2) ORDER BY key)",
            )
            .bind(event_id)
            .bind(Value::Array(chunk.to_vec()).to_string())
            .execute(&mut **tx)
            .await?;
        }
        for chunk in self.tags.chunks(CHUNK) {
            let list = Value::Array(chunk.to_vec()).to_string();
            sqlx::query("INSERT OR IGNORE INTO tags (name) SELECT DISTINCT value->>1 FROM json_each(?1)")
                .bind(&list)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "INSERT OR IGNORE INTO attribute_tags (attribute_id, tag_id, local) \
                 SELECT a.id, t.id, j.value->>2 FROM json_each(?1) j JOIN attributes a ON a.uuid = j.value->>0 \
                 JOIN tags t ON t.name = j.value->>1",
            )
            .bind(&list)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Ids by uuid of the rows of `table` (attributes or objects) in event
/// `event_id` among `uuids`: what an edit updates rather than adds.
pub(super) async fn known(
    tx: &mut Tx<'_>,
    table: &str,
    event_id: i64,
    uuids: &[String],
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let list = serde_json::to_string(uuids).unwrap_or_default();
    let rows = sqlx::query(&format!(
        "SELECT t.uuid, t.id FROM json_each(?1) j JOIN {table} t ON t.uuid = j.value WHERE t.event_id = ?2"
    ))
    .bind(list)
    .bind(event_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The uuid as stored (canonical, lowercase), or the text as given when it is not a uuid.
pub(super) fn stored_uuid(u: &str) -> String {
    check_uuid(u).unwrap_or_else(|_| u.to_ascii_lowercase())
}

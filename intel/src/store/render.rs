//! Rows to MISP's JSON: ids and timestamps as strings, flags as booleans.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;

use super::StoreError;

fn s(v: i64) -> Value {
    Value::String(v.to_string())
}

async fn org(conn: &mut SqliteConnection, id: i64) -> Result<Value, StoreError> {
    let r = sqlx::query("SELECT id, name, uuid FROM orgs WHERE id = ?1").bind(id).fetch_one(&mut *conn).await?;
    Ok(json!({"id": s(r.get(0)), "name": r.get::<String, _>(1), "uuid": r.get::<String, _>(2), "local": true}))
}

#[allow(missing_docs)] // MISP's field names
mod out {
    use serde::Serialize;

    fn as_string<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// A tag as attribute search results carry it.
    #[derive(Debug, Clone, Serialize)]
    pub struct TagOut {
        #[serde(serialize_with = "as_string")]
        pub id: i64,
        pub name: String,
        pub colour: String,
        pub local: bool,
    }

    /// The event summary MISP puts in each attribute search result.
    #[derive(Debug, Clone, Serialize)]
    pub struct EventSummary {
        #[serde(serialize_with = "as_string")]
        pub org_id: i64,
        #[serde(serialize_with = "as_string")]
        pub distribution: i64,
        #[serde(serialize_with = "as_string")]
        pub id: i64,
        pub info: String,
        #[serde(serialize_with = "as_string")]
        pub orgc_id: i64,
        pub uuid: String,
    }

    /// One attribute search result, in MISP's JSON (ids and timestamps as strings).
    /// Typed rather than a JSON tree: 100,000 of them are written in well under a second.
    #[derive(Debug, Clone, Serialize)]
    pub struct AttributeOut {
        #[serde(serialize_with = "as_string")]
        pub id: i64,
        #[serde(serialize_with = "as_string")]
        pub event_id: i64,
        #[serde(serialize_with = "as_string")]
        pub object_id: i64,
        pub object_relation: Option<String>,
        pub category: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub value: String,
        pub to_ids: bool,
        pub uuid: String,
        #[serde(serialize_with = "as_string")]
        pub timestamp: i64,
        #[serde(serialize_with = "as_string")]
        pub distribution: i64,
        pub sharing_group_id: &'static str,
        pub comment: String,
        pub deleted: bool,
        pub disable_correlation: bool,
        pub first_seen: Option<String>,
        pub last_seen: Option<String>,
        #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
        pub tags: Vec<TagOut>,
        /// Present in search results, not inside an event.
        #[serde(rename = "Event", skip_serializing_if = "Option::is_none")]
        pub event: Option<EventSummary>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub event_uuid: Option<String>,
    }
}
pub use out::{AttributeOut, EventSummary, TagOut};

/// The columns `attribute_row` reads, from `attributes a JOIN events e`.
pub const ATTRIBUTE_COLUMNS: &str = "a.id, a.event_id, a.object_id, a.object_relation, a.category, a.type, a.value, \
     a.to_ids, a.uuid, a.timestamp, a.distribution, a.comment, a.deleted, a.disable_correlation, a.first_seen, \
     a.last_seen, e.uuid, e.info, e.org_id, e.orgc_id, e.distribution";

/// One row of `SELECT ATTRIBUTE_COLUMNS` as MISP's attribute; `with_event`
/// adds the `Event` summary of search results.
pub fn attribute_row(r: &SqliteRow, tags: Vec<TagOut>, with_event: bool, include_event_uuid: bool) -> AttributeOut {
    let event_uuid: String = r.get(16);
    AttributeOut {
        id: r.get(0),
        event_id: r.get(1),
        object_id: r.get::<Option<i64>, _>(2).unwrap_or(0),
        object_relation: r.get(3),
        category: r.get(4),
        kind: r.get(5),
        value: r.get(6),
        to_ids: r.get(7),
        uuid: r.get(8),
        timestamp: r.get(9),
        distribution: r.get(10),
        sharing_group_id: "0",
        comment: r.get(11),
        deleted: r.get(12),
        disable_correlation: r.get(13),
        first_seen: r.get(14),
        last_seen: r.get(15),
        tags,
        event: with_event.then(|| EventSummary {
            org_id: r.get(18),
            distribution: r.get(20),
            id: r.get(1),
            info: r.get(17),
            orgc_id: r.get(19),
            uuid: event_uuid.clone(),
        }),
        event_uuid: include_event_uuid.then_some(event_uuid),
    }
}

/// Tags of attributes by attribute id: those of one event, or all.
pub async fn attribute_tags(
    conn: &mut SqliteConnection,
    event_id: Option<i64>,
) -> Result<HashMap<i64, Vec<TagOut>>, StoreError> {
    let rows = sqlx::query(
        "SELECT at.attribute_id, t.id, t.name, t.colour, at.local FROM attribute_tags at \
         JOIN tags t ON t.id = at.tag_id JOIN attributes a ON a.id = at.attribute_id \
         WHERE ?1 IS NULL OR a.event_id = ?1 ORDER BY t.id",
    )
    .bind(event_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut m: HashMap<i64, Vec<TagOut>> = HashMap::new();
    for r in &rows {
        m.entry(r.get(0)).or_default().push(TagOut { id: r.get(1), name: r.get(2), colour: r.get(3), local: r.get(4) });
    }
    Ok(m)
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    // plain structs of strings, numbers and booleans: serialising cannot fail
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `{"Event": {...}}` for event `id`; with `full`, its attributes, objects and tags.
pub async fn event(conn: &mut SqliteConnection, id: i64, full: bool) -> Result<Value, StoreError> {
    let e = sqlx::query("SELECT * FROM events WHERE id = ?1").bind(id).fetch_optional(&mut *conn).await?;
    let Some(e) = e else { return Err(StoreError::NotFound("Invalid event".into())) };
    let org_id: i64 = e.get("org_id");
    let orgc_id: i64 = e.get("orgc_id");
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM attributes WHERE event_id = ?1 AND deleted = 0")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?
        .get(0);
    let tags: Vec<Value> = sqlx::query(
        "SELECT t.id, t.name, t.colour, et.local FROM event_tags et JOIN tags t ON t.id = et.tag_id \
         WHERE et.event_id = ?1 ORDER BY t.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| to_json(&TagOut { id: r.get(0), name: r.get(1), colour: r.get(2), local: r.get(3) }))
    .collect();
    let mut ev: Map<String, Value> = json!({
        "id": s(id),
        "orgc_id": s(orgc_id),
        "org_id": s(org_id),
        "date": e.get::<String, _>("date"),
        "threat_level_id": s(e.get("threat_level_id")),
        "info": e.get::<String, _>("info"),
        "published": e.get::<bool, _>("published"),
        "uuid": e.get::<String, _>("uuid"),
        "attribute_count": s(count),
        "analysis": s(e.get("analysis")),
        "timestamp": s(e.get("timestamp")),
        "distribution": s(e.get("distribution")),
        "proposal_email_lock": false,
        "locked": false,
        "publish_timestamp": s(e.get("publish_timestamp")),
        "sharing_group_id": "0",
        "disable_correlation": false,
        "extends_uuid": "",
        "protected": null,
        "event_creator_email": e.get::<String, _>("creator_email"),
        "Org": org(&mut *conn, org_id).await?,
        "Orgc": org(&mut *conn, orgc_id).await?,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if full {
        // every attribute of the event in one query, then split between the event and its objects
        let mut atags = attribute_tags(&mut *conn, Some(id)).await?;
        let rows = sqlx::query(&format!(
            "SELECT {ATTRIBUTE_COLUMNS} FROM attributes a JOIN events e ON e.id = a.event_id \
             WHERE a.event_id = ?1 AND a.deleted = 0 ORDER BY a.id"
        ))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let mut attributes = Vec::new();
        let mut by_object: HashMap<i64, Vec<Value>> = HashMap::new();
        for r in &rows {
            let a = attribute_row(r, atags.remove(&r.get::<i64, _>(0)).unwrap_or_default(), false, false);
            match a.object_id {
                0 => attributes.push(to_json(&a)),
                oid => by_object.entry(oid).or_default().push(to_json(&a)),
            }
        }
        let objs = sqlx::query("SELECT * FROM objects WHERE event_id = ?1 AND deleted = 0 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        let mut objects = Vec::with_capacity(objs.len());
        for o in &objs {
            let oid: i64 = o.get("id");
            objects.push(json!({
                "id": s(oid), "name": o.get::<String, _>("name"), "meta-category": o.get::<String, _>("meta_category"),
                "description": o.get::<String, _>("description"), "template_uuid": o.get::<String, _>("template_uuid"),
                "template_version": o.get::<String, _>("template_version"), "event_id": s(id),
                "uuid": o.get::<String, _>("uuid"), "timestamp": s(o.get("timestamp")),
                "distribution": s(o.get("distribution")), "sharing_group_id": "0", "comment": o.get::<String, _>("comment"),
                "deleted": o.get::<bool, _>("deleted"), "first_seen": null, "last_seen": null,
                "Attribute": by_object.remove(&oid).unwrap_or_default(),
            }));
        }
        ev.insert("Attribute".into(), Value::Array(attributes));
        ev.insert("ShadowAttribute".into(), json!([]));
        ev.insert("RelatedEvent".into(), json!([]));
        ev.insert("Galaxy".into(), json!([]));
        ev.insert("Object".into(), Value::Array(objects));
        ev.insert("EventReport".into(), json!([]));
        ev.insert("CryptographicKey".into(), json!([]));
    }
    ev.insert("Tag".into(), Value::Array(tags));
    Ok(json!({"Event": ev}))
}

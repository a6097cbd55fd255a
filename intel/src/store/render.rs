//! Rows to MISP's JSON: ids and timestamps as strings, flags as booleans.

use serde_json::{json, Map, Value};
use sqlx::{Row, SqlitePool};

use super::StoreError;

fn s(v: i64) -> Value {
    Value::String(v.to_string())
}

async fn org(pool: &SqlitePool, id: i64) -> Result<Value, StoreError> {
    let r = sqlx::query("SELECT id, name, uuid FROM orgs WHERE id = ?1").bind(id).fetch_one(pool).await?;
    Ok(json!({"id": s(r.get(0)), "name": r.get::<String, _>(1), "uuid": r.get::<String, _>(2), "local": true}))
}

fn tag_json(r: &sqlx::sqlite::SqliteRow) -> Value {
    json!({
        "id": s(r.get("id")), "name": r.get::<String, _>("name"), "colour": r.get::<String, _>("colour"),
        "exportable": true, "user_id": "0", "hide_tag": false, "numerical_value": null, "is_galaxy": false,
        "is_custom_galaxy": false, "local_only": false, "local": r.get::<bool, _>("local"),
    })
}

/// Tags of an attribute, keyed by attribute id.
async fn attribute_tags(
    pool: &SqlitePool,
    event_id: i64,
) -> Result<std::collections::HashMap<i64, Vec<Value>>, StoreError> {
    let rows = sqlx::query(
        "SELECT at.attribute_id AS aid, t.id AS id, t.name AS name, t.colour AS colour, at.local AS local \
         FROM attribute_tags at JOIN tags t ON t.id = at.tag_id JOIN attributes a ON a.id = at.attribute_id \
         WHERE a.event_id = ?1 ORDER BY t.id",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await?;
    let mut m: std::collections::HashMap<i64, Vec<Value>> = std::collections::HashMap::new();
    for r in &rows {
        m.entry(r.get("aid")).or_default().push(tag_json(r));
    }
    Ok(m)
}

/// One attribute row (of `SELECT a.*`) as MISP's JSON.
pub fn attribute(r: &sqlx::sqlite::SqliteRow, tags: Option<&Vec<Value>>) -> Value {
    let mut a = json!({
        "id": s(r.get("id")),
        "event_id": s(r.get("event_id")),
        "object_id": s(r.get::<Option<i64>, _>("object_id").unwrap_or(0)),
        "object_relation": r.get::<Option<String>, _>("object_relation"),
        "category": r.get::<String, _>("category"),
        "type": r.get::<String, _>("type"),
        "value": r.get::<String, _>("value"),
        "to_ids": r.get::<bool, _>("to_ids"),
        "uuid": r.get::<String, _>("uuid"),
        "timestamp": s(r.get("timestamp")),
        "distribution": s(r.get("distribution")),
        "sharing_group_id": "0",
        "comment": r.get::<String, _>("comment"),
        "deleted": r.get::<bool, _>("deleted"),
        "disable_correlation": r.get::<bool, _>("disable_correlation"),
        "first_seen": r.get::<Option<String>, _>("first_seen"),
        "last_seen": r.get::<Option<String>, _>("last_seen"),
    });
    if let (Some(tags), Some(m)) = (tags.filter(|t| !t.is_empty()), a.as_object_mut()) {
        m.insert("Tag".into(), Value::Array(tags.clone()));
    }
    a
}

/// `{"Event": {...}}` for event `id`; with `full`, its attributes, objects and tags.
pub async fn event(pool: &SqlitePool, id: i64, full: bool) -> Result<Value, StoreError> {
    let e = sqlx::query("SELECT * FROM events WHERE id = ?1").bind(id).fetch_optional(pool).await?;
    let Some(e) = e else { return Err(StoreError::NotFound("Invalid event".into())) };
    let org_id: i64 = e.get("org_id");
    let orgc_id: i64 = e.get("orgc_id");
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM attributes WHERE event_id = ?1 AND deleted = 0")
        .bind(id)
        .fetch_one(pool)
        .await?
        .get(0);
    let tags: Vec<Value> = sqlx::query(
        "SELECT t.id AS id, t.name AS name, t.colour AS colour, et.local AS local FROM event_tags et \
         JOIN tags t ON t.id = et.tag_id WHERE et.event_id = ?1 ORDER BY t.id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(tag_json)
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
        "Org": org(pool, org_id).await?,
        "Orgc": org(pool, orgc_id).await?,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if full {
        let atags = attribute_tags(pool, id).await?;
        let attrs = sqlx::query(
            "SELECT * FROM attributes WHERE event_id = ?1 AND object_id IS NULL AND deleted = 0 ORDER BY id",
        )
        .bind(id)
        .fetch_all(pool)
        .await?;
        let attributes: Vec<Value> = attrs.iter().map(|r| attribute(r, atags.get(&r.get::<i64, _>("id")))).collect();
        let objs = sqlx::query("SELECT * FROM objects WHERE event_id = ?1 AND deleted = 0 ORDER BY id")
            .bind(id)
            .fetch_all(pool)
            .await?;
        let mut objects = Vec::with_capacity(objs.len());
        for o in &objs {
            let oid: i64 = o.get("id");
            let oattrs = sqlx::query("SELECT * FROM attributes WHERE object_id = ?1 AND deleted = 0 ORDER BY id")
                .bind(oid)
                .fetch_all(pool)
                .await?;
            objects.push(json!({
                "id": s(oid), "name": o.get::<String, _>("name"), "meta-category": o.get::<String, _>("meta_category"),
                "description": o.get::<String, _>("description"), "template_uuid": o.get::<String, _>("template_uuid"),
                "template_version": o.get::<String, _>("template_version"), "event_id": s(id),
                "uuid": o.get::<String, _>("uuid"), "timestamp": s(o.get("timestamp")),
                "distribution": s(o.get("distribution")), "sharing_group_id": "0", "comment": o.get::<String, _>("comment"),
                "deleted": o.get::<bool, _>("deleted"), "first_seen": null, "last_seen": null,
                "Attribute": oattrs.iter().map(|r| attribute(r, atags.get(&r.get::<i64, _>("id")))).collect::<Vec<_>>(),
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

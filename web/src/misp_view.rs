//! A MISP event as the pages show it, read from MISP's JSON (`{"Event": {...}}`
//! as the API and the store give it): the run's MISP page and the
//! appliance's MISP pages share it, and the template `misp_event_body.html`.

use ioclab_intel::warninglists::Warninglists;
use serde::Serialize;
use serde_json::Value;

/// A MISP attribute as the pages list it.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeRow {
    /// Category.
    pub category: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Value.
    pub value: String,
    /// Whether it is an IoC to export.
    pub to_ids: bool,
    /// Comment.
    pub comment: String,
    /// The object it belongs to (its name), empty for the event's own attributes.
    pub object: String,
    /// The warninglists its value is on, as the export checks it (these lists keep it out of the IoC export).
    pub warninglists: Vec<String>,
}

/// A MISP object: its name and what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectRow {
    /// Its template's name (`file`, `domain-ip`...).
    pub name: String,
    /// Its meta-category.
    pub meta_category: String,
    /// Its comment.
    pub comment: String,
    /// How many attributes it holds (listed with the event's).
    pub attributes: usize,
}

/// A MISP event as the pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// `id`.
    pub id: String,
    /// `info`.
    pub info: String,
    /// `uuid`.
    pub uuid: String,
    /// `date`.
    pub date: String,
    /// The threat level's name (High, Medium, Low, Undefined).
    pub threat_level: String,
    /// Whether it is published.
    pub published: bool,
    /// `attribute_count` (its attributes and its objects').
    pub attribute_count: u64,
    /// Tag names.
    pub tags: Vec<String>,
    /// Its attributes and its objects' attributes.
    pub attributes: Vec<AttributeRow>,
    /// Its objects.
    pub objects: Vec<ObjectRow>,
}

/// `key` of `v` as text (numbers as written, null and absent as empty).
pub fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "1" || s == "true",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// MISP's threat levels by id.
fn threat_level(id: &str) -> String {
    match id {
        "1" => "High",
        "2" => "Medium",
        "3" => "Low",
        "4" => "Undefined",
        "" => "",
        other => return format!("level {other}"),
    }
    .to_string()
}

fn list(v: &Value, k: &str) -> Vec<Value> {
    v.get(k).and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The event in MISP's JSON `doc`, each attribute checked against `lists`
/// (the export's: `Warninglists::embedded()`).
pub fn event_view_with(doc: &Value, lists: &Warninglists) -> EventView {
    let e = doc.get("Event").unwrap_or(doc);
    let attr = |a: &Value, object: &str| {
        let (kind, value) = (text(a, "type"), text(a, "value"));
        AttributeRow {
            category: text(a, "category"),
            warninglists: lists.check_attribute(&kind, &value).into_iter().map(|h| h.name).collect(),
            kind,
            value,
            to_ids: truthy(a.get("to_ids")),
            comment: text(a, "comment"),
            object: object.to_string(),
        }
    };
    let mut attributes: Vec<AttributeRow> = list(e, "Attribute").iter().map(|a| attr(a, "")).collect();
    let mut objects = Vec::new();
    for o in list(e, "Object") {
        let name = text(&o, "name");
        let inner = list(&o, "Attribute");
        attributes.extend(inner.iter().map(|a| attr(a, &name)));
        objects.push(ObjectRow {
            meta_category: text(&o, "meta-category"),
            comment: text(&o, "comment"),
            attributes: inner.len(),
            name,
        });
    }
    let count = text(e, "attribute_count").parse().unwrap_or(attributes.len() as u64);
    EventView {
        id: text(e, "id"),
        info: text(e, "info"),
        uuid: text(e, "uuid"),
        date: text(e, "date"),
        threat_level: threat_level(&text(e, "threat_level_id")),
        published: truthy(e.get("published")),
        attribute_count: count,
        tags: list(e, "Tag").iter().map(|t| text(t, "name")).collect(),
        attributes,
        objects,
    }
}

/// The event in MISP's JSON `doc`, checked against the export's warninglists.
pub fn event_view(doc: &Value) -> EventView {
    event_view_with(doc, Warninglists::embedded())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_misp_event_reads_with_its_objects_attributes_and_tags() {
        let doc = json!({"Event": {
            "id": "7", "info": "dns", "uuid": "u", "published": false, "date": "2026-11-30", "threat_level_id": "2",
            "Tag": [{"name": "tlp:white"}],
            "Attribute": [{"category": "Network activity", "type": "domain", "value": "why.kunai.rocks", "to_ids": true}],
            "Object": [{"name": "domain-ip", "meta-category": "network",
                        "Attribute": [{"type": "ip-dst", "value": "10.0.0.1", "to_ids": "0"}]}]
        }});
        let v = event_view(&doc);
        assert_eq!((v.id.as_str(), v.info.as_str(), v.date.as_str()), ("7", "dns", "2026-11-30"));
        assert_eq!(v.threat_level, "Medium");
        assert!(!v.published);
        assert_eq!(v.tags, vec!["tlp:white"]);
        assert_eq!(v.attributes.len(), 2);
        assert_eq!(v.attribute_count, 2, "no attribute_count: the attributes counted");
        assert!(v.attributes[0].to_ids);
        assert_eq!(v.attributes[0].object, "");
        assert!(!v.attributes[1].to_ids);
        assert_eq!(v.attributes[1].kind, "ip-dst");
        assert_eq!(v.attributes[1].object, "domain-ip");
        assert_eq!(v.objects.len(), 1);
        assert_eq!((v.objects[0].name.as_str(), v.objects[0].attributes), ("domain-ip", 1));
        assert!(event_view(&json!({"published": true})).published);
    }

    #[test]
    fn values_on_the_exports_warninglists_name_the_list() {
        let doc = json!({"Event": {"Attribute": [
            {"type": "ip-dst", "value": "8.8.8.8", "to_ids": true},
            {"type": "domain", "value": "why.kunai.rocks", "to_ids": true}
        ]}});
        let v = event_view(&doc);
        assert!(!v.attributes[0].warninglists.is_empty(), "Google's resolver is on a public-DNS list");
        assert!(
            v.attributes[0].warninglists.iter().any(|n| n.to_lowercase().contains("dns")),
            "{:?}",
            v.attributes[0].warninglists
        );
        assert!(v.attributes[1].warninglists.is_empty());
        assert!(event_view_with(&doc, &Warninglists::empty()).attributes[0].warninglists.is_empty());
    }
}

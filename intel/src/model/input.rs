//! Events as clients send them (PyMISP's JSON): MISP's string-typed numbers,
//! booleans as 0/1 or "0"/"1", optional everything. Parsed leniently here,
//! checked by the store.

// Field names are MISP's, documented by the spec; the structs say what they are.
#![allow(missing_docs)]

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// A number MISP may send as a JSON number or a string ("65"), or null.
pub fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(
            s.trim()
                .parse::<i64>()
                .or_else(|_| s.trim().parse::<f64>().map(|f| f as i64))
                .map_err(|_| de::Error::custom(format!("expected a number, got {s:?}")))?,
        ),
        other => return Err(de::Error::custom(format!("expected a number, got {other}"))),
    })
}

/// A flag MISP may send as true/false, 0/1 or "0"/"1"/"true"/"false".
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::Bool(b) => Some(b),
        Value::Number(n) => Some(n.as_f64().unwrap_or(0.0) != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Some(true),
            "0" | "false" | "" => Some(false),
            _ => return Err(de::Error::custom(format!("expected a boolean, got {s:?}"))),
        },
        other => return Err(de::Error::custom(format!("expected a boolean, got {other}"))),
    })
}

/// A string that clients may send as a number (attribute values like ports).
pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => return Err(de::Error::custom(format!("expected a string, got {other}"))),
    })
}

/// A tag as sent inside an event or attribute.
#[derive(Debug, Clone, Deserialize)]
pub struct TagIn {
    /// The tag's name, e.g. `tlp:white`.
    pub name: String,
    /// Local (not shared) tag.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub local: Option<bool>,
}

/// An attribute as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttributeIn {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub value: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub to_ids: Option<bool>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub distribution: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub deleted: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub disable_correlation: Option<bool>,
    #[serde(default)]
    pub object_relation: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub first_seen: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_seen: Option<String>,
    #[serde(rename = "Tag", default)]
    pub tags: Vec<TagIn>,
}

/// An object (a group of attributes from a template) as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectIn {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "meta-category", default)]
    pub meta_category: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub template_uuid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub template_version: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub distribution: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub deleted: Option<bool>,
    #[serde(rename = "Attribute", default)]
    pub attributes: Vec<AttributeIn>,
}

/// An event as sent to /events/add or /events/edit.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventIn {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub info: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub threat_level_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub analysis: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub distribution: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub published: Option<bool>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: Option<i64>,
    #[serde(rename = "Attribute", default)]
    pub attributes: Vec<AttributeIn>,
    #[serde(rename = "Object", default)]
    pub objects: Vec<ObjectIn>,
    #[serde(rename = "Tag", default)]
    pub tags: Vec<TagIn>,
}

impl EventIn {
    /// Reads an event body: `{"Event": {...}}` or the event itself.
    pub fn from_body(v: Value) -> Result<Self, serde_json::Error> {
        let inner = match v {
            Value::Object(mut m) if m.contains_key("Event") => m.remove("Event").unwrap_or(Value::Null),
            other => other,
        };
        serde_json::from_value(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn misp_string_numbers_and_flags() {
        let e = EventIn::from_body(json!({"Event": {"info": "x", "distribution": "1", "threat_level_id": 2,
            "published": "0", "Attribute": [{"type": "port", "value": 443, "to_ids": 1}]}}))
        .unwrap();
        assert_eq!(e.distribution, Some(1));
        assert_eq!(e.threat_level_id, Some(2));
        assert_eq!(e.published, Some(false));
        assert_eq!(e.attributes[0].value.as_deref(), Some("443"));
        assert_eq!(e.attributes[0].to_ids, Some(true));
        assert!(EventIn::from_body(json!({"info": "x", "distribution": "high"})).is_err());
        assert!(EventIn::from_body(json!({"info": "x", "Attribute": "nope"})).is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "info",
                        "Event",
                        "Attribute",
                        "Object",
                        "Tag",
                        "type",
                        "value",
                        "to_ids",
                        "distribution",
                        "timestamp",
                        "uuid"
                    ])
                    .prop_map(String::from),
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_is_an_error_or_an_event_never_a_panic(v in json_value()) {
            let _ = EventIn::from_body(v);
        }
    }
}

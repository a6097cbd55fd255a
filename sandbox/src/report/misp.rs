//! `misp`: the MISP events that already know some of the report's IoCs, as
//! Cuckoo's MISP processing module writes them (`event_id`, `date`, `url`,
//! `level`, `info`, `iocs`; ids and levels as MISP's strings). Cuckoo3's
//! shape (`id`, `datetime`, `description`, one `ioc`) reads too.

use ioclab_intel::model::levels::ThreatLevel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient;

/// One MISP event that matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MispHit {
    /// The event's id (written as MISP sends it, a string).
    #[serde(alias = "id", serialize_with = "as_string", deserialize_with = "lenient::uint")]
    pub event_id: u64,
    /// The event's date, `YYYY-MM-DD`.
    #[serde(alias = "datetime", deserialize_with = "lenient::string")]
    pub date: String,
    /// `<misp>/events/view/<id>`, for a human to open.
    #[serde(deserialize_with = "lenient::string")]
    pub url: String,
    /// The event's threat level (`"1"` high ... `"4"` undefined).
    #[serde(serialize_with = "level_out", deserialize_with = "level_in")]
    pub level: Option<ThreatLevel>,
    /// The event's title.
    #[serde(alias = "description", deserialize_with = "lenient::string")]
    pub info: String,
    /// The report's values this event holds.
    #[serde(alias = "ioc", deserialize_with = "lenient::strings")]
    pub iocs: Vec<String>,
}

fn as_string<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn level_out<S: serde::Serializer>(v: &Option<ThreatLevel>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(l) => s.collect_str(l),
        None => s.serialize_none(),
    }
}

/// A level from `"1"`, `1` or null; a number outside 1-4 is unknown (`None`), not an error.
fn level_in<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ThreatLevel>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => {
            let n = lenient::int(v).map_err(serde::de::Error::custom)?;
            Ok(ThreatLevel::try_from(n).ok())
        }
    }
}

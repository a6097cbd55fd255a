//! `signatures`: what matched, how bad, which ATT&CK techniques, and the
//! marks pointing at the evidence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::behavior::Call;
use super::lenient;

/// A signature that matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Signature {
    /// Short identifier (`persistence_cron`).
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// What it means, for a human.
    #[serde(deserialize_with = "lenient::string")]
    pub description: String,
    /// 1 (informative) to 5 (certainly malicious); Cuckoo's score sums them.
    #[serde(deserialize_with = "lenient::u32_")]
    pub severity: u32,
    /// Malware families it names.
    #[serde(deserialize_with = "lenient::strings")]
    pub families: Vec<String>,
    /// ATT&CK techniques by id (CAPE writes a list of ids: read with empty descriptions).
    #[serde(deserialize_with = "ttp_map")]
    pub ttp: BTreeMap<String, Ttp>,
    /// The evidence.
    #[serde(deserialize_with = "lenient::list")]
    pub marks: Vec<Mark>,
    /// How many marks there were (Cuckoo caps the list, not the count).
    #[serde(deserialize_with = "lenient::uint")]
    pub markcount: u64,
    /// Links.
    #[serde(deserialize_with = "lenient::strings")]
    pub references: Vec<String>,
}

/// An ATT&CK technique's names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ttp {
    /// Technique name.
    #[serde(deserialize_with = "lenient::string")]
    pub short: String,
    /// What it is.
    #[serde(deserialize_with = "lenient::string")]
    pub long: String,
}

fn ttp_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Ttp>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(o) => {
            o.into_iter().map(|(k, v)| Ok((k, Ttp::deserialize(v).map_err(serde::de::Error::custom)?))).collect()
        }
        Value::Array(items) => Ok(items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(id) => Some((id, Ttp::default())),
                Value::Object(o) => o.get("ttp").and_then(Value::as_str).map(|id| (id.to_string(), Ttp::default())),
                _ => None,
            })
            .collect()),
        other => Err(serde::de::Error::custom(format!("not ttps: {other}"))),
    }
}

/// A piece of evidence of a signature.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// A call (here: a sensor event) of process `pid`, the `cid`-th of its calls.
    Call {
        /// The process.
        pid: u32,
        /// Index of the call in the process's `calls`.
        cid: usize,
        /// The call itself.
        call: Call,
    },
    /// An indicator (a URL, an address, a path...).
    Ioc {
        /// What kind of value.
        category: String,
        /// The value.
        ioc: String,
        /// Why it is evidence.
        description: String,
    },
    /// Any other mark, kept as written (tolerated, never interpreted).
    Other(Value),
}

impl Mark {
    /// The mark on one line, whatever its shape (unknown shapes quoted up to `max_other` characters).
    pub fn one_line(&self, max_other: usize) -> String {
        match self {
            Mark::Call { pid, call, .. } => format!("pid {pid} {} {}", call.api, call.detail()).trim_end().to_string(),
            Mark::Ioc { category, ioc, description } if description.is_empty() => format!("{category} {ioc}"),
            Mark::Ioc { category, ioc, description } => format!("{category} {ioc} ({description})"),
            Mark::Other(v) => {
                let s = v.to_string();
                match s.char_indices().nth(max_other) {
                    Some((cut, _)) => format!("{}…", &s[..cut]),
                    None => s,
                }
            }
        }
    }
}

impl Serialize for Mark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Mark::Call { pid, cid, call } => {
                let mut m = s.serialize_map(Some(4))?;
                m.serialize_entry("type", "call")?;
                m.serialize_entry("pid", pid)?;
                m.serialize_entry("cid", cid)?;
                m.serialize_entry("call", call)?;
                m.end()
            }
            Mark::Ioc { category, ioc, description } => {
                let mut m = s.serialize_map(Some(4))?;
                m.serialize_entry("type", "ioc")?;
                m.serialize_entry("category", category)?;
                m.serialize_entry("ioc", ioc)?;
                m.serialize_entry("description", description)?;
                m.end()
            }
            Mark::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Mark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(match v.get("type").and_then(Value::as_str) {
            Some("call") => {
                let call = v.get("call").cloned().map(Call::deserialize).transpose().ok().flatten();
                let pid = v.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok());
                let cid = v.get("cid").and_then(Value::as_u64);
                match (pid, cid, call) {
                    (Some(pid), Some(cid), Some(call)) => Mark::Call { pid, cid: cid as usize, call },
                    _ => Mark::Other(v),
                }
            }
            Some("ioc") => Mark::Ioc { category: text("category"), ioc: text("ioc"), description: text("description") },
            _ => Mark::Other(v),
        })
    }
}

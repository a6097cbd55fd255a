//! Lenient readers for report fields: real Cuckoo and CAPE reports write the
//! same field as a number or a string, a list or a map, a hash or `""`; these
//! accept every shape seen and normalise it to the one type the model uses.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use serde_json::Value;

/// Epoch seconds from a number, a numeric string, or a date
/// (`2019-04-12 10:10:10[.ffffff]`, Cuckoo 1.x and CAPE; CAPE's process
/// times as its logger writes them, `2024-01-17 20:30:16,072`; ISO with `T`/`Z`).
pub fn epoch<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(opt_epoch(d)?.unwrap_or(0.0))
}

/// [`epoch`], `None` for null or `""`.
pub fn opt_epoch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => parse_time(&s).map(Some).ok_or_else(|| D::Error::custom(format!("not a time: {s:?}"))),
        other => Err(D::Error::custom(format!("not a time: {other}"))),
    }
}

fn parse_time(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(f) = s.parse::<f64>() {
        return Some(f);
    }
    let mut iso = s.replacen(' ', "T", 1);
    // CAPE's `first_seen` comes from Python's logging format: a comma before the milliseconds
    if let Some(comma) = iso.rfind(',').filter(|&at| at == 19) {
        iso.replace_range(comma..=comma, ".");
    }
    // offsets other than UTC are not written by sandboxes; `+00:00` is
    if let Some(stripped) = iso.strip_suffix("+00:00") {
        iso = stripped.to_string();
    }
    if !iso.ends_with('Z') {
        iso.push('Z');
    }
    // fractions longer than nanoseconds are cut
    if let Some(dot) = iso.find('.') {
        let digits = iso.len() - 1 - dot - 1;
        if digits > 9 {
            iso.replace_range(dot + 10..iso.len() - 1, "");
        }
    }
    ioclab_agent::events::time::UtcTime::from_str(&iso).ok().map(|t| t.epoch_secs())
}

/// An integer from a number (floats truncated), a numeric string, or null (0).
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::Bool(b) => Ok(b as i64),
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).ok_or_else(|| D::Error::custom("integer out of range"))
        }
        Value::String(s) if s.trim().is_empty() => Ok(0),
        Value::String(s) => s.trim().parse().map_err(|_| D::Error::custom(format!("not an integer: {s:?}"))),
        other => Err(D::Error::custom(format!("not an integer: {other}"))),
    }
}

/// A non-negative [`int`].
pub fn uint<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = int(d)?;
    u64::try_from(v).map_err(|_| D::Error::custom(format!("negative: {v}")))
}

/// A pid or port: a [`uint`] that fits 32 bits.
pub fn u32_<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = uint(d)?;
    u32::try_from(v).map_err(|_| D::Error::custom(format!("too large: {v}")))
}

/// A float from a number, a numeric string or null (0).
pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(0.0),
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s.trim().parse().map_err(|_| D::Error::custom(format!("not a number: {s:?}"))),
        other => Err(D::Error::custom(format!("not a number: {other}"))),
    }
}

/// Text from a string, a number, a bool or null (`""`); lists and maps are refused.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(D::Error::custom(format!("not text: {other}"))),
    }
}

/// Text lists whose items may be strings or anything else (rendered as JSON).
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => Ok(items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect()),
        Value::String(s) => Ok(vec![s]),
        other => Err(D::Error::custom(format!("not a list: {other}"))),
    }
}

/// Cuckoo's `options` text (`a=1,b=2`), also from a map (CAPE, Cuckoo's task JSON).
pub fn options<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Object(map) => Ok(map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(",")),
        other => Err(D::Error::custom(format!("not options: {other}"))),
    }
}

/// A digest, `None` for null or `""` (Cuckoo writes `""` for what it could not hash).
pub fn digest<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error>
where
    T::Err: std::fmt::Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s.trim().to_ascii_lowercase().parse().map(Some).map_err(|e| D::Error::custom(format!("{e}"))),
    }
}

/// Call arguments: a map (Cuckoo) or a list of `{name, value}` (CAPE).
pub fn arguments<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => Ok(map.into_iter().collect()),
        Value::Array(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(mut o) => {
                    let name = match o.remove("name") {
                        Some(Value::String(s)) => s,
                        _ => i.to_string(),
                    };
                    (name, o.remove("value").unwrap_or(Value::Null))
                }
                other => (i.to_string(), other),
            })
            .collect()),
        other => Err(D::Error::custom(format!("not arguments: {other}"))),
    }
}

/// A list where null means empty.
pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

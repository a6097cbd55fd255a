//! Serde helpers for values given as text and parsed at the edge.

use std::fmt::Display;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serializer};

/// Deserializes any `FromStr` type from a YAML string, the parse error
/// becoming a located serde error.
pub fn parse<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(|e| de::Error::custom(format!("{s:?}: {e}")))
}

/// Serializes any `Display` type as a string (the inverse of [`parse`]).
pub fn show<S: Serializer, T: Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

//! Serde helpers for values given as text and parsed at the edge.

use std::fmt::Display;
use std::str::FromStr;

use std::fmt;
use std::marker::PhantomData;

use serde::{de, Deserializer, Serializer};

/// Deserializes any `FromStr` type from a YAML string, the parse error
/// becoming a located serde error.
pub fn parse<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    d.deserialize_str(Parse(PhantomData))
}

/// Parses inside the deserializer's call, so the error carries the
/// position of the scalar itself (not of its parent).
pub struct Parse<T>(pub PhantomData<T>);

impl<T> de::Visitor<'_> for Parse<T>
where
    T: FromStr,
    T::Err: Display,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        s.parse().map_err(|e| E::custom(format!("{s:?}: {e}")))
    }
}

/// Serializes any `Display` type as a string (the inverse of [`parse`]).
pub fn show<S: Serializer, T: Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

//! A JSON serializer for events, byte-for-byte the output of serde_json
//! (a property test compares them), made for the agent's hot path:
//! - object keys come from the event structs' field names: written as they
//!   are when they need no escaping, which a quick check tells;
//! - string values are checked for characters to escape in one pass the
//!   compiler vectorises, and copied at once when there are none (almost
//!   always: paths, names, uuids), where serde_json walks them byte by byte.
//!
//! It understands serde_json's `RawValue` (the cached `info.host` and tasks).

use std::fmt::Display;

use serde::ser::{self, Impossible, Serialize};

/// Serialising an event failed (only a custom `Serialize` can make it fail).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

impl ser::Error for JsonError {
    fn custom<T: Display>(msg: T) -> Self {
        JsonError(msg.to_string())
    }
}

/// Appends the JSON of `value` to `out` (on error, `out` may hold part of it).
pub fn to_vec_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), JsonError> {
    value.serialize(&mut Writer { out })
}

/// The JSON of `value` as a string.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, JsonError> {
    let mut out = Vec::with_capacity(1024);
    to_vec_into(&mut out, value)?;
    // only UTF-8 is ever written: str input, escapes and ASCII punctuation
    String::from_utf8(out).map_err(|e| JsonError(e.to_string()))
}

/// serde_json's name for its raw JSON values (and their one field).
pub(crate) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Renders `value` once, through `scratch` (kept by the caller), for text
/// that many events repeat; `None` only if a custom `Serialize` failed.
pub(crate) fn render_shared<T: Serialize + ?Sized>(value: &T, scratch: &mut Vec<u8>) -> Option<std::sync::Arc<str>> {
    scratch.clear();
    to_vec_into(scratch, value).ok()?;
    // only UTF-8 is ever written
    std::str::from_utf8(scratch).ok().map(Into::into)
}

/// Serialises `json`, JSON text rendered earlier, as is: serde_json's
/// raw-value convention, which this writer follows too.
pub(crate) fn serialize_raw<S: ser::Serializer>(s: S, json: &str) -> Result<S::Ok, S::Error> {
    use ser::SerializeStruct;
    let mut raw = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
    raw.serialize_field(RAW_VALUE_TOKEN, json)?;
    raw.end()
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether one of 8 bytes needs escaping (< 0x20, `"` or `\\`): the
/// classic has-zero-byte / has-less-than word tricks, no branch per byte.
#[inline(always)]
fn word_needs_escape(x: u64) -> bool {
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let q = x ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let b = x ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGHS != 0
}

/// Whether `s` holds a character JSON requires to escape.
#[inline(always)]
fn needs_escape(s: &[u8]) -> bool {
    let n = s.len();
    if n < 8 {
        return s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let word = |i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let mut i = 0;
    while i + 8 <= n {
        if word_needs_escape(word(i)) {
            return true;
        }
        i += 8;
    }
    // the tail, as the last 8 bytes (overlapping what was checked)
    i < n && word_needs_escape(word(n - 8))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `s` as a JSON string, escaping as serde_json does.
#[inline(always)]
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if needs_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    }
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// State of an array or object being written.
struct Compound<'w, 'a> {
    w: &'w mut Writer<'a>,
    first: bool,
    /// serde_json's RawValue: its one field is written as is.
    raw: bool,
    /// Closing bytes: `]`, `}` or `}}` (a variant wraps its content in an object).
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !self.first {
            self.w.out.push(b',');
        }
        self.first = false;
    }

    /// A struct field's name: a Rust identifier or a serde rename of ours,
    /// never in need of escaping (the tests compare every event type with serde_json).
    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        let out = &mut *self.w.out;
        out.reserve(key.len() + 4);
        if !self.first {
            out.push(b',');
        }
        self.first = false;
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
    }
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Compound<'w, 'a>;
    type SerializeTuple = Compound<'w, 'a>;
    type SerializeTupleStruct = Compound<'w, 'a>;
    type SerializeTupleVariant = Compound<'w, 'a>;
    type SerializeMap = Compound<'w, 'a>;
    type SerializeStruct = Compound<'w, 'a>;
    type SerializeStructVariant = Compound<'w, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), JsonError> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), JsonError> {
        write_int(self.out, v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), JsonError> {
        // rare in events: serde_json's own float format, to stay identical
        serde_json::to_writer(&mut *self.out, &v).map_err(|e| JsonError(e.to_string()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), JsonError> {
        // rare in events: serde_json's own float format, to stay identical
        serde_json::to_writer(&mut *self.out, &v).map_err(|e| JsonError(e.to_string()))
    }
    fn serialize_char(self, v: char) -> Result<(), JsonError> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), JsonError> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), JsonError> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), JsonError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), JsonError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), JsonError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), JsonError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), JsonError> {
        write_str(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), JsonError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), JsonError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        v.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'w, 'a>, JsonError> {
        self.out.push(b'[');
        Ok(Compound { w: self, first: true, raw: false, close: b"]" })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'w, 'a>, JsonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'w, 'a>, JsonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'w, 'a>, JsonError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Compound { w: self, first: true, raw: false, close: b"]}" })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'w, 'a>, JsonError> {
        self.out.push(b'{');
        Ok(Compound { w: self, first: true, raw: false, close: b"}" })
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Compound<'w, 'a>, JsonError> {
        if name == RAW_VALUE_TOKEN {
            return Ok(Compound { w: self, first: true, raw: true, close: b"" });
        }
        self.out.push(b'{');
        Ok(Compound { w: self, first: true, raw: false, close: b"}" })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'w, 'a>, JsonError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":{");
        Ok(Compound { w: self, first: true, raw: false, close: b"}}" })
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JsonError> {
        self.comma();
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), JsonError> {
        self.w.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JsonError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<(), JsonError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JsonError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<(), JsonError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JsonError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<(), JsonError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        self.comma();
        key.serialize(KeyWriter { out: self.w.out })?;
        self.w.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JsonError> {
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), JsonError> {
        self.w.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), JsonError> {
        if self.raw {
            return v.serialize(RawWriter { out: self.w.out });
        }
        self.key(key);
        v.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), JsonError> {
        self.w.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), JsonError> {
        ser::SerializeStruct::serialize_field(self, key, v)
    }
    fn end(self) -> Result<(), JsonError> {
        ser::SerializeStruct::end(self)
    }
}

fn key_must_be_a_string() -> JsonError {
    JsonError("key must be a string".into())
}

/// Map keys: strings as they are, integers and booleans quoted (as serde_json does).
struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
}

macro_rules! quoted_int_keys {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<(), JsonError> {
            self.out.push(b'"');
            write_int(self.out, v);
            self.out.push(b'"');
            Ok(())
        }
    )*};
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Impossible<(), JsonError>;
    type SerializeTuple = Impossible<(), JsonError>;
    type SerializeTupleStruct = Impossible<(), JsonError>;
    type SerializeTupleVariant = Impossible<(), JsonError>;
    type SerializeMap = Impossible<(), JsonError>;
    type SerializeStruct = Impossible<(), JsonError>;
    type SerializeStructVariant = Impossible<(), JsonError>;

    fn serialize_str(self, v: &str) -> Result<(), JsonError> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), JsonError> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<(), JsonError> {
        self.out.extend_from_slice(if v { b"\"true\"" } else { b"\"false\"" });
        Ok(())
    }
    quoted_int_keys!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128);
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), JsonError> {
        write_str(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), JsonError> {
        v.serialize(self)
    }
    fn serialize_f32(self, _: f32) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_f64(self, _: f64) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, JsonError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, JsonError> {
        Err(key_must_be_a_string())
    }
}

/// The one field of a serde_json RawValue: JSON text, copied as is.
struct RawWriter<'a> {
    out: &'a mut Vec<u8>,
}

fn not_raw() -> JsonError {
    JsonError("RawValue must hold a string".into())
}

impl ser::Serializer for RawWriter<'_> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Impossible<(), JsonError>;
    type SerializeTuple = Impossible<(), JsonError>;
    type SerializeTupleStruct = Impossible<(), JsonError>;
    type SerializeTupleVariant = Impossible<(), JsonError>;
    type SerializeMap = Impossible<(), JsonError>;
    type SerializeStruct = Impossible<(), JsonError>;
    type SerializeStructVariant = Impossible<(), JsonError>;

    fn serialize_str(self, v: &str) -> Result<(), JsonError> {
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_bool(self, _: bool) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_i8(self, _: i8) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_i16(self, _: i16) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_i32(self, _: i32) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_i64(self, _: i64) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_u8(self, _: u8) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_u16(self, _: u16) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_u32(self, _: u32) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_u64(self, _: u64) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_f32(self, _: f32) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_f64(self, _: f64) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_char(self, _: char) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_none(self) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_unit(self) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), JsonError> {
        Err(not_raw())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, JsonError> {
        Err(not_raw())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, JsonError> {
        Err(not_raw())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, JsonError> {
        Err(not_raw())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, JsonError> {
        Err(not_raw())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, JsonError> {
        Err(not_raw())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, JsonError> {
        Err(not_raw())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, JsonError> {
        Err(not_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn same<T: Serialize>(v: &T) {
        let ours = to_string(v).unwrap();
        let theirs = serde_json::to_string(v).unwrap();
        assert_eq!(ours, theirs);
    }

    #[derive(Serialize)]
    enum Variants {
        Unit,
        New(u8),
        Tuple(u8, String),
        Struct { a: Option<i64>, b: f32 },
    }

    #[derive(Serialize)]
    struct Mixed {
        s: String,
        f: f64,
        nan: f64,
        v: Vec<Variants>,
        m: BTreeMap<u32, bool>,
        raw: Box<serde_json::value::RawValue>,
        unit: (),
        c: char,
        bytes: Vec<u8>,
    }

    #[test]
    fn every_shape_matches_serde_json() {
        same(&Mixed {
            s: "a\"b\\c\u{1}\n\t\u{7f}é—".into(),
            f: 1.5e300,
            nan: f64::NAN,
            v: vec![
                Variants::Unit,
                Variants::New(3),
                Variants::Tuple(1, "x".into()),
                Variants::Struct { a: None, b: -0.25 },
            ],
            m: [(1, true), (20, false)].into_iter().collect(),
            raw: serde_json::value::RawValue::from_string("{\"k\": [1, 2]}".into()).unwrap(),
            unit: (),
            c: '\u{8}',
            bytes: vec![0, 255],
        });
    }

    #[test]
    fn long_strings_take_the_escape_path_at_any_position() {
        for i in 0..40 {
            let mut s = "x".repeat(40);
            s.replace_range(i..i + 1, "\"");
            same(&s);
        }
    }

    proptest! {
        #[test]
        fn strings_match_serde_json(s in "\\PC*|[\\x00-\\x7f]{0,80}") {
            let ours = to_string(&s).unwrap();
            prop_assert_eq!(ours, serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn numbers_match_serde_json(i: i64, u: u64, f: f64, g: f32) {
            same(&(i, u, f, g));
        }
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::events::*;
    use std::sync::Arc;

    #[test]
    fn every_event_type_matches_serde_json() {
        let host = Arc::new(Host::new(HostInfo {
            uuid: uuid::Uuid::from_u128(7),
            name: "lab\"vm".into(),
            container: Some(ContainerInfo { name: "c".into(), kind: "docker".into() }),
        }));
        let input = serde_json::json!({
            "ancestors": "/usr/lib/systemd/systemd|/usr/bin/bash", "command_line": "sh -c 'echo \"x\"\ty'",
            "exe": {"path": "/tmp/a b/ü", "md5": "d41d8cd98f00b204e9800998ecf8427e", "size": 3},
            "dst": {"hostname": "?", "ip": "127.0.0.1", "port": 80}, "response": ["a.example", "127.0.0.2"],
            "data_entropy": 3.25, "flags": 17, "message": "line\nbreak",
        });
        for &kind in EventKind::ALL {
            let data = EventData::from_json(kind, &input).unwrap();
            let ev = Event {
                info: Info {
                    host: host.clone(),
                    event: EventInfo::new(&"kunai".into(), kind, 3),
                    task: TaskJson::new(&TaskInfo { name: "we\u{1}ird".into(), pid: 5, tgid: 5, ..Default::default() }),
                    parent_task: TaskJson::new(&TaskInfo::default()),
                    utc_time: time::UtcTime::now(),
                    cgroup_id: 0,
                },
                data,
                detection: (kind.id() % 2 == 0)
                    .then(|| crate::ioc::Detection { iocs: vec!["127.0.0.1".into()], severity: 4 }),
            };
            assert_eq!(to_string(&ev).unwrap(), serde_json::to_string(&ev).unwrap(), "{kind}");
        }
    }
}

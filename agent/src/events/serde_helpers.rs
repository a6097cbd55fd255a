//! Serde adapters for Kunai's textual encodings.

/// A u32 written as `"0x400000"`; read from that or from a number.
pub mod hex_u32 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        super::hex_u64::serialize(&(*v as u64), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        super::hex_u64::deserialize(d)
            .and_then(|v| u32::try_from(v).map_err(|_| serde::de::Error::custom("flags do not fit 32 bits")))
    }
}

/// A u64 written as `"0x11"`; read from that or from a number.
pub mod hex_u64 {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// `0x` and the hex digits, without the formatting machinery (task flags are in every event).
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 18];
        let digits = (64 - v.leading_zeros()).div_ceil(4).max(1) as usize;
        buf[0] = b'0';
        buf[1] = b'x';
        for i in 0..digits {
            let nibble = (v >> (4 * (digits - 1 - i))) & 0xf;
            buf[2 + i] = b"0123456789abcdef"[nibble as usize];
        }
        s.serialize_str(std::str::from_utf8(&buf[..2 + digits]).map_err(serde::ser::Error::custom)?)
    }

    struct HexVisitor;

    impl Visitor<'_> for HexVisitor {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a hex string like \"0x400000\" or a number")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            Ok(v as u64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            let digits = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")).unwrap_or(v);
            u64::from_str_radix(digits, 16).map_err(|_| E::custom(format!("not a hex number: {v:?}")))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(HexVisitor)
    }
}

/// An optional digest written as its hex, or `""` when the file could not be hashed.
pub mod opt_digest {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::str::FromStr;

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => d.serialize(s),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
        D: Deserializer<'de>,
    {
        let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        match s.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Flags(#[serde(with = "super::hex_u64")] u64);

    #[test]
    fn hex_round_trip() {
        for v in [0u64, 1, 0x11, 0x400000, 0xdead_beef, u64::MAX] {
            let json = serde_json::to_string(&Flags(v)).unwrap();
            assert_eq!(json, format!("\"{v:#x}\""));
            assert_eq!(serde_json::from_str::<Flags>(&json).unwrap(), Flags(v));
        }
        assert_eq!(serde_json::from_str::<Flags>("17").unwrap(), Flags(17));
        assert!(serde_json::from_str::<Flags>("\"0xzz\"").is_err());
    }
}

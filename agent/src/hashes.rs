//! Fixed-size digests (`Md5`, `Sha1`, `Sha256`, `Sha512`) that print and parse
//! as lowercase hex, the way Kunai and MISP write them.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A hex string that is not a digest of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex digits, got {got:?}")]
pub struct BadDigest {
    /// Number of hex digits the digest kind has.
    pub expected: usize,
    /// The rejected text (cut to 80 characters).
    pub got: String,
}

/// Lowercase hex of `bytes` into `out`, which must be twice as long.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 0xf) as usize];
    }
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses exactly `N` bytes of hex (either case).
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], BadDigest> {
    let bad = || BadDigest { expected: 2 * N, got: s.chars().take(80).collect() };
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for i in 0..N {
        let hi = unhex(b[2 * i]).ok_or_else(bad)?;
        let lo = unhex(b[2 * i + 1]).ok_or_else(bad)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

macro_rules! digest {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length of the digest in bytes.
            pub const LEN: usize = $len;
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; 2 * $len];
                hex_into(&self.0, &mut buf);
                // hex_into only writes ASCII digits
                f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = BadDigest;
            fn from_str(s: &str) -> Result<Self, BadDigest> {
                parse_hex::<$len>(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // straight to a stack buffer: digests are written in every exec event
                let mut buf = [0u8; 2 * $len];
                hex_into(&self.0, &mut buf);
                s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    };
}

digest!(/// MD5 digest.
    Md5, 16);
digest!(/// SHA-1 digest.
    Sha1, 20);
digest!(/// SHA-256 digest.
    Sha256, 32);
digest!(/// SHA-512 digest.
    Sha512, 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_case() {
        let s = "d41d8cd98f00b204e9800998ecf8427e";
        let m: Md5 = s.parse().unwrap();
        assert_eq!(m.to_string(), s);
        let up: Md5 = s.to_uppercase().parse().unwrap();
        assert_eq!(up, m);
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{s}\""));
    }

    #[test]
    fn rejects_wrong_length_and_digits() {
        assert_eq!("abc".parse::<Md5>().unwrap_err().expected, 32);
        assert!("zz1d8cd98f00b204e9800998ecf8427e".parse::<Md5>().is_err());
        assert!("d41d8cd98f00b204e9800998ecf8427e".parse::<Sha1>().is_err());
        // multi-byte characters must not panic on byte indexing
        assert!("é".repeat(16).parse::<Md5>().is_err());
    }
}

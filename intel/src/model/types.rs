//! MISP attribute types the store knows: default category and IDS flag (as
//! `describeTypes` serves them), and MISP's normalisation and validation of
//! their values.

use std::net::IpAddr;

/// MISP's categories.
pub const CATEGORIES: &[&str] = &[
    "Internal reference",
    "Targeting data",
    "Antivirus detection",
    "Payload delivery",
    "Artifacts dropped",
    "Payload installation",
    "Persistence mechanism",
    "Network activity",
    "Payload type",
    "Attribution",
    "External analysis",
    "Financial fraud",
    "Support Tool",
    "Social network",
    "Person",
    "Other",
];

/// (type, default category, to_ids by default).
pub const TYPES: &[(&str, &str, bool)] = &[
    ("md5", "Payload delivery", true),
    ("sha1", "Payload delivery", true),
    ("sha256", "Payload delivery", true),
    ("sha512", "Payload delivery", true),
    ("ssdeep", "Payload delivery", true),
    ("filename", "Payload delivery", true),
    ("filename|md5", "Payload delivery", true),
    ("filename|sha1", "Payload delivery", true),
    ("filename|sha256", "Payload delivery", true),
    ("filename|sha512", "Payload delivery", true),
    ("size-in-bytes", "Other", false),
    ("mime-type", "Artifacts dropped", false),
    ("ip-src", "Network activity", true),
    ("ip-dst", "Network activity", true),
    ("ip-src|port", "Network activity", true),
    ("ip-dst|port", "Network activity", true),
    ("port", "Network activity", false),
    ("domain", "Network activity", true),
    ("hostname", "Network activity", true),
    ("domain|ip", "Network activity", true),
    ("url", "Network activity", true),
    ("uri", "Network activity", true),
    ("user-agent", "Network activity", false),
    ("email-src", "Payload delivery", true),
    ("email-dst", "Network activity", true),
    ("email-subject", "Payload delivery", false),
    ("mutex", "Artifacts dropped", true),
    ("regkey", "Persistence mechanism", true),
    ("AS", "Network activity", false),
    ("pattern-in-file", "Payload installation", true),
    ("malware-sample", "Payload delivery", true),
    ("attachment", "External analysis", false),
    ("link", "External analysis", false),
    ("comment", "Other", false),
    ("text", "Other", false),
    ("other", "Other", false),
    ("datetime", "Other", false),
    ("float", "Other", false),
    ("counter", "Other", false),
];

/// The entry of a type, if the store knows it.
pub fn describe(kind: &str) -> Option<(&'static str, bool)> {
    TYPES.iter().find(|(t, _, _)| *t == kind).map(|(_, c, ids)| (*c, *ids))
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The type is not one the store knows.
    #[error("unknown attribute type {0:?}")]
    UnknownType(String),
    /// The value does not fit its type.
    #[error("{kind} value {value:?}: {why}")]
    Invalid {
        /// The attribute type.
        kind: String,
        /// The value as given (truncated).
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

fn invalid(kind: &str, value: &str, why: &'static str) -> ValueError {
    ValueError::Invalid { kind: kind.into(), value: value.chars().take(80).collect(), why }
}

fn hex_of_len(v: &str, len: usize) -> bool {
    v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hash_len(kind: &str) -> Option<usize> {
    match kind {
        "md5" => Some(32),
        "sha1" => Some(40),
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    }
}

/// A hostname as MISP accepts it: labels of letters, digits, `-` and `_`,
/// at least two of them, the last not all digits.
fn is_hostname(v: &str) -> bool {
    let labels: Vec<&str> = v.split('.').collect();
    labels.len() >= 2
        && v.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !labels.last().is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit()))
}

fn is_ip_or_cidr(v: &str) -> bool {
    match v.split_once('/') {
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
        None => v.parse::<IpAddr>().is_ok(),
    }
}

fn domain(v: &str) -> String {
    v.trim_end_matches('.').to_ascii_lowercase()
}

/// Normalises `value` for `kind` as MISP does (hashes, domains and hostnames
/// lowercased, trailing dots stripped, whitespace trimmed) and checks it.
pub fn normalise(kind: &str, value: &str) -> Result<String, ValueError> {
    if describe(kind).is_none() {
        return Err(ValueError::UnknownType(kind.into()));
    }
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(kind, value, "empty value"));
    }
    if let Some(len) = hash_len(kind) {
        let h = v.to_ascii_lowercase();
        return if hex_of_len(&h, len) {
            Ok(h)
        } else {
            Err(invalid(kind, value, "not a hex digest of the right length"))
        };
    }
    match kind {
        "domain" | "hostname" => {
            let d = domain(v);
            if is_hostname(&d) {
                Ok(d)
            } else {
                Err(invalid(kind, value, "not a domain name (label.tld)"))
            }
        }
        "ip-src" | "ip-dst" => {
            if is_ip_or_cidr(v) {
                Ok(v.to_string())
            } else {
                Err(invalid(kind, value, "not an IP address or CIDR network"))
            }
        }
        "ip-src|port" | "ip-dst|port" => match v.rsplit_once('|') {
            Some((ip, port)) if ip.parse::<IpAddr>().is_ok() && port.parse::<u16>().is_ok() => Ok(v.to_string()),
            _ => Err(invalid(kind, value, "not ip|port")),
        },
        "domain|ip" => match v.split_once('|') {
            Some((d, ip)) if is_hostname(&domain(d)) && ip.parse::<IpAddr>().is_ok() => {
                Ok(format!("{}|{ip}", domain(d)))
            }
            _ => Err(invalid(kind, value, "not domain|ip")),
        },
        "filename|md5" | "filename|sha1" | "filename|sha256" | "filename|sha512" => {
            let len = hash_len(&kind["filename|".len()..]).unwrap_or(0);
            match v.rsplit_once('|') {
                Some((name, h)) if !name.is_empty() && hex_of_len(h, len) => {
                    Ok(format!("{name}|{}", h.to_ascii_lowercase()))
                }
                _ => Err(invalid(kind, value, "not filename|hexdigest")),
            }
        }
        "port" => v.parse::<u16>().map(|p| p.to_string()).map_err(|_| invalid(kind, value, "not a port number")),
        "size-in-bytes" | "counter" => {
            v.parse::<u64>().map(|n| n.to_string()).map_err(|_| invalid(kind, value, "not a non-negative integer"))
        }
        _ => Ok(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise("domain", "Why.Kunai.Rocks.").unwrap(), "why.kunai.rocks");
        assert_eq!(normalise("md5", " D41D8CD98F00B204E9800998ECF8427E ").unwrap(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(normalise("ip-dst", "10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(normalise("domain|ip", "A.example|1.2.3.4").unwrap(), "a.example|1.2.3.4");
        assert_eq!(
            normalise("filename|sha1", "x.exe|DA39A3EE5E6B4B0D3255BFEF95601890AFD80709").unwrap(),
            "x.exe|da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert!(normalise("ip-dst", "999.1.1.1").is_err());
        assert!(normalise("sha256", "abc").is_err());
        assert!(normalise("domain", "localhost").is_err());
        assert!(normalise("domain", "1.2.3.4").is_err());
        assert!(normalise("nope", "x").is_err());
        assert!(normalise("text", "   ").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(kind in proptest::sample::select(TYPES.iter().map(|t| t.0).collect::<Vec<_>>()), v in "\\PC{0,80}") {
            if let Ok(n) = normalise(kind, &v) {
                prop_assert_eq!(normalise(kind, &n).unwrap(), n.clone());
            }
        }
    }
}

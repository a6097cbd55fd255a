//! Typed IoC values: what a `value` string of an IoC file means.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::hashes::{Md5, Sha1, Sha256, Sha512};

/// A DNS name, lowercase, without the final dot; labels of [a-z0-9_-], no
/// hyphen first or last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(Box<str>);

/// Longest DNS name in text form.
pub const MAX_DOMAIN_LEN: usize = 253;

impl Domain {
    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a value is not an IoC the matcher can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    /// Empty or blank.
    #[error("empty value")]
    Empty,
    /// A URL: its host is the IoC.
    #[error("{0:?} is a URL: use its host name as the IoC value")]
    Url(String),
    /// A path with a NUL byte.
    #[error("path {0:?} contains a NUL byte")]
    NulInPath(String),
    /// Dotted numbers that are not an IP address: no domain name ends with an all-digit label.
    #[error("{0:?} is not an IP address (leading zeros are ambiguous: octal or decimal?) and not a domain (no domain ends with an all-digit label)")]
    NumericName(String),
    /// Something else.
    #[error("not a domain, IP address, md5/sha1/sha256/sha512 digest or absolute path: {0:?}")]
    Unrecognised(String),
}

fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FromStr for Domain {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.is_empty() || name.len() > MAX_DOMAIN_LEN || !name.split('.').all(valid_label) {
            return Err(BadValue::Unrecognised(cut(s)));
        }
        // `127.000.066.081`: the kernel never reports such a name, so it could never match
        if name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
            return Err(BadValue::NumericName(cut(s)));
        }
        Ok(Domain(name.to_ascii_lowercase().into()))
    }
}

/// `path` as the kernel names files: no empty or `.` component, `..`
/// applied, no trailing slash (`/usr/bin//sleep/` is `/usr/bin/sleep`).
/// Event paths come from the kernel in this form; any other spelling could never match.
fn normal_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// An IoC value, typed when the IoC is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IocValue {
    /// Matches this name and every name under it.
    Domain(Domain),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// MD5 digest.
    Md5(Md5),
    /// SHA-1 digest.
    Sha1(Sha1),
    /// SHA-256 digest.
    Sha256(Sha256),
    /// SHA-512 digest.
    Sha512(Sha512),
    /// An absolute path, matched exactly.
    Path(Box<str>),
}

impl IocValue {
    /// "domain", "ip", "md5", "sha1", "sha256", "sha512" or "path".
    pub fn kind(&self) -> &'static str {
        match self {
            IocValue::Domain(_) => "domain",
            IocValue::Ip(_) => "ip",
            IocValue::Md5(_) => "md5",
            IocValue::Sha1(_) => "sha1",
            IocValue::Sha256(_) => "sha256",
            IocValue::Sha512(_) => "sha512",
            IocValue::Path(_) => "path",
        }
    }
}

impl FromStr for IocValue {
    type Err = BadValue;
    fn from_str(raw: &str) -> Result<Self, BadValue> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(BadValue::Empty);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(IocValue::Ip(ip));
        }
        if s.bytes().all(|b| b.is_ascii_hexdigit()) {
            // all-hex of a digest's length is a digest; other all-hex strings may be names ("cafe")
            let digest = match s.len() {
                32 => s.parse().map(IocValue::Md5).ok(),
                40 => s.parse().map(IocValue::Sha1).ok(),
                64 => s.parse().map(IocValue::Sha256).ok(),
                128 => s.parse().map(IocValue::Sha512).ok(),
                _ => None,
            };
            if let Some(d) = digest {
                return Ok(d);
            }
        }
        if s.starts_with('/') {
            if s.contains('\0') {
                return Err(BadValue::NulInPath(cut(s)));
            }
            return Ok(IocValue::Path(normal_path(s).into()));
        }
        if s.contains("://") {
            return Err(BadValue::Url(cut(s)));
        }
        s.parse().map(IocValue::Domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_kind() {
        let kind = |s: &str| s.parse::<IocValue>().unwrap().kind();
        assert_eq!(kind("why.kunai.rocks"), "domain");
        assert_eq!(kind("WHY.Kunai.Rocks."), "domain");
        assert_eq!(kind("_dmarc.example.org"), "domain");
        assert_eq!(kind("127.0.66.80"), "ip");
        assert_eq!(kind("::1"), "ip");
        assert_eq!(kind("2001:db8::1"), "ip");
        assert_eq!(kind("d41d8cd98f00b204e9800998ecf8427e"), "md5");
        assert_eq!(kind(&"a".repeat(40)), "sha1");
        assert_eq!(kind(&"B".repeat(64)), "sha256");
        assert_eq!(kind(&"0".repeat(128)), "sha512");
        assert_eq!(kind("/tmp/dropper.sh"), "path");
        assert_eq!(kind("cafe"), "domain", "short hex is a name");
        assert_eq!("Kunai.Rocks.".parse::<IocValue>().unwrap(), IocValue::Domain("kunai.rocks".parse().unwrap()));
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!("".parse::<IocValue>(), Err(BadValue::Empty));
        assert!(matches!("http://evil.example/x".parse::<IocValue>(), Err(BadValue::Url(_))));
        for bad in
            ["two words", "a..b", "-", "tmp/relative", &"g".repeat(64), "é.example", &format!("{}.x", "a".repeat(250))]
        {
            assert!(bad.parse::<IocValue>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!("/a\0b".parse::<IocValue>(), Err(BadValue::NulInPath(_))));
        for numeric in ["127.000.066.081", "1.2.3", "10.0.0.256", "example.123"] {
            assert!(matches!(numeric.parse::<IocValue>(), Err(BadValue::NumericName(_))), "{numeric:?} accepted");
        }
        assert_eq!("1.2.3.example".parse::<IocValue>().unwrap().kind(), "domain", "digits are fine before the end");
    }

    #[test]
    fn paths_are_spelled_as_the_kernel_reports_them() {
        let path = |s: &str| match s.parse::<IocValue>().unwrap() {
            IocValue::Path(p) => p.to_string(),
            other => panic!("{s} gave {other:?}"),
        };
        assert_eq!(path("/tmp/x/"), "/tmp/x");
        assert_eq!(path("/usr/bin//sleep"), "/usr/bin/sleep");
        assert_eq!(path("/usr/./bin/../bin/sleep"), "/usr/bin/sleep");
        assert_eq!(path("//"), "/");
        assert_eq!(path("/tmp/dropper.sh"), "/tmp/dropper.sh");
    }
}

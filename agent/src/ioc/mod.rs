//! Indicators of compromise in Kunai's IoC file format, and the matcher that
//! checks events against them.
//!
//! An IoC file has one JSON document per line,
//! `{"uuid": "...", "source": "...", "value": "...", "severity": 4}`; other
//! fields are kept as context but ignored by the matcher. Values are typed at
//! load time ([`IocValue`]): domains match themselves and their subdomains,
//! IPs, md5/sha1/sha256/sha512 digests and absolute paths match exactly.

pub mod loader;
pub mod set;
pub mod value;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::hashes::{Md5, Sha1, Sha256, Sha512};
pub use set::{Ioc, IocSet};
pub use value::{BadValue, Domain, IocValue};

/// A typed value of an event that IoCs can match: what an event exposes to the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observable<'a> {
    /// An absolute file path.
    Path(&'a str),
    /// A DNS name (any case, with or without the final dot).
    Domain(&'a str),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// File or data digests.
    Md5(&'a Md5),
    /// SHA-1 digest.
    Sha1(&'a Sha1),
    /// SHA-256 digest.
    Sha256(&'a Sha256),
    /// SHA-512 digest.
    Sha512(&'a Sha512),
}

/// Anything that exposes typed values to the IoC matcher (every event's `data`).
pub trait Observables {
    /// Calls `visit` once for every typed value.
    fn observables(&self, visit: &mut dyn FnMut(Observable<'_>));
}

/// The `detection` section added to an event that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Detection {
    /// Values of the IoCs that matched, each once, in match order.
    pub iocs: Vec<String>,
    /// Sum of the matching IoCs' severities, capped at [`MAX_SEVERITY`].
    pub severity: u8,
}

/// Highest severity an IoC or a detection can carry.
pub const MAX_SEVERITY: u8 = 10;

//! `network`: hosts, domains, DNS, HTTP, TCP/UDP flows and dead hosts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient;

/// `network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    /// Addresses contacted (Cuckoo: strings; CAPE: objects with `ip`; Cuckoo3: `host`).
    #[serde(alias = "host", deserialize_with = "lenient::list")]
    pub hosts: Vec<NetHost>,
    /// Names resolved and their first address (Cuckoo3: `domain`, names only).
    #[serde(alias = "domain", deserialize_with = "lenient::list")]
    pub domains: Vec<DomainIp>,
    /// DNS queries (Cuckoo3: `{"query": [...], "response": [...]}`, queries read).
    #[serde(deserialize_with = "dns_list")]
    pub dns: Vec<Dns>,
    /// HTTP requests.
    #[serde(deserialize_with = "lenient::list")]
    pub http: Vec<Http>,
    /// TLS ClientHellos (server names).
    #[serde(deserialize_with = "lenient::list")]
    pub tls: Vec<Tls>,
    /// TCP connections.
    #[serde(deserialize_with = "lenient::list")]
    pub tcp: Vec<Flow>,
    /// UDP flows.
    #[serde(deserialize_with = "lenient::list")]
    pub udp: Vec<Flow>,
    /// `[ip, port]` pairs nothing answered.
    #[serde(deserialize_with = "lenient::list")]
    pub dead_hosts: Vec<DeadHost>,
}

/// A `network.hosts` entry: written as the bare address, as Cuckoo does.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetHost {
    /// The address.
    pub ip: String,
    /// The name it was resolved from, when a CAPE report says.
    pub hostname: Option<String>,
}

impl Serialize for NetHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.ip)
    }
}

impl<'de> Deserialize<'de> for NetHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(ip) => Ok(NetHost { ip, hostname: None }),
            Value::Object(o) => {
                let ip = o.get("ip").and_then(Value::as_str).ok_or_else(|| serde::de::Error::missing_field("ip"))?;
                let hostname = o.get("hostname").and_then(Value::as_str).filter(|h| !h.is_empty()).map(str::to_string);
                Ok(NetHost { ip: ip.to_string(), hostname })
            }
            other => Err(serde::de::Error::custom(format!("not a host: {other}"))),
        }
    }
}

/// Cuckoo and CAPE list the queries; Cuckoo3 keeps them under `query`.
fn dns_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Dns>, D::Error> {
    let list = match Value::deserialize(d)? {
        Value::Object(mut split) => split.remove("query").unwrap_or(Value::Null),
        other => other,
    };
    Option::<Vec<Dns>>::deserialize(list).map(Option::unwrap_or_default).map_err(serde::de::Error::custom)
}

/// A `network.domains` entry (Cuckoo3 writes the bare name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DomainIp {
    /// The name.
    pub domain: String,
    /// Its first address (`""` when it had none).
    pub ip: String,
}

impl<'de> Deserialize<'de> for DomainIp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        #[serde(default)]
        struct Pair {
            #[serde(deserialize_with = "lenient::string")]
            domain: String,
            #[serde(deserialize_with = "lenient::string")]
            ip: String,
        }
        match Value::deserialize(d)? {
            Value::String(domain) => Ok(DomainIp { domain, ip: String::new() }),
            v @ Value::Object(_) => {
                let p = Pair::deserialize(v).map_err(serde::de::Error::custom)?;
                Ok(DomainIp { domain: p.domain, ip: p.ip })
            }
            other => Err(serde::de::Error::custom(format!("not a domain: {other}"))),
        }
    }
}

/// A `network.dns` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// The name asked (Cuckoo3: `name`).
    #[serde(alias = "name", deserialize_with = "lenient::string")]
    pub request: String,
    /// Query type.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    /// Answers.
    #[serde(deserialize_with = "lenient::list")]
    pub answers: Vec<DnsAnswer>,
    /// Epoch seconds (not in Cuckoo 2.0.7; CAPE has `first_seen`, Cuckoo3 `ts`).
    #[serde(alias = "first_seen", alias = "ts", deserialize_with = "lenient::epoch")]
    pub time: f64,
}

/// A DNS answer record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsAnswer {
    /// Record type.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    /// Record data.
    #[serde(deserialize_with = "lenient::string")]
    pub data: String,
}

/// A `network.http` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Http {
    /// `Host` header.
    #[serde(deserialize_with = "lenient::string")]
    pub host: String,
    /// Destination port.
    #[serde(deserialize_with = "lenient::u32_")]
    pub port: u32,
    /// The full URL.
    #[serde(deserialize_with = "lenient::string")]
    pub uri: String,
    /// The request target.
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
    /// Method.
    #[serde(deserialize_with = "lenient::string")]
    pub method: String,
    /// `User-Agent`.
    #[serde(rename = "user-agent", deserialize_with = "lenient::string")]
    pub user_agent: String,
    /// HTTP version.
    #[serde(deserialize_with = "lenient::string")]
    pub version: String,
    /// How many times this request was seen.
    #[serde(deserialize_with = "lenient::uint")]
    pub count: u64,
    /// Body (the sandbox keeps its size and hash, not its bytes: `""`).
    #[serde(deserialize_with = "lenient::string")]
    pub body: String,
    /// Body length in bytes (ioclab).
    #[serde(deserialize_with = "lenient::uint")]
    pub body_size: u64,
    /// SHA-256 of the body (ioclab).
    #[serde(deserialize_with = "lenient::string")]
    pub body_sha256: String,
    /// Epoch seconds (ioclab).
    #[serde(deserialize_with = "lenient::epoch")]
    pub time: f64,
}

/// A `network.tls` entry: the flow that carried a ClientHello, and its server name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tls {
    /// Addresses, ports and time (`bytes` is 0: the sink keeps the hello's name only).
    #[serde(flatten)]
    pub flow: Flow,
    /// Server name indication (`""` when not sent).
    #[serde(deserialize_with = "lenient::string")]
    pub sni: String,
}

/// A `network.tcp` / `network.udp` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Flow {
    /// Client address.
    #[serde(deserialize_with = "lenient::string")]
    pub src: String,
    /// Client port.
    #[serde(deserialize_with = "lenient::u32_")]
    pub sport: u32,
    /// Server address.
    #[serde(deserialize_with = "lenient::string")]
    pub dst: String,
    /// Server port.
    #[serde(deserialize_with = "lenient::u32_")]
    pub dport: u32,
    /// Epoch seconds of the first packet.
    #[serde(deserialize_with = "lenient::epoch")]
    pub time: f64,
    /// Bytes the sample sent (ioclab).
    #[serde(deserialize_with = "lenient::uint")]
    pub bytes: u64,
}

/// A `network.dead_hosts` entry: `[ip, port]`, or CAPE's `"ip:port"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadHost {
    /// Address.
    pub ip: String,
    /// Port.
    pub port: u16,
}

impl Serialize for DeadHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.ip, self.port).serialize(s)
    }
}

impl<'de> Deserialize<'de> for DeadHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = |v: &Value| serde::de::Error::custom(format!("not [ip, port]: {v}"));
        let v = Value::deserialize(d)?;
        let (ip, port) = match &v {
            Value::Array(a) if a.len() == 2 => (a[0].as_str().map(str::to_string), a[1].as_u64()),
            Value::String(s) => match s.rsplit_once(':') {
                Some((ip, port)) => (Some(ip.trim_matches(['[', ']']).to_string()), port.parse().ok()),
                None => (None, None),
            },
            _ => (None, None),
        };
        match (ip, port.and_then(|p| u16::try_from(p).ok())) {
            (Some(ip), Some(port)) => Ok(DeadHost { ip, port }),
            _ => Err(bad(&v)),
        }
    }
}

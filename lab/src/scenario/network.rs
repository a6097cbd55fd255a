//! The lab network a scenario needs: DNS records its resolver answers and
//! fake services listening for the sample and the endpoint steps.
//!
//! Where addresses may point: only loopback (127.0.0.0/8, ::1). Endpoint
//! steps run in a network namespace whose loopback is its own, and the
//! sandbox's fake internet answers inside its namespace too, so a loopback
//! address is always local to the lab and never routed off the machine.
//! Any other address (even private ones: they may be routed) is refused
//! when the scenario is loaded, before anything runs.

use std::net::IpAddr;
use std::path::PathBuf;

use ioclab_sandbox::detonation::{DnsRecord, DnsRecordData};
use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize};

use super::identity::ScenarioId;

/// DNS records and services of the lab network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabNetwork {
    /// Records the lab resolver answers (other names get the sink address).
    #[serde(default, deserialize_with = "dns_records")]
    #[schemars(with = "Vec<DnsRecordSchema>")]
    pub dns: Vec<DnsRecord>,
    /// Fake services (HTTP sink, C2 listener).
    #[serde(default)]
    pub services: Vec<Service>,
}

/// A fake service of the lab network.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its name, for steps, questions and the timeline.
    pub id: ScenarioId,
    /// What it does.
    pub kind: ServiceKind,
    /// Where it listens: loopback only (127.0.0.0/8 or ::1).
    pub address: IpAddr,
    /// Its TCP port.
    pub port: u16,
    /// `http_sink` only: a file of the scenario (listed in `assets`) served
    /// as every response's body, instead of a page naming the scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<PathBuf>,
    /// `http_sink` only: the `Content-Type` of the responses
    /// (default `text/html` for the page, `application/octet-stream` for a `body` file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `c2` only: text sent to each client as it connects (a harmless
    /// command for a reverse shell, a banner); nothing by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
}

/// What a [`Service`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Answers any HTTP request with 200 and records it.
    HttpSink,
    /// A "C2" TCP listener: accepts, records what the client sends, sends
    /// `send` (if any), then keeps the client connected.
    C2,
}

impl ServiceKind {
    /// Its name in the format.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::HttpSink => "http_sink",
            ServiceKind::C2 => "c2",
        }
    }
}

/// Whether the lab may use `ip`: it must never lead off the machine.
pub fn address_allowed(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// The addresses a record points at (none for a CNAME).
pub fn record_address(record: &DnsRecord) -> Option<IpAddr> {
    match &record.data {
        DnsRecordData::A(ip) => Some(IpAddr::V4(*ip)),
        DnsRecordData::AAAA(ip) => Some(IpAddr::V6(*ip)),
        DnsRecordData::CNAME(_) => None,
    }
}

/// The sandbox's record as written in YAML (its schema; the type is the sandbox's).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct DnsRecordSchema {
    /// Owner name (`why.kunai.rocks`).
    name: String,
    /// Record type.
    #[schemars(rename = "type")]
    kind: DnsTypeSchema,
    /// An IPv4 address (A), IPv6 address (AAAA) or name (CNAME).
    value: String,
}

#[derive(JsonSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
enum DnsTypeSchema {
    A,
    AAAA,
    CNAME,
}

/// The sandbox's `DnsRecord` flattens its data, which lets unknown keys
/// through: check the keys here, so the lab format stays strict.
fn dns_records<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DnsRecord>, D::Error> {
    Vec::<StrictRecord>::deserialize(d).map(|v| v.into_iter().map(|r| r.0).collect())
}

struct StrictRecord(DnsRecord);

impl<'de> Deserialize<'de> for StrictRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        if let Some(k) = map.keys().find(|k| !["name", "type", "value"].contains(&k.as_str())) {
            return Err(de::Error::unknown_field(k, &["name", "type", "value"]));
        }
        let mut record: DnsRecord =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(de::Error::custom)?;
        record.name = record.name.trim_end_matches('.').to_ascii_lowercase();
        if let DnsRecordData::CNAME(target) = &mut record.data {
            *target = target.trim_end_matches('.').to_ascii_lowercase();
        }
        Ok(StrictRecord(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_normalised_and_strict() {
        let n: LabNetwork = serde_yaml_ng::from_str(
            "dns:\n  - {name: Why.Kunai.Rocks., type: CNAME, value: Kunai-Project.github.io.}\n",
        )
        .unwrap();
        assert_eq!(n.dns[0].name, "why.kunai.rocks");
        assert_eq!(n.dns[0].data, DnsRecordData::CNAME("kunai-project.github.io".into()));
        assert!(serde_yaml_ng::from_str::<LabNetwork>("dns:\n  - {name: a, type: MX, value: b}\n").is_err());
        assert!(address_allowed("127.0.66.80".parse().unwrap()) && address_allowed("::1".parse().unwrap()));
        assert!(!address_allowed("10.0.0.1".parse().unwrap()) && !address_allowed("0.0.0.0".parse().unwrap()));
    }
}

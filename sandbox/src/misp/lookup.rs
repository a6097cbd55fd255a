//! MISP → report, Cuckoo's MISP processing module with the seed's patches:
//! the sample's hashes, the dropped files' hashes, the contacted hosts and
//! the resolved domains (with their addresses) are looked up in MISP, and the
//! events holding them land in the report's `misp` list.
//!
//! Done better than the original: the values are taken in a stable order
//! (sample, dropped, network) before `maxioc` cuts them, `ioc_blacklist`
//! values are never sent, `only_ids` counts a hit only on an attribute with
//! the IDS flag, and the lookup is one `/attributes/restSearch` per 500
//! values plus one `/events/index` for the events' dates and levels, not a
//! request per value. A failure is the caller's to record; it never stops
//! an analysis.

use std::collections::{BTreeMap, HashMap, HashSet};

use ioclab_intel::client::{ClientError, MispClient};
use ioclab_intel::model::levels::ThreatLevel;
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::{KeyError, List, ProcessingMisp};
use crate::report::{MispHit, Report};

/// Values per restSearch request (the embedded store takes 5,000; real MISPs build one SQL `IN` of them).
pub const VALUES_PER_REQUEST: usize = 500;

/// Where a value comes from, in the order they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// A hash of the submitted file.
    Sample,
    /// A hash of a file the task left.
    Dropped,
    /// A contacted address, a resolved name or its address.
    Network,
}

/// What a report offers to look up, after `ioc_blacklist` and `maxioc`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    /// The values sent, in order, each once.
    pub values: Vec<(Origin, String)>,
    /// Values on `ioc_blacklist`: never sent.
    pub blacklisted: Vec<String>,
    /// Values past `maxioc`: not sent (the last ones of the stable order).
    pub over_max: Vec<String>,
}

/// The values of `r` to look up: the sample's md5, sha1 and sha256, then the
/// same of each dropped file, then `network.hosts` and each resolved
/// domain with its address; empty and repeated values once, `blacklist`ed ones
/// left out, at most `maxioc` of the rest.
pub fn candidates(r: &Report, blacklist: &List, maxioc: usize) -> Candidates {
    let mut all: Vec<(Origin, String)> = Vec::new();
    let hashes = |f: &crate::report::FileInfo| {
        [f.md5.map(|h| h.to_string()), f.sha1.map(|h| h.to_string()), f.sha256.map(|h| h.to_string())]
    };
    if let Some(f) = &r.target.file {
        all.extend(hashes(f).into_iter().flatten().map(|h| (Origin::Sample, h)));
    }
    for d in &r.dropped {
        all.extend(hashes(&d.file).into_iter().flatten().map(|h| (Origin::Dropped, h)));
    }
    for h in &r.network.hosts {
        all.push((Origin::Network, h.ip.clone()));
    }
    for d in &r.network.domains {
        all.push((Origin::Network, d.domain.trim_end_matches('.').to_ascii_lowercase()));
        all.push((Origin::Network, d.ip.clone()));
    }
    let mut seen = HashSet::new();
    let mut out = Candidates::default();
    for (origin, value) in all {
        let value = value.trim().to_string();
        if value.is_empty() || !seen.insert(value.clone()) {
            continue;
        }
        if blacklist.contains(&value) {
            out.blacklisted.push(value);
        } else if out.values.len() < maxioc {
            out.values.push((origin, value));
        } else {
            out.over_max.push(value);
        }
    }
    out
}

/// Why the lookup could not be done, and what to check.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No key, or no client.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// MISP did not answer as asked (the client's diagnosis says what to do).
    #[error("MISP lookup: {0}")]
    Misp(#[from] ClientError),
    /// MISP answered something else than a search result.
    #[error("MISP lookup: {url}: unexpected answer: {message}")]
    Shape {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

/// What a lookup found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The events that know some of the values, newest first (the report's `misp`).
    pub hits: Vec<MispHit>,
    /// The values looked up, blacklisted and cut.
    pub candidates: Candidates,
    /// HTTP requests made.
    pub requests: usize,
}

/// `/attributes/restSearch`'s answer: `{"response": {"Attribute": [...]}}`.
#[derive(Deserialize)]
struct SearchAnswer {
    response: Found,
}

#[derive(Deserialize)]
struct Found {
    #[serde(rename = "Attribute", default)]
    attributes: Vec<FoundAttribute>,
}

/// The part of a restSearch attribute the lookup reads.
#[derive(Deserialize)]
struct FoundAttribute {
    #[serde(default)]
    event_id: Value,
    #[serde(default)]
    value: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    to_ids: Value,
    #[serde(rename = "Event", default)]
    event: Option<FoundEvent>,
}

/// An event as /events/index (and the `Event` of a search result) gives it.
#[derive(Deserialize)]
struct FoundEvent {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    info: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    threat_level_id: Value,
}

/// MISP writes ids, levels and flags as strings or numbers.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64() == Some(1),
        Value::String(s) => s == "1" || s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The parts a value of `kind` is matched by (MISP's value1/value2 for composite types).
fn parts<'a>(kind: &str, value: &'a str) -> Vec<&'a str> {
    match value.split_once('|') {
        Some((a, b)) if kind.contains('|') => vec![value, a, b],
        _ => vec![value],
    }
}

/// Looks `candidates` up in the MISP behind `client`, whose web root is `misp_url`.
pub async fn look_up(
    client: &MispClient,
    misp_url: &str,
    candidates: Candidates,
    only_ids: bool,
) -> Result<Outcome, LookupError> {
    let mut requests = 0;
    // event id -> (its iocs in candidate order, summary from the search)
    let mut found: BTreeMap<u64, (Vec<usize>, Option<FoundEvent>)> = BTreeMap::new();
    let index_of: HashMap<&str, usize> =
        candidates.values.iter().enumerate().map(|(i, (_, v))| (v.as_str(), i)).collect();
    for chunk in candidates.values.chunks(VALUES_PER_REQUEST) {
        let values: Vec<&str> = chunk.iter().map(|(_, v)| v.as_str()).collect();
        // OR: each value literally (a plain list would read a leading `!` as a negation)
        let mut body = json!({"returnFormat": "json", "value": {"OR": values}});
        if only_ids {
            body["to_ids"] = json!(true);
        }
        let bytes = client.post_raw("/attributes/restSearch", &body).await?;
        requests += 1;
        let url = client.url("/attributes/restSearch");
        let shape = |message: String| LookupError::Shape { url: url.clone(), message };
        let answer: SearchAnswer = serde_json::from_slice(&bytes).map_err(|e| shape(e.to_string()))?;
        for a in answer.response.attributes {
            if only_ids && !flag(&a.to_ids) {
                continue;
            }
            let Some(event_id) = number(&a.event_id) else {
                return Err(shape(format!("an attribute without an event id: {}", a.value)));
            };
            let entry = found.entry(event_id).or_insert_with(|| (Vec::new(), None));
            for part in parts(&a.kind, &a.value) {
                if let Some(&i) = index_of.get(part).or_else(|| index_of.get(part.to_ascii_lowercase().as_str())) {
                    if !entry.0.contains(&i) {
                        entry.0.push(i);
                    }
                }
            }
            if entry.1.is_none() {
                entry.1 = a.event;
            }
        }
    }
    // a hit whose value is none of ours (a MISP matching more loosely) is not a hit
    found.retain(|_, (iocs, _)| !iocs.is_empty());
    if !found.is_empty() {
        // the search's Event summary has no date nor level: one index request for all of them
        // index filters take alternatives separated by `|`, in MISP and in the embedded store
        let ids: Vec<String> = found.keys().map(u64::to_string).collect();
        let bytes = client.post_raw("/events/index", &json!({"eventid": ids.join("|")})).await?;
        requests += 1;
        let url = client.url("/events/index");
        let events: Vec<FoundEvent> =
            serde_json::from_slice(&bytes).map_err(|e| LookupError::Shape { url, message: e.to_string() })?;
        for e in events {
            if let Some(entry) = number(&e.id).and_then(|id| found.get_mut(&id)) {
                entry.1 = Some(e);
            }
        }
    }
    let base = misp_url.trim_end_matches('/');
    let mut hits: Vec<MispHit> = found
        .into_iter()
        .map(|(id, (mut iocs, event))| {
            iocs.sort_unstable();
            let (info, date, level) = match event {
                Some(e) => (e.info.trim().to_string(), e.date, number(&e.threat_level_id)),
                None => (String::new(), String::new(), None),
            };
            MispHit {
                event_id: id,
                date,
                url: format!("{base}/events/view/{id}"),
                level: level.and_then(|l| ThreatLevel::try_from(l as i64).ok()),
                info,
                iocs: iocs.into_iter().map(|i| candidates.values[i].1.clone()).collect(),
            }
        })
        .collect();
    // Cuckoo's order: newest event first (ids break ties, oldest first)
    hits.sort_by(|a, b| b.date.cmp(&a.date).then(a.event_id.cmp(&b.event_id)));
    Ok(Outcome { hits, candidates, requests })
}

/// The `[processing.misp]` step on a report: looks its IoCs up and fills
/// `misp`, or `misp_lookup_error` when MISP could not be asked (the report
/// stays good either way). `None` when the section is disabled.
pub async fn enrich(report: &mut Report, cfg: &ProcessingMisp) -> Option<Result<Outcome, String>> {
    if !cfg.enabled {
        return None;
    }
    let outcome = async {
        let client = cfg.connection().client()?;
        look_up(&client, &cfg.url, candidates(report, &cfg.ioc_blacklist, cfg.maxioc), cfg.only_ids).await
    }
    .await;
    Some(match outcome {
        Ok(o) => {
            report.misp = o.hits.clone();
            report.misp_lookup_error = None;
            Ok(o)
        }
        Err(e) => {
            let message = format!("{e} (the report has no MISP matches; the analysis itself is complete)");
            tracing::warn!("task {}: {message}", report.info.id);
            report.misp = Vec::new();
            report.misp_lookup_error = Some(message.clone());
            Err(message)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::network::DomainIp;
    use crate::report::{Dropped, FileInfo, NetHost};

    fn report() -> Report {
        let file = |c: char| FileInfo {
            md5: Some(c.to_string().repeat(32).parse().unwrap()),
            sha1: Some(c.to_string().repeat(40).parse().unwrap()),
            sha256: Some(c.to_string().repeat(64).parse().unwrap()),
            ..Default::default()
        };
        let mut r = Report::default();
        r.target.file = Some(file('a'));
        r.dropped =
            vec![Dropped { file: file('b'), ..Default::default() }, Dropped { file: file('a'), ..Default::default() }];
        r.network.hosts = vec![
            NetHost { ip: "203.0.113.7".into(), hostname: None },
            NetHost { ip: "8.8.8.8".into(), hostname: None },
        ];
        r.network.domains = vec![
            DomainIp { domain: "C2.Example.".into(), ip: "203.0.113.7".into() },
            DomainIp { domain: "nx.example".into(), ip: String::new() },
        ];
        r
    }

    #[test]
    fn values_come_in_a_stable_order_once_without_the_blacklist() {
        let c = candidates(&report(), &List(vec!["8.8.8.8".into(), "NX.example".into()]), 100);
        let values: Vec<(Origin, &str)> = c.values.iter().map(|(o, v)| (*o, v.as_str())).collect();
        let (a, b) = ("a".repeat(32), "b".repeat(32));
        assert_eq!(values.len(), 8, "{values:?}");
        assert_eq!(values[0], (Origin::Sample, a.as_str()));
        assert_eq!(values[3], (Origin::Dropped, b.as_str()));
        // the second dropped file is the sample again: its hashes are not repeated
        assert_eq!(&values[6..], [(Origin::Network, "203.0.113.7"), (Origin::Network, "c2.example")]);
        assert_eq!(c.blacklisted, ["8.8.8.8", "nx.example"]);
        assert!(c.over_max.is_empty());
    }

    #[test]
    fn maxioc_cuts_the_end_of_the_order_the_same_way_every_time() {
        let r = report();
        let c = candidates(&r, &List::default(), 4);
        assert_eq!(c.values.len(), 4);
        assert_eq!(c.values[3].0, Origin::Dropped);
        assert_eq!(c.over_max.len(), 6);
        assert_eq!(c, candidates(&r, &List::default(), 4));
        assert!(candidates(&r, &List::default(), 0).values.is_empty());
    }
}

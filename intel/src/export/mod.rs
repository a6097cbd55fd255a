//! `ioclab misp export`: IoCs from a MISP (real or embedded) and its feeds to
//! a file the agent loads, in misp-to-kunai's line format and with its
//! options, plus: more types, warninglist filtering, an atomic output file,
//! and `--sync` to drop IoCs whose attribute was deleted or lost its IDS flag.
//!
//! A minimal event index and one `POST /attributes/restSearch` (CSV) fetch
//! every selected attribute of the exported types, where misp-to-kunai asks
//! the event index and then each event. (Its `tags` filter then matches
//! attributes tagged themselves too, not only those of tagged events: a
//! superset.)

pub mod config;
pub mod iocs;
pub mod output;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::client::{ClientError, MispClient};
use crate::model::now;
use crate::warninglists::{Hit, Warninglists};
use config::ExportConfig;
use iocs::{IocLine, Select};
use output::{OutputError, Target};

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Events changed in the last N days (misp-to-kunai's `-l`; None: all).
    pub last_days: Option<u32>,
    /// Unpublished events too.
    pub all: bool,
    /// Only events with one of these tags.
    pub tags: Vec<String>,
    /// Only attributes with the IDS flag.
    pub to_ids_only: bool,
    /// Drop values on a warninglist.
    pub warninglists: bool,
    /// Values exported even when on a warninglist: the ones an operator
    /// declares as indicators (a lab's loopback C2 is on RFC 5735's list).
    pub allow: Vec<String>,
    /// Also remove IoCs whose attribute was deleted or lost its IDS flag.
    pub sync: bool,
    /// Start from an empty file instead of appending.
    pub overwrite: bool,
    /// Only the types misp-to-kunai takes.
    pub shared_only: bool,
    /// The file; None (or `-`, `/dev/stdout`) writes to stdout.
    pub output: Option<PathBuf>,
}

impl Default for ExportOptions {
    /// misp-to-kunai's defaults (the last day, published events, IDS flag only), with warninglists, to stdout.
    fn default() -> Self {
        ExportOptions {
            last_days: Some(1),
            all: false,
            tags: vec![],
            to_ids_only: true,
            warninglists: true,
            allow: vec![],
            sync: false,
            overwrite: false,
            shared_only: false,
            output: None,
        }
    }
}

/// What an export did.
#[derive(Debug, Default)]
pub struct ExportReport {
    /// Events fetched.
    pub events: usize,
    /// New IoC lines written.
    pub added: usize,
    /// Lines already in the file and kept.
    pub kept: usize,
    /// Lines removed by `--sync`.
    pub removed: Vec<IocLine>,
    /// Values left out because they are on a warninglist.
    pub warned: Vec<(IocLine, Hit)>,
}

/// An export that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// MISP or a feed answered badly.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Reading or writing the output failed, or it is not a file to replace.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// MISP's answer had an unexpected shape.
    #[error("{0}")]
    Shape(String),
}

/// misp-to-kunai's time filter: the end of the day `days` ago (local time is UTC on the lab machines).
fn since(days: u32) -> f64 {
    let day = (now() - i64::from(days) * 86_400).div_euclid(86_400);
    (day * 86_400 + 86_399) as f64 + 0.999_999
}

/// The IoCs of the attributes the options select, from MISP: the event ids
/// and uuids from a minimal /events/index, then one /attributes/restSearch
/// for the exported types as CSV with the six columns an IoC needs (a fifth
/// of the JSON answer's bytes, and no JSON to parse).
async fn fetch_iocs(
    client: &MispClient,
    opts: &ExportOptions,
    source: &str,
    sel: Select,
) -> Result<Vec<IocLine>, ExportError> {
    // the same event filters on both calls: the index names every event an attribute can come from
    let published = (!opts.all).then_some(true);
    // events changed since then, as misp-to-kunai's index asks
    let changed_since = opts.last_days.map(since);
    let index = client
        .post(
            "/events/index",
            &without_nulls(json!({"minimal": true, "published": published, "timestamp": changed_since})),
        )
        .await?;
    let event_uuids = event_uuids(&index)?;

    let mut filters = without_nulls(json!({"returnFormat": "csv", "requested_attributes": iocs::CSV_COLUMNS,
        "type": iocs::EXPORTED_TYPES, "published": published, "event_timestamp": changed_since}));
    if opts.to_ids_only {
        filters["to_ids"] = json!(true);
    }
    if !opts.tags.is_empty() {
        filters["tags"] = json!(opts.tags);
    }
    let body = client.post_raw("/attributes/restSearch", &filters).await?;
    iocs::from_csv(&body, &event_uuids, source, sel)
        .map_err(|e| ExportError::Shape(format!("{}: {e}", client.url("/attributes/restSearch"))))
}

/// The object without its null members (filters left out, not sent empty).
fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

/// Event id → uuid, from an /events/index answer (ids as MISP's strings or numbers).
fn event_uuids(index: &Value) -> Result<HashMap<u64, String>, ExportError> {
    let Value::Array(list) = index else {
        let text: String = index.to_string().chars().take(80).collect();
        return Err(ExportError::Shape(format!("/events/index answered something else than a list: {text}")));
    };
    Ok(list
        .iter()
        .filter_map(|e| {
            let e = e.get("Event").unwrap_or(e);
            let id = e["id"].as_u64().or_else(|| e["id"].as_str()?.parse().ok())?;
            Some((id, e["uuid"].as_str()?.to_string()))
        })
        .collect())
}

/// The events of a feed changed since `since_ts`.
async fn fetch_feed(client: &MispClient, url: &str, since_ts: Option<f64>) -> Result<Vec<Value>, ExportError> {
    let base = url.trim_end_matches('/').trim_end_matches("/manifest.json");
    let manifest = client.get_url(&format!("{base}/manifest.json")).await?;
    let Value::Object(m) = manifest else {
        return Err(ExportError::Shape(format!("{base}/manifest.json is not an object of events")));
    };
    let mut events = Vec::new();
    for (uuid, meta) in m {
        let ts = meta["timestamp"]
            .as_f64()
            .or_else(|| meta["timestamp"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0.0);
        // misp-to-kunai compares dates: an event of the `since` day itself is
        // in, and `since` is the last second of that day
        if since_ts.is_some_and(|s| ts < s - 86_400.0) {
            continue;
        }
        events.push(client.get_url(&format!("{base}/{uuid}.json")).await?);
    }
    Ok(events)
}

/// Runs an export.
pub async fn export(
    cfg: &ExportConfig,
    opts: &ExportOptions,
    lists: &Warninglists,
) -> Result<ExportReport, ExportError> {
    let mut report = ExportReport::default();
    // the target is checked before anything is fetched: a wrong -o fails at once
    let target = Target::new(opts.output.as_deref());
    let current = match &target {
        Target::Stdout => None,
        Target::File(path) => output::current(path, !opts.overwrite)?,
    };
    let sel = Select { to_ids_only: opts.to_ids_only, shared_only: opts.shared_only };
    let client = cfg.misp.client()?;
    let mut fresh: Vec<IocLine> = Vec::new();
    if cfg.misp.enable {
        fresh.extend(fetch_iocs(&client, opts, &cfg.misp.name, sel).await?);
        report.events += fresh.iter().map(|l| &l.event_uuid).collect::<HashSet<_>>().len();
    }
    for feed in cfg.feeds.iter().filter(|f| f.enable) {
        let events = fetch_feed(&client, &feed.url, opts.last_days.map(since)).await?;
        report.events += events.len();
        for e in &events {
            fresh.extend(iocs::from_event(e, &feed.name, sel));
        }
    }
    if opts.warninglists {
        fresh.retain(|l| match lists.check_attribute(&l.kind, &l.value).into_iter().next() {
            Some(_) if opts.allow.contains(&l.value) => true,
            Some(hit) => {
                report.warned.push((l.clone(), hit));
                false
            }
            None => true,
        });
    }

    // what the file holds already (kept unless --overwrite, pruned by --sync)
    let mut existing: Vec<(Option<IocLine>, String)> = current
        .as_ref()
        .map(|c| {
            c.text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| (serde_json::from_str(l).ok(), l.to_string()))
                .collect()
        })
        .unwrap_or_default();
    if opts.sync && cfg.misp.enable {
        let ours: Vec<String> = existing
            .iter()
            .filter_map(|(l, _)| l.as_ref().filter(|l| l.source == cfg.misp.name).map(|l| l.uuid.clone()))
            .collect();
        let alive = alive_attributes(&client, &ours, opts.to_ids_only).await?;
        existing.retain(|(l, _)| match l {
            Some(l) if l.source == cfg.misp.name && !alive.contains(&l.uuid) => {
                report.removed.push(l.clone());
                false
            }
            _ => true,
        });
    }
    // ahash: keyed per process, so values from a MISP cannot be chosen to collide
    let mut seen: HashSet<(&str, &str), ahash::RandomState> =
        existing.iter().filter_map(|(l, _)| l.as_ref().map(|l| (l.uuid.as_str(), l.value.as_str()))).collect();
    report.kept = existing.len();
    let new: Vec<&IocLine> = fresh.iter().filter(|l| seen.insert((&l.uuid, &l.value))).collect();
    report.added = new.len();

    let write = |out: &mut dyn Write, existing: &[(Option<IocLine>, String)]| -> std::io::Result<()> {
        for (_, raw) in existing {
            out.write_all(raw.as_bytes())?;
            out.write_all(b"\n")?;
        }
        for l in &new {
            serde_json::to_writer(&mut *out, l)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    match &target {
        Target::Stdout => write(&mut std::io::BufWriter::new(std::io::stdout().lock()), &[])
            .map_err(|source| OutputError::Io { path: "stdout".into(), source })?,
        Target::File(path) => output::replace(path, current.as_ref().map(|c| &c.meta), |out| write(out, &existing))?,
    }
    Ok(report)
}

/// The uuids, among `uuids`, of attributes that still exist, are not deleted
/// and (with `to_ids_only`) still have the IDS flag. An answer of another
/// shape (an error envelope sent with HTTP 200, `{"response": []}`, an entry
/// without its uuid or flags) is an error: read as "no attribute is alive",
/// it would remove every IoC of the source.
async fn alive_attributes(
    client: &MispClient,
    uuids: &[String],
    to_ids_only: bool,
) -> Result<HashSet<String>, ExportError> {
    let mut alive = HashSet::new();
    for chunk in uuids.chunks(SYNC_CHUNK) {
        let body = json!({"uuid": chunk, "deleted": [0, 1], "limit": chunk.len(), "page": 1});
        let v = client.post("/attributes/restSearch", &body).await?;
        let state = attribute_states(&v)
            .map_err(|e| ExportError::Shape(format!("{} (for --sync): {e}", client.url("/attributes/restSearch"))))?;
        for u in chunk {
            if let Some((deleted, to_ids)) = state.get(u) {
                if !deleted && (*to_ids || !to_ids_only) {
                    alive.insert(u.clone());
                }
            }
        }
    }
    Ok(alive)
}

/// Uuids asked per --sync request (an explicit `limit` of as many: a server's
/// default page size never cuts the answer short).
const SYNC_CHUNK: usize = 500;

/// uuid → (deleted, to_ids) of a JSON /attributes/restSearch answer
/// (`{"response": {"Attribute": [...]}}`), or what is wrong with its shape.
fn attribute_states(v: &Value) -> Result<HashMap<String, (bool, bool)>, String> {
    let short = |v: &Value| v.to_string().chars().take(120).collect::<String>();
    let Some(list) = v.get("response").and_then(|r| r.get("Attribute")).and_then(Value::as_array) else {
        return Err(match v.get("message").or_else(|| v.get("errors")) {
            Some(m) => format!("MISP answered an error with a success status: {}", short(m)),
            None => format!("the answer is not {{\"response\": {{\"Attribute\": [...]}}}}: {}", short(v)),
        });
    };
    let flag = |a: &Value, i: usize, k: &str| match &a[k] {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64().is_some_and(|n| n <= 1) => Ok(n.as_u64() == Some(1)),
        Value::String(s) if s == "0" || s == "1" => Ok(s == "1"),
        other => Err(format!("attribute {i}: {k} is {}, not a boolean", short(other))),
    };
    list.iter()
        .enumerate()
        .map(|(i, a)| -> Result<_, String> {
            let uuid = a["uuid"].as_str().ok_or_else(|| format!("attribute {i} has no uuid: {}", short(a)))?;
            Ok((uuid.to_string(), (flag(a, i, "deleted")?, flag(a, i, "to_ids")?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_index_entries_give_ids_and_uuids() {
        let index = json!([{"id": "12", "uuid": "u12"}, {"Event": {"id": 13, "uuid": "u13"}}, {"id": "x"}, 5]);
        let map = event_uuids(&index).unwrap();
        assert_eq!(map, HashMap::from([(12, "u12".to_string()), (13, "u13".to_string())]));
        let err = event_uuids(&json!({"errors": "x".repeat(500)})).unwrap_err().to_string();
        assert!(err.contains("not a list") || err.contains("something else than a list"), "{err}");
        assert!(err.len() < 200, "a bad answer is quoted short: {err}");
    }

    #[test]
    fn sync_answers_of_another_shape_are_errors() {
        let ok = json!({"response": {"Attribute": [{"uuid": "u1", "deleted": false, "to_ids": "1"}]}});
        assert_eq!(attribute_states(&ok).unwrap(), HashMap::from([("u1".to_string(), (false, true))]));
        assert!(attribute_states(&json!({"response": {"Attribute": []}})).unwrap().is_empty());
        for bad in [
            json!({"response": []}),
            json!([]),
            json!({"name": "Too many requests", "message": "Slow down.", "url": "/attributes/restSearch"}),
            json!({"errors": "The server is in maintenance"}),
            json!({"response": {"Attribute": [{"deleted": false, "to_ids": true}]}}),
            json!({"response": {"Attribute": [{"uuid": "u1", "to_ids": true}]}}),
            json!({"response": {"Attribute": [{"uuid": "u1", "deleted": "maybe", "to_ids": true}]}}),
        ] {
            let err = attribute_states(&bad).unwrap_err();
            assert!(err.len() < 300, "{err}");
        }
        let err = attribute_states(&json!({"name": "x", "message": "Slow down."})).unwrap_err();
        assert!(err.contains("Slow down") && err.contains("error"), "{err}");
    }

    #[test]
    fn since_is_the_end_of_a_day() {
        let s = since(1);
        assert_eq!((s as i64 + 1) % 86_400, 0);
        assert!(s < now() as f64 && s > (now() - 2 * 86_400) as f64);
    }
}

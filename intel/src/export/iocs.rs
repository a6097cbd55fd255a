//! MISP attributes to IoC lines in Kunai's format, as misp-to-kunai writes
//! them (`{"type","uuid","source","value","event_uuid","severity"}`), for a
//! superset of its types: sha512, ip-src, composite values (filename|hash,
//! domain|ip, ip-dst|port) and the host of URLs.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One IoC line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IocLine {
    /// The MISP type (or object relation) it came from.
    #[serde(rename = "type")]
    pub kind: String,
    /// The attribute's uuid.
    pub uuid: String,
    /// Where it came from (the config's name).
    pub source: String,
    /// The value the agent matches.
    pub value: String,
    /// The event's uuid.
    pub event_uuid: String,
    /// 0 to 10.
    pub severity: u8,
}

/// misp-to-kunai's severities (md5/sha1/sha256 10, domain/hostname/path 7,
/// ip-dst 5), and the types it does not take.
pub fn severity(kind: &str) -> Option<u8> {
    Some(match kind {
        "md5" | "sha1" | "sha256" | "sha512" => 10,
        "domain" | "hostname" | "path" => 7,
        "ip-dst" | "ip-src" => 5,
        _ => return None,
    })
}

/// Types misp-to-kunai itself takes (for comparisons on the shared types).
pub fn shared_type(kind: &str) -> bool {
    matches!(kind, "md5" | "sha1" | "sha256" | "domain" | "hostname" | "ip-dst" | "path")
}

/// The host of a URL (`https://user@Host.Example:8443/x` → `host.example`).
fn url_host(url: &str) -> Option<String> {
    let host = crate::model::host_of(url.split_once("://")?.1);
    (!host.is_empty()).then_some(host)
}

/// The (kind, value) pairs an attribute gives: one for simple types, the
/// parts the agent can match for composite ones.
pub fn values(kind: &str, relation: Option<&str>, value: &str) -> Vec<(String, String, u8)> {
    let one = |k: &str, v: &str| severity(k).map(|s| (k.to_string(), v.to_string(), s));
    // misp-to-kunai matches an object attribute by its relation first, then by its type
    if let Some(rel) = relation.filter(|r| severity(r).is_some()) {
        return one(rel, value).into_iter().collect();
    }
    let mut out = Vec::new();
    match kind {
        "filename|md5" | "filename|sha1" | "filename|sha256" | "filename|sha512" => {
            if let Some((_, h)) = value.rsplit_once('|') {
                out.extend(one(&kind["filename|".len()..], h));
            }
        }
        "domain|ip" => {
            if let Some((d, ip)) = value.split_once('|') {
                out.extend(one("domain", d));
                out.extend(one("ip-dst", ip));
            }
        }
        "ip-dst|port" | "ip-src|port" => {
            if let Some((ip, _)) = value.rsplit_once('|') {
                out.extend(one(&kind[..kind.len() - "|port".len()], ip));
            }
        }
        "url" | "uri" => {
            if let Some(h) = url_host(value) {
                let k = if h.parse::<IpAddr>().is_ok() { "ip-dst" } else { "domain" };
                out.extend(one(k, &h));
            }
        }
        k => out.extend(one(k, value)),
    }
    out
}

/// Options of the conversion.
#[derive(Debug, Clone, Copy)]
pub struct Select {
    /// Only attributes with the IDS flag (misp-to-kunai's default).
    pub to_ids_only: bool,
    /// Only the types misp-to-kunai takes (for comparisons).
    pub shared_only: bool,
}

/// IoC lines of one MISP event (`{"Event": {...}}` or the event), attributes
/// of its objects included; deleted attributes skipped.
pub fn from_event(event: &Value, source: &str, sel: Select) -> Vec<IocLine> {
    let e = event.get("Event").unwrap_or(event);
    let event_uuid = e["uuid"].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    let mut take = |a: &Value| {
        let flag = |k: &str| match &a[k] {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
            Value::String(s) => s == "1" || s == "true",
            _ => false,
        };
        if flag("deleted") || (sel.to_ids_only && !flag("to_ids")) {
            return;
        }
        let (Some(kind), Some(value)) = (a["type"].as_str(), a["value"].as_str()) else { return };
        let relation = a["object_relation"].as_str();
        // for comparisons: only what misp-to-kunai itself takes (its types as such, not parts of others)
        if sel.shared_only && !(shared_type(kind) || relation.is_some_and(shared_type)) {
            return;
        }
        for (k, v, severity) in values(kind, relation, value) {
            out.push(IocLine {
                kind: k,
                uuid: a["uuid"].as_str().unwrap_or("").to_string(),
                source: source.to_string(),
                value: v,
                event_uuid: event_uuid.clone(),
                severity,
            });
        }
    };
    for a in e["Attribute"].as_array().into_iter().flatten() {
        take(a);
    }
    for o in e["Object"].as_array().into_iter().flatten() {
        for a in o["Attribute"].as_array().into_iter().flatten() {
            take(a);
        }
    }
    out
}

/// The columns the export asks MISP's CSV for (`requested_attributes`).
pub const CSV_COLUMNS: &[&str] = &["uuid", "event_id", "type", "value", "to_ids", "object_relation"];

/// IoC lines of an /attributes/restSearch CSV answer with [`CSV_COLUMNS`]
/// (any order; other columns ignored); `event_uuids` maps event ids to uuids.
/// Errors name the line.
pub fn from_csv(
    body: &[u8],
    event_uuids: &HashMap<u64, String>,
    source: &str,
    sel: Select,
) -> Result<Vec<IocLine>, String> {
    let mut rd = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(body);
    let header = rd.byte_headers().map_err(|e| format!("the CSV header: {e}"))?.clone();
    let col = |name: &str| {
        header.iter().position(|h| h == name.as_bytes()).ok_or_else(|| {
            format!("the CSV has no {name:?} column (header: {:?})", String::from_utf8_lossy(header.as_slice()))
        })
    };
    let [uuid, event_id, kind, value, to_ids, relation] =
        [col("uuid")?, col("event_id")?, col("type")?, col("value")?, col("to_ids")?, col("object_relation")?];
    let mut out = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rd.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(match e.kind() {
                    csv::ErrorKind::UnequalLengths { pos: Some(p), expected_len, len } => {
                        format!("CSV line {}: {len} fields where the header has {expected_len}", p.line())
                    }
                    // csv's own message names the record, line and byte
                    _ => e.to_string(),
                });
            }
        }
        // MISP ends its CSV with an empty line
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        let line = rec.position().map_or(0, |p| p.line());
        let text =
            |i: usize| std::str::from_utf8(&rec[i]).map_err(|_| format!("CSV line {line}: column {i} is not UTF-8"));
        if sel.to_ids_only && !matches!(&rec[to_ids], b"1" | b"true") {
            continue;
        }
        let (k, v) = (text(kind)?, text(value)?);
        let r = Some(text(relation)?).filter(|r| !r.is_empty());
        if sel.shared_only && !(shared_type(k) || r.is_some_and(shared_type)) {
            continue;
        }
        let id: u64 = text(event_id)?
            .parse()
            .map_err(|_| format!("CSV line {line}: event_id {:?} is not a number", text(event_id)))?;
        let event_uuid = event_uuids.get(&id).map(String::as_str).unwrap_or("");
        let attribute_uuid = text(uuid)?;
        for (k, v, severity) in values(k, r, v) {
            out.push(IocLine {
                kind: k,
                uuid: attribute_uuid.to_string(),
                source: source.to_string(),
                value: v,
                event_uuid: event_uuid.to_string(),
                severity,
            });
        }
    }
    Ok(out)
}

/// The MISP types `values` takes (searches ask only for these); `text` for object `path` relations.
pub const EXPORTED_TYPES: &[&str] = &[
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "domain",
    "hostname",
    "ip-dst",
    "ip-src",
    "filename|md5",
    "filename|sha1",
    "filename|sha256",
    "filename|sha512",
    "domain|ip",
    "ip-dst|port",
    "ip-src|port",
    "url",
    "uri",
    "text",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL: Select = Select { to_ids_only: true, shared_only: false };

    #[test]
    fn superset_of_misp_to_kunai() {
        let ev = json!({"Event": {"uuid": "e1", "Attribute": [
            {"uuid": "a1", "type": "sha256", "value": "ab", "to_ids": true},
            {"uuid": "a2", "type": "domain|ip", "value": "evil.example|203.0.113.5", "to_ids": true},
            {"uuid": "a3", "type": "url", "value": "https://C2.Example:8443/gate.php", "to_ids": true},
            {"uuid": "a4", "type": "ip-dst|port", "value": "198.51.100.7|4444", "to_ids": true},
            {"uuid": "a5", "type": "filename|md5", "value": "x.exe|d41d8cd98f00b204e9800998ecf8427e", "to_ids": "1"},
            {"uuid": "a6", "type": "domain", "value": "not-ids.example", "to_ids": false},
            {"uuid": "a7", "type": "domain", "value": "gone.example", "to_ids": true, "deleted": true},
            {"uuid": "a8", "type": "text", "value": "hello", "to_ids": true},
        ], "Object": [{"Attribute": [
            {"uuid": "o1", "type": "text", "object_relation": "path", "value": "/tmp/x", "to_ids": true},
        ]}]}});
        let got: Vec<(String, String, u8)> =
            from_event(&ev, "lab", ALL).into_iter().map(|l| (l.uuid, l.value, l.severity)).collect();
        let want: Vec<(String, String, u8)> = [
            ("a1", "ab", 10),
            ("a2", "evil.example", 7),
            ("a2", "203.0.113.5", 5),
            ("a3", "c2.example", 7),
            ("a4", "198.51.100.7", 5),
            ("a5", "d41d8cd98f00b204e9800998ecf8427e", 10),
            ("o1", "/tmp/x", 7),
        ]
        .iter()
        .map(|(u, v, s)| (u.to_string(), v.to_string(), *s))
        .collect();
        assert_eq!(got, want);
        let no_ids = from_event(&ev, "lab", Select { to_ids_only: false, shared_only: false });
        assert!(no_ids.iter().any(|l| l.value == "not-ids.example"));
        assert!(!no_ids.iter().any(|l| l.value == "gone.example"), "deleted attributes never");
        let shared = from_event(&ev, "lab", Select { to_ids_only: true, shared_only: true });
        assert!(shared.iter().all(|l| shared_type(&l.kind)));
    }

    fn uuids() -> HashMap<u64, String> {
        HashMap::from([(7, "e7".to_string())])
    }

    #[test]
    fn csv_answers() {
        let body = b"uuid,event_id,type,value,to_ids,object_relation\n\
            \"a1\",7,\"domain\",\"evil.example\",1,\"\"\n\
            \"a2\",7,\"domain\",\"quiet.example\",0,\"\"\n\
            \"a3\",8,\"text\",\"/tmp/x, \"\"quoted\"\"\",1,\"path\"\n\
            \n";
        let lines = from_csv(body, &uuids(), "s", ALL).unwrap();
        let got: Vec<_> = lines.iter().map(|l| (&*l.uuid, &*l.kind, &*l.value, &*l.event_uuid)).collect();
        assert_eq!(got, [("a1", "domain", "evil.example", "e7"), ("a3", "path", "/tmp/x, \"quoted\"", "")]);
        let all = from_csv(body, &uuids(), "s", Select { to_ids_only: false, shared_only: false }).unwrap();
        assert_eq!(all.len(), 3, "--no-to-ids keeps a2");
        // columns in another order, and columns the export does not use
        let body =
            b"value,comment,type,object_relation,event_id,to_ids,uuid\n\"1.2.3.4\",\"c\",\"ip-dst\",\"\",7,1,\"a9\"\n";
        assert_eq!(from_csv(body, &uuids(), "s", ALL).unwrap()[0].value, "1.2.3.4");
    }

    #[test]
    fn bad_csv_answers_are_errors_that_say_where() {
        let err = from_csv(b"uuid,type,value\n\"a\",\"md5\",\"x\"\n", &uuids(), "s", ALL).unwrap_err();
        assert!(err.contains("no \"event_id\" column"), "{err}");
        let err = from_csv(b"{\"response\": {\"Attribute\": []}}", &uuids(), "s", ALL).unwrap_err();
        assert!(err.contains("no \"uuid\" column"), "JSON instead of CSV: {err}");
        let h = "uuid,event_id,type,value,to_ids,object_relation\n";
        let err = from_csv(format!("{h}\"a\",x,\"md5\",\"v\",1,\"\"\n").as_bytes(), &uuids(), "s", ALL).unwrap_err();
        assert!(err.contains("line 2") && err.contains("event_id"), "{err}");
        let err = from_csv(format!("{h}\"a\",7,\"md5\"\n").as_bytes(), &uuids(), "s", ALL).unwrap_err();
        assert!(err.contains("line 2"), "a short line: {err}");
        assert!(from_csv(h.as_bytes(), &uuids(), "s", ALL).unwrap().is_empty(), "no attribute: no IoC");
    }

    proptest::proptest! {
        #[test]
        fn any_event_json_or_answer_bytes_never_panic(s in "\\PC{0,200}", t in "(md5|domain|url|domain\\|ip|ip-dst\\|port|filename\\|sha1)", v in "\\PC{0,40}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = from_csv(s.as_bytes(), &uuids(), "s", ALL);
            let _ = from_csv(&raw, &uuids(), "s", ALL);
            let csv = format!("uuid,event_id,type,value,to_ids,object_relation\n{s},7,{t},{v},1,\n");
            let _ = from_csv(csv.as_bytes(), &uuids(), "s", ALL);
            let ev = json!({"Event": {"Attribute": [{"type": t, "value": v, "to_ids": true, "uuid": s}], "Object": "x"}});
            let _ = from_event(&ev, "s", ALL);
            let _ = from_event(&json!(s), "s", ALL);
        }
    }

    #[test]
    fn line_shape() {
        let l = IocLine {
            kind: "domain".into(),
            uuid: "u".into(),
            source: "s".into(),
            value: "v.example".into(),
            event_uuid: "e".into(),
            severity: 7,
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"type":"domain","uuid":"u","source":"s","value":"v.example","event_uuid":"e","severity":7}"#
        );
    }
}

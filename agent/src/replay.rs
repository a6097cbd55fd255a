//! `ioclab replay`: the live agent's IoC matcher run over recorded
//! JSON-lines logs (plain or gzip), so IoCs can be tested without root.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::events::{EventData, EventKind};
use crate::ioc::IocSet;

/// A log line that could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct ReplayLineError {
    /// The log file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Counters of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Events read.
    pub events: u64,
    /// Events that matched and were written.
    pub matched: u64,
    /// Lines that could not be read as events.
    pub bad: Vec<ReplayLineError>,
}

/// Opens a log, through gzip when its name ends in `.gz` or it starts with gzip's magic.
fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let mut f = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = std::fs::File::open(path)?;
    if (n == 2 && magic == [0x1f, 0x8b]) || path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(f))))
    } else {
        Ok(Box::new(BufReader::new(f)))
    }
}

/// Matches one parsed event; returns it with `detection` set when it matched
/// at or above `min_severity`.
pub fn replay_value(mut ev: Value, iocs: &IocSet, min_severity: u8) -> Result<Option<Value>, String> {
    let name = ev.pointer("/info/event/name").and_then(Value::as_str).ok_or("no info.event.name")?;
    let kind: EventKind = name.parse().map_err(|e: crate::events::UnknownEvent| e.to_string())?;
    let data = ev.get("data").ok_or("no data section")?;
    let data = EventData::from_json(kind, data).map_err(|e| format!("{name} data: {e}"))?;
    let Some(det) = iocs.scan(&data) else { return Ok(None) };
    if det.severity < min_severity {
        return Ok(None);
    }
    if let Some(obj) = ev.as_object_mut() {
        obj.insert("detection".into(), serde_json::to_value(det).map_err(|e| e.to_string())?);
    }
    Ok(Some(ev))
}

/// Replays `logs` through `iocs`, writing matching events (as JSON lines) to `out`.
/// A file that cannot be opened is an error; a bad line is counted and skipped.
pub fn replay(
    logs: &[PathBuf],
    iocs: &IocSet,
    min_severity: u8,
    out: &mut dyn Write,
) -> std::io::Result<ReplaySummary> {
    let mut summary = ReplaySummary::default();
    for path in logs {
        let reader = open(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        for (i, line) in reader.split(b'\n').enumerate() {
            let bad = |reason: String| ReplayLineError { path: path.clone(), line: i + 1, reason };
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    summary.bad.push(bad(format!("read error: {e}")));
                    break;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            summary.events += 1;
            let value: Value = match serde_json::from_slice(&line) {
                Ok(v) => v,
                Err(e) => {
                    summary.bad.push(bad(format!("not JSON: {e}")));
                    continue;
                }
            };
            match replay_value(value, iocs, min_severity) {
                Ok(Some(ev)) => {
                    serde_json::to_writer(&mut *out, &ev)?;
                    out.write_all(b"\n")?;
                    summary.matched += 1;
                }
                Ok(None) => {}
                Err(reason) => summary.bad.push(bad(reason)),
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iocs() -> IocSet {
        let mut set = IocSet::new();
        set.insert(crate::ioc::Ioc {
            value: "kunai.rocks".parse().unwrap(),
            text: "kunai.rocks".into(),
            severity: 4,
            uuid: None,
            source: None,
        });
        set
    }

    #[test]
    fn bad_lines_are_reported_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(
            &log,
            "{\"info\":{\"event\":{\"name\":\"dns_query\"}},\"data\":{\"query\":\"why.kunai.rocks\"}}\n\
             {\"info\":{\"event\":{\"name\":\"nope\"}},\"data\":{}}\n\
             {\"info\":{}}\n\
             [1]\n\
             {\"info\":{\"event\":{\"name\":\"execve\"}},\"data\":{\"exe\":7}}\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let s = replay(std::slice::from_ref(&log), &iocs(), 0, &mut out).unwrap();
        assert_eq!(s.events, 5);
        assert_eq!(s.matched, 1);
        assert_eq!(s.bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert!(s.bad[0].to_string().starts_with(&format!("{}:2: ", log.display())));
        assert!(s.bad[0].reason.contains("unknown event"));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["detection"]["iocs"][0], "kunai.rocks");
    }

    proptest! {
        #[test]
        fn arbitrary_json_events_never_panic(name in "[a-z_]{1,14}", data in "\\PC{0,60}") {
            let line = serde_json::json!({"info": {"event": {"name": name}}, "data": {"query": data, "exe": {"path": data}}});
            let _ = replay_value(line, &iocs(), 0);
        }
    }
}

//! Reading IoC files (Kunai's format: one JSON object a line). A bad line is
//! reported as `file:line: reason` and skipped; the rest loads.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::set::{Ioc, IocSet};
use super::MAX_SEVERITY;

/// An IoC file that could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct IocFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// A line of an IoC file that is not a usable IoC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", path.display())]
pub struct IocLineError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// What loading found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// IoCs loaded.
    pub loaded: usize,
    /// Lines skipped, with the reason.
    pub bad: Vec<IocLineError>,
    /// IoCs loaded from each file.
    pub per_file: Vec<(PathBuf, usize)>,
}

/// The fields the matcher uses; anything else on the line is ignored.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    value: Option<Cow<'a, str>>,
    severity: Option<serde_json::Number>,
    #[serde(borrow, default)]
    uuid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
}

/// Parses one line (without its newline). `Ok(None)` for blank and `#` comment lines.
pub fn parse_line(line: &[u8]) -> Result<Option<Ioc>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8 ({e})"))?;
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(text).map_err(|e| format!("not an IoC object: {e}"))?;
    let value = l.value.ok_or("missing field `value`")?;
    let severity = l.severity.ok_or("missing field `severity`")?;
    let severity = severity
        .as_u64()
        .filter(|s| *s <= MAX_SEVERITY as u64)
        .ok_or_else(|| format!("`severity` must be an integer from 0 to 10, got {severity}"))?;
    let typed = value.parse().map_err(|e| format!("`value`: {e}"))?;
    Ok(Some(Ioc {
        value: typed,
        text: value.trim().into(),
        severity: severity as u8,
        uuid: l.uuid.and_then(|u| u.parse().ok()),
        source: l.source.map(|s| s.into()),
    }))
}

/// Reads a whole file, through gzip when it is gzip-compressed.
fn read(path: &Path) -> Result<Vec<u8>, IocFileError> {
    let err = |source| IocFileError { path: path.into(), source };
    let raw = std::fs::read(path).map_err(err)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(err)?;
        return Ok(out);
    }
    Ok(raw)
}

fn load_into(paths: &[PathBuf], mut keep: impl FnMut(Ioc)) -> Result<LoadReport, IocFileError> {
    let mut report = LoadReport::default();
    for path in paths {
        let data = read(path)?;
        let mut n = 0;
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            match parse_line(line) {
                Ok(Some(ioc)) => {
                    keep(ioc);
                    n += 1;
                }
                Ok(None) => {}
                Err(reason) => report.bad.push(IocLineError { path: path.clone(), line: i + 1, reason }),
            }
        }
        report.loaded += n;
        report.per_file.push((path.clone(), n));
    }
    Ok(report)
}

/// Loads IoC files into one set. Unreadable files are errors; bad lines are reported and skipped.
pub fn load_files(paths: &[PathBuf]) -> Result<(IocSet, LoadReport), IocFileError> {
    let mut set = IocSet::new();
    let report = load_into(paths, |ioc| set.insert(ioc))?;
    Ok((set, report))
}

/// Checks IoC files without keeping them (`ioclab ioc check`).
pub fn check_files(paths: &[PathBuf]) -> Result<LoadReport, IocFileError> {
    load_into(paths, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioc::{Observable, Observables};
    use proptest::prelude::*;
    use std::io::Write;

    #[test]
    fn good_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iocs.json");
        std::fs::write(
            &p,
            concat!(
                "{\"uuid\":\"5d0b4a41-0000-4000-8000-000000000001\",\"source\":\"misp\",\"value\":\"kunai.rocks\",\"severity\":4,\"type\":\"domain\",\"event_uuid\":\"x\"}\n",
                "\n",
                "# a comment\n",
                "{\"value\":\"http://evil/x\",\"severity\":4}\n",
                "{\"value\":\"10.0.0.1\"}\n",
                "{\"value\":\"10.0.0.1\",\"severity\":11}\n",
                "[1,2]\n",
                "{\"value\":\"/usr/bin/nc\",\"severity\":2}",
            ),
        )
        .unwrap();
        let (set, report) = load_files(&[p.clone()]).unwrap();
        assert_eq!(report.loaded, 2);
        assert_eq!(set.len(), 2);
        let lines: Vec<usize> = report.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7]);
        let shown = report.bad[0].to_string();
        assert!(shown.starts_with(&format!("{}:4: ", p.display())), "{shown}");
        assert!(shown.contains("URL"), "{shown}");
        assert!(report.bad[1].reason.contains("severity"));
        assert!(report.bad[2].reason.contains("0 to 10"));
    }

    #[test]
    fn gzip_files_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iocs.json.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::fast());
        writeln!(gz, "{{\"value\":\"why.kunai.rocks\",\"severity\":3}}").unwrap();
        gz.finish().unwrap();
        let (set, _) = load_files(&[p]).unwrap();
        struct D;
        impl Observables for D {
            fn observables(&self, v: &mut dyn FnMut(Observable<'_>)) {
                v(Observable::Domain("why.kunai.rocks"))
            }
        }
        assert_eq!(set.scan(&D).unwrap().severity, 3);
        let e = load_files(&[dir.path().join("nope.json")]).unwrap_err().to_string();
        assert!(e.contains("nope.json"), "{e}");
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_line(&line);
        }

        #[test]
        fn any_json_value_never_panics(value in "\\PC{0,100}", sev in any::<i64>()) {
            let line = serde_json::json!({"value": value, "severity": sev}).to_string();
            if let Ok(Some(ioc)) = parse_line(line.as_bytes()) {
                prop_assert!(ioc.severity <= 10);
            }
        }
    }
}

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
    /// Lines repeating an IoC already loaded (same uuid and value): skipped,
    /// so their severity does not count twice.
    pub duplicates: Vec<IocLineError>,
    /// Files named more than once: read once.
    pub repeated_files: Vec<PathBuf>,
}

impl LoadReport {
    /// Whether the files loaded cleanly: at least one IoC and no bad line.
    /// A truncated, empty or HTML file fails this; the running agent keeps
    /// its previous IoCs rather than switch to such a load (unless told to).
    pub fn complete(&self) -> bool {
        self.loaded > 0 && self.bad.is_empty()
    }

    /// Why a load that is not [`complete`](Self::complete) would be refused:
    /// its first bad line (`FILE:LINE: reason`, and how many more), or that it holds no IoC.
    pub fn refusal(&self) -> Option<String> {
        if let Some(first) = self.bad.first() {
            let more = match self.bad.len() - 1 {
                0 => String::new(),
                n => format!(" (and {n} more bad line(s))"),
            };
            return Some(format!("{first}{more}"));
        }
        (self.loaded == 0).then(|| "no IoC in the file(s)".to_string())
    }

    /// One line for logs and events: `N IoCs from F file(s), B bad line(s), D duplicate(s)`.
    pub fn counts(&self) -> String {
        format!(
            "{} IoCs from {} file(s), {} bad line(s), {} duplicate(s)",
            self.loaded,
            self.per_file.len(),
            self.bad.len(),
            self.duplicates.len() + self.repeated_files.len()
        )
    }
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

/// Parsed lines of one chunk: (line index within the chunk, result), and the chunk's line count.
type Parsed = (Vec<(usize, Result<Ioc, String>)>, usize);

fn parse_chunk(chunk: &[u8]) -> Parsed {
    let mut out = Vec::with_capacity(chunk.len() / 128);
    let mut lines = 0;
    for (i, line) in chunk.split(|&b| b == b'\n').enumerate() {
        lines = i + 1;
        match parse_line(line) {
            Ok(Some(ioc)) => out.push((i, Ok(ioc))),
            Ok(None) => {}
            Err(reason) => out.push((i, Err(reason))),
        }
    }
    (out, lines)
}

/// Parses a file's lines on every core (chunks cut at line ends), in order.
fn parse_parallel(data: &[u8]) -> Vec<Parsed> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    if threads == 1 || data.len() < 1 << 20 {
        return vec![parse_chunk(data)];
    }
    let mut chunks = Vec::with_capacity(threads);
    let mut start = 0;
    for t in 1..=threads {
        let mut end = if t == threads { data.len() } else { (data.len() * t / threads).max(start) };
        // cut after a newline so no line is split
        while end < data.len() && data[end - 1] != b'\n' {
            end += 1;
        }
        chunks.push(&data[start..end]);
        start = end;
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // a chunk that ends with a newline yields an empty last "line": count it only for the last chunk
                let c = if i + 1 < chunks.len() { c.strip_suffix(b"\n").unwrap_or(c) } else { c };
                s.spawn(move || parse_chunk(c))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    })
}

fn load_into(paths: &[PathBuf], set: &mut IocSet) -> Result<LoadReport, IocFileError> {
    let mut report = LoadReport::default();
    let mut seen = Vec::with_capacity(paths.len());
    for path in paths {
        // the same file twice (maybe under two names) is read once
        let id = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if seen.contains(&id) {
            report.repeated_files.push(path.clone());
            continue;
        }
        seen.push(id);
        let data = read(path)?;
        add_data(path, &data, set, &mut report);
    }
    Ok(report)
}

/// Adds the IoCs of one file's `data` (named `path` in the report) to `set`.
fn add_data(path: &Path, data: &[u8], set: &mut IocSet, report: &mut LoadReport) {
    let mut n = 0;
    let mut first_line = 0;
    for (parsed, lines) in parse_parallel(data) {
        for (i, result) in parsed {
            let line = first_line + i + 1;
            match result {
                Ok(ioc) => match set.insert(ioc) {
                    true => n += 1,
                    false => report.duplicates.push(IocLineError {
                        path: path.to_path_buf(),
                        line,
                        reason: "same uuid and value as an IoC already loaded: counted once".into(),
                    }),
                },
                Err(reason) => report.bad.push(IocLineError { path: path.to_path_buf(), line, reason }),
            }
        }
        first_line += lines;
    }
    report.loaded += n;
    report.per_file.push((path.to_path_buf(), n));
}

/// Loads IoC files into one set. Unreadable files are errors; bad lines are
/// reported and skipped; an IoC repeated (same uuid and value) is kept once.
pub fn load_files(paths: &[PathBuf]) -> Result<(IocSet, LoadReport), IocFileError> {
    let mut set = IocSet::new();
    let report = load_into(paths, &mut set)?;
    Ok((set, report))
}

/// Checks the text of an IoC file named `name` (in the report's lines),
/// as the agent would load it: an IoC push before it is stored.
pub fn check_data(name: &Path, data: &[u8]) -> LoadReport {
    let mut report = LoadReport::default();
    add_data(name, data, &mut IocSet::new(), &mut report);
    report
}

/// Checks IoC files without keeping them (`ioclab ioc check`).
pub fn check_files(paths: &[PathBuf]) -> Result<LoadReport, IocFileError> {
    load_files(paths).map(|(_, report)| report)
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
        let (set, report) = load_files(std::slice::from_ref(&p)).unwrap();
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

    #[test]
    fn line_numbers_survive_parallel_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.json");
        let mut text = String::new();
        let mut bad = Vec::new();
        for i in 0..40_000 {
            if i % 9_999 == 0 {
                text.push_str("broken\n");
                bad.push(i + 1);
            } else {
                text.push_str(&format!("{{\"value\":\"h{i}.example\",\"severity\":1}}\n"));
            }
        }
        std::fs::write(&p, text).unwrap();
        let (set, report) = load_files(&[p]).unwrap();
        assert_eq!(report.bad.iter().map(|b| b.line).collect::<Vec<_>>(), bad);
        assert_eq!(set.len(), 40_000 - bad.len());
    }

    #[test]
    fn duplicate_lines_and_files_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iocs.json");
        let line = "{\"uuid\":\"5d0b4a41-0000-4000-8000-000000000001\",\"value\":\"/tmp/x\",\"severity\":4}\n";
        std::fs::write(&p, format!("{line}{line}")).unwrap();
        let same = dir.path().join("same.json");
        std::os::unix::fs::symlink(&p, &same).unwrap();
        let (set, report) = load_files(&[p.clone(), p.clone(), same]).unwrap();
        assert_eq!((report.loaded, set.len()), (1, 1));
        assert_eq!(report.duplicates.len(), 1);
        assert_eq!(report.duplicates[0].line, 2);
        assert_eq!(report.repeated_files.len(), 2);
        assert!(report.complete());
        struct P;
        impl Observables for P {
            fn observables(&self, v: &mut dyn FnMut(Observable<'_>)) {
                v(Observable::Path("/tmp/x"))
            }
        }
        assert_eq!(set.scan(&P).unwrap().severity, 4, "not 4 per copy");
    }

    #[test]
    fn empty_truncated_and_html_loads_are_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let good = "{\"value\":\"kunai.rocks\",\"severity\":4}\n";
        for (name, text) in [
            ("empty", String::new()),
            ("truncated", format!("{good}{{\"value\":\"why.ku")),
            ("html", "<html><body>502 Bad Gateway</body></html>\n".to_string()),
            ("comments only", "# nothing\n".to_string()),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let report = check_files(&[p]).unwrap();
            assert!(!report.complete(), "{name}: {report:?}");
        }
        let p = dir.path().join("good");
        std::fs::write(&p, good).unwrap();
        assert!(check_files(&[p]).unwrap().complete());
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

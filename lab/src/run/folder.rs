//! The run folder: every artifact of one run, open to trainees, and
//! `run.json`, which says what the run created so that reset can undo it.
//!
//! A scenario's committed replay (`lab-scenarios/<id>/replay/`) has the same
//! layout: a replay is a recorded run folder.
//!
//! ```text
//! <runs>/<run-id>/
//!   run.json          Manifest: scenario, mode, times, result, what was created
//!   timeline.jsonl    the RunEvents, one JSON line each
//!   sample/<name>     the detonated sample
//!   report.json       the sandbox report (Cuckoo 2.0 shape)
//!   misp-event.json   the MISP event as the MISP API returned it
//!   iocs.json         the IoC export the agent loaded (misp-to-kunai lines)
//!   events.jsonl      the endpoint agent's events of this run (Kunai JSON)
//!   steps/<id>.log    each endpoint step's output
//!   work/             the copy of the scenario's files the steps ran from
//! ```

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{Mode, RunEvent};
use crate::scenario::ScenarioId;

/// Why a run folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// A file could not be read or written.
    // the cause is in the message, not a `source`: shown once in an error chain
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// A file is not what a run writes.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Its line (1 for a whole-file JSON document).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FolderError + '_ {
    move |source| FolderError::Io { path: path.to_path_buf(), error: source }
}

/// A run's id: `<scenario>-<YYYYMMDDTHHMMSSZ>` (plus `-N` when two start in the same second).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// The id as text (the folder's name).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id read from a URL or a command line: a folder name, nothing more.
    pub fn parse(s: &str) -> Option<RunId> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        ok.then(|| RunId(s.to_string()))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `run.json`: what a run is and what it created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The run's id.
    pub run: RunId,
    /// The scenario.
    pub scenario: ScenarioId,
    /// The scenario's uuid.
    pub scenario_uuid: String,
    /// The scenario's version.
    pub version: u32,
    /// Live or replay.
    pub mode: Mode,
    /// Start, epoch seconds.
    pub started: f64,
    /// End, epoch seconds (`None` while it runs, or when it was killed).
    #[serde(default)]
    pub finished: Option<f64>,
    /// Whether every stage and expectation passed (`None` until it ends).
    #[serde(default)]
    pub passed: Option<bool>,
    /// What the run created outside its folder.
    #[serde(default)]
    pub created: Created,
}

/// What a run created outside its folder, for `ioclab lab reset`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Created {
    /// MISP events (uuids) in the embedded store.
    #[serde(default)]
    pub misp_events: Vec<String>,
    /// Sandbox tasks (ids).
    #[serde(default)]
    pub sandbox_tasks: Vec<u64>,
    /// The agent's IoC file as it was before the run (a copy in the run
    /// folder, `iocs.before.json`), restored by reset; `None`: the run did not change it.
    #[serde(default)]
    pub ioc_backup: Option<String>,
    /// The cleanup steps ran (reset sets it; running them again is safe).
    #[serde(default)]
    pub cleaned_up: bool,
    /// The agent had no IoC file before the run (then `ioc_backup` is
    /// `None`): restoring it means removing the file.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ioc_file_absent: bool,
    /// Reset put the agent's IoC file back as it was before this run (or
    /// before an earlier one): it no longer holds this run's IoCs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub iocs_restored: bool,
    /// When reset had undone everything else the run created, epoch seconds
    /// (`None`: not reset yet, or a part of its reset failed and is retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<f64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Created {
    /// Whether the run changed the agent's IoC file (it saved what was there before).
    pub fn changed_iocs(&self) -> bool {
        self.ioc_backup.is_some() || self.ioc_file_absent
    }
}

/// One run's folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    root: PathBuf,
}

impl RunFolder {
    /// The manifest.
    pub const MANIFEST: &'static str = "run.json";
    /// The stage events.
    pub const TIMELINE: &'static str = "timeline.jsonl";
    /// The sample's folder.
    pub const SAMPLE_DIR: &'static str = "sample";
    /// The sandbox report.
    pub const REPORT: &'static str = "report.json";
    /// The MISP event.
    pub const MISP_EVENT: &'static str = "misp-event.json";
    /// The IoC export.
    pub const IOCS: &'static str = "iocs.json";
    /// The agent's IoC file before the run.
    pub const IOCS_BEFORE: &'static str = "iocs.before.json";
    /// The endpoint events.
    pub const EVENTS: &'static str = "events.jsonl";
    /// The steps' output.
    pub const STEPS_DIR: &'static str = "steps";
    /// The copy of the scenario's files the endpoint steps (and cleanup) run from.
    pub const WORK_DIR: &'static str = "work";

    /// Creates a new folder under `runs` for a run of `scenario` started at
    /// `started` (epoch seconds); its id is unique under `runs`.
    pub fn create(runs: &Path, scenario: &ScenarioId, started: f64) -> Result<(RunId, RunFolder), FolderError> {
        std::fs::create_dir_all(runs).map_err(io(runs))?;
        let stamp = utc_stamp(started as i64);
        for n in 0u32.. {
            let id = if n == 0 { format!("{scenario}-{stamp}") } else { format!("{scenario}-{stamp}-{n}") };
            let root = runs.join(&id);
            match std::fs::create_dir(&root) {
                Ok(()) => return Ok((RunId(id), RunFolder { root })),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(FolderError::Io { path: root, error: e }),
            }
        }
        unreachable!("u32 ids run out")
    }

    /// An existing folder (a run, or a scenario's `replay/`).
    pub fn open(root: impl Into<PathBuf>) -> RunFolder {
        RunFolder { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the folder, by its name relative to it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The log of step `id`.
    pub fn step_log(&self, id: &ScenarioId) -> PathBuf {
        self.root.join(Self::STEPS_DIR).join(format!("{id}.log"))
    }

    /// Reads `run.json`.
    pub fn manifest(&self) -> Result<Manifest, FolderError> {
        read_json(&self.path(Self::MANIFEST))
    }

    /// Writes `run.json` (atomically: a reader never sees half of it).
    pub fn write_manifest(&self, m: &Manifest) -> Result<(), FolderError> {
        write_json(&self.path(Self::MANIFEST), m)
    }

    /// Keeps the agent's IoC file `agent_iocs` as it is before the run first
    /// changes it: a copy named [`RunFolder::IOCS_BEFORE`] (same bytes and
    /// mode), or its absence, recorded in `created` for reset. Call it before
    /// each change: only the first call of a run saves anything.
    pub fn save_iocs_before(&self, agent_iocs: &Path, created: &mut Created) -> Result<(), FolderError> {
        if created.changed_iocs() {
            return Ok(());
        }
        let copy = self.path(Self::IOCS_BEFORE);
        match std::fs::copy(agent_iocs, &copy) {
            Ok(_) => created.ioc_backup = Some(Self::IOCS_BEFORE.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => created.ioc_file_absent = true,
            Err(e) => return Err(FolderError::Io { path: agent_iocs.to_path_buf(), error: e }),
        }
        Ok(())
    }

    /// Reads `timeline.jsonl`.
    pub fn timeline(&self) -> Result<Vec<RunEvent>, FolderError> {
        read_lines(&self.path(Self::TIMELINE))
    }

    /// Reads `events.jsonl` (none when the run has no endpoint events yet).
    pub fn events(&self) -> Result<Vec<Value>, FolderError> {
        let p = self.path(Self::EVENTS);
        if !p.exists() {
            return Ok(Vec::new());
        }
        read_lines(&p)
    }
}

/// Reads a JSON document.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, FolderError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| FolderError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })
}

/// Writes a JSON document (pretty), through a temporary file renamed over it.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), FolderError> {
    let tmp = path.with_extension("tmp");
    let mut text = serde_json::to_vec_pretty(value).expect("run files serialise");
    text.push(b'\n');
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads JSON lines (blank lines skipped).
pub fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, FolderError> {
    Ok(read_numbered_lines(path)?.into_iter().map(|(_, v)| v).collect())
}

/// Reads JSON lines with their line numbers (from 1; blank lines skipped).
/// Bytes that are not UTF-8 are a parse error at their line, like bad JSON.
pub fn read_numbered_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>, FolderError> {
    let f = File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed = serde_json::from_slice(&line).map_err(|e| FolderError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push((i + 1, parsed));
    }
    Ok(out)
}

/// Appends one JSON line.
pub fn append_line<T: Serialize>(file: &mut File, value: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).expect("run files serialise");
    line.push(b'\n');
    file.write_all(&line)
}

/// `YYYYMMDDTHHMMSSZ` for epoch seconds `t` (UTC).
pub fn utc_stamp(t: i64) -> String {
    let (y, m, d) = ioclab_intel::model::civil_date(t);
    let secs = t.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_says_its_cause_once() {
        let e = RunFolder::open("/nonexistent/ioclab-run").manifest().unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("/nonexistent/ioclab-run/run.json: No such file"), "{text}");
        // a chain printer (anyhow's `{:#}`) would repeat a `source`
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn stamps_are_utc() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_796_000_000), "20261130T005320Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn run_ids_are_unique_folder_names() {
        let dir = tempfile::tempdir().unwrap();
        let id: ScenarioId = serde_json::from_str("\"dns-ioc\"").unwrap();
        let (a, fa) = RunFolder::create(dir.path(), &id, 0.0).unwrap();
        let (b, _) = RunFolder::create(dir.path(), &id, 0.0).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("dns-ioc-19700101T000000Z", "dns-ioc-19700101T000000Z-1"));
        assert!(fa.root().is_dir());
        assert!(RunId::parse("../etc").is_none() && RunId::parse("a/b").is_none() && RunId::parse("").is_none());
        assert_eq!(RunId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn the_ioc_file_is_saved_once_per_run_with_its_bytes_and_mode_or_its_absence() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("iocs.json");
        let run = RunFolder::open(dir.path().join("run"));
        std::fs::create_dir(run.root()).unwrap();
        let mut created = Created::default();
        run.save_iocs_before(&agent, &mut created).unwrap();
        assert!(created.ioc_file_absent && created.ioc_backup.is_none() && created.changed_iocs());

        let run2 = RunFolder::open(dir.path().join("run2"));
        std::fs::create_dir(run2.root()).unwrap();
        std::fs::write(&agent, b"{\"before\":1}\n").unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut created = Created::default();
        run2.save_iocs_before(&agent, &mut created).unwrap();
        // the run changes the file, then saves again before a second change: the first state stays
        std::fs::write(&agent, b"changed").unwrap();
        run2.save_iocs_before(&agent, &mut created).unwrap();
        assert_eq!(created.ioc_backup.as_deref(), Some(RunFolder::IOCS_BEFORE));
        assert!(!created.ioc_file_absent);
        let copy = run2.path(RunFolder::IOCS_BEFORE);
        assert_eq!(std::fs::read(&copy).unwrap(), b"{\"before\":1}\n");
        assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn manifests_round_trip_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = RunFolder::open(dir.path());
        let m = Manifest {
            run: RunId("x".into()),
            scenario: serde_json::from_str("\"x\"").unwrap(),
            scenario_uuid: "u".into(),
            version: 1,
            mode: Mode::Live,
            started: 1.5,
            finished: None,
            passed: None,
            created: Created { misp_events: vec!["e".into()], sandbox_tasks: vec![3], ..Created::default() },
        };
        f.write_manifest(&m).unwrap();
        assert_eq!(f.manifest().unwrap(), m);
        std::fs::write(
            f.path(RunFolder::TIMELINE),
            "{\"at_ms\":0,\"kind\":\"finished\",\"passed\":true}\n\nnot json\n",
        )
        .unwrap();
        let err = f.timeline().unwrap_err().to_string();
        assert!(err.contains("timeline.jsonl:3:"), "{err}");
        assert!(f.events().unwrap().is_empty());
        // bytes that are not UTF-8 are named by line too (not an I/O error)
        std::fs::write(
            f.path(RunFolder::TIMELINE),
            b"{\"at_ms\":0,\"kind\":\"finished\",\"passed\":true}\n\"\xff\xfe\"\n",
        )
        .unwrap();
        let err = f.timeline().unwrap_err().to_string();
        assert!(err.contains("timeline.jsonl:2:"), "{err}");
    }
}

//! Storing a live run as its scenario's replay: `lab-scenarios/<id>/replay/`,
//! the recorded run folder [`crate::replay`] plays.
//!
//! Only a finished live run of the same scenario version is recorded, and a
//! failed one only when forced. What is committed is the run folder minus
//! what belongs to the machine that ran it:
//! - `iocs.before.json` (that machine's own IoC set, restored by reset) is dropped;
//! - copies of the scenario's own files (its sample in `sample/`, the sample
//!   and assets the steps ran from their working folder) are dropped: they
//!   are committed beside the replay already (the player puts the sample
//!   back in `sample/`);
//! - `run.json` keeps the run's identity and result, not what it created
//!   there (MISP event uuids, sandbox task ids: they mean nothing elsewhere);
//! - the endpoint's host name and uuid (`info.host`) in `events.jsonl` and in
//!   the timeline's events become [`LAB_HOST_NAME`] and [`LAB_HOST_UUID`];
//! - `events.jsonl` over [`EVENTS_TRIM_BYTES`] keeps only the events the run
//!   needs: those with a detection, and those of the event kinds the
//!   scenario's expectations and event-derived answers name.
//!
//! The new replay is written beside the old one, read back as the player
//! would, then swapped in with one atomic rename: a reader sees the old
//! replay or the new one, never half of one.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::replay::{copy_tree, scenario_sample, Recording, ReplayError};
use crate::run::folder::{append_line, read_lines, FolderError};
use crate::run::{Created, Mode, RunEvent, RunEventKind, RunFolder, RunId};
use crate::scenario::{AnswerRule, Loaded, ScenarioId};
use crate::scoring::run_data::event_name;

/// A scenario's replay folder, under its own folder.
pub const REPLAY_DIR: &str = "replay";
/// `events.jsonl` larger than this is trimmed to what the run needs.
pub const EVENTS_TRIM_BYTES: u64 = 256 * 1024;
/// The host name recorded events carry instead of the recording machine's.
pub const LAB_HOST_NAME: &str = "lab-endpoint";
/// The host uuid recorded events carry instead of the recording machine's.
pub const LAB_HOST_UUID: &str = "00000000-0000-4000-8000-000000000000";

/// Why a run could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The run folder is not a playable recording (or the copy could not be made).
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A run folder file could not be read or written.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The run is a replay itself.
    #[error("run {0} is a replay: record a live run (ioclab lab run ID)")]
    NotLive(RunId),
    /// The run failed an expectation and `force` was not given.
    #[error("run {0} failed: a replay should show the flow working (--force records it anyway)")]
    Failed(RunId),
    /// No run matched.
    #[error("no finished live run of {scenario} under {runs}")]
    NoRun {
        /// The scenario.
        scenario: ScenarioId,
        /// Where runs were looked for.
        runs: PathBuf,
    },
    /// A run id given on the command line is not one.
    #[error("{0:?} is not a run id (a folder name under the runs folder, or `latest`)")]
    BadRunId(String),
}

/// What [`record`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The replay folder written.
    pub dir: PathBuf,
    /// The run recorded.
    pub run: RunId,
    /// Whether it passed.
    pub passed: bool,
    /// Endpoint events kept.
    pub events_kept: usize,
    /// Endpoint events left out by trimming.
    pub events_dropped: usize,
}

/// The replay folder of scenario `loaded`.
pub fn replay_dir(loaded: &Loaded) -> PathBuf {
    loaded.dir.join(REPLAY_DIR)
}

/// The run `which` of `scenario` under `runs`: a run id, or `latest` (the
/// last started finished live run of that scenario).
pub fn find_run(runs: &Path, scenario: &ScenarioId, which: &str) -> Result<RunFolder, RecordError> {
    if which != "latest" {
        let id = RunId::parse(which).ok_or_else(|| RecordError::BadRunId(which.to_string()))?;
        return Ok(RunFolder::open(runs.join(id.as_str())));
    }
    let none = || RecordError::NoRun { scenario: scenario.clone(), runs: runs.to_path_buf() };
    let entries = std::fs::read_dir(runs).map_err(|_| none())?;
    let mut best: Option<(f64, RunFolder)> = None;
    for e in entries.flatten() {
        let f = RunFolder::open(e.path());
        let Ok(m) = f.manifest() else { continue }; // a run being created, or not a run
        let wanted = m.scenario == *scenario && m.mode == Mode::Live && m.finished.is_some();
        if wanted && best.as_ref().is_none_or(|(t, _)| m.started > *t) {
            best = Some((m.started, f));
        }
    }
    best.map(|(_, f)| f).ok_or_else(none)
}

/// Records `run` as the replay of scenario `loaded` (replacing the old one);
/// a failed run only with `force`.
pub fn record(loaded: &Loaded, run: &RunFolder, force: bool) -> Result<Recorded, RecordError> {
    let rec = Recording::read(run.root())?;
    rec.check_scenario(&loaded.scenario)?;
    let m = rec.manifest().clone();
    if m.mode != Mode::Live {
        return Err(RecordError::NotLive(m.run));
    }
    if !rec.passed() && !force {
        return Err(RecordError::Failed(m.run));
    }
    let dest = replay_dir(loaded);
    let tmp = loaded.dir.join(format!(".{REPLAY_DIR}.new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_recording(loaded, &rec, &tmp).and_then(|counts| {
        // read back as the player will: a replay that cannot play is never committed
        Recording::read(&tmp)?.check_scenario(&loaded.scenario)?;
        swap_in(&tmp, &dest)?;
        Ok(counts)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let (events_kept, events_dropped) = written?;
    Ok(Recorded { dir: dest, run: m.run, passed: rec.passed(), events_kept, events_dropped })
}

/// Writes the recording of `rec` into the new folder `to`; the endpoint events kept and dropped.
fn write_recording(loaded: &Loaded, rec: &Recording, to: &Path) -> Result<(usize, usize), RecordError> {
    let from = rec.folder();
    std::fs::create_dir_all(to).map_err(io_at(to))?;
    let out = RunFolder::open(to);
    let mut manifest = rec.manifest().clone();
    manifest.created = Created::default();
    out.write_manifest(&manifest)?;

    let mut timeline = create(&out.path(RunFolder::TIMELINE))?;
    for e in rec.events() {
        let mut e: RunEvent = e.clone();
        match &mut e.kind {
            RunEventKind::Detection { event, .. } => scrub_host(event),
            RunEventKind::ExpectationFailed { nearest: Some(event), .. } => scrub_host(event),
            _ => {}
        }
        write_line(&mut timeline, &out.path(RunFolder::TIMELINE), &e)?;
    }

    let (mut kept, mut dropped) = (0, 0);
    let events_path = from.path(RunFolder::EVENTS);
    if events_path.exists() {
        let big = std::fs::metadata(&events_path).map(|m| m.len() > EVENTS_TRIM_BYTES).unwrap_or(false);
        let needed = needed_event_names(loaded);
        let to_path = out.path(RunFolder::EVENTS);
        let mut w = create(&to_path)?;
        for mut e in read_lines::<Value>(&events_path)? {
            if big && !(e.get("detection").is_some() || event_name(&e).is_some_and(|n| needed.contains(n))) {
                dropped += 1;
                continue;
            }
            scrub_host(&mut e);
            write_line(&mut w, &to_path, &e)?;
            kept += 1;
        }
    }

    for entry in std::fs::read_dir(from.root()).map_err(io_at(from.root()))? {
        let name = entry.map_err(io_at(from.root()))?.file_name();
        let name = name.to_string_lossy();
        let own = [RunFolder::MANIFEST, RunFolder::TIMELINE, RunFolder::EVENTS, RunFolder::IOCS_BEFORE];
        if !own.contains(&name.as_ref()) {
            copy_tree(&from.path(&name), &out.path(&name))?;
        }
    }
    drop_scenario_files(loaded, &out)?;
    Ok((kept, dropped))
}

/// Removes from the new recording the copies of the scenario's own files
/// (its sample and assets) that a live run leaves in its folders: the sample
/// in `sample/`, what the steps ran in their working folder. They are
/// committed beside the replay already, and the player puts the sample back
/// in `sample/` (see [`crate::replay::scenario_sample`]). Only files in
/// sub-folders other than `steps/` are looked at (never an artifact of the
/// layout), and folders left empty go too.
fn drop_scenario_files(loaded: &Loaded, out: &RunFolder) -> Result<(), FolderError> {
    let mut own: Vec<Vec<u8>> = Vec::new();
    let sample = scenario_sample(loaded).map(|(src, _)| src);
    let assets = loaded.scenario.assets.iter().map(|a| loaded.dir.join(&a.file));
    for path in sample.into_iter().chain(assets) {
        match std::fs::read(&path) {
            Ok(bytes) if !bytes.is_empty() => own.push(bytes),
            _ => {} // an empty file says nothing; a missing one cannot be copied
        }
    }
    for e in std::fs::read_dir(out.root()).map_err(io_at(out.root()))? {
        let path = e.map_err(io_at(out.root()))?.path();
        let is_steps = path.file_name().is_some_and(|n| n == RunFolder::STEPS_DIR);
        if path.is_dir() && !is_steps && drop_copies(&path, &own)? {
            std::fs::remove_dir(&path).map_err(io_at(&path))?;
        }
    }
    Ok(())
}

/// Removes the files under `dir` holding exactly one of `contents`, then the
/// folders this empties; whether `dir` is empty now.
fn drop_copies(dir: &Path, contents: &[Vec<u8>]) -> Result<bool, FolderError> {
    let mut empty = true;
    for e in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let path = e.map_err(io_at(dir))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io_at(&path))?;
        if meta.is_dir() {
            if drop_copies(&path, contents)? {
                std::fs::remove_dir(&path).map_err(io_at(&path))?;
                continue;
            }
        } else if contents.iter().any(|c| c.len() as u64 == meta.len())
            && contents.contains(&std::fs::read(&path).map_err(io_at(&path))?)
        {
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            continue;
        }
        empty = false;
    }
    Ok(empty)
}

fn create(path: &Path) -> Result<File, FolderError> {
    File::create(path).map_err(io_at(path))
}

fn write_line<T: serde::Serialize>(f: &mut File, path: &Path, v: &T) -> Result<(), FolderError> {
    append_line(f, v).map_err(io_at(path))
}

/// The Kunai event names a run's answers and expectations are read from.
fn needed_event_names(loaded: &Loaded) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = loaded.scenario.expect.detections.iter().map(|d| d.event.clone()).collect();
    for a in loaded.answers.iter().flat_map(|a| a.answers.values()) {
        if let AnswerRule::Event { event, .. } = &a.rule {
            names.insert(event.clone());
        }
    }
    names
}

/// Replaces the recording machine's name and uuid in `info.host`.
fn scrub_host(e: &mut Value) {
    if let Some(host) = e.pointer_mut("/info/host").and_then(Value::as_object_mut) {
        if host.contains_key("name") {
            host.insert("name".into(), LAB_HOST_NAME.into());
        }
        if host.contains_key("uuid") {
            host.insert("uuid".into(), LAB_HOST_UUID.into());
        }
    }
}

/// Puts folder `new` at `dest` in one rename, the old `dest` (if any) removed after.
fn swap_in(new: &Path, dest: &Path) -> Result<(), FolderError> {
    let err = |source| FolderError::Io { path: dest.to_path_buf(), source };
    if std::fs::symlink_metadata(dest).is_err() {
        return std::fs::rename(new, dest).map_err(err);
    }
    match exchange(new, dest) {
        Ok(()) => {} // `new` now holds the old replay
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOSYS) => {
            // a file system without exchange: two renames, the old one moved aside first
            let old = new.with_extension("old");
            std::fs::rename(dest, &old).map_err(err)?;
            std::fs::rename(new, dest).map_err(err)?;
            std::fs::rename(&old, new).map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    std::fs::remove_dir_all(new).map_err(io_at(new))
}

/// Swaps two paths atomically (Linux's renameat2 RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two valid NUL-terminated paths, relative to the working directory.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> FolderError + '_ {
    move |source| FolderError::Io { path: path.to_path_buf(), source }
}

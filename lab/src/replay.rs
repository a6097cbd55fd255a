//! Playing a recorded run: a scenario's `replay/` folder (a run folder a
//! live run left, stored by [`crate::record`]) re-emitted through a
//! [`RunLog`] with its recorded timing, into a new run folder of its own.
//!
//! Nothing runs for real: no sandbox, no MISP, no eBPF, no root, no network
//! namespace. The watchers (the CLI's timeline, the web) see the same stage
//! stream as for a live run, and each recorded artifact appears in the new
//! run folder only when the stage that produced it finishes, so the web never
//! shows a report before its stage lit up.
//!
//! When files appear:
//! - `sample/`: before the run starts (the input; the scenario's own sample
//!   when the recording left it out, see [`crate::record`]);
//! - a file named by a `stage_finished` event's `artifact`: just before that event;
//! - `steps/<id>.log`: just before that step's `step_finished`;
//! - anything else the recording holds (`events.jsonl`...): just before `finished`.
//!
//! `run.json` is the replay's own (mode `replay`, nothing created outside
//! the folder, so reset has nothing to undo); `iocs.before.json` is never copied.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::run::folder::{read_json, read_lines, read_numbered_lines, FolderError};
use crate::run::{Created, Manifest, Mode, RunEvent, RunEventKind, RunFolder, RunId, RunLog};
use crate::scenario::{Loaded, Scenario};

/// The longest recording played: a longer one is taken for a corrupt
/// timeline rather than waited for (a live run times out long before).
pub const MAX_RECORDING_MS: u64 = 24 * 3600 * 1000;

/// Why a recording cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file of the recording (or of the new run folder) could not be read or written.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The recording is of another scenario, or of another version of it.
    #[error(
        "{recording}: recorded from scenario {recorded}, not {scenario}: record it again \
         (sudo ioclab lab record {id})"
    )]
    Mismatch {
        /// The recording's `run.json`.
        recording: PathBuf,
        /// What the recording says (`id dns-ioc uuid ... version 1`).
        recorded: String,
        /// What the scenario says.
        scenario: String,
        /// The scenario's id, for the hint.
        id: String,
    },
    /// A file of the recording is readable but not what a finished run leaves.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Its line (1 for a whole file).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The replay thread died (a bug: it is reported, never re-panicked).
    #[error("replay of {0} stopped unexpectedly")]
    Crashed(RunId),
}

fn invalid(path: PathBuf, line: usize, message: impl Into<String>) -> ReplayError {
    ReplayError::Invalid { path, line, message: message.into() }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Folder(FolderError::Io { path: path.to_path_buf(), error: source })
}

/// How fast a recording plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// No waiting; the events keep their recorded `at_ms`.
    Instant,
    /// The recorded timing divided by this factor (`1.0`: as recorded); `at_ms` scaled alike.
    Times(f64),
}

impl Speed {
    /// Where an event recorded at `at_ms` plays.
    pub fn scale(self, at_ms: u64) -> u64 {
        match self {
            Speed::Instant => at_ms,
            Speed::Times(f) => (at_ms as f64 / f).round() as u64,
        }
    }
}

impl FromStr for Speed {
    type Err = String;
    /// `0` is [`Speed::Instant`]; any other finite number above 0 a factor.
    fn from_str(s: &str) -> Result<Speed, String> {
        let f: f64 =
            s.trim().parse().map_err(|_| format!("speed {s:?} is not a number (e.g. 1, 4, 0.5, 0 for no waiting)"))?;
        if f == 0.0 {
            Ok(Speed::Instant)
        } else if f.is_finite() && f > 0.0 {
            Ok(Speed::Times(f))
        } else {
            Err(format!("speed {s:?} must be 0 (no waiting) or a positive number"))
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Speed::Instant => f.write_str("instant"),
            Speed::Times(x) => write!(f, "x{x}"),
        }
    }
}

/// A recording, read and checked: what a finished run left in its folder.
#[derive(Debug, Clone)]
pub struct Recording {
    folder: RunFolder,
    manifest: Manifest,
    /// The events, with their line in `timeline.jsonl`.
    timeline: Vec<(usize, RunEvent)>,
}

impl Recording {
    /// Reads the recording at `dir` and checks it can be played: a finished
    /// run, a timeline ending with `finished`, every artifact present inside
    /// the folder. Errors name the file and line.
    pub fn read(dir: &Path) -> Result<Recording, ReplayError> {
        let folder = RunFolder::open(dir);
        let manifest_path = folder.path(RunFolder::MANIFEST);
        let manifest = folder.manifest()?;
        let Some(passed) = manifest.passed else {
            return Err(invalid(manifest_path, 1, "the recorded run never finished (no \"passed\")"));
        };
        check_tree(dir)?;
        // the JSON artifacts parse (the web and scoring read them), errors at FILE:LINE
        for doc in [RunFolder::REPORT, RunFolder::MISP_EVENT] {
            if folder.path(doc).exists() {
                read_json::<serde_json::Value>(&folder.path(doc))?;
            }
        }
        for lines in [RunFolder::IOCS, RunFolder::EVENTS] {
            if folder.path(lines).exists() {
                read_lines::<serde_json::Value>(&folder.path(lines))?;
            }
        }
        let tl_path = folder.path(RunFolder::TIMELINE);
        let mut timeline: Vec<(usize, RunEvent)> = read_numbered_lines(&tl_path)?;
        for (_, e) in &mut timeline {
            // a file never played is no stage's artifact in a replay (a live agent stage names iocs.before.json)
            if let RunEventKind::StageFinished { artifact, .. } = &mut e.kind {
                if artifact.as_deref().is_some_and(|a| NOT_COPIED.contains(&a)) {
                    *artifact = None;
                }
            }
        }
        let rec = Recording { folder, manifest, timeline };
        match rec.timeline.first() {
            Some((_, RunEvent { kind: RunEventKind::Started { .. }, .. })) => {}
            Some((line, _)) => return Err(invalid(tl_path, *line, "a timeline starts with a \"started\" event")),
            None => return Err(invalid(tl_path, 1, "empty timeline")),
        }
        if let Some((line, e)) = rec.timeline.last() {
            if !matches!(e.kind, RunEventKind::Finished { .. }) {
                return Err(invalid(tl_path, *line, "the timeline does not end with \"finished\""));
            }
        }
        for (i, (line, e)) in rec.timeline.iter().enumerate() {
            let last = i + 1 == rec.timeline.len();
            if e.at_ms > MAX_RECORDING_MS {
                return Err(invalid(tl_path, *line, format!("at_ms {} is beyond 24 h", e.at_ms)));
            }
            match &e.kind {
                RunEventKind::Started { .. } if i > 0 => {
                    return Err(invalid(tl_path, *line, "a second \"started\" event"));
                }
                RunEventKind::Finished { .. } if !last => {
                    return Err(invalid(tl_path, *line, "events after \"finished\""));
                }
                RunEventKind::Finished { passed: p } if *p != passed => {
                    return Err(invalid(
                        tl_path,
                        *line,
                        format!("\"finished\" says passed {p}, run.json says {passed}"),
                    ));
                }
                RunEventKind::StageFinished { artifact: Some(a), .. } => {
                    rec.artifact(a).map_err(|why| invalid(tl_path.clone(), *line, why))?;
                }
                _ => {}
            }
        }
        Ok(rec)
    }

    /// The recording's folder.
    pub fn folder(&self) -> &RunFolder {
        &self.folder
    }

    /// Its `run.json`.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The recorded events, in order.
    pub fn events(&self) -> impl Iterator<Item = &RunEvent> {
        self.timeline.iter().map(|(_, e)| e)
    }

    /// Whether the recorded run passed.
    pub fn passed(&self) -> bool {
        self.manifest.passed == Some(true)
    }

    /// The recording's length, as recorded.
    pub fn duration_ms(&self) -> u64 {
        self.timeline.iter().map(|(_, e)| e.at_ms).max().unwrap_or(0)
    }

    /// Refuses a recording of another scenario, or of another version of it.
    pub fn check_scenario(&self, s: &Scenario) -> Result<(), ReplayError> {
        let m = &self.manifest;
        if m.scenario == s.id && m.scenario_uuid == s.uuid.as_str() && m.version == s.version {
            return Ok(());
        }
        Err(ReplayError::Mismatch {
            recording: self.folder.path(RunFolder::MANIFEST),
            recorded: format!("{} (uuid {}, version {})", m.scenario, m.scenario_uuid, m.version),
            scenario: format!("{} (uuid {}, version {})", s.id, s.uuid, s.version),
            id: s.id.to_string(),
        })
    }

    /// The path of artifact `name`: relative, inside the folder, a file or a
    /// folder of files (never a link: a committed link could point anywhere).
    fn artifact(&self, name: &str) -> Result<PathBuf, String> {
        let rel = Path::new(name);
        if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("artifact {name:?} is not a plain path inside the run folder"));
        }
        let path = self.folder.path(name);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Ok(path),
            Err(e) => Err(format!("artifact {name:?}: {e}")),
        }
    }
}

/// Files the replay never copies from a recording: it writes its own
/// manifest and timeline, and the host's IoC backup is not part of a run's story.
const NOT_COPIED: &[&str] = &[RunFolder::MANIFEST, RunFolder::TIMELINE, RunFolder::IOCS_BEFORE];

/// Checks that `path` is a file, or a folder holding only files and folders.
pub(crate) fn check_tree(path: &Path) -> Result<(), ReplayError> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    if meta.is_file() {
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(invalid(
            path.to_path_buf(),
            1,
            "a link or a special file, not played (only files and folders are)",
        ));
    }
    for e in std::fs::read_dir(path).map_err(io_err(path))? {
        check_tree(&e.map_err(io_err(path))?.path())?;
    }
    Ok(())
}

/// Copies the file or folder `from` to `to` (folders created, links refused).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), ReplayError> {
    let meta = std::fs::symlink_metadata(from).map_err(io_err(from))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(io_err(to))?;
        for e in std::fs::read_dir(from).map_err(io_err(from))? {
            let e = e.map_err(io_err(from))?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::copy(from, to).map(|_| ()).map_err(io_err(to))
    } else {
        Err(invalid(from.to_path_buf(), 1, "a link or a special file: not copied"))
    }
}

/// The scenario's sample file and its name in a run's `sample/` (a live run
/// copies it there under its file name). A recording leaves it out when it
/// is the scenario's own, and the player copies it from the scenario.
pub fn scenario_sample(loaded: &Loaded) -> Option<(PathBuf, String)> {
    let src = loaded.dir.join(&loaded.scenario.sample.file);
    let name = src.file_name()?.to_string_lossy().into_owned();
    Some((src, name))
}

/// The wall clock, epoch seconds.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A replay being played: its run folder and its log (watch it like a live run's).
#[derive(Debug)]
pub struct ReplayRun {
    /// The new run's id.
    pub id: RunId,
    /// The new run's folder.
    pub folder: RunFolder,
    /// Its event log.
    pub log: RunLog,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<Result<ReplayOutcome, ReplayError>>>,
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// The recorded run passed (and the replay was not stopped).
    pub passed: bool,
    /// The expectations the recorded run failed (their ids).
    pub failed: Vec<String>,
    /// [`ReplayRun::stop`] cut it short.
    pub stopped: bool,
}

#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Sleeps `d` unless stopped first; whether it was stopped.
    fn sleep(&self, d: Duration) -> bool {
        let g = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self.wake.wait_timeout_while(g, d, |s| !*s).unwrap_or_else(|e| e.into_inner());
        *g
    }
}

impl ReplayRun {
    /// Stops the replay at its next event (it ends with `finished`, not passed).
    pub fn stop(&self) {
        *self.stop.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.wake.notify_all();
    }

    /// Waits for the replay to end.
    pub fn wait(mut self) -> Result<ReplayOutcome, ReplayError> {
        let t = self.thread.take().expect("waited once: wait takes self");
        t.join().map_err(|_| ReplayError::Crashed(self.id.clone()))?
    }
}

/// Plays the recording at `recording` of scenario `loaded` into a new run
/// folder under `runs`, at `speed`. Returns once the recording is checked
/// and the run folder made; the events follow on a thread of their own.
pub fn replay(loaded: &Loaded, recording: &Path, speed: Speed, runs: &Path) -> Result<ReplayRun, ReplayError> {
    let rec = Recording::read(recording)?;
    rec.check_scenario(&loaded.scenario)?;
    let s = &loaded.scenario;
    let started = now();
    let (id, folder) = RunFolder::create(runs, &s.id, started)?;
    let mut manifest = Manifest {
        run: id.clone(),
        scenario: s.id.clone(),
        scenario_uuid: s.uuid.to_string(),
        version: s.version,
        mode: Mode::Replay,
        started,
        finished: None,
        passed: None,
        created: Created::default(),
    };
    folder.write_manifest(&manifest)?;
    let tl = folder.path(RunFolder::TIMELINE);
    let log = RunLog::new(Some(&tl)).map_err(io_err(&tl))?;
    let stop = Arc::new(Stop::default());
    let sample = scenario_sample(loaded);
    let mut player =
        Player { rec, to: folder.clone(), log: log.clone(), speed, stop: stop.clone(), sample, copied: Vec::new() };
    let thread = std::thread::Builder::new()
        .name(format!("replay {id}"))
        .spawn(move || {
            let outcome = player.play(&mut manifest)?;
            manifest.finished = Some(now());
            manifest.passed = Some(outcome.passed);
            player.to.write_manifest(&manifest)?;
            Ok(outcome)
        })
        .map_err(io_err(folder.root()))?;
    Ok(ReplayRun { id, folder, log, stop, thread: Some(thread) })
}

/// The replay thread's state.
struct Player {
    rec: Recording,
    to: RunFolder,
    log: RunLog,
    speed: Speed,
    stop: Arc<Stop>,
    /// The scenario's sample and its name in `sample/`, for a recording that left it out.
    sample: Option<(PathBuf, String)>,
    /// Names (relative to the folder) already copied.
    copied: Vec<String>,
}

impl Player {
    fn play(&mut self, m: &mut Manifest) -> Result<ReplayOutcome, ReplayError> {
        self.copy(RunFolder::SAMPLE_DIR)?;
        if let Some((src, name)) = &self.sample {
            let to = self.to.path(RunFolder::SAMPLE_DIR).join(name);
            if !to.exists() && src.is_file() {
                copy_tree(src, &to)?;
            }
        }
        self.log.emit_at(
            0,
            RunEventKind::Started {
                scenario: m.scenario.clone(),
                version: m.version,
                run: m.run.to_string(),
                mode: Mode::Replay,
                started: m.started,
            },
        );
        let mut failed = Vec::new();
        let events: Vec<RunEvent> = self.rec.events().skip(1).cloned().collect();
        for e in events {
            let at = self.speed.scale(e.at_ms);
            let wait = match self.speed {
                Speed::Instant => Duration::ZERO,
                Speed::Times(_) => Duration::from_millis(at.saturating_sub(self.log.elapsed_ms())),
            };
            if self.stop.sleep(wait) {
                self.close(m, false)?;
                self.log.emit_at(self.log.elapsed_ms().max(at), RunEventKind::Finished { passed: false });
                return Ok(ReplayOutcome { passed: false, failed, stopped: true });
            }
            match &e.kind {
                RunEventKind::StageFinished { artifact: Some(a), .. } => self.copy(a)?,
                RunEventKind::StepFinished { step, .. } => {
                    self.copy(&format!("{}/{step}.log", RunFolder::STEPS_DIR))?;
                }
                RunEventKind::ExpectationFailed { expected, .. } => failed.push(expected.clone()),
                RunEventKind::Finished { passed } => {
                    self.copy_rest()?;
                    self.close(m, *passed)?;
                }
                _ => {}
            }
            self.log.emit_at(at, e.kind);
        }
        Ok(ReplayOutcome { passed: self.rec.passed(), failed, stopped: false })
    }

    /// Writes run.json's end before `finished` is emitted: a reader woken
    /// by `finished` (the run's SSE stream ends there) finds it passed or not.
    fn close(&self, m: &mut Manifest, passed: bool) -> Result<(), ReplayError> {
        m.finished = Some(now());
        m.passed = Some(passed);
        self.to.write_manifest(m)?;
        Ok(())
    }

    /// Copies `name` (relative to the recording) unless it, or a folder
    /// holding it, was copied; a name the recording lacks (no `sample/`, a
    /// step that printed nothing) is no error.
    fn copy(&mut self, name: &str) -> Result<(), ReplayError> {
        if self.copied.iter().any(|c| name == c || name.starts_with(&format!("{c}/"))) {
            return Ok(());
        }
        let from = self.rec.folder.path(name);
        if std::fs::symlink_metadata(&from).is_err() {
            return Ok(());
        }
        copy_tree(&from, &self.to.path(name))?;
        self.copied.push(name.to_string());
        Ok(())
    }

    /// Copies whatever the recording holds that was not copied yet.
    fn copy_rest(&mut self) -> Result<(), ReplayError> {
        let root = self.rec.folder.root().to_path_buf();
        for n in sorted_names(&root)? {
            if NOT_COPIED.contains(&n.as_str()) {
                continue;
            }
            if n == RunFolder::STEPS_DIR {
                // log by log: some were copied at their step's end
                for log in sorted_names(&root.join(&n))? {
                    self.copy(&format!("{n}/{log}"))?;
                }
            } else {
                self.copy(&n)?;
            }
        }
        Ok(())
    }
}

/// The names in folder `dir`, sorted.
fn sorted_names(dir: &Path) -> Result<Vec<String>, ReplayError> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        names.push(e.map_err(io_err(dir))?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

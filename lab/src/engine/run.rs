//! One run: its state between stages, the stage loop, and its end
//! (events.jsonl, run.json, `finished`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use ioclab_sandbox::report::Report;

use super::control::RunControl;
use super::endpoint::Feed;
use super::remote::{Pump, RemoteEndpoint};
use super::stages::{self, Outcome};
use super::{EngineError, LabInner, RunHandle, RunOptions};
use crate::network::LabNetwork;
use crate::run::folder::append_line;
use crate::run::{Created, Manifest, Mode, RunEventKind, RunFolder, RunLog, StageResult};
use crate::scenario::{EndpointRole, Loaded, Stage};

/// Now, epoch seconds.
pub(super) fn now_epoch() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A run's state, handed from stage to stage.
pub(super) struct Run {
    pub lab: Arc<LabInner>,
    pub loaded: Loaded,
    pub opts: RunOptions,
    pub folder: RunFolder,
    pub log: RunLog,
    pub control: RunControl,
    pub manifest: Manifest,
    /// The feed the run watches: the lab agent's, or its trainee endpoint's events (see [`Pump`]).
    pub feed: Feed,
    /// That feed's position when the run started.
    pub feed_start: u64,
    /// The trainee's endpoint the run targets, if any.
    pub remote: Option<Arc<dyn RemoteEndpoint>>,
    /// Copies the trainee endpoint's events into `feed` for the run's time.
    pump: Option<Pump>,
    /// The sandbox report (sandbox stage).
    pub report: Option<Report>,
    /// The MISP event's uuid (misp stage).
    pub event_uuid: Option<String>,
    /// When the steps began (steps stage): detections are timed from it.
    pub steps_started: Option<Instant>,
    /// Which endpoint events are the steps' processes'.
    pub steps_filter: StepFilter,
    /// The steps' mount namespace, held open for the run (see stages::steps).
    pub step_ns: Option<stages::StepsNs>,
    /// The watch on the expected detections, from the steps' start.
    pub detections: Option<stages::Watch>,
    /// The lab network the steps run in (up until the run ends).
    pub network: Option<LabNetwork>,
}

impl Run {
    /// Records that the run created something outside its folder (run.json, at once: a killed run still says it).
    pub fn created(&mut self, f: impl FnOnce(&mut Created)) {
        f(&mut self.manifest.created);
        if let Err(e) = self.folder.write_manifest(&self.manifest) {
            tracing::error!("run.json: {e}");
        }
    }

    /// The run folder's path of `name`, as the artifacts give it.
    pub fn artifact(&self, name: &str) -> std::path::PathBuf {
        self.folder.path(name)
    }

    fn execute(mut self) -> bool {
        let mut passed = true;
        for &stage in Stage::ALL {
            if self.control.cancelled() {
                passed = false;
                break;
            }
            self.log.emit(RunEventKind::StageStarted { stage });
            let Outcome { result, summary, artifact } = stages::run(&mut self, stage);
            let failed = matches!(result, StageResult::Failed { .. });
            self.log.emit(RunEventKind::StageFinished { stage, result, summary, artifact });
            if failed {
                passed = false;
                if !(self.opts.keep_going && stage == Stage::Export) {
                    break;
                }
            }
        }
        self.finish(passed)
    }

    /// Writes events.jsonl and run.json, stops the lab network, emits `finished`.
    fn finish(mut self, passed: bool) -> bool {
        if let Some(w) = self.detections.take() {
            w.stop();
        }
        if let Some(net) = self.network.take() {
            let _ = net.stop();
        }
        if let Some(p) = self.pump.take() {
            p.stop();
        }
        if let Err(e) = self.write_events() {
            tracing::error!("{}: {e}", RunFolder::EVENTS);
        }
        self.manifest.finished = Some(now_epoch());
        self.manifest.passed = Some(passed);
        if let Err(e) = self.folder.write_manifest(&self.manifest) {
            tracing::error!("run.json: {e}");
        }
        self.log.emit(RunEventKind::Finished { passed });
        passed
    }

    /// Whether an endpoint event belongs to this run: an event of its steps'
    /// processes, or on a trainee's endpoint any event of the run's time
    /// (the trainee's machine is theirs: its processes are not told apart).
    pub fn is_step_event(&self, e: &super::FeedEvent) -> bool {
        self.remote.is_some() || self.steps_filter.contains(e)
    }

    /// events.jsonl: the endpoint events of the run (its steps' processes, and every detection seen meanwhile).
    pub(super) fn write_events(&self) -> std::io::Result<()> {
        let events = self.feed.since(self.feed_start);
        let mut f = std::fs::File::create(self.folder.path(RunFolder::EVENTS))?;
        for e in events.iter().filter(|e| self.is_step_event(e) || e.detected()) {
            append_line(&mut f, &*e.event)?;
        }
        Ok(())
    }
}

/// Which endpoint events are the steps' processes': those in the steps'
/// mount namespaces, from the moment the first was made (an earlier event
/// with the same inode number was another namespace's, freed before).
#[derive(Debug, Clone)]
pub(super) struct StepFilter {
    /// The feed's position when the first namespace was made.
    pub from_seq: u64,
    /// The namespaces' inode numbers.
    pub mnts: BTreeSet<u64>,
}

impl Default for StepFilter {
    fn default() -> Self {
        StepFilter { from_seq: u64::MAX, mnts: BTreeSet::new() }
    }
}

impl StepFilter {
    /// Whether `e` is an event of the steps' processes.
    pub fn contains(&self, e: &super::FeedEvent) -> bool {
        e.seq >= self.from_seq && e.mnt_ns().is_some_and(|m| self.mnts.contains(&m))
    }
}

/// Starts a run of `loaded` on `lab` in a thread of its own.
pub(super) fn start(lab: Arc<LabInner>, loaded: Loaded, opts: RunOptions) -> Result<RunHandle, EngineError> {
    if let Some(e) = &opts.endpoint {
        if loaded.scenario.expect.endpoint != EndpointRole::Trainee {
            return Err(EngineError::Endpoint(format!(
                "scenario {} awaits its detections on the lab's own endpoint (no `expect.endpoint: trainee`): it cannot run on {}",
                loaded.scenario.id,
                e.name()
            )));
        }
    }
    // a trainee's endpoint: its events from now on, in a feed of the run's own
    let (feed, pump) = match &opts.endpoint {
        Some(e) => {
            let from = e
                .position()
                .map_err(|why| EngineError::Endpoint(format!("reading the events of endpoint {}: {why}", e.name())))?;
            let feed = Feed::new(None);
            (feed.clone(), Some(Pump::start(e.clone(), from, feed)))
        }
        None => (lab.feed.clone(), None),
    };
    let mut active = lab.active.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = &*active {
        return Err(EngineError::Busy(id.clone()));
    }
    let s = &loaded.scenario;
    let started = now_epoch();
    let (id, folder) = RunFolder::create(&lab.data.runs(), &s.id, started)?;
    let timeline = folder.path(RunFolder::TIMELINE);
    let log = RunLog::new(Some(&timeline)).map_err(|e| EngineError::io(&timeline, e))?;
    let manifest = Manifest {
        run: id.clone(),
        scenario: s.id.clone(),
        scenario_uuid: s.uuid.to_string(),
        version: s.version,
        mode: Mode::Live,
        started,
        finished: None,
        passed: None,
        created: Created::default(),
    };
    folder.write_manifest(&manifest)?;
    log.emit(RunEventKind::Started {
        scenario: s.id.clone(),
        version: s.version,
        run: id.to_string(),
        mode: Mode::Live,
        started,
    });
    let control = RunControl::default();
    let run = Run {
        feed_start: feed.next_seq(),
        remote: opts.endpoint.clone(),
        feed,
        pump,
        lab: lab.clone(),
        loaded,
        opts,
        folder: folder.clone(),
        log: log.clone(),
        control: control.clone(),
        manifest,
        report: None,
        event_uuid: None,
        steps_started: None,
        steps_filter: StepFilter::default(),
        step_ns: None,
        detections: None,
        network: None,
    };
    *active = Some(id.clone());
    drop(active);
    let thread = std::thread::Builder::new().name(format!("ioclab-run-{}", id.as_str())).spawn(move || {
        let lab = run.lab.clone();
        let passed = run.execute();
        *lab.active.lock().unwrap_or_else(|e| e.into_inner()) = None;
        passed
    });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            *lab.active.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Err(EngineError::Setup(format!("starting the run's thread: {e}")));
        }
    };
    Ok(RunHandle { id, folder, log, control, thread: Some(thread) })
}

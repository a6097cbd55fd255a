//! The appliance's runs: who started which run (in `web.db`, so a trainee
//! sees their own runs only), the runs going on (their live [`RunLog`]),
//! and finished runs read back from their folders.
//!
//! Starting a run goes to the lab engine: [`Lab::start_run`] when the lab
//! is live, the scenario's recorded replay otherwise. The web only keeps
//! the handle and renders the events.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ioclab_lab::data_dir::DataDir;
use ioclab_lab::engine::remote::RemoteEndpoint;
use ioclab_lab::engine::{Lab, RunControl, RunHandle, RunOptions};
use ioclab_lab::record::replay_dir;
use ioclab_lab::replay::{replay, ReplayRun, Speed};
use ioclab_lab::run::{Manifest, RunEvent, RunFolder, RunId, RunLog};
use ioclab_lab::scenario::{load, Loaded};
use serde::Serialize;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use crate::endpoints::lab::{endpoints_of, EndpointRef, TraineeEndpoint};
use crate::endpoints::EndpointDb;
use crate::feed::EventFeed;
use crate::users::UserName;

/// How the appliance runs scenarios.
#[derive(Clone)]
pub enum Engine {
    /// The live lab: agent, sandbox, MISP, for real.
    Live(Arc<Lab>),
    /// No root or eBPF here: runs play the scenarios' recorded replays.
    Replay {
        /// Why not live, shown on every page.
        reason: String,
    },
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Live(_) => f.write_str("Live"),
            Engine::Replay { reason } => f.debug_struct("Replay").field("reason", reason).finish(),
        }
    }
}

/// Why a run could not be started or read.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No such scenario in the catalogue.
    #[error("no scenario {0} in the catalogue")]
    UnknownScenario(String),
    /// No such run.
    #[error("no run {0}")]
    UnknownRun(String),
    /// The scenario cannot be played here.
    #[error("{0}")]
    Unavailable(String),
    /// The engine refused.
    #[error("{0}")]
    Engine(String),
    /// No such enrolled endpoint (or not the user's).
    #[error("no enrolled endpoint {0} (its agent must have reported once, with a live token)")]
    UnknownEndpoint(String),
    /// The run store failed.
    #[error("the run store: {0}")]
    Db(#[from] sqlx::Error),
}

/// A run and who started it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// The scenario.
    pub scenario: String,
    /// Who started it.
    pub owner: String,
    /// Live or replay.
    pub mode: String,
    /// Start, epoch seconds.
    pub started: f64,
    /// Whether it is still going on.
    pub running: bool,
    /// Whether it passed (`None` until it ends).
    pub passed: Option<bool>,
    /// An instructor started it for the class: every trainee sees it.
    pub class: bool,
}

impl RunSummary {
    /// Whether `who` may see this run: their own, a class run, or any run for an instructor.
    pub fn visible_to(&self, who: &crate::auth::CurrentUser) -> bool {
        self.class || who.may_see(&self.owner)
    }
}

/// How to play a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Play {
    /// Live when the lab is, the recorded replay (at the appliance's speed) otherwise.
    Default,
    /// The scenario's recorded replay at this speed, even on a live lab.
    Replay(Speed),
}

/// A run going on.
enum Active {
    Live { log: RunLog, control: RunControl, handle: RunHandle },
    Replay { log: RunLog, run: ReplayRun },
}

impl Active {
    fn log(&self) -> &RunLog {
        match self {
            Active::Live { log, .. } | Active::Replay { log, .. } => log,
        }
    }

    fn stop(&self) {
        match self {
            Active::Live { control, .. } => control.cancel(),
            Active::Replay { run, .. } => run.stop(),
        }
    }
}

/// The runs of the appliance.
#[derive(Clone)]
pub struct Runs {
    pool: SqlitePool,
    data: DataDir,
    scenarios: PathBuf,
    engine: Engine,
    replay_speed: Speed,
    active: Arc<Mutex<HashMap<String, Active>>>,
    /// Held to start a run, and through a reset: no run starts under a reset.
    gate: Arc<tokio::sync::Mutex<()>>,
    feed: EventFeed,
    /// The enrolled endpoints' store: a run may target a trainee's endpoint.
    endpoints: Option<EndpointDb>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    scenario TEXT NOT NULL,
    owner TEXT NOT NULL,
    started REAL NOT NULL
)";

/// The runs an instructor started for the class (a table of their own: `runs` stays as it was).
const CLASS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS class_runs (id TEXT PRIMARY KEY)";

/// The columns of a [`RunSummary`] row, `class_runs` joined.
const SELECT: &str = "SELECT r.id, r.scenario, r.owner, r.started, c.id IS NOT NULL AS class
    FROM runs r LEFT JOIN class_runs c ON c.id = r.id";

impl Runs {
    /// The runs kept in `pool` (web.db) and `data`'s run folders, scenarios from `scenarios`.
    pub async fn open(pool: SqlitePool, data: DataDir, scenarios: PathBuf, engine: Engine) -> Result<Runs, RunError> {
        sqlx::query(SCHEMA).execute(&pool).await?;
        sqlx::query(CLASS_SCHEMA).execute(&pool).await?;
        let feed = EventFeed::new(data.runs(), crate::feed::DEFAULT_MEMORY_EVENTS);
        Ok(Runs {
            pool,
            data,
            scenarios,
            engine,
            replay_speed: Speed::Times(1.0),
            active: Arc::default(),
            gate: Arc::default(),
            feed,
            endpoints: None,
        })
    }

    /// Keeps at most `events` endpoint events in memory (see [`EventFeed`]).
    pub fn with_feed_memory(mut self, events: usize) -> Runs {
        self.feed = EventFeed::new(self.data.runs(), events);
        self
    }

    /// The endpoint events of the runs (and of the live lab), indexed.
    pub fn feed(&self) -> &EventFeed {
        &self.feed
    }

    /// Indexes the runs' endpoint events in the background, newest runs
    /// first (the appliance starting: the first page need not wait for it).
    pub async fn warm_feed(&self) -> Result<(), RunError> {
        let ids: Vec<String> = self.list(None).await?.into_iter().map(|r| r.id).collect();
        let feed = self.feed.clone();
        tokio::task::spawn_blocking(move || feed.warm(&ids));
        Ok(())
    }

    /// Lets runs target the trainee endpoints enrolled in `db` (`expect.endpoint: trainee`).
    pub fn with_endpoints(mut self, db: EndpointDb) -> Runs {
        self.endpoints = Some(db);
        self
    }

    /// The enrolled endpoints' store, when runs may target them.
    pub fn endpoints(&self) -> Option<&EndpointDb> {
        self.endpoints.as_ref()
    }

    /// Plays replays at `speed` (tests: [`Speed::Instant`]).
    pub fn with_replay_speed(mut self, speed: Speed) -> Runs {
        self.replay_speed = speed;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The scenario folder.
    pub fn scenario_dir(&self) -> &Path {
        &self.scenarios
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// Every valid scenario of the catalogue, by id (invalid ones are logged and left out).
    pub fn catalogue(&self) -> Vec<Loaded> {
        let paths = match load::find(&self.scenarios) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("the scenario folder {}: {e}", self.scenarios.display());
                return Vec::new();
            }
        };
        let mut out: Vec<Loaded> = paths
            .iter()
            .filter_map(|p| match load::load(p) {
                Ok(l) => Some(l),
                Err(d) => {
                    tracing::warn!("{}: invalid scenario ({} errors), left out of the catalogue", p.display(), d.len());
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.scenario.id.as_str().cmp(b.scenario.id.as_str()));
        out
    }

    /// The scenario `id` of the catalogue.
    pub fn scenario(&self, id: &str) -> Result<Loaded, RunError> {
        self.catalogue()
            .into_iter()
            .find(|l| l.scenario.id.as_str() == id)
            .ok_or_else(|| RunError::UnknownScenario(id.to_string()))
    }

    /// Starts scenario `id` for `owner`: live when the lab is, its replay otherwise.
    pub async fn start(&self, id: &str, owner: &UserName) -> Result<RunSummary, RunError> {
        self.start_as(id, owner, Play::Default, false).await
    }

    /// Starts scenario `id` for `owner`, played as `play`; a `class` run is seen by every trainee.
    pub async fn start_as(&self, id: &str, owner: &UserName, play: Play, class: bool) -> Result<RunSummary, RunError> {
        self.start_on(id, owner, play, class, None).await
    }

    /// The same, on the trainee endpoint `endpoint` when given (a live run
    /// of a scenario with `expect.endpoint: trainee`; the caller checked
    /// that the user may use it).
    pub async fn start_on(
        &self,
        id: &str,
        owner: &UserName,
        play: Play,
        class: bool,
        endpoint: Option<EndpointRef>,
    ) -> Result<RunSummary, RunError> {
        let loaded = self.scenario(id)?;
        let engine = match play {
            Play::Default => self.engine.clone(),
            Play::Replay(_) => Engine::Replay { reason: "asked for".into() },
        };
        let remote = match endpoint {
            None => None,
            Some(_) if !matches!(engine, Engine::Live(_)) => {
                return Err(RunError::Unavailable(
                    "a run on a trainee's endpoint needs the live lab (this one plays recordings)".into(),
                ))
            }
            Some(target) => {
                let db = self.endpoints.clone().ok_or_else(|| {
                    RunError::Unavailable("this appliance has no endpoint listener: no trainee endpoint".into())
                })?;
                let known =
                    endpoints_of(&db, Some(&target.token)).await.map_err(|e| RunError::Engine(e.to_string()))?;
                if !known.contains(&target) {
                    return Err(RunError::UnknownEndpoint(target.to_string()));
                }
                let e: Arc<dyn RemoteEndpoint> =
                    Arc::new(TraineeEndpoint::new(db, target, tokio::runtime::Handle::current()));
                Some(e)
            }
        };
        let runs_dir = self.data.runs();
        let speed = match play {
            Play::Default => self.replay_speed,
            Play::Replay(s) => s,
        };
        let _gate = self.gate.lock().await;
        // the engine blocks (threads, its own runtime): not on the async workers
        let (run_id, active) =
            tokio::task::spawn_blocking(move || start_blocking(&engine, &loaded, &runs_dir, speed, remote))
                .await
                .map_err(|e| RunError::Engine(format!("starting the run: {e}")))??;
        let started = run_started(&self.data, &run_id);
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO runs (id, scenario, owner, started) VALUES (?, ?, ?, ?)")
            .bind(&run_id)
            .bind(id)
            .bind(owner.as_str())
            .bind(started)
            .execute(&mut *tx)
            .await?;
        if class {
            sqlx::query("INSERT INTO class_runs (id) VALUES (?)").bind(&run_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.active.lock().unwrap_or_else(|e| e.into_inner()).insert(run_id.clone(), active);
        self.summary(&run_id).await?.ok_or(RunError::UnknownRun(run_id))
    }

    /// Holds off new runs until the guard is dropped (a reset runs under it).
    pub async fn hold_starts(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// The ids of the runs going on.
    pub fn running(&self) -> Vec<String> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> =
            active.iter().filter(|(_, a)| !a.log().finished()).map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids
    }

    /// Runs of `owner` (every run for `None`), newest first.
    pub async fn list(&self, owner: Option<&UserName>) -> Result<Vec<RunSummary>, RunError> {
        let rows = match owner {
            Some(o) => {
                sqlx::query(&format!("{SELECT} WHERE r.owner = ? ORDER BY r.started DESC"))
                    .bind(o.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(&format!("{SELECT} ORDER BY r.started DESC")).fetch_all(&self.pool).await?,
        };
        Ok(rows.iter().map(|r| self.summarise(r)).collect())
    }

    /// The runs `who` sees: their own and the class's (every run for an instructor), newest first.
    pub async fn visible(&self, who: &crate::auth::CurrentUser) -> Result<Vec<RunSummary>, RunError> {
        if who.is_instructor() {
            return self.list(None).await;
        }
        let rows = sqlx::query(&format!("{SELECT} WHERE r.owner = ? OR c.id IS NOT NULL ORDER BY r.started DESC"))
            .bind(who.user.name.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| self.summarise(r)).collect())
    }

    /// One run.
    pub async fn summary(&self, id: &str) -> Result<Option<RunSummary>, RunError> {
        let row = sqlx::query(&format!("{SELECT} WHERE r.id = ?")).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| self.summarise(&r)))
    }

    fn summarise(&self, r: &sqlx::sqlite::SqliteRow) -> RunSummary {
        let id: String = r.get("id");
        let manifest = self.manifest(&id);
        RunSummary {
            running: self.live_log(&id).is_some_and(|l| !l.finished()),
            passed: manifest.as_ref().and_then(|m| m.passed),
            mode: manifest.as_ref().map(|m| format!("{:?}", m.mode).to_lowercase()).unwrap_or_else(|| "unknown".into()),
            scenario: r.get("scenario"),
            owner: r.get("owner"),
            started: r.get("started"),
            class: r.get("class"),
            id,
        }
    }

    fn folder(&self, id: &str) -> Option<RunFolder> {
        let id = RunId::parse(id)?;
        Some(RunFolder::open(self.data.runs().join(id.as_str())))
    }

    fn manifest(&self, id: &str) -> Option<Manifest> {
        self.folder(id)?.manifest().ok()
    }

    /// The log of a run going on (or ended since the appliance started).
    pub fn live_log(&self, id: &str) -> Option<RunLog> {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).get(id).map(|a| a.log().clone())
    }

    /// The events of run `id` so far (from its live log, or its folder's timeline).
    pub fn events(&self, id: &str) -> Result<Vec<RunEvent>, RunError> {
        if let Some(log) = self.live_log(id) {
            return Ok(log.events());
        }
        let folder = self.folder(id).ok_or_else(|| RunError::UnknownRun(id.to_string()))?;
        folder.timeline().map_err(|e| RunError::Engine(e.to_string()))
    }

    /// The artifact files of run `id` (relative paths, sorted).
    pub fn artifacts(&self, id: &str) -> Vec<String> {
        let Some(folder) = self.folder(id) else { return Vec::new() };
        let mut out = Vec::new();
        list_files(folder.root(), folder.root(), &mut out);
        out.sort();
        out
    }

    /// Tells live run `id`'s control `act`, when the run is live and going on (false otherwise).
    fn tell_live(&self, id: &str, act: impl FnOnce(&RunControl)) -> bool {
        match self.active.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            Some(Active::Live { control, log, .. }) if !log.finished() => {
                act(control);
                true
            }
            _ => false,
        }
    }

    /// The instructor's publish for run `id`, when it is live and going on (false otherwise).
    pub fn publish(&self, id: &str) -> bool {
        self.tell_live(id, RunControl::publish)
    }

    /// The trainee says they ran the steps asked of them in live run `id` (false: not a live run going on).
    pub fn ran_steps(&self, id: &str) -> bool {
        self.tell_live(id, RunControl::ran_steps)
    }

    /// An instructor published MISP event `uuid` (from the MISP pages): each
    /// live run going on that created it is told, so one waiting in its
    /// publish stage goes on at once. Returns the ids of the runs told.
    pub fn publish_event(&self, uuid: &str) -> Vec<String> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut told = Vec::new();
        for (id, a) in active.iter() {
            let Active::Live { control, log, .. } = a else { continue };
            if !log.finished() && self.manifest(id).is_some_and(|m| created_event(&m, uuid)) {
                control.publish();
                told.push(id.clone());
            }
        }
        told
    }

    /// Stops every run going on (the appliance is stopping) and waits for replays to end.
    pub fn stop_all(&self) {
        let active: Vec<Active> =
            self.active.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, a)| a).collect();
        for a in &active {
            a.stop();
        }
        for a in active {
            match a {
                Active::Replay { run, .. } => {
                    let _ = run.wait();
                }
                Active::Live { handle, .. } => {
                    handle.wait();
                }
            }
        }
    }
}

/// Whether the run of `manifest` created MISP event `uuid`.
fn created_event(manifest: &Manifest, uuid: &str) -> bool {
    manifest.created.misp_events.iter().any(|e| e.eq_ignore_ascii_case(uuid))
}

fn start_blocking(
    engine: &Engine,
    loaded: &Loaded,
    runs_dir: &Path,
    speed: Speed,
    endpoint: Option<Arc<dyn RemoteEndpoint>>,
) -> Result<(String, Active), RunError> {
    match engine {
        Engine::Live(lab) => {
            let opts = RunOptions { endpoint, ..RunOptions::default() };
            let h = lab.start_run(loaded, opts).map_err(|e| RunError::Engine(e.to_string()))?;
            let id = h.id.as_str().to_string();
            Ok((id, Active::Live { log: h.log.clone(), control: h.control.clone(), handle: h }))
        }
        Engine::Replay { .. } => {
            let recording = replay_dir(loaded);
            if !recording.exists() {
                return Err(RunError::Unavailable(format!(
                    "scenario {} has no recorded replay, and this appliance runs in replay mode",
                    loaded.scenario.id
                )));
            }
            let r = replay(loaded, &recording, speed, runs_dir).map_err(|e| RunError::Engine(e.to_string()))?;
            let id = r.id.as_str().to_string();
            Ok((id, Active::Replay { log: r.log.clone(), run: r }))
        }
    }
}

fn run_started(data: &DataDir, id: &str) -> f64 {
    RunFolder::open(data.runs().join(id)).manifest().map(|m| m.started).unwrap_or(0.0)
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => list_files(root, &p, out),
            Ok(t) if t.is_file() => {
                if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_waits_on_the_events_it_created_only() {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "run": "r1", "scenario": "dns-ioc-why-kunai-rocks", "scenario_uuid": "u", "version": 1,
            "mode": "live", "started": 1.0,
            "created": {"misp_events": ["5b1e0c6a-0000-4000-8000-000000000001"]}
        }))
        .unwrap();
        assert!(created_event(&manifest, "5B1E0C6A-0000-4000-8000-000000000001"));
        assert!(!created_event(&manifest, "5b1e0c6a-0000-4000-8000-000000000002"));
        assert!(!created_event(
            &Manifest { created: Default::default(), ..manifest },
            "5b1e0c6a-0000-4000-8000-000000000001"
        ));
    }
}

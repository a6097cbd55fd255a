//! The live lab engine: drives one IoC through every stage, for real.
//!
//! [`Lab::open`] starts what lives as long as the lab: the endpoint agent
//! (eBPF, in a thread), the sandbox sharing its programs through taps, the
//! embedded MISP served on loopback, and the sandbox's task store.
//! [`Lab::start_run`] runs a scenario in the background, stage after stage
//! (sandbox, misp, publish, export, agent, steps, detection), emitting typed
//! [`RunEvent`](crate::run::RunEvent)s on its [`RunLog`] and keeping every
//! artifact in its [`RunFolder`]. The instructor's actions (publish, click)
//! go through [`RunControl`].

pub mod control;
pub mod endpoint;
pub mod lock;
pub mod misp;
pub mod remote;
mod run;
mod stages;
pub mod step_exec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ioclab_sandbox::api::db::TaskDb;
use ioclab_sandbox::runner::{Sandbox, SandboxConfig, SensorSource};

pub use control::RunControl;
use endpoint::{Endpoint, Feed, FeedEvent};
use lock::DataLock;
use misp::EmbeddedMisp;

use crate::data_dir::DataDir;
use crate::run::{RunFolder, RunId, RunLog};
use crate::scenario::Loaded;

/// Why the lab or a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// This machine cannot run the live lab (not root, no eBPF...).
    #[error("{0}")]
    Unsupported(String),
    /// Another lab holds the data directory.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// A part of the lab did not start.
    #[error("{0}")]
    Setup(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The run cannot target that endpoint.
    #[error("{0}")]
    Endpoint(String),
    /// A run is already going on.
    #[error("run {0} is still going on: one run at a time per lab")]
    Busy(RunId),
    /// The run folder could not be made.
    #[error(transparent)]
    Folder(#[from] crate::run::folder::FolderError),
}

impl EngineError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> EngineError {
        EngineError::Io { path: path.to_path_buf(), source }
    }
}

/// How the lab runs.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Where the lab keeps its state.
    pub data: DataDir,
}

/// What a run may change from the scenario's defaults.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Input arguments of the steps: step id → argument → value (others keep their defaults).
    pub args: BTreeMap<String, BTreeMap<String, String>>,
    /// Publish the MISP event when the run waits for an instructor to (the CLI's `--publish`).
    pub auto_publish: bool,
    /// Go on after a failed expectation of the export (a missing IoC) to see what the endpoint does.
    pub keep_going: bool,
    /// The trainee's endpoint the run targets (a scenario with
    /// `expect.endpoint: trainee`): its IoCs are pushed there, its steps sent
    /// there or asked of the trainee, its detections awaited there.
    pub endpoint: Option<Arc<dyn remote::RemoteEndpoint>>,
}

/// A run going on in the background.
#[derive(Debug)]
pub struct RunHandle {
    /// The run's id (its folder's name).
    pub id: RunId,
    /// Its folder.
    pub folder: RunFolder,
    /// Its events (watch them, or read them when it is done).
    pub log: RunLog,
    /// The instructor's actions.
    pub control: RunControl,
    thread: Option<JoinHandle<bool>>,
}

impl RunHandle {
    /// Waits for the run to end; returns whether it passed.
    pub fn wait(mut self) -> bool {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(passed)) => passed,
            _ => false,
        }
    }
}

/// What lives as long as the lab.
struct LabInner {
    data: DataDir,
    sandbox: Sandbox,
    endpoint: Mutex<Endpoint>,
    feed: Feed,
    /// Mount namespace roots lent to the agent (the steps').
    roots: ioclab_agent::sensor::roots::NsRoots,
    misp: EmbeddedMisp,
    tasks: TaskDb,
    /// The run going on, if any.
    active: Mutex<Option<RunId>>,
    _lock: DataLock,
    // last: dropped after everything that uses it
    rt: tokio::runtime::Runtime,
}

/// The lab's sandbox, shared with the Cuckoo API's queue.
struct LabDetonator(Arc<LabInner>);

impl ioclab_sandbox::detonation::Detonator for LabDetonator {
    fn detonate(
        &self,
        job: &ioclab_sandbox::detonation::Job,
        task_dir: &Path,
    ) -> Result<ioclab_sandbox::detonation::Detonation, ioclab_sandbox::detonation::DetonateError> {
        ioclab_sandbox::detonation::Detonator::detonate(&self.0.sandbox, job, task_dir)
    }
}

/// The live lab: agent, sandbox, MISP and task store, started once.
pub struct Lab {
    inner: Arc<LabInner>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("data", &self.inner.data).field("misp", &self.inner.misp.url).finish()
    }
}

impl Lab {
    /// Starts the lab on `config.data` (one lab per data directory).
    pub fn open(config: LabConfig) -> Result<Lab, EngineError> {
        Self::open_with_misp(config, None)
    }

    /// The same, serving the embedded MISP on `misp_listen` (`None`: an
    /// ephemeral loopback port, as `lab run` does; `ioclab serve` gives a fixed one).
    pub fn open_with_misp(config: LabConfig, misp_listen: Option<std::net::SocketAddr>) -> Result<Lab, EngineError> {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(EngineError::Unsupported(
                "not root: the live lab needs eBPF, namespaces and cgroups (`--replay` plays a recorded run without them)"
                    .into(),
            ));
        }
        let data = config.data;
        let lock = DataLock::take(data.root())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("ioclab-lab")
            .build()
            .map_err(|e| EngineError::Setup(format!("starting the async runtime: {e}")))?;
        let endpoint = Endpoint::start(&data.agent_iocs())?;
        let sandbox = Sandbox::new(SandboxConfig {
            sensor: SensorSource::Shared { taps: endpoint.control.taps.clone(), roots: endpoint.control.roots.clone() },
            ..SandboxConfig::default()
        })
        .map_err(|e| EngineError::Unsupported(format!("the sandbox cannot detonate here: {e}")))?;
        let misp = match misp_listen {
            Some(addr) => EmbeddedMisp::start_on(&rt, &data.misp_db(), &data.misp_keys(), addr)?,
            None => EmbeddedMisp::start(&rt, &data.misp_db(), &data.misp_keys())?,
        };
        let db = data.sandbox_db();
        let tasks = rt
            .block_on(TaskDb::open(&db))
            .map_err(|e| EngineError::Setup(format!("the sandbox task store {}: {e}", db.display())))?;
        let feed = endpoint.feed.clone();
        let roots = endpoint.control.roots.clone();
        Ok(Lab {
            inner: Arc::new(LabInner {
                data,
                sandbox,
                endpoint: Mutex::new(endpoint),
                feed,
                roots,
                misp,
                tasks,
                active: Mutex::new(None),
                _lock: lock,
                rt,
            }),
        })
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.inner.data
    }

    /// The embedded MISP's base URL (`http://127.0.0.1:<port>`).
    pub fn misp_url(&self) -> &str {
        &self.inner.misp.url
    }

    /// The embedded MISP's store, the one its API serves (the appliance's MISP pages read and publish through it).
    pub fn misp_store(&self) -> &ioclab_intel::store::Store {
        &self.inner.misp.store
    }

    /// The lab's MISP keys (`user`: the sandbox's, `publisher`: the instructor's).
    pub fn misp_keys(&self) -> &misp::LabKeys {
        &self.inner.misp.keys
    }

    /// The sandbox (shared with the runs: one set of eBPF programs).
    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    /// The lab's sandbox as a detonator the Cuckoo API's queue can own
    /// (it keeps the lab's parts alive while the queue runs).
    pub fn detonator(&self) -> std::sync::Arc<dyn ioclab_sandbox::detonation::Detonator> {
        std::sync::Arc::new(LabDetonator(self.inner.clone()))
    }

    /// The sandbox's task store (the Cuckoo API serves it).
    pub fn tasks(&self) -> &TaskDb {
        &self.inner.tasks
    }

    /// The lab's async runtime (where its MISP API and task store live).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.inner.rt
    }

    /// The endpoint events the lab kept from feed position `seq` on (see [`Lab::feed_position`]).
    pub fn endpoint_events_since(&self, seq: u64) -> Vec<FeedEvent> {
        self.inner.feed.since(seq)
    }

    /// The feed position the next endpoint event will get.
    pub fn feed_position(&self) -> u64 {
        self.inner.feed.next_seq()
    }

    /// Asks the agent to reload its IoC file (after reset restored it) and
    /// waits for its outcome: the `ioc_reload` event, or the `error` saying why not.
    pub fn reload_agent(&self) -> Result<serde_json::Value, String> {
        stages::agent::reload(&self.inner)
    }

    /// Starts a run of `loaded` in the background.
    pub fn start_run(&self, loaded: &Loaded, options: RunOptions) -> Result<RunHandle, EngineError> {
        run::start(self.inner.clone(), loaded.clone(), options)
    }
}

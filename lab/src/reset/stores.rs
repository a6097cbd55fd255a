//! Deleting what runs created in the lab's stores: MISP events in the
//! embedded store, sandbox tasks (their rows and folders). Something already
//! gone is not an error; a store that does not exist holds nothing.

use std::path::PathBuf;

use ioclab_intel::store::{Store, StoreError};
use ioclab_sandbox::api::db::TaskDb;
use ioclab_sandbox::api::queue::task_dir;

use super::action::Outcome;
use crate::data_dir::DataDir;
use crate::scenario::identity::Uuid;

/// A store opened on first use, only when its file exists (reset never
/// creates a store to find it empty).
enum Lazy<T> {
    Unopened,
    Absent,
    Open(T),
    Broken(String),
}

impl<T> Lazy<T> {
    /// Opens `what` at `path` with `open` on first use, unless its file is missing.
    async fn open<E, F>(&mut self, path: PathBuf, what: &str, open: impl FnOnce(PathBuf) -> F) -> &Lazy<T>
    where
        E: std::fmt::Display,
        F: std::future::Future<Output = Result<T, E>>,
    {
        if matches!(self, Lazy::Unopened) {
            *self = if !path.exists() {
                Lazy::Absent
            } else {
                match open(path.clone()).await {
                    Ok(s) => Lazy::Open(s),
                    Err(e) => Lazy::Broken(format!("opening {what} {}: {e}", path.display())),
                }
            };
        }
        self
    }
}

/// The lab's stores, as reset uses them.
pub struct Stores {
    data: DataDir,
    misp: Lazy<Store>,
    tasks: Lazy<TaskDb>,
}

impl Stores {
    /// The stores of `data`, not opened yet.
    pub fn new(data: &DataDir) -> Stores {
        Stores { data: data.clone(), misp: Lazy::Unopened, tasks: Lazy::Unopened }
    }

    /// Deletes the MISP event `uuid` (with its attributes, objects and tags).
    pub async fn delete_event(&mut self, uuid: &str) -> Outcome {
        // a number would name an event by id: only a run's uuid is deleted
        let Ok(uuid) = uuid.to_ascii_lowercase().parse::<Uuid>() else {
            return Outcome::failed(format!("{uuid:?} in run.json is not a UUID: not deleted"));
        };
        let path = self.data.misp_db();
        match self.misp.open(path, "the MISP store", |p| async move { Store::open(&p).await }).await {
            Lazy::Absent => Outcome::AlreadyGone,
            Lazy::Broken(e) => Outcome::failed(e),
            Lazy::Unopened => unreachable!("opened above"),
            Lazy::Open(store) => match store.delete_event(uuid.as_str()).await {
                Ok(()) => Outcome::done("deleted"),
                Err(StoreError::NotFound(_)) => Outcome::AlreadyGone,
                Err(e) => Outcome::failed(e),
            },
        }
    }

    /// The folder of sandbox task `id`.
    pub fn task_dir(&self, id: i64) -> PathBuf {
        task_dir(&self.data.sandbox(), id)
    }

    /// Deletes sandbox task `id`: its row (unless it is running), then its folder.
    pub async fn delete_task(&mut self, id: u64) -> Outcome {
        let Ok(id) = i64::try_from(id) else {
            return Outcome::failed(format!("task id {id} is out of range: not deleted"));
        };
        let path = self.data.sandbox_db();
        let row = match self.tasks.open(path, "the sandbox's tasks", |p| async move { TaskDb::open(&p).await }).await {
            Lazy::Absent => None,
            Lazy::Broken(e) => return Outcome::failed(e),
            Lazy::Unopened => unreachable!("opened above"),
            Lazy::Open(db) => match db.delete(id).await {
                Ok(None) => None,
                Ok(Some(true)) => Some(()),
                Ok(Some(false)) => return Outcome::failed("the task is running; reset again once it has ended"),
                Err(e) => return Outcome::failed(e),
            },
        };
        let dir = self.task_dir(id);
        let folder = match std::fs::remove_dir_all(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Outcome::failed(format!("removing {}: {e}", dir.display())),
        };
        match (row, folder) {
            (Some(()), true) => Outcome::done(format!("deleted, and its folder {}", dir.display())),
            (Some(()), false) => Outcome::done("deleted (it had no folder)"),
            (None, true) => Outcome::done(format!("its row was gone; its folder {} removed", dir.display())),
            (None, false) => Outcome::AlreadyGone,
        }
    }
}

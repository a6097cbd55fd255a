//! The task queue: N detonations at once on blocking threads, each task
//! moving pending -> running -> completed -> reported, or failed_analysis /
//! failed_reporting with the reason in its errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use super::db::{Status, TaskDb, TaskRow};
use super::submit::parse_options;
use crate::detonation::{self, Detonator, Job};
use crate::misp::config::ProcessingMisp;
use crate::misp::{self, lookup, ReportingMisp};
use crate::report;

/// Limits every task gets.
#[derive(Debug, Clone)]
pub struct TaskLimits {
    /// Timeout when the task does not give one, seconds.
    pub default_timeout_s: u64,
    /// Memory limit of the task's cgroup, bytes.
    pub memory_bytes: u64,
    /// Process limit of the task's cgroup.
    pub max_pids: u32,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits { default_timeout_s: 60, memory_bytes: 512 << 20, max_pids: 256 }
    }
}

/// Where a task's files live: `<storage>/analyses/<id>`.
pub fn task_dir(storage: &Path, id: i64) -> PathBuf {
    storage.join("analyses").join(id.to_string())
}

/// Where samples live: `<storage>/binaries/<sha256>`.
pub fn binary_path(storage: &Path, sha256: &str) -> PathBuf {
    storage.join("binaries").join(sha256)
}

/// The report of a task, when written.
pub fn report_path(storage: &Path, id: i64) -> PathBuf {
    task_dir(storage, id).join("reports").join("report.json")
}

/// What the workers share.
pub struct Queue {
    db: TaskDb,
    storage: PathBuf,
    detonator: Arc<dyn Detonator>,
    limits: TaskLimits,
    wake: Notify,
    slots: Arc<Semaphore>,
    /// The MISP lookup run on each report (when enabled).
    processing_misp: ProcessingMisp,
    /// Where each report is sent (when enabled).
    misp: ReportingMisp,
}

impl Queue {
    /// Starts `workers` concurrent detonations over `db`'s pending tasks.
    pub fn start(
        db: TaskDb,
        storage: PathBuf,
        detonator: Arc<dyn Detonator>,
        limits: TaskLimits,
        workers: usize,
        processing_misp: ProcessingMisp,
        misp: ReportingMisp,
    ) -> Arc<Queue> {
        let q = Arc::new(Queue {
            db,
            storage,
            detonator,
            limits,
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(workers.max(1))),
            processing_misp,
            misp,
        });
        tokio::spawn(q.clone().dispatch());
        q
    }

    /// A task was added: look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn dispatch(self: Arc<Self>) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else { return };
            match self.db.claim_next().await {
                Ok(Some(task)) => {
                    let q = self.clone();
                    tokio::spawn(async move {
                        let id = task.id;
                        if let Err(e) = q.run(task).await {
                            tracing::error!("task {id}: {e}");
                        }
                        drop(slot);
                        q.wake();
                    });
                }
                Ok(None) => {
                    drop(slot);
                    // a submission wakes us; the timer only covers a wake-up lost to a race
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.wake.notified()).await;
                }
                Err(e) => {
                    drop(slot);
                    tracing::error!("task queue: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn job(&self, t: &TaskRow, dir: &Path) -> Result<Job, String> {
        let options = parse_options(&t.options).map_err(|e| e.to_string())?;
        let target = match (t.category.as_str(), &t.sha256) {
            ("file", Some(_)) => detonation::Target::File { path: dir.join("binary"), name: t.target.clone() },
            ("url", _) => detonation::Target::Url(t.target.clone()),
            _ => return Err(format!("task {} has no sample", t.id)),
        };
        let as_root = options.get("user").is_some_and(|u| u == "root")
            || options.get("root").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"));
        Ok(Job {
            task_id: t.id as u64,
            target,
            args: options
                .get("arguments")
                .map(|a| a.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            package: t.package.clone(),
            timeout_s: if t.timeout == 0 { self.limits.default_timeout_s } else { t.timeout },
            enforce_timeout: t.enforce_timeout,
            memory_bytes: self.limits.memory_bytes,
            max_pids: self.limits.max_pids,
            as_root,
            dns: Vec::new(),
            services: Vec::new(),
            options,
        })
    }

    async fn run(&self, t: TaskRow) -> Result<(), super::db::DbError> {
        let id = t.id;
        let dir = task_dir(&self.storage, id);
        let prepared =
            prepare(&self.storage, &dir, t.sha256.as_deref()).map_err(|e| format!("preparing {}: {e}", dir.display()));
        let job = prepared.and_then(|_| self.job(&t, &dir));
        let job = match job {
            Ok(j) => j,
            Err(reason) => return self.db.set_status(id, Status::FailedAnalysis, Some(&reason)).await,
        };
        let det = self.detonator.clone();
        let (job2, dir2) = (job.clone(), dir.clone());
        let outcome = tokio::task::spawn_blocking(move || det.detonate(&job2, &dir2)).await;
        let det = match outcome {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return self.db.set_status(id, Status::FailedAnalysis, Some(&e.to_string())).await,
            Err(e) => {
                return self
                    .db
                    .set_status(id, Status::FailedAnalysis, Some(&format!("the detonation crashed: {e}")))
                    .await
            }
        };
        self.db.set_status(id, Status::Completed, None).await?;
        let mut report = match tokio::task::spawn_blocking(move || report::build(&job, &det)).await {
            Ok(r) => r,
            Err(e) => {
                let why = format!("building the report crashed: {e}");
                return self.db.set_status(id, Status::FailedReporting, Some(&why)).await;
            }
        };
        // processing, then reporting, as in Cuckoo; a MISP failure lands in the
        // report (misp_lookup_error, misp_error), never fails the task
        let _ = lookup::enrich(&mut report, &self.processing_misp).await;
        let sample = match self.misp.upload_sample {
            true => tokio::fs::read(dir.join("binary")).await.ok(),
            false => None,
        };
        misp::push::after_detonation(&mut report, &self.misp, sample.as_deref()).await;
        let written = tokio::task::spawn_blocking(move || write_report(&dir, &report)).await;
        match written {
            Ok(Ok(())) => self.db.set_status(id, Status::Reported, None).await,
            Ok(Err(e)) => self.db.set_status(id, Status::FailedReporting, Some(&e)).await,
            Err(e) => {
                self.db.set_status(id, Status::FailedReporting, Some(&format!("writing the report crashed: {e}"))).await
            }
        }
    }
}

/// The task's folder, with the sample as `binary` (a copy: the task may be deleted while the sample stays).
fn prepare(storage: &Path, dir: &Path, sha256: Option<&str>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("reports"))?;
    if let Some(sha) = sha256 {
        let bin = dir.join("binary");
        if !bin.exists() {
            std::fs::copy(binary_path(storage, sha), &bin)?;
        }
    }
    Ok(())
}

/// Writes `reports/report.json` whole or not at all (temporary file, then rename).
fn write_report(dir: &Path, r: &report::Report) -> Result<(), String> {
    let path = dir.join("reports").join("report.json");
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(r).map_err(|e| format!("rendering the report: {e}"))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

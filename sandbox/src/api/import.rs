//! `ioclab sandbox import`: a report written elsewhere (a real Cuckoo 2.0,
//! CAPEv2, or an earlier ioclab) becomes a task of the local store, status
//! `reported`, its report rewritten in ioclab's Cuckoo 2.0 shape, so the
//! local API serves it (`/tasks/report/<id>`, misp-modules' cuckooimport)
//! and `to-misp --task` finds it, like a sample detonated here.

use std::path::Path;

use super::db::{DbError, NewTask, TaskDb};
use super::queue::{report_path, task_dir};
use crate::detonation::FileFacts;
use crate::report::Report;

/// An import that could not be completed (nothing of it is left behind).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The database refused.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The task's folder could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The sample's facts, when the report has all of its hashes (the samples table needs them).
fn sample_facts(r: &Report) -> Option<FileFacts> {
    let f = r.target.file.as_ref()?;
    Some(FileFacts {
        size: f.size,
        md5: f.md5?,
        sha1: f.sha1?,
        sha256: f.sha256?,
        sha512: f.sha512?,
        ssdeep: Some(f.ssdeep.clone()).filter(|s| !s.is_empty()),
        kind: f.kind.clone(),
    })
}

/// Adds `report` (read from `origin`) as a reported task under `storage`;
/// returns its id. The stored report's `info.id` becomes that id; where it
/// came from (and its id there) is kept in the task's `custom` field.
pub async fn import(db: &TaskDb, storage: &Path, mut report: Report, origin: &str) -> Result<i64, ImportError> {
    let (category, target) = match (&report.target.file, &report.target.url) {
        (_, Some(url)) if report.target.category == "url" || report.target.file.is_none() => ("url", url.clone()),
        (Some(f), _) if !f.name.is_empty() => ("file", f.name.clone()),
        _ => ("file", Path::new(origin).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
    };
    let task = NewTask {
        category,
        target,
        sample: sample_facts(&report),
        package: Some(report.info.package.clone()).filter(|p| !p.is_empty()),
        options: report.info.options.clone(),
        timeout: report.info.duration,
        priority: 1,
        custom: Some(format!("imported from {origin} (task {} there)", report.info.id)),
        platform: Some(report.info.platform.clone()).filter(|p| !p.is_empty()),
        ..Default::default()
    };
    let id = db.create_reported(&task, report.info.started, report.info.ended).await?;
    report.info.id = id as u64;
    let written = (|| {
        let path = report_path(storage, id);
        let dir = path.parent().unwrap_or(storage);
        std::fs::create_dir_all(dir).map_err(|source| (dir.display().to_string(), source))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&report).map_err(|e| (path.display().to_string(), e.into()))?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| (path.display().to_string(), source))
    })();
    if let Err((path, source)) = written {
        // whole or nothing: no task without its report
        let _ = db.delete(id).await;
        let _ = std::fs::remove_dir_all(task_dir(storage, id));
        return Err(ImportError::Write { path, source });
    }
    Ok(id)
}

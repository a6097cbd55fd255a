//! A detonator for API and report tests that need no root: it returns the
//! detonation recorded in tests/fixtures/dropper.detonation.json, with the
//! job's task id and the submitted file's real hashes, and writes the
//! recorded dropped files into the task's folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ioclab_sandbox::api::db::TaskDb;
use ioclab_sandbox::api::{router, ApiConfig, AppState};
use ioclab_sandbox::detonation::{DetonateError, Detonation, Detonator, Job, Target};

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Replays the recorded dropper detonation.
pub struct FixtureDetonator;

impl Detonator for FixtureDetonator {
    fn detonate(&self, job: &Job, task_dir: &Path) -> Result<Detonation, DetonateError> {
        let text = std::fs::read_to_string(fixture_path("dropper.detonation.json")).unwrap();
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut det: Detonation = serde_json::from_value(raw.clone()).unwrap();
        det.task_id = job.task_id;
        match &job.target {
            Target::File { path, name } => {
                if name.ends_with(".dat") {
                    return Err(DetonateError::NoPackage {
                        name: name.clone(),
                        reason: "data, not a program or script".into(),
                    });
                }
                det.sample = Some(ioclab_sandbox::sample::facts(path).unwrap());
            }
            Target::Url(_) => det.package = "curl".into(),
        }
        for (stored, content) in raw["fixture_files"].as_object().unwrap() {
            let p = task_dir.join(stored);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content.as_str().unwrap()).unwrap();
        }
        Ok(det)
    }
}

/// A served API on a loopback port, with the fixture detonator; stopped when dropped.
pub struct Server {
    pub url: String,
    pub storage: tempfile::TempDir,
    pub state: AppState,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

pub fn serve(token: Option<&str>) -> Server {
    let storage = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = ApiConfig {
        storage: storage.path().to_path_buf(),
        token: token.map(str::to_string),
        max_file_bytes: 1 << 20,
        ..Default::default()
    };
    let (url, state) = rt.block_on(async {
        let db = TaskDb::open(&storage.path().join("sandbox.db")).await.unwrap();
        let state = AppState::start(db, config, Arc::new(FixtureDetonator)).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, state)
    });
    Server { url, storage, state, runtime: Some(rt) }
}

/// Runs `f` on a current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

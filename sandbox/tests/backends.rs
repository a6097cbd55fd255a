//! The sandbox clients over real HTTP on loopback: CAPEv2's client against
//! a small fake of CAPE's /apiv2/ written from its documented shapes (routes
//! only with their trailing slash, `Authorization: Token`, the
//! `{"error", "data"}` envelope, errors sent with HTTP 200, DRF's 401), and
//! the Cuckoo backend against ioclab's own API.

mod fixture;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ioclab_sandbox::client::{Backend, BackendKind, ClientError, SubmitOptions, TaskStatus};
use serde_json::json;

const KEY: &str = "0f3c9a1b2d4e5f60718293a4b5c6d7e8f9a0b1c2";

/// What the fake saw and where its task 7 is.
#[derive(Default)]
struct Cape {
    /// Status polls of task 7 so far: pending, running, then reported.
    polls: AtomicUsize,
    /// (field, value or file name) of the last submission.
    form: Mutex<Vec<(String, String)>>,
}

impl Cape {
    fn status_of_7(&self) -> &'static str {
        match self.polls.load(Ordering::SeqCst) {
            0 => "pending",
            1 => "running",
            _ => "reported",
        }
    }
}

fn refused(message: &str) -> Response {
    // CAPE's errors: HTTP 200, an envelope saying so
    Json(json!({"error": true, "error_value": message})).into_response()
}

async fn token(req: Request, next: Next) -> Response {
    let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if given != format!("Token {KEY}") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Invalid token."}))).into_response();
    }
    next.run(req).await
}

async fn create(State(cape): State<Arc<Cape>>, mut form: Multipart) -> Response {
    let mut fields = Vec::new();
    while let Some(field) = form.next_field().await.unwrap() {
        let name = field.name().unwrap_or_default().to_string();
        let value = match field.file_name() {
            Some(f) => f.to_string(),
            None => field.text().await.unwrap(),
        };
        fields.push((name, value));
    }
    let file = fields.iter().find(|(k, _)| k == "file").map(|(_, v)| v.clone());
    *cape.form.lock().unwrap() = fields;
    match file.as_deref() {
        None => refused("No file was submitted"),
        Some("huge.exe") => Json(json!({"error": true, "error_value": "Error adding task to database",
                                        "errors": [{"huge.exe": "File too big, enable \"allow_ignore_size\""}]}))
        .into_response(),
        // success: `error` is an empty list on create
        Some(_) => Json(
            json!({"error": [], "data": {"task_ids": [7], "message": "Task ID 7 has been submitted"}, "errors": []}),
        )
        .into_response(),
    }
}

async fn status(State(cape): State<Arc<Cape>>, Path(id): Path<u64>) -> Response {
    match id {
        7 => {
            let s = cape.status_of_7();
            cape.polls.fetch_add(1, Ordering::SeqCst);
            Json(json!({"error": false, "data": s})).into_response()
        }
        8 => Json(json!({"error": false, "data": "running"})).into_response(),
        9 => Json(json!({"error": false, "data": "failed_processing"})).into_response(),
        _ => refused("Task does not exist"),
    }
}

async fn view(State(cape): State<Arc<Cape>>, Path(id): Path<u64>) -> Response {
    if id != 7 {
        return refused("Task does not exist");
    }
    Json(json!({"error": false, "data": {"id": 7, "category": "file", "target": "/tmp/cape-upload/sample.exe",
        "status": cape.status_of_7(), "added_on": "2025-11-21 15:38:30", "started_on": null, "completed_on": null, "errors": []}}))
    .into_response()
}

async fn report(State(cape): State<Arc<Cape>>, Path(id): Path<u64>) -> Response {
    if id != 7 {
        return refused("Task does not exist");
    }
    if cape.status_of_7() != "reported" {
        return refused("Task is still being analyzed");
    }
    let bytes = std::fs::read(fixture::fixture_path("cape-report.json")).unwrap();
    ([("content-type", "application/json; charset=UTF-8")], bytes).into_response()
}

/// The fake CAPE on a loopback port: its web root and its state.
async fn fake_cape() -> (String, Arc<Cape>) {
    let cape = Arc::new(Cape::default());
    let app = Router::new()
        .route("/apiv2/tasks/create/file/", post(create))
        .route("/apiv2/tasks/status/{id}/", get(status))
        .route("/apiv2/tasks/view/{id}/", get(view))
        .route("/apiv2/tasks/get/report/{id}/json/", get(report))
        .route(
            "/apiv2/tasks/list/",
            get(|| async { Json(json!({"error": false, "data": [{"id": 7, "status": "reported", "category": "file", "target": "sample.exe"}]})) }),
        )
        .route(
            "/apiv2/cuckoo/status/",
            get(|| async {
                Json(json!({"error": false, "data": {"version": "2.4-CAPE", "hostname": "cape",
                    "tasks": {"total": 1, "pending": 0, "running": 0, "completed": 0, "reported": 1}}}))
            }),
        )
        .layer(middleware::from_fn(token))
        .with_state(cape.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, cape)
}

fn sample() -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".exe").tempfile().unwrap();
    std::io::Write::write_all(&mut f, b"MZ not really a program").unwrap();
    f
}

#[test]
fn cape_submit_wait_and_report() {
    fixture::block_on(async {
        let (url, cape) = fake_cape().await;
        // the web root or the API's own URL: the same endpoint
        for base in [url.clone(), format!("{url}/apiv2/")] {
            let c = Backend::new(BackendKind::Cape, &base, Some(KEY.into()));
            assert_eq!(c.report_url(7), format!("{url}/apiv2/tasks/get/report/7/json/"));
        }
        let c = Backend::new(BackendKind::Cape, &url, Some(KEY.into()));
        let file = sample();
        let opts =
            SubmitOptions { timeout: Some(120), package: Some("exe".into()), options: Some("route=none".into()) };
        assert_eq!(c.submit_file(file.path(), &opts).await.unwrap(), 7);
        let form = cape.form.lock().unwrap().clone();
        for (k, v) in [("timeout", "120"), ("package", "exe"), ("options", "route=none")] {
            assert!(form.contains(&(k.to_string(), v.to_string())), "{form:?}");
        }
        assert!(form.iter().any(|(k, v)| k == "file" && v.ends_with(".exe")), "{form:?}");

        // not ready: CAPE says so with HTTP 200; the client reports it as a refusal
        match c.report_bytes(7).await {
            Err(ClientError::Refused { url, message }) => {
                assert_eq!(message, "Task is still being analyzed");
                assert!(url.ends_with("/apiv2/tasks/get/report/7/json/"), "{url}");
            }
            other => panic!("{other:?}"),
        }
        let mut seen = Vec::new();
        let last =
            c.wait(7, Duration::from_millis(10), Duration::from_secs(600), |s, _| seen.push(s.clone())).await.unwrap();
        assert_eq!(last, TaskStatus::Reported);
        assert_eq!(seen, [TaskStatus::Pending, TaskStatus::Running, TaskStatus::Reported]);
        let r = c.report(7).await.unwrap();
        assert_eq!((r.info.id, r.malscore), (4711, Some(6.4)));
        assert_eq!(c.task(7).await.unwrap()["status"], "reported");
        assert_eq!(c.tasks().await.unwrap().len(), 1);
        assert_eq!(c.server_status().await.unwrap()["version"], "2.4-CAPE");
    });
}

#[test]
fn cape_errors_say_what_happened() {
    fixture::block_on(async {
        let (url, _) = fake_cape().await;
        // DRF's 401 for a wrong key, with what to check
        let c = Backend::new(BackendKind::Cape, &url, Some("wrong".into()));
        match c.status_of(7).await {
            Err(ClientError::Status { status: 401, message, .. }) => {
                assert!(message.contains("Invalid token.") && message.contains("Token <key>"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let c = Backend::new(BackendKind::Cape, &url, Some(KEY.into()));
        // an error sent with HTTP 200, and its details
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("huge.exe");
        std::fs::write(&huge, b"MZ").unwrap();
        let e = c.submit_file(&huge, &SubmitOptions::default()).await.unwrap_err().to_string();
        assert!(e.contains("Error adding task to database") && e.contains("File too big"), "{e}");
        assert!(e.contains("/apiv2/tasks/create/file/"), "{e}");
        let e = c.status_of(99).await.unwrap_err().to_string();
        assert!(e.ends_with("the sandbox refused: Task does not exist"), "{e}");
        // a failed task ends the wait; a stuck one ends it at the limit
        assert_eq!(
            c.wait(9, Duration::from_millis(10), Duration::from_secs(600), |_, _| {}).await.unwrap(),
            TaskStatus::Failed("failed_processing".into())
        );
        let e = c.wait(8, Duration::from_millis(10), Duration::from_millis(100), |_, _| {}).await.unwrap_err();
        assert!(matches!(&e, ClientError::StillRunning { id: 8, status, .. } if status == "running"), "{e:?}");
        // a missing local file names it
        let e = c.submit_file(&dir.path().join("nope.exe"), &SubmitOptions::default()).await.unwrap_err().to_string();
        assert!(e.contains("nope.exe"), "{e}");
    });
}

#[test]
fn the_cuckoo_backend_drives_ioclabs_own_api() {
    let s = fixture::serve(Some("t0ken"));
    fixture::block_on(async {
        let c = Backend::new(BackendKind::Cuckoo, &s.url, Some("t0ken".into()));
        let id = c.submit_file(&fixture::fixture_path("dropper.sh"), &SubmitOptions::default()).await.unwrap();
        let mut seen = Vec::new();
        let last = c
            .wait(id, Duration::from_millis(20), Duration::from_secs(600), |st, _| seen.push(st.clone()))
            .await
            .unwrap();
        assert_eq!(last, TaskStatus::Reported, "{seen:?}");
        assert_eq!(seen.last(), Some(&TaskStatus::Reported));
        let r = c.report(id).await.unwrap();
        assert_eq!(r.info.id, id as u64);
        assert_eq!(c.report_url(id), format!("{}/tasks/report/{id}", s.url));
        assert_eq!(c.server_status().await.unwrap()["tasks"]["reported"], 1);
        // Cuckoo's own errors: a 404 with its message
        let e = c.status_of(999).await.unwrap_err().to_string();
        assert!(e.contains("HTTP 404") && e.contains("Task not found"), "{e}");
    });
}

#[test]
fn statuses_read_as_both_sandboxes_name_them() {
    for (name, status, fin) in [
        ("pending", TaskStatus::Pending, false),
        ("running", TaskStatus::Running, false),
        ("distributed", TaskStatus::Running, false),
        ("completed", TaskStatus::Completed, false),
        ("reported", TaskStatus::Reported, true),
        ("failed_analysis", TaskStatus::Failed("failed_analysis".into()), true),
        ("banned", TaskStatus::Other("banned".into()), true),
        ("recovered", TaskStatus::Other("recovered".into()), false),
    ] {
        assert_eq!(TaskStatus::parse(name), status);
        assert_eq!(status.is_final(), fin, "{name}");
    }
    assert_eq!(TaskStatus::parse("failed_reporting").to_string(), "failed_reporting");
}

//! A test appliance: the web router on a temporary data directory, in
//! replay mode (no root, no eBPF), with one instructor and two trainees,
//! and a catalogue holding a copy of dns-ioc-why-kunai-rocks whose
//! recorded replay carries markup in its values (`<script>`).
//! Requests go through tower's `oneshot`; no socket.

#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use ioclab_lab::data_dir::DataDir;
use ioclab_lab::replay::Speed;
use ioclab_lab::run::{Created, Manifest, Mode, RunEvent, RunEventKind, RunId, StageResult, StreamName};
use ioclab_lab::scenario::Stage;
use ioclab_web::limit::{LimitConfig, LoginLimiter};
use ioclab_web::runs::{Engine, Runs};
use ioclab_web::state::{AppState, Links};
use ioclab_web::users::{Role, UserDb};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The scenario the fixture catalogue holds.
pub const SCENARIO: &str = "dns-ioc-why-kunai-rocks";
/// Markup the recorded replay carries in a step's output and a command line.
pub const MARKUP: &str = "<script>alert(1)</script>";
/// Failed logins allowed per account in the test appliance.
pub const LOGIN_LIMIT: usize = 3;

/// The test appliance.
pub struct App {
    pub router: Router,
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

/// Who a request is from.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The session cookie (`name=value`).
    pub cookie: Option<String>,
    /// The session's CSRF token, read from a page.
    pub csrf: String,
    /// An API token (`Authorization: Bearer`).
    pub token: Option<String>,
}

pub const USERS: &[(&str, Role, &str)] = &[
    ("teacher", Role::Instructor, "teacher-pw"),
    ("alice", Role::Trainee, "alice-pw"),
    ("bob", Role::Trainee, "bob-pw"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Writes a recorded run of `scenario_dir` into its `replay/`: a few stages, a step printing
/// [`MARKUP`], a detection whose command line holds it, and `events.jsonl`.
fn record_fixture(scenario_dir: &Path) {
    let loaded = ioclab_lab::scenario::load::load(scenario_dir).expect("the fixture scenario loads");
    let s = &loaded.scenario;
    let replay = scenario_dir.join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    let manifest = Manifest {
        run: RunId::parse("recorded").unwrap(),
        scenario: s.id.clone(),
        scenario_uuid: s.uuid.to_string(),
        version: s.version,
        mode: Mode::Live,
        started: 1.0,
        finished: Some(2.0),
        passed: Some(true),
        created: Created::default(),
    };
    std::fs::write(replay.join("run.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let detected = json!({
        "info": {"event": {"name": "execve"}, "task": {"name": "sh"}},
        "data": {"command_line": format!("sh -c '{MARKUP}'")},
        "detection": {"iocs": ["why.kunai.rocks"]}
    });
    let quiet = json!({"info": {"event": {"name": "dns_query"}, "task": {"name": "dig"}}, "data": {}});
    std::fs::write(replay.join("events.jsonl"), format!("{quiet}\n{detected}\n")).unwrap();
    let step: ioclab_lab::scenario::ScenarioId = serde_json::from_value(json!("dig")).unwrap();
    let events = [
        RunEventKind::Started {
            scenario: s.id.clone(),
            version: s.version,
            run: "recorded".into(),
            mode: Mode::Live,
            started: 1.0,
        },
        RunEventKind::StageStarted { stage: Stage::Sandbox },
        RunEventKind::StageFinished {
            stage: Stage::Sandbox,
            result: StageResult::Passed,
            summary: "report written".into(),
            artifact: None,
        },
        RunEventKind::StepOutput { step: step.clone(), stream: StreamName::Stdout, line: MARKUP.into() },
        RunEventKind::Detection { expected: step, event: detected },
        RunEventKind::StageFinished {
            stage: Stage::Detection,
            result: StageResult::Passed,
            summary: "1 detection".into(),
            artifact: Some("events.jsonl".into()),
        },
        RunEventKind::Finished { passed: true },
    ];
    let lines: String = events
        .into_iter()
        .enumerate()
        .map(|(i, kind)| serde_json::to_string(&RunEvent { at_ms: i as u64 * 10, kind }).unwrap() + "\n")
        .collect();
    std::fs::write(replay.join("timeline.jsonl"), lines).unwrap();
}

impl App {
    /// A fresh appliance.
    pub async fn new() -> App {
        App::with_feed_memory(ioclab_web::feed::DEFAULT_MEMORY_EVENTS).await
    }

    /// A fresh appliance keeping at most `events` endpoint events in memory.
    pub async fn with_feed_memory(events: usize) -> App {
        let dir = tempfile::tempdir().unwrap();
        let scenarios = dir.path().join("scenarios");
        let scenario_dir = scenarios.join(SCENARIO);
        copy_dir(&repo().join("lab-scenarios").join(SCENARIO), &scenario_dir);
        let _ = std::fs::remove_dir_all(scenario_dir.join("replay"));
        record_fixture(&scenario_dir);
        let data = DataDir::new(dir.path().join("data"));
        std::fs::create_dir_all(data.root()).unwrap();
        let users = UserDb::open(&ioclab_web::web_db(&data)).await.unwrap();
        for (name, role, pw) in USERS {
            users.add(&name.parse().unwrap(), *role, pw).await.unwrap();
        }
        let engine = Engine::Replay { reason: "test appliance".into() };
        let runs = Runs::open(users.pool().clone(), data, scenarios, engine)
            .await
            .unwrap()
            .with_replay_speed(Speed::Instant)
            .with_feed_memory(events);
        let limiter = LoginLimiter::new(LimitConfig {
            per_account: LOGIN_LIMIT,
            per_address: 100,
            window: std::time::Duration::from_secs(600),
        });
        let state = AppState::new(users, runs, limiter, Links::default());
        let sessions = ioclab_web::session_layer(&state, 60).await.unwrap();
        let router = ioclab_web::router(state.clone(), sessions);
        App { router, state, dir }
    }

    /// Sends `req` as `client` (cookie, token), keeping any new session cookie.
    pub async fn send(&self, client: &mut Client, mut req: Request<Body>) -> Response<Body> {
        if let Some(c) = &client.cookie {
            req.headers_mut().insert(header::COOKIE, c.parse().unwrap());
        }
        if let Some(t) = &client.token {
            req.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        let resp = self.router.clone().oneshot(req).await.unwrap();
        if let Some(set) = resp.headers().get(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
            client.cookie = Some(pair);
        }
        resp
    }

    /// GET `path` as `client`.
    pub async fn get(&self, client: &mut Client, path: &str) -> Response<Body> {
        self.send(client, Request::get(path).body(Body::empty()).unwrap()).await
    }

    /// POST a form to `path` as `client` (fields as given: add `csrf` yourself).
    pub async fn post_form(&self, client: &mut Client, path: &str, fields: &[(&str, &str)]) -> Response<Body> {
        let body: String = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(client, req).await
    }

    /// A client holding a session and its CSRF token, not logged in.
    pub async fn visitor(&self) -> Client {
        let mut c = Client::default();
        let resp = self.get(&mut c, "/login").await;
        assert_eq!(resp.status(), StatusCode::OK);
        c.csrf = csrf_of(&text(resp).await);
        c
    }

    /// A client logged in as `name`.
    pub async fn login(&self, name: &str) -> Client {
        let pw = USERS.iter().find(|u| u.0 == name).expect("a fixture user").2;
        let mut c = self.visitor().await;
        let csrf = c.csrf.clone();
        let resp = self.post_form(&mut c, "/login", &[("csrf", &csrf), ("name", name), ("password", pw)]).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "login as {name}");
        // the token of the new session's pages (the same token survives the id change)
        let home = self.get(&mut c, "/").await;
        assert_eq!(home.status(), StatusCode::OK);
        c.csrf = csrf_of(&text(home).await);
        c
    }

    /// A client with `name`'s API token only.
    pub async fn with_token(&self, name: &str) -> Client {
        let token = self.state.users().new_token(&name.parse().unwrap()).await.unwrap();
        Client { token: Some(token), ..Client::default() }
    }

    /// Starts the fixture scenario as `client` (a form), returns the run id.
    pub async fn start_run(&self, client: &mut Client) -> String {
        let csrf = client.csrf.clone();
        let resp = self.post_form(client, "/runs", &[("csrf", &csrf), ("scenario", SCENARIO)]).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
        let to = resp.headers()[header::LOCATION].to_str().unwrap().to_string();
        to.strip_prefix("/runs/").expect("redirected to the run").to_string()
    }

    /// Waits for run `id` to finish (its SSE stream ends with `finished`) and returns the stream's text.
    pub async fn follow(&self, client: &mut Client, id: &str) -> String {
        let resp = self.get(client, &format!("/api/runs/{id}/events")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        text(resp).await
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

/// A response's body as text.
pub async fn text(resp: Response<Body>) -> String {
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// A response's body as JSON.
pub async fn json_of(resp: Response<Body>) -> Value {
    serde_json::from_str(&text(resp).await).unwrap()
}

/// Whether the tests run in CI, where live tests must run, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A live lab (root, eBPF) on the data folder of a new temporary one, or
/// `None` where it cannot run, said on stderr; under `CI=true` it must run.
pub fn live_lab() -> Option<(tempfile::TempDir, DataDir, std::sync::Arc<ioclab_lab::engine::Lab>)> {
    use ioclab_lab::engine::{EngineError, Lab, LabConfig};
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    std::fs::create_dir_all(data.root()).unwrap();
    match Lab::open(LabConfig { data: data.clone() }) {
        Ok(lab) => Some((dir, data, std::sync::Arc::new(lab))),
        Err(EngineError::Unsupported(why)) => {
            assert!(!in_ci(), "CI=true and the live lab cannot run: {why}");
            eprintln!("SKIPPED (not in CI): {why}");
            None
        }
        Err(e) => panic!("the lab did not start: {e}"),
    }
}

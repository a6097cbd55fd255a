//! The embedded store over HTTP without Python: MISP-shaped errors (bad key,
//! bad JSON, wrong types, oversized bodies, unknown endpoints), the client's
//! diagnoses (refused port, self-signed TLS, bad key, missing role, wrong
//! base URL, refused attribute), warninglists on paged searches, and export --sync.

use std::net::SocketAddr;
use std::sync::Arc;

use ioclab_intel::client::{ClientError, MispClient};
use ioclab_intel::diagnose::{Diagnosis, Problem};
use ioclab_intel::export::config::ExportConfig;
use ioclab_intel::export::{self, ExportOptions};
use ioclab_intel::server::{self, AppState, BODY_LIMIT};
use ioclab_intel::store::keys::KeyRequest;
use ioclab_intel::store::{Role, Store};
use ioclab_intel::warninglists::Warninglists;
use serde_json::{json, Value};

async fn start() -> (String, String, Store) {
    start_with(Warninglists::empty()).await
}

async fn start_with(warninglists: Warninglists) -> (String, String, Store) {
    let store = Store::in_memory().await.unwrap();
    let key = store.create_key("analyst@lab.example", Role::User).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = server::router(AppState { store: store.clone(), warninglists: Arc::new(warninglists) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), key, store)
}

async fn raw(url: &str, key: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("Authorization", key)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn errors_have_misp_shape() {
    let (url, key, _) = start().await;
    let (s, v) = raw(&url, &"x".repeat(40), "/events/index", b"{}".to_vec()).await;
    assert_eq!(s, 403);
    assert!(v["message"].as_str().unwrap().starts_with("Authentication failed"), "{v}");
    assert_eq!(v["url"], "/events/index");

    let (s, v) = raw(&url, &key, "/events/add", b"{\"Event\": {\"info\": ".to_vec()).await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("line 1"), "names the place: {v}");

    let (s, v) = raw(&url, &key, "/events/add", br#"{"Event": {"info": "x", "distribution": "high"}}"#.to_vec()).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("number"), "{v}");

    let (s, v) = raw(
        &url,
        &key,
        "/events/add",
        br#"{"info": "x", "Attribute": [{"type": "ip-dst", "value": "999.1.1.1"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["name"], "Could not add Event");
    assert!(v["message"].as_str().unwrap().contains("Attribute 0"), "names the attribute: {v}");

    let (s, v) = raw(&url, &key, "/events/add", br#"{"Event": {"distribution": 0}}"#.to_vec()).await;
    assert_eq!(s, 403);
    assert!(v["message"].as_str().unwrap().contains("info"), "{v}");

    let big = vec![b' '; BODY_LIMIT + 1];
    let (s, v) = raw(&url, &key, "/events/add", big).await;
    assert_eq!(s, 413, "{v}");
    assert!(v["message"].as_str().unwrap().contains("limit"), "{v}");

    let (s, v) = raw(&url, &key, "/events/view/424242", vec![]).await;
    assert_eq!(s, 405, "POST on a GET route: {v}");
    assert!(v["message"].as_str().unwrap().contains("POST"), "{v}");
    let r = reqwest::Client::new()
        .get(format!("{url}/events/view/424242"))
        .header("Authorization", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "Invalid event.");
    let (s, v) = raw(&url, &key, "/no/such/endpoint", vec![]).await;
    assert_eq!(s, 404);
    assert_eq!(v["url"], "/no/such/endpoint");
}

#[tokio::test]
async fn client_diagnoses_failures() {
    let (url, key, _) = start().await;
    let ok = MispClient::new(&url, &key, true, None).unwrap();
    assert_eq!(ok.get("/servers/getVersion").await.unwrap()["version"], "2.5.1");

    let bad_key = MispClient::new(&url, &"k".repeat(40), true, None).unwrap();
    let e = bad_key.get("/servers/getVersion").await.unwrap_err();
    assert!(matches!(e, ClientError::Auth { status: 403, .. }), "{e}");
    assert!(e.to_string().contains("API key"), "{e}");

    let wrong_base = MispClient::new(&format!("{url}/misp"), &key, true, None).unwrap();
    let e = wrong_base.get("/servers/getVersion").await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("base URL"), "{e}");

    // a closed loopback port
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = MispClient::new(&format!("http://127.0.0.1:{port}"), &key, true, None).unwrap();
    let e = nobody.get("/servers/getVersion").await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "names the URL: {e}");

    // TLS spoken to a plain HTTP server
    let tls = MispClient::new(&url.replace("http://", "https://"), &key, true, None).unwrap();
    let e = tls.get("/servers/getVersion").await.unwrap_err();
    assert!(matches!(e, ClientError::Tls { .. } | ClientError::Unreachable { .. }), "{e}");
}

/// A TLS listener (`openssl s_server`) with a fresh self-signed certificate
/// for 127.0.0.1; killed on drop. Returns it, its URL and the certificate.
struct SelfSignedTls {
    server: std::process::Child,
    url: String,
    cert: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SelfSignedTls {
    fn start() -> SelfSignedTls {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (installed by scripts/setup.sh)");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = SelfSignedTls { server, url: format!("https://127.0.0.1:{port}"), cert, _dir: dir };
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        t
    }
}

impl Drop for SelfSignedTls {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The diagnosis of `e`, ignoring any proxy variable of the test's environment.
fn explain(e: &ClientError) -> Diagnosis {
    Diagnosis::with_proxy(e, None)
}

#[tokio::test]
async fn diagnosis_unreachable_and_tls() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody = MispClient::new(&format!("http://127.0.0.1:{port}"), &"k".repeat(40), true, None).unwrap();
    let d = explain(&nobody.get("/servers/getVersion").await.unwrap_err());
    assert_eq!(d.problem, Problem::Unreachable, "{d:#}");
    assert!(d.what_failed.contains(&format!("127.0.0.1:{port}/servers/getVersion")), "{d:#}");
    assert!(d.likely_cause.contains("nothing listens"), "connection refused is named: {d:#}");

    let tls = SelfSignedTls::start();
    let strict = MispClient::new(&tls.url, &"k".repeat(40), true, None).unwrap();
    let d = explain(&strict.get("/servers/getVersion").await.unwrap_err());
    assert_eq!(d.problem, Problem::Tls, "{d:#}");
    assert!(d.likely_cause.contains("self-signed"), "{d:#}");
    assert!(d.what_to_do.contains("ssl = false") && d.what_to_do.contains("ca_file"), "{d:#}");
    // both fixes the diagnosis names get past TLS: the next failure is that s_server is no MISP
    for client in [
        MispClient::new(&tls.url, &"k".repeat(40), true, Some(&tls.cert)).unwrap(),
        MispClient::new(&tls.url, &"k".repeat(40), false, None).unwrap(),
    ] {
        let d = explain(&client.get("/servers/getVersion").await.unwrap_err());
        assert_eq!(d.problem, Problem::NotJson, "TLS passed: {d:#}");
    }
    // a CA file that is not a certificate is a setup failure naming the file
    let bad = tls.cert.with_file_name("key.pem.missing");
    let d = explain(&MispClient::new(&tls.url, "k", true, Some(&bad)).err().unwrap());
    assert_eq!(d.problem, Problem::Setup, "{d:#}");
    assert!(d.what_failed.contains("key.pem.missing"), "{d:#}");
}

#[tokio::test]
async fn diagnosis_bad_key_missing_role_and_wrong_base() {
    let (url, key, store) = start().await;
    let bad = MispClient::new(&url, &"k".repeat(40), true, None).unwrap();
    let d = explain(&bad.get("/servers/getVersion").await.unwrap_err());
    assert_eq!(d.problem, Problem::BadKey, "{d:#}");
    assert!(d.what_failed.contains("Authentication failed"), "MISP's words are quoted: {d:#}");
    assert!(d.what_to_do.contains("keys create"), "{d:#}");

    // `start` made a `user` key: it adds events but may not publish them
    let user = MispClient::new(&url, &key, true, None).unwrap();
    let ev = user.post("/events/add", &json!({"Event": {"info": "role test"}})).await.unwrap();
    let id = ev["Event"]["id"].as_str().unwrap().to_string();
    let e = user.post(&format!("/events/publish/{id}"), &json!({})).await.unwrap_err();
    assert!(matches!(e, ClientError::Forbidden { .. }), "{e:?}");
    let d = explain(&e);
    assert_eq!(d.problem, Problem::NoPermission, "{d:#}");
    assert!(d.likely_cause.contains("perm_publish"), "{d:#}");
    assert!(d.what_to_do.contains("--role publisher"), "the role needed is named: {d:#}");
    let d = user.explain(&e).await;
    assert!(d.likely_cause.ends_with("(this key is analyst@lab.example's, whose role is `user`)"), "{d:#}");
    let e = user.post("/events/add", &json!({"Event": {"info": "published", "published": true}})).await.unwrap_err();
    assert!(explain(&e).what_to_do.contains("--role publisher"), "{e}");
    // a publisher's key does it
    let publisher = store.create_key("boss@lab.example", Role::Publisher).await.unwrap();
    let publisher = MispClient::new(&url, &publisher, true, None).unwrap();
    publisher.post(&format!("/events/publish/{id}"), &json!({})).await.unwrap();

    let wrong = MispClient::new(&format!("{url}/misp/"), &key, true, None).unwrap();
    let d = explain(&wrong.get("/servers/getVersion").await.unwrap_err());
    assert_eq!(d.problem, Problem::WrongBaseUrl, "{d:#}");
    assert!(d.likely_cause.contains("\"/misp\""), "the path in the base URL is named: {d:#}");
    assert!(d.what_to_do.contains(&format!("set the url to {url} ")), "the root URL is given: {d:#}");

    // a missing event is not a wrong base URL
    let d = explain(&user.get("/events/view/424242").await.unwrap_err());
    assert_eq!(d.problem, Problem::NotFound, "{d:#}");
}

#[tokio::test]
async fn diagnosis_quotes_the_attribute_misp_refused() {
    let (url, key, store) = start().await;
    let user = MispClient::new(&url, &key, true, None).unwrap();
    let event = json!({"Event": {"info": "one bad attribute", "Attribute": [
        {"type": "domain", "value": "good.example", "to_ids": true},
        {"type": "sha256", "value": "not-a-hash", "to_ids": true},
    ]}});
    let e = user.post("/events/add", &event).await.unwrap_err();
    let ClientError::Rejected { culprit: Some(c), .. } = &e else { panic!("{e:?}") };
    assert_eq!((c.place.as_str(), c.kind.as_str(), c.value.as_str()), ("Attribute 1", "sha256", "not-a-hash"));
    let d = explain(&e);
    assert_eq!(d.problem, Problem::Rejected, "{d:#}");
    assert!(d.likely_cause.contains("Attribute 1 (sha256 \"not-a-hash\")"), "{d:#}");
    assert!(d.likely_cause.contains("hex digest"), "MISP's reason is quoted: {d:#}");
    assert!(e.to_string().contains("not-a-hash"), "Display is the diagnosis: {e}");
    // nothing half-written: the event was refused whole
    assert!(store.index(&Default::default()).await.unwrap().is_empty());

    // the same event twice: a duplicate, and the advice is to update it
    let uuid = "5e0c2f32-0000-4000-8000-000000000001";
    let ok = json!({"Event": {"info": "dup", "uuid": uuid}});
    user.post("/events/add", &ok).await.unwrap();
    let e = user.post("/events/add", &ok).await.unwrap_err();
    assert!(e.is_duplicate(), "{e:?}");
    let d = explain(&e);
    assert_eq!(d.problem, Problem::Rejected, "{d:#}");
    assert!(d.what_to_do.contains("events/edit"), "{d:#}");
}

#[tokio::test]
async fn export_sync_removes_deleted_and_non_ids_attributes() {
    let (url, key, store) = start().await;
    let user = store.user_for_key(&key).await.unwrap().unwrap();
    let ev = serde_json::from_value(json!({"info": "sync", "published": true, "Attribute": [
        {"uuid": "11111111-1111-4111-8111-111111111111", "type": "domain", "value": "keep.example", "to_ids": true},
        {"uuid": "22222222-2222-4222-8222-222222222222", "type": "domain", "value": "deleted.example", "to_ids": true},
        {"uuid": "33333333-3333-4333-8333-333333333333", "type": "domain", "value": "unflagged.example", "to_ids": true},
    ]}))
    .unwrap();
    let id = store.add_event(&user, ev).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("iocs.json");
    let cfg = ExportConfig::from_toml(&format!("[misp]\nname = \"lab\"\nurl = \"{url}\"\nkey = \"{key}\"\n")).unwrap();
    let mut opts = ExportOptions { output: Some(out.clone()), ..Default::default() };
    let r = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    assert_eq!(r.added, 3);
    let r = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    assert_eq!((r.added, r.kept), (0, 3), "appending adds nothing twice");

    store.delete_attribute("22222222-2222-4222-8222-222222222222").await.unwrap();
    let edit = serde_json::from_value(json!({"published": true, "Attribute": [
        {"uuid": "33333333-3333-4333-8333-333333333333", "type": "domain", "value": "unflagged.example", "to_ids": false},
    ]}))
    .unwrap();
    store.edit_event(&id.to_string(), edit).await.unwrap();
    let r = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    assert!(r.removed.is_empty(), "without --sync nothing is removed");
    opts.sync = true;
    let r = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    let mut removed: Vec<&str> = r.removed.iter().map(|l| l.value.as_str()).collect();
    removed.sort();
    assert_eq!(removed, ["deleted.example", "unflagged.example"]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("keep.example"));
}

#[tokio::test]
async fn export_keeps_allowed_values_off_the_warninglists() {
    let (url, key, store) = start().await;
    let user = store.user_for_key(&key).await.unwrap().unwrap();
    let ev = serde_json::from_value(json!({"info": "allow", "published": true, "Attribute": [
        {"type": "ip-dst", "value": "127.0.55.4", "to_ids": true},
        {"type": "ip-dst", "value": "8.8.8.8", "to_ids": true},
    ]}))
    .unwrap();
    store.add_event(&user, ev).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("iocs.json");
    let cfg = ExportConfig::from_toml(&format!("[misp]\nname = \"lab\"\nurl = \"{url}\"\nkey = \"{key}\"\n")).unwrap();
    let opts = ExportOptions { output: Some(out.clone()), overwrite: true, ..Default::default() };
    let r = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    assert_eq!((r.added, r.warned.len()), (0, 2), "both on warninglists (RFC 5735, public DNS)");
    let opts = ExportOptions { allow: vec!["127.0.55.4".into()], ..opts };
    let r = export::export(&cfg, &opts, Warninglists::embedded()).await.unwrap();
    assert_eq!((r.added, r.warned.len()), (1, 1));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("127.0.55.4") && !text.contains("8.8.8.8"), "{text}");
}

#[tokio::test]
async fn warninglisted_values_never_reach_any_page() {
    let (url, key, store) = start_with(Warninglists::shipped()).await;
    let user = store.user_for_key(&key).await.unwrap().unwrap();
    let attrs: Vec<Value> = ["a.example", "8.8.8.8", "b.example", "1.1.1.1", "c.example"]
        .iter()
        .map(|v| json!({"type": if v.ends_with(".example") { "domain" } else { "ip-dst" }, "value": v}))
        .collect();
    store
        .add_event(&user, serde_json::from_value(json!({"info": "paged", "Attribute": attrs})).unwrap())
        .await
        .unwrap();
    let mut seen = Vec::new();
    for page in 1..=4 {
        let body = json!({"enforceWarninglist": true, "limit": 1, "page": page, "returnFormat": "csv",
            "requested_attributes": ["value"], "headerless": true});
        let r = reqwest::Client::new()
            .post(format!("{url}/attributes/restSearch"))
            .header("Authorization", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        seen.extend(r.text().await.unwrap().lines().map(str::to_string));
    }
    // the public resolvers are on a warninglist: pages are made of what is left
    assert_eq!(seen, ["\"a.example\"", "\"b.example\"", "\"c.example\""]);
}

/// A fake MISP on loopback: an empty event index, an empty CSV export, and
/// `sync_answer` (with HTTP 200) for the JSON search --sync makes.
async fn fake_misp(sync_answer: Value) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route("/events/index", post(|| async { axum::Json(json!([])) })).route(
        "/attributes/restSearch",
        post(move |body: String| {
            let sync_answer = sync_answer.clone();
            async move {
                if body.contains("\"csv\"") {
                    "uuid,event_id,type,value,to_ids,object_relation\n".to_string()
                } else {
                    sync_answer.to_string()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// `--sync` read a mis-shaped answer as "nothing is alive" and removed every
/// IoC of the source; now it fails and the file stays as it was.
#[tokio::test]
async fn export_sync_aborts_on_a_mis_shaped_answer_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("iocs.json");
    let before: String = (1..=4)
        .map(|i| {
            format!("{{\"type\":\"domain\",\"uuid\":\"u{i}\",\"source\":\"lab\",\"value\":\"d{i}.example\",\"event_uuid\":\"e\",\"severity\":7}}\n")
        })
        .collect();
    for answer in [
        json!({"response": []}),
        json!({"name": "Internal error", "message": "database is locked", "url": "/attributes/restSearch"}),
        json!({"response": {"Attribute": [{"uuid": "u1"}]}}),
    ] {
        std::fs::write(&out, &before).unwrap();
        let url = fake_misp(answer.clone()).await;
        let cfg = ExportConfig::from_toml(&format!(
            "[misp]\nname = \"lab\"\nurl = \"{url}\"\nkey = \"{}\"\n",
            "k".repeat(40)
        ))
        .unwrap();
        let opts = ExportOptions { warninglists: false, sync: true, output: Some(out.clone()), ..Default::default() };
        let err = export::export(&cfg, &opts, &Warninglists::empty()).await.unwrap_err().to_string();
        assert!(err.contains("/attributes/restSearch") && err.contains("--sync"), "{answer}: {err}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), before, "{answer}: the file is as it was");
    }
}

/// The export client read answers of any size into memory; now it stops at
/// its limit, announced (Content-Length) or not (chunked), and names it.
#[tokio::test]
async fn client_answers_have_a_size_limit() {
    let (url, key, _) = start().await;
    let small = MispClient::new(&url, &key, true, None).unwrap().with_answer_limit(1000);
    let e = small.get("/attributes/describeTypes.json").await.unwrap_err();
    assert!(matches!(e, ClientError::TooLarge { limit: 1000, .. }), "{e}");
    assert!(e.to_string().contains("1000-byte limit") && e.to_string().contains("max_answer_mib"), "{e}");
    let ok = MispClient::new(&url, &key, true, None).unwrap();
    assert!(ok.get("/attributes/describeTypes.json").await.is_ok(), "the default limit takes it");

    // chunked, without a length: 64 chunks of 1 KiB
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).await;
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        for _ in 0..64 {
            if conn.write_all(format!("400\r\n{}\r\n", " ".repeat(1024)).as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n").await;
    });
    let c = MispClient::new(&format!("http://{addr}"), &key, true, None).unwrap().with_answer_limit(16 << 10);
    let e = c.get("/events/index").await.unwrap_err();
    assert!(matches!(e, ClientError::TooLarge { .. }), "{e}");
}

/// A key for `email` in organisation `org` with `role`.
async fn key_of(store: &Store, email: &str, org: &str, role: Role) -> String {
    store.create_key_with(&KeyRequest { email, role: Some(role), org: Some(org), change_role: false }).await.unwrap()
}

/// The status of a POST (body JSON) to `path`.
async fn status(url: &str, key: &str, path: &str, body: Value) -> u16 {
    raw(url, key, path, body.to_string().into_bytes()).await.0
}

/// MISP's rules for the routes served: a `user` edits, tags and deletes only
/// its organisation's events and publishes none; a publisher publishes its
/// organisation's; an admin does everything. (A user-role key could edit,
/// publish and delete an admin's event.)
#[tokio::test]
async fn roles_and_organisations_are_enforced() {
    let (url, _, store) = start().await;
    let admin = key_of(&store, "admin@lab.example", "ioclab", Role::Admin).await;
    let blue = key_of(&store, "blue@lab.example", "blue", Role::User).await;
    let blue_pub = key_of(&store, "blue-pub@lab.example", "blue", Role::Publisher).await;
    let red = key_of(&store, "red@lab.example", "red", Role::User).await;
    let red_pub = key_of(&store, "red-pub@lab.example", "red", Role::Publisher).await;
    let event = |info: &str, uuid: &str| {
        json!({"Event": {"info": info, "uuid": uuid, "Attribute": [
            {"type": "domain", "value": format!("{info}.example"), "uuid": uuid.replace("-4000-", "-4001-")}]}})
    };
    let (blue_ev, admin_ev) = ("11111111-1111-4000-8000-000000000001", "11111111-1111-4000-8000-000000000002");
    let blue_attr = blue_ev.replace("-4000-", "-4001-");
    assert_eq!(status(&url, &blue, "/events/add", event("blue", blue_ev)).await, 200);
    assert_eq!(status(&url, &admin, "/events/add", event("admin", admin_ev)).await, 200);

    // another organisation's user: no edit, tag, attribute delete, publish or delete
    let edit = json!({"Event": {"info": "defaced"}});
    assert_eq!(status(&url, &red, &format!("/events/edit/{blue_ev}"), edit.clone()).await, 403);
    assert_eq!(status(&url, &red, &format!("/events/edit/{admin_ev}"), edit.clone()).await, 403);
    assert_eq!(status(&url, &red, "/tags/attachTagToObject", json!({"uuid": blue_ev, "tag": "x"})).await, 403);
    assert_eq!(status(&url, &red, "/tags/attachTagToObject", json!({"uuid": blue_attr, "tag": "x"})).await, 403);
    assert_eq!(status(&url, &red, &format!("/attributes/delete/{blue_attr}"), json!({})).await, 403);
    assert_eq!(status(&url, &red_pub, &format!("/events/publish/{blue_ev}"), json!({})).await, 403);
    assert_eq!(status(&url, &red, &format!("/events/delete/{blue_ev}"), json!({})).await, 403);
    let ev = store.event(blue_ev).await.unwrap();
    assert_eq!(ev["Event"]["info"], "blue", "unchanged");
    assert_eq!(ev["Event"]["Attribute"][0]["deleted"], false);
    assert!(ev["Event"]["Tag"].as_array().is_none_or(Vec::is_empty), "{ev}");

    // a user publishes nothing, not even its own organisation's, nor through add or edit
    assert_eq!(status(&url, &blue, &format!("/events/publish/{blue_ev}"), json!({})).await, 403);
    assert_eq!(status(&url, &blue, &format!("/events/unpublish/{blue_ev}"), json!({})).await, 403);
    let published = json!({"Event": {"info": "p", "published": true}});
    assert_eq!(status(&url, &blue, "/events/add", published.clone()).await, 403);
    assert_eq!(status(&url, &blue, &format!("/events/edit/{blue_ev}"), published).await, 403);
    assert_eq!(store.event(blue_ev).await.unwrap()["Event"]["published"], false);

    // its own organisation's events: edit, tag, delete an attribute; a publisher publishes them
    assert_eq!(
        status(&url, &blue, &format!("/events/edit/{blue_ev}"), json!({"Event": {"info": "edited"}})).await,
        200
    );
    assert_eq!(status(&url, &blue, "/tags/attachTagToObject", json!({"uuid": blue_ev, "tag": "tlp:green"})).await, 200);
    assert_eq!(status(&url, &blue_pub, &format!("/events/publish/{blue_ev}"), json!({})).await, 200);
    assert_eq!(store.event(blue_ev).await.unwrap()["Event"]["published"], true);
    assert_eq!(status(&url, &blue, &format!("/attributes/delete/{blue_attr}"), json!({})).await, 200);

    // the admin: any event
    assert_eq!(status(&url, &admin, &format!("/events/unpublish/{blue_ev}"), json!({})).await, 200);
    assert_eq!(status(&url, &admin, &format!("/events/edit/{blue_ev}"), edit).await, 200);
    assert_eq!(status(&url, &blue, &format!("/events/delete/{admin_ev}"), json!({})).await, 403);
    assert_eq!(status(&url, &blue, &format!("/events/delete/{blue_ev}"), json!({})).await, 200);
    assert_eq!(status(&url, &admin, &format!("/events/delete/{admin_ev}"), json!({})).await, 200);

    // the role /users/view/me reports, as PyMISP reads it
    let me: Value = reqwest::Client::new()
        .get(format!("{url}/users/view/me"))
        .header("Authorization", &blue)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((me["Role"]["name"].as_str(), me["Role"]["perm_publish"].as_bool()), (Some("user"), Some(false)));
    assert_eq!(me["Organisation"]["name"], "blue");
}

/// MISP's `value` filter matches a composite attribute by either part
/// (value1/value2): the md5 of a sample finds its `filename|md5`, an address
/// its `domain|ip`. A `|` inside a non-composite value splits nothing.
#[tokio::test]
async fn value_search_matches_either_part_of_composite_attributes() {
    let (url, key, _store) = start().await;
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    let event = json!({"info": "composite", "Attribute": [
        {"type": "filename|md5", "value": format!("dropper.sh|{md5}")},
        {"type": "domain|ip", "value": "c2.example|203.0.113.9"},
        {"type": "text", "value": "left|right"},
    ]});
    let (s, v) = raw(&url, &key, "/events/add", event.to_string().into_bytes()).await;
    assert_eq!(s, 200, "{v}");
    for (values, expected) in [
        (json!([md5]), vec!["filename|md5"]),
        (json!(["203.0.113.9", "dropper.sh"]), vec!["filename|md5", "domain|ip"]),
        (json!(["c2.example"]), vec!["domain|ip"]),
        (json!(["c2.example|203.0.113.9"]), vec!["domain|ip"]),
        (json!(["right"]), vec![]),
        (json!({"NOT": [md5], "OR": ["c2.example", "dropper.sh"]}), vec!["domain|ip"]),
    ] {
        let body = json!({"value": values, "returnFormat": "json"});
        let (s, v) = raw(&url, &key, "/attributes/restSearch", body.to_string().into_bytes()).await;
        assert_eq!(s, 200, "{v}");
        let mut types: Vec<&str> =
            v["response"]["Attribute"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
        let mut expected = expected;
        types.sort();
        expected.sort();
        assert_eq!(types, expected, "{values}");
        // events are found the same way
        let (s, v) = raw(&url, &key, "/events/restSearch", body.to_string().into_bytes()).await;
        assert_eq!((s, v["response"].as_array().unwrap().len()), (200, usize::from(!expected.is_empty())), "{values}");
    }
}

//! The embedded store over HTTP without Python: MISP-shaped errors (bad key,
//! bad JSON, wrong types, oversized bodies, unknown endpoints), the client's
//! diagnoses, warninglists on paged searches, and export --sync.

use std::net::SocketAddr;
use std::sync::Arc;

use ioclab_intel::client::{ClientError, MispClient};
use ioclab_intel::export::config::ExportConfig;
use ioclab_intel::export::{self, ExportOptions};
use ioclab_intel::server::{self, AppState, BODY_LIMIT};
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
    let mut opts = ExportOptions {
        last_days: Some(1),
        all: false,
        tags: vec![],
        to_ids_only: true,
        warninglists: true,
        sync: false,
        overwrite: false,
        shared_only: false,
        output: Some(out.clone()),
    };
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

//! What the tests of the store's limits share: a file store served on loopback.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use ioclab_intel::server::{self, AppState, ConnLimits};
use ioclab_intel::store::{Role, Store, StoreLimits};
use ioclab_intel::warninglists::Warninglists;
use serde_json::{json, Value};

/// A served store, its URL and a user key.
pub struct Lab {
    pub url: String,
    pub key: String,
    pub store: Store,
    pub dir: tempfile::TempDir,
}

/// A file store (the concurrency of a real one) served on loopback; returns once it answers.
pub async fn lab(store_limits: StoreLimits, conn_limits: ConnLimits) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(&dir.path().join("misp.db"), store_limits).await.unwrap();
    let key = store.create_key("analyst@lab.example", Role::User).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = AppState { store: store.clone(), warninglists: Arc::new(Warninglists::empty()) };
    tokio::spawn(server::serve_on(listener, state, conn_limits, std::future::pending()));
    let lab = Lab { url: format!("http://{addr}"), key, store, dir };
    let r = reqwest::Client::new().get(format!("{}/servers/getVersion", lab.url)).header("Authorization", &lab.key);
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
    lab
}

pub async fn default_lab() -> Lab {
    lab(StoreLimits::default(), ConnLimits::default()).await
}

impl Lab {
    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .header("Authorization", &self.key)
            .json(body)
            .send()
            .await
            .unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> u16 {
        let r = reqwest::Client::new().get(format!("{}{path}", self.url)).header("Authorization", &self.key);
        r.send().await.unwrap().status().as_u16()
    }

    /// Adds an event tagged `tag` with `n` domain attributes `d{i}.{tag}.example`
    /// (`:` of the tag as `-`); returns the stored event.
    pub async fn event(&self, tag: &str, n: usize) -> Value {
        let slug = tag.replace(':', "-");
        let attrs: Vec<Value> =
            (0..n).map(|i| json!({"type": "domain", "value": format!("d{i}.{slug}.example")})).collect();
        let (s, _, v) =
            self.post("/events/add", &json!({"info": tag, "Tag": [{"name": tag}], "Attribute": attrs})).await;
        assert_eq!(s, 200, "{v}");
        v["Event"].clone()
    }

    /// How many attributes /attributes/restSearch answers for `filters`.
    pub async fn attribute_count(&self, filters: Value) -> usize {
        let (s, _, v) = self.post("/attributes/restSearch", &filters).await;
        assert_eq!(s, 200, "{filters}: {v}");
        v["response"]["Attribute"].as_array().unwrap().len()
    }
}

//! The store under a class: concurrent writers, filters of any size, caps
//! that answer 400 or 503 with what they are, searches that stop, and
//! connections that cannot lock a valid key out (issue 11).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{default_lab, lab};
use ioclab_intel::server::ConnLimits;
use ioclab_intel::store::StoreLimits;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_all_succeed_and_nothing_is_lost() {
    let lab = Arc::new(default_lab().await);
    let mut tasks = Vec::new();
    for w in 0..20 {
        let lab = lab.clone();
        tasks.push(tokio::spawn(async move {
            for e in 0..3 {
                let tag = format!("w{w}e{e}");
                let ev = lab.event(&tag, 5).await;
                let (s, _, v) = lab.post("/tags/attachTagToObject", &json!({"uuid": ev["uuid"], "tag": "x"})).await;
                assert_eq!(s, 200, "{v}");
                let (s, _, v) = lab.post("/sightings/add", &json!({"value": format!("d0.{tag}.example")})).await;
                assert_eq!(s, 200, "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (s, _, v) = lab.post("/events/index", &json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 60, "every event of every writer, once");
    assert_eq!(lab.attribute_count(json!({})).await, 300);
    assert_eq!(lab.attribute_count(json!({"tags": ["x"]})).await, 300, "every event tagged");
}

#[tokio::test]
async fn a_writer_waiting_past_its_bound_gets_503_with_retry_after() {
    let limits = StoreLimits { write_wait: Duration::from_millis(200), ..StoreLimits::default() };
    let lab = lab(limits, ConnLimits::default()).await;
    // another process holds SQLite's write lock (as `ioclab misp keys create` may)
    use sqlx::ConnectOptions;
    let db = lab.dir.path().join("misp.db");
    let mut other = sqlx::sqlite::SqliteConnectOptions::new().filename(db).connect().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let (s, headers, v) = lab.post("/events/add", &json!({"info": "blocked"})).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(headers.get("retry-after").unwrap(), "5");
    assert!(v["message"].as_str().unwrap().contains("retry"), "{v}");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let (s, _, v) = lab.post("/events/add", &json!({"info": "free again"})).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn a_sighting_by_value_records_every_attribute_with_it() {
    let lab = default_lab().await;
    for tag in ["a", "b", "c"] {
        let (s, _, v) = lab
            .post("/events/add", &json!({"info": tag, "Attribute": [{"type": "domain", "value": "same.example"}]}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let user = lab.store.user_for_key(&lab.key).await.unwrap().unwrap();
    let (first, n) = lab.store.add_sighting(&user, None, Some("same.example"), 0, "lab").await.unwrap();
    assert_eq!(n, 3);
    assert_eq!(first["Sighting"]["attribute_id"], "1");
    assert_eq!(first["Sighting"]["uuid"].as_str().unwrap().len(), 36);
    uuid::Uuid::parse_str(first["Sighting"]["uuid"].as_str().unwrap()).unwrap();
    let (s, _, v) = lab.post("/sightings/add", &json!({"value": "nothing.example"})).await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn filters_of_more_than_a_thousand_values_and_tags_work() {
    let lab = default_lab().await;
    lab.event("tlp:white", 3).await;
    lab.event("tlp:red", 2).await;
    // 1,200 names (SQLite refuses expressions deeper than 1,000 terms): two are known
    let mut tags: Vec<String> = (0..1200).map(|i| format!("unknown:{i}")).collect();
    tags.push("tlp:red".into());
    assert_eq!(lab.attribute_count(json!({"tags": tags})).await, 2);
    let mut values: Vec<String> = (0..2000).map(|i| format!("v{i}.example")).collect();
    values.push("d1.tlp-white.example".into());
    assert_eq!(lab.attribute_count(json!({"value": values})).await, 1);
    assert_eq!(lab.attribute_count(json!({"tags": {"NOT": tags}})).await, 3);
    assert_eq!(lab.attribute_count(json!({"tags": {"AND": ["tlp:red", "tlp:white"]}})).await, 0);
    assert_eq!(lab.attribute_count(json!({"value": ["%.tlp-red.example", "d0.tlp-white.example"]})).await, 3);
    let (s, _, v) = lab.post("/events/index", &json!({"tags": tags})).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn oversized_and_malformed_pages_and_filters_are_400_saying_why() {
    let lab = default_lab().await;
    lab.event("t", 3).await;
    let too_many: Vec<String> = (0..5001).map(|i| format!("t{i}")).collect();
    for (body, says) in [
        (json!({"tags": too_many}), "5000"),
        (json!({"limit": -1}), "limit"),
        (json!({"limit": 2.5}), "limit"),
        (json!({"limit": "ten"}), "limit"),
        (json!({"limit": 4611686018427387904_i64, "page": 3}), "page"),
        (json!({"timestamp": "-9223372036854775808d"}), "timestamp"),
        (json!({"last": "9223372036854775807w"}), "last"),
    ] {
        let (s, _, v) = lab.post("/attributes/restSearch", &body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    // limit 0 is MISP's "no limit"; a page past the end is empty
    assert_eq!(lab.attribute_count(json!({"limit": 0})).await, 3);
    assert_eq!(lab.attribute_count(json!({"limit": 2, "page": 2})).await, 1);
    assert_eq!(lab.attribute_count(json!({"limit": "2", "page": 9})).await, 0);
}

#[tokio::test]
async fn values_with_a_nul_byte_are_refused() {
    let lab = default_lab().await;
    for body in [
        json!({"info": "x", "Attribute": [{"type": "text", "value": "cut\u{0}here"}]}),
        json!({"info": "x\u{0}y"}),
        json!({"info": "x", "Attribute": [{"type": "text", "value": "a", "comment": "\u{0}"}]}),
        json!({"info": "x", "Tag": [{"name": "t\u{0}"}]}),
    ] {
        let (s, _, v) = lab.post("/events/add", &body).await;
        assert_eq!(s, 403, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains("NUL"), "{v}");
    }
    assert_eq!(lab.attribute_count(json!({})).await, 0);
}

#[tokio::test]
async fn a_search_over_its_budget_is_stopped_with_503_saying_so() {
    let limits = StoreLimits { search_budget: Duration::ZERO, ..StoreLimits::default() };
    let lab = lab(limits, ConnLimits::default()).await;
    lab.event("t", 500).await;
    let (s, _, v) = lab.post("/attributes/restSearch", &json!({"tags": ["t"]})).await;
    assert_eq!(s, 503, "{v}");
    assert!(v["message"].as_str().unwrap().contains("budget"), "{v}");
}

#[tokio::test]
async fn searches_past_the_slots_wait_then_503_while_keys_and_views_still_answer() {
    let limits = StoreLimits { heavy_searches: 2, queue_wait: Duration::from_millis(300), ..StoreLimits::default() };
    let lab = lab(limits, ConnLimits::default()).await;
    let id = lab.event("t", 2).await["id"].as_str().unwrap().to_string();
    // two searches in progress hold both slots (as slow clients of big answers do)
    let held = (lab.store.bounded().await.unwrap(), lab.store.bounded().await.unwrap());
    let (s, headers, v) = lab.post("/attributes/restSearch", &json!({})).await;
    assert_eq!(s, 503, "{v}");
    assert!(headers.contains_key("retry-after"));
    assert!(v["message"].as_str().unwrap().contains("2 searches"), "{v}");
    for path in ["/servers/getVersion".to_string(), "/users/view/me".into(), format!("/events/view/{id}")] {
        assert_eq!(lab.get(&path).await, 200, "{path}");
    }
    drop(held);
    assert_eq!(lab.attribute_count(json!({})).await, 2);
}

#[tokio::test]
async fn big_answers_are_streamed_whole_in_chunks() {
    let limits = StoreLimits { chunk_rows: 7, ..StoreLimits::default() };
    let lab = lab(limits, ConnLimits::default()).await;
    lab.event("a", 30).await;
    lab.event("b", 20).await;
    let (s, _, v) = lab.post("/attributes/restSearch", &json!({})).await;
    assert_eq!(s, 200);
    let ids: Vec<u64> = v["response"]["Attribute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>(), "every attribute once, in order, across chunks");
    // a page that spans chunks
    let (_, _, v) = lab.post("/attributes/restSearch", &json!({"limit": 10, "page": 2})).await;
    let ids: Vec<&str> =
        v["response"]["Attribute"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["11", "12", "13", "14", "15", "16", "17", "18", "19", "20"]);
    let r = reqwest::Client::new()
        .post(format!("{}/attributes/restSearch", lab.url))
        .header("Authorization", &lab.key)
        .json(&json!({"returnFormat": "csv", "requested_attributes": ["value"], "headerless": true}))
        .send()
        .await
        .unwrap();
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 50);
    assert!(csv.ends_with('\n') && !csv.contains("\n\n"), "{csv:?}");
    let (s, _, v) = lab.post("/events/restSearch", &json!({})).await;
    assert_eq!(s, 200);
    let counts: Vec<usize> =
        v["response"].as_array().unwrap().iter().map(|e| e["Event"]["Attribute"].as_array().unwrap().len()).collect();
    assert_eq!(counts, [30, 20]);
}

//! The endpoint event stream with many stored events: pages below a
//! cursor (the page's "Older events" link and the API's `next`), bad
//! cursors refused with a clear 400, the memory bound counted on the page,
//! lines that are not events counted, and ancestry found by guid.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

/// Event `i` of a big run: execve and dns_query in turn, every 10th a detection, processes chained by guid.
fn event(i: u64) -> Value {
    let name = if i % 2 == 0 { "execve" } else { "dns_query" };
    let mut e = json!({
        "info": {"event": {"name": name}, "utc_time": format!("2026-11-30T12:00:{:02}Z", i % 60),
                 "task": {"name": format!("proc{i}"), "pid": 1000 + i, "guuid": format!("g{i}")},
                 "parent_task": {"name": "parent", "guuid": format!("g{}", i.saturating_sub(1))}},
        "data": {"command_line": format!("cmd-{i} --flag"), "exe": {"path": format!("/usr/bin/proc{i}")}}
    });
    if i % 10 == 0 {
        e["detection"] = json!({"iocs": ["why.kunai.rocks"]});
    }
    e
}

/// A finished run of alice's whose `events.jsonl` holds `n` events (and `extra` lines after them).
async fn big_run(app: &App, alice: &mut Client, n: u64, extra: &str) -> String {
    let id = app.start_run(alice).await;
    app.follow(alice, &id).await;
    let mut lines: String = (0..n).map(|i| event(i).to_string() + "\n").collect();
    lines.push_str(extra);
    std::fs::write(app.state.runs().data().runs().join(&id).join("events.jsonl"), lines).unwrap();
    id
}

/// The `href` of the page's "Older events" link, unescaped.
fn older(html: &str) -> Option<String> {
    let end = html.find("\" rel=\"next\"")?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    Some(html[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// The detail links of a page's rows, in order.
fn rows(html: &str, id: &str) -> Vec<u64> {
    links(html, &format!("<td><a href=\"/endpoint/{id}/"))
}

/// The event numbers of the links that start with `mark`, in order.
fn links(html: &str, mark: &str) -> Vec<u64> {
    html.split(mark).skip(1).map(|s| s.split('"').next().unwrap().parse().unwrap()).collect()
}

#[tokio::test]
async fn the_stream_pages_through_every_event_with_its_filters() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = big_run(&app, &mut alice, 1200, "").await;
    let first = text(app.get(&mut alice, "/endpoint").await).await;
    assert!(first.contains("1200 events match, the newest 500 shown"), "{first}");
    assert_eq!(rows(&first, &id), (700..1200).rev().collect::<Vec<_>>());
    let next = older(&first).expect("an older page");
    assert!(next.contains(&format!("before={id}%3A700")), "{next}");
    let second = text(app.get(&mut alice, &next).await).await;
    assert!(second.contains("500 older ones shown"), "{second}");
    assert_eq!(rows(&second, &id), (200..700).rev().collect::<Vec<_>>());
    let third = text(app.get(&mut alice, &older(&second).unwrap()).await).await;
    assert_eq!(rows(&third, &id), (0..200).rev().collect::<Vec<_>>());
    assert!(older(&third).is_none(), "the last page links no older one");

    // the filters stay on the older pages
    let detections = text(app.get(&mut alice, "/endpoint?detections=on&name=execve&process=--flag").await).await;
    assert!(detections.contains("120 events match"), "{detections}");
    let page = text(app.get(&mut alice, "/endpoint?detections=on&process=cmd-11").await).await;
    assert_eq!(rows(&page, &id), [1190, 1180, 1170, 1160, 1150, 1140, 1130, 1120, 1110, 1100, 110]);
}

#[tokio::test]
async fn the_api_pages_with_next_until_every_event_came_once() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = big_run(&app, &mut alice, 650, "").await;
    let mut seen = Vec::new();
    let mut path = format!("/api/events?run={id}&limit=200");
    loop {
        let page = json_of(app.get(&mut alice, &path).await).await;
        assert_eq!(page["total"], 650);
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["run"], id.as_str());
            seen.push(e["event"]["info"]["task"]["pid"].as_u64().unwrap() - 1000);
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/api/events?run={id}&limit=200&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..650).rev().collect::<Vec<_>>());
    let det = json_of(app.get(&mut alice, "/api/events?detections=true&limit=3").await).await;
    let pids: Vec<u64> =
        det["events"].as_array().unwrap().iter().map(|e| e["event"]["info"]["task"]["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids, [1640, 1630, 1620]);
    assert_eq!(det["next"], format!("{id}:620"));
}

#[tokio::test]
async fn bad_cursors_are_a_clear_400() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let mut bob = app.login("bob").await;
    let id = big_run(&app, &mut alice, 10, "").await;
    for (before, says) in [
        ("live", "no `:` between the source and the number"),
        ("live:12x", "at character 7"),
        ("..%2Fetc:1", "neither `live` nor a run id"),
        ("x:99999999999999999999999", "too large"),
    ] {
        let resp = app.get(&mut alice, &format!("/endpoint?before={before}")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{before}");
        let body = text(resp).await;
        assert!(body.contains("before=") && body.contains(says), "{before}: {body}");
        let resp = app.get(&mut alice, &format!("/api/events?before={before}")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{before}");
        assert!(json_of(resp).await["error"].as_str().unwrap().contains(says));
    }
    // a cursor into a run bob may not see
    let resp = app.get(&mut bob, &format!("/endpoint?before={id}:3")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(text(resp).await.contains("not among the events you may see"));
}

#[tokio::test]
async fn events_beyond_the_memory_bound_are_counted_on_the_page() {
    let app = App::with_feed_memory(50).await;
    let mut alice = app.login("alice").await;
    let id = big_run(&app, &mut alice, 120, "").await;
    let page = text(app.get(&mut alice, "/endpoint").await).await;
    assert!(page.contains("50 events match"), "{page}");
    assert!(page.contains("70 older events are not kept in memory (the appliance keeps 50"), "{page}");
    assert_eq!(rows(&page, &id).last(), Some(&70));
    assert_eq!(app.get(&mut alice, &format!("/endpoint/{id}/69")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&mut alice, &format!("/endpoint/{id}/70")).await.status(), StatusCode::OK);
    let api = json_of(app.get(&mut alice, "/api/events").await).await;
    assert_eq!(api["not_kept"], 70);
}

#[tokio::test]
async fn lines_that_are_not_events_are_counted_not_fatal() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = big_run(&app, &mut alice, 3, "{\"info\": oops\n").await;
    let page = text(app.get(&mut alice, "/endpoint").await).await;
    assert!(page.contains("3 events match"), "the readable events still show: {page}");
    assert!(page.contains("1 lines are not endpoint events") && page.contains("line 4"), "{page}");
    assert_eq!(rows(&page, &id), [2, 1, 0]);
}

#[tokio::test]
async fn the_detail_links_the_parent_processes_the_agent_saw() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = big_run(&app, &mut alice, 300, "").await;
    let page = text(app.get(&mut alice, &format!("/endpoint/{id}/299")).await).await;
    assert!(page.contains("Parent processes seen by the agent"), "{page}");
    // g299's parent is g298, whose parent is g297...: the events showing them, nearest first, 64 at most
    let seen = page.split("Parent processes seen").nth(1).unwrap();
    let links = links(seen, &format!("<a href=\"/endpoint/{id}/"));
    assert_eq!(links, (235..299).rev().collect::<Vec<_>>());
    assert!(page.contains("cmd-299 --flag"));
}

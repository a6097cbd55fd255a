//! The run's pipeline and artifact pages, the pictures and the endpoint
//! event stream: for each role, and with markup in every value shown.

mod common;

use axum::http::{header, StatusCode};
use common::*;
use serde_json::json;

const RUN_PAGES: &[&str] = &["pipeline", "flow.svg", "report", "tree.svg", "contacts.svg", "misp", "iocs", "detection"];

/// Alice's finished run, its folder holding a report, a MISP event and IoC lines with markup in their values.
async fn finished_run(app: &App, alice: &mut Client) -> String {
    let id = app.start_run(alice).await;
    app.follow(alice, &id).await;
    let folder = app.state.runs().data().runs().join(&id);
    let report = json!({
        "target": {"category": "file", "file": {"name": "sample.sh", "size": 10}},
        "behavior": {"processes": [
            {"pid": 10, "ppid": 1, "process_name": "sh", "command_line": format!("sh -c '{MARKUP}'"), "calls": []},
            {"pid": 11, "ppid": 10, "process_name": "dig", "command_line": "dig why.kunai.rocks",
             "calls": [{"api": "dns_query", "arguments": {"query": "<i>evil</i>.example"}},
                       {"api": "connect", "arguments": {"dst": {"hostname": "why.kunai.rocks", "ip": "10.0.0.1", "port": 53}}}]}
        ]},
        "network": {"hosts": [{"ip": "10.0.0.1", "hostname": "<b>bold</b>.test"}]},
        "signatures": [{"name": "dns_ioc", "description": MARKUP, "severity": 3}],
        "dropped": [{"filepath": "/tmp/<script>.sh", "file": {"name": "x", "size": 3}}]
    });
    std::fs::write(folder.join("report.json"), report.to_string()).unwrap();
    let event = json!({"Event": {"info": MARKUP, "uuid": "e1", "published": false,
        "Tag": [{"name": "<b>tag</b>"}],
        "Attribute": [{"category": "Network activity", "type": "domain", "value": "<i>evil</i>.example", "to_ids": true}]}});
    std::fs::write(folder.join("misp-event.json"), event.to_string()).unwrap();
    let ioc = json!({"uuid": "u", "source": "ioclab", "value": "<i>evil</i>.example", "severity": 4});
    std::fs::write(folder.join("iocs.json"), format!("{ioc}\n")).unwrap();
    id
}

/// `html` shows markup as text only.
fn escaped(html: &str, path: &str) {
    assert!(!html.contains("<script>alert"), "{path}: markup rendered as markup");
    assert!(!html.contains("<i>evil"), "{path}");
    assert!(!html.contains("<b>"), "{path}");
}

#[tokio::test]
async fn the_run_pages_answer_their_owner_and_instructors_only() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let mut bob = app.login("bob").await;
    let mut teacher = app.login("teacher").await;
    let id = finished_run(&app, &mut alice).await;
    for page in RUN_PAGES {
        let path = format!("/runs/{id}/{page}");
        assert_eq!(app.get(&mut alice, &path).await.status(), StatusCode::OK, "owner {path}");
        assert_eq!(app.get(&mut teacher, &path).await.status(), StatusCode::OK, "instructor {path}");
        let other = app.get(&mut bob, &path).await;
        assert_eq!(other.status(), StatusCode::FORBIDDEN, "other trainee {path}");
        assert!(!text(other).await.contains("kunai"), "{path}: nothing of the run leaks");
        let nobody = app.get(&mut Client::default(), &path).await;
        assert_eq!(nobody.status(), StatusCode::SEE_OTHER, "nobody {path}");
        let missing = app.get(&mut alice, &format!("/runs/nope/{page}")).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "unknown run {page}");
    }
    let svg = app.get(&mut alice, &format!("/runs/{id}/tree.svg")).await;
    assert_eq!(svg.headers()[header::CONTENT_TYPE], "image/svg+xml");
}

#[tokio::test]
async fn the_pipeline_lights_the_stages_the_run_went_through() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = finished_run(&app, &mut alice).await;
    let html = text(app.get(&mut alice, &format!("/runs/{id}/pipeline")).await).await;
    for stage in ["sandbox", "misp", "publish", "export", "agent", "steps", "detection"] {
        assert!(html.contains(&format!("<span class=\"name\">{stage}</span>")), "{stage} in {html}");
    }
    // the fixture's run: sandbox and detection passed, the rest never started
    assert_eq!(html.matches("class=\"stage passed\"").count(), 2, "{html}");
    assert_eq!(html.matches("class=\"stage pending\"").count(), 5, "{html}");
    assert!(html.contains(&format!("href=\"/runs/{id}/detection\"")), "the detection artifact is one click away");
    assert!(html.contains(&format!("src=\"/runs/{id}/flow.svg\"")));
    assert!(html.contains("data-running=\"false\""), "a finished run opens no SSE stream");
    let flow = text(app.get(&mut alice, &format!("/runs/{id}/flow.svg")).await).await;
    assert_eq!(flow.matches("<rect class=\"bar passed\"").count(), 2, "{flow}");
    let js = app.get(&mut Client::default(), "/static/live.js").await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(text(js).await.contains("/events"), "the listener reads the run's SSE stream");
}

#[tokio::test]
async fn artifacts_show_their_content_as_text() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = finished_run(&app, &mut alice).await;
    let report = text(app.get(&mut alice, &format!("/runs/{id}/report")).await).await;
    escaped(&report, "report");
    assert!(report.contains("&#60;b&#62;bold&#60;/b&#62;.test"), "{report}");
    assert!(report.contains("/tmp/&#60;script&#62;.sh"), "dropped file listed");
    assert!(report.contains("dns_ioc"), "signature listed");
    let tree = text(app.get(&mut alice, &format!("/runs/{id}/tree.svg")).await).await;
    escaped(&tree, "tree.svg");
    assert_eq!(tree.matches("class=\"node\"").count(), 2);
    assert_eq!(tree.matches("class=\"edge\"").count(), 1);
    assert!(tree.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let contacts = text(app.get(&mut alice, &format!("/runs/{id}/contacts.svg")).await).await;
    escaped(&contacts, "contacts.svg");
    assert_eq!(contacts.matches("class=\"edge\"").count(), 2, "{contacts}");
    assert!(contacts.contains("DNS &lt;i&gt;evil&lt;/i&gt;.example"));
    let misp = text(app.get(&mut alice, &format!("/runs/{id}/misp")).await).await;
    escaped(&misp, "misp");
    assert!(misp.contains("not published"));
    assert!(misp.contains("&#60;b&#62;tag&#60;/b&#62;"));
    assert!(misp.contains("&#60;i&#62;evil&#60;/i&#62;.example"));
    let iocs = text(app.get(&mut alice, &format!("/runs/{id}/iocs")).await).await;
    escaped(&iocs, "iocs");
    assert!(iocs.contains("&#60;i&#62;evil&#60;/i&#62;.example"));
    let det = text(app.get(&mut alice, &format!("/runs/{id}/detection")).await).await;
    escaped(&det, "detection");
    assert!(det.contains("<pre class=\"hl\">"), "the detection section is highlighted: {det}");
    assert!(det.contains("why.kunai.rocks"));
}

#[tokio::test]
async fn a_run_without_artifacts_says_so() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let id = app.start_run(&mut alice).await;
    app.follow(&mut alice, &id).await;
    let report = app.get(&mut alice, &format!("/runs/{id}/report")).await;
    assert_eq!(report.status(), StatusCode::OK);
    assert!(text(report).await.contains("no sandbox report yet"));
    assert_eq!(app.get(&mut alice, &format!("/runs/{id}/tree.svg")).await.status(), StatusCode::NOT_FOUND);
    assert!(text(app.get(&mut alice, &format!("/runs/{id}/misp")).await).await.contains("no MISP event yet"));
}

#[tokio::test]
async fn the_endpoint_stream_filters_and_shows_each_trainee_their_own_events() {
    let app = App::new().await;
    let mut alice = app.login("alice").await;
    let mut bob = app.login("bob").await;
    let mut teacher = app.login("teacher").await;
    let id = finished_run(&app, &mut alice).await;
    assert_eq!(app.get(&mut Client::default(), "/endpoint").await.status(), StatusCode::SEE_OTHER);
    let all = text(app.get(&mut alice, "/endpoint").await).await;
    escaped(&all, "endpoint");
    assert!(all.contains("2 events match"), "{all}");
    assert!(all.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    let only = text(app.get(&mut alice, "/endpoint?detections=on").await).await;
    assert!(only.contains("1 events match"), "{only}");
    let named = text(app.get(&mut alice, "/endpoint?name=dns_query").await).await;
    assert!(named.contains("1 events match") && named.contains("dig"), "{named}");
    let none = text(app.get(&mut alice, "/endpoint?process=nothing-like-this").await).await;
    assert!(none.contains("0 events match") && none.contains("matches these filters"));
    let theirs = text(app.get(&mut teacher, "/endpoint").await).await;
    assert!(theirs.contains("2 events match"), "instructors see every run's events");
    let not_mine = text(app.get(&mut bob, "/endpoint").await).await;
    assert!(not_mine.contains("0 events match"), "{not_mine}");
    // the detection event is line 1 of the run's events
    let detail = format!("/endpoint/{id}/1");
    let page = text(app.get(&mut alice, &detail).await).await;
    escaped(&page, "detail");
    assert!(page.contains("<h2>Ancestry</h2>"));
    assert!(page.contains("<pre class=\"hl\">"), "its detection is highlighted");
    assert_eq!(app.get(&mut bob, &detail).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get(&mut alice, &format!("/endpoint/{id}/9")).await.status(), StatusCode::NOT_FOUND);
}

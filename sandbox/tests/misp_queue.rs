//! The API's queue worker sends each report to MISP when `[reporting.misp]`
//! is enabled; a MISP failure is the report's `misp_error`, never a failed task.

mod fixture;

use std::time::Duration;

use ioclab_intel::client::MispClient;
use ioclab_intel::store::Role;
use ioclab_sandbox::client::{CuckooClient, SubmitOptions};
use ioclab_sandbox::misp::ReportingMisp;
use ioclab_sandbox::Report;
use serde_json::json;

/// Submits the fixture dropper and waits for its final status; returns it and the report.
fn detonate(s: &fixture::Server) -> (String, Report) {
    fixture::block_on(async {
        let client = CuckooClient::new(&s.url, None);
        let id = client.submit_file(&fixture::fixture_path("dropper.sh"), &SubmitOptions::default()).await.unwrap();
        loop {
            let task = client.task(id).await.unwrap();
            let status = task["status"].as_str().unwrap().to_string();
            if status == "reported" || status.starts_with("failed") {
                return (status, client.report(id).await.unwrap());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[test]
fn each_report_goes_to_misp_and_a_misp_failure_only_notes_it() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = rt.block_on(fixture::embedded_misp(dir.path(), Role::User));
    let cfg = ReportingMisp {
        enabled: true,
        url: url.clone(),
        apikey: key.clone(),
        sandbox_name: "queue-test".into(),
        ..Default::default()
    };

    let s = fixture::serve_with(None, cfg.clone());
    let (status, report) = detonate(&s);
    assert_eq!(status, "reported");
    assert_eq!(report.misp_error, None);
    let sha256 = report.target.file.as_ref().unwrap().sha256.unwrap().to_string();
    let events = rt.block_on(async {
        let misp = MispClient::new(&url, &key, true, None).unwrap();
        misp.post("/attributes/restSearch", &json!({"type": "filename|sha256"})).await.unwrap()
    });
    let attrs = events["response"]["Attribute"].as_array().unwrap();
    assert_eq!(attrs.len(), 1, "{events}");
    assert_eq!(attrs[0]["value"], format!("dropper.sh|{sha256}"));
    drop(s);

    // MISP down: the task is still reported, its report says what failed
    let down = ReportingMisp { url: "http://127.0.0.1:9".into(), ..cfg };
    let s = fixture::serve_with(None, down);
    let (status, report) = detonate(&s);
    assert_eq!(status, "reported");
    let err = report.misp_error.unwrap();
    assert!(err.contains("cannot connect") && err.contains("to-misp --task 1"), "{err}");
}

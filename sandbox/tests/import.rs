//! `ioclab sandbox import`'s store side: a CAPE report becomes a reported
//! task that the running API serves in Cuckoo's shape; a failed import
//! leaves no task behind.

mod fixture;

use ioclab_sandbox::api::db::TaskDb;
use ioclab_sandbox::api::import::import;
use ioclab_sandbox::Report;

#[test]
fn an_imported_cape_report_is_a_reported_task_the_api_serves() {
    let s = fixture::serve(None);
    let storage = s.storage.path().to_path_buf();
    fixture::block_on(async {
        let db = TaskDb::open(&storage.join("sandbox.db")).await.unwrap();
        let r = Report::from_file(&fixture::fixture_path("cape-report.json")).unwrap();
        let id = import(&db, &storage, r, "cape-report.json").await.unwrap();
        let task = db.view(id).await.unwrap().unwrap();
        assert_eq!((task["status"].as_str(), task["category"].as_str()), (Some("reported"), Some("file")));
        assert_eq!(task["target"], "invoice.exe");
        assert_eq!(task["sample"]["md5"], "ab2c4563c7c42dc830026d67a5e76ea6");
        assert_eq!(task["started_on"], "2025-11-21 15:38:32");
        assert_eq!(task["custom"], "imported from cape-report.json (task 4711 there)");

        let body = reqwest::get(format!("{}/tasks/report/{id}", s.url)).await.unwrap().bytes().await.unwrap();
        let served = Report::from_slice(&body, "served").unwrap();
        assert_eq!(served.info.id, id as u64);
        assert_eq!(served.network.hosts.len(), 2);
        // rewritten in Cuckoo's shape: hosts as strings, one guest path
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["network"]["hosts"][0], "203.0.113.7");
        assert_eq!(v["dropped"][0]["filepath"], "C:\\Users\\user\\AppData\\Local\\Temp\\stage2.exe");

        // a report without a target still imports (Cuckoo3's post.json), named after its file
        let r = Report::from_file(&fixture::fixture_path("cuckoo3-post.json")).unwrap();
        let id3 = import(&db, &storage, r, "/x/post.json").await.unwrap();
        let t = db.view(id3).await.unwrap().unwrap();
        assert_eq!((t["target"].as_str(), t["sample"].is_null()), (Some("post.json"), true));
    });
}

#[test]
fn a_failed_import_leaves_no_task() {
    let dir = tempfile::tempdir().unwrap();
    // the storage is a file: the task's folder cannot be made
    let storage = dir.path().join("not-a-folder");
    std::fs::write(&storage, b"").unwrap();
    fixture::block_on(async {
        let db = TaskDb::open(&dir.path().join("sandbox.db")).await.unwrap();
        let r = Report::from_file(&fixture::fixture_path("cuckoo2-report.json")).unwrap();
        let e = import(&db, &storage, r, "cuckoo2-report.json").await.unwrap_err().to_string();
        assert!(e.contains("not-a-folder"), "{e}");
        assert!(db.list(100, 0).await.unwrap().is_empty());
    });
}

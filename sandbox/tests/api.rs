//! The Cuckoo API over real HTTP, with the fixture detonator (no root needed).

mod fixture;

use std::io::Read;
use std::time::Duration;

use fixture::{block_on, fixture_path, serve, Server};
use ioclab_sandbox::Report;
use proptest::prelude::*;
use serde_json::Value;

const TOKEN: &str = "s3cr3tT0kenForTheTests";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(s: &Server, path: &str) -> (u16, Vec<u8>) {
    let r = client().get(format!("{}{path}", s.url)).bearer_auth(TOKEN).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

async fn get_json(s: &Server, path: &str) -> (u16, Value) {
    let (code, body) = get(s, path).await;
    (code, serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body))))
}

async fn submit(s: &Server, name: &str, bytes: Vec<u8>, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    for (k, v) in extra {
        form = form.text(k.to_string(), v.to_string());
    }
    let r =
        client().post(format!("{}/tasks/create/file", s.url)).bearer_auth(TOKEN).multipart(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls the task until it reaches a final status (the test runner's own timeout bounds a hang).
async fn wait_final(s: &Server, id: i64) -> Value {
    loop {
        let (_, v) = get_json(s, &format!("/tasks/view/{id}")).await;
        let status = v["task"]["status"].as_str().unwrap().to_string();
        if matches!(status.as_str(), "reported" | "failed_analysis" | "failed_reporting") {
            return v["task"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_submitted_file_is_detonated_reported_and_served_like_cuckoo() {
    let s = serve(Some(TOKEN));
    let sample = std::fs::read(fixture_path("dropper.sh")).unwrap();
    block_on(async {
        let (code, v) =
            submit(&s, "dropper.sh", sample.clone(), &[("timeout", "30"), ("options", "procmemdump=yes")]).await;
        assert_eq!((code, v["task_id"].as_i64()), (200, Some(1)), "{v}");
        let task = wait_final(&s, 1).await;
        assert_eq!(task["status"], "reported", "{task}");
        assert_eq!(task["category"], "file");
        assert_eq!(task["target"], "dropper.sh");
        assert_eq!(task["timeout"], 30);
        assert_eq!(task["sample"]["sha256"], sha256_hex(&sample));
        assert_eq!(task["sample"]["file_size"], sample.len());
        assert!(task["added_on"].as_str().unwrap().len() == 19 && task["errors"] == serde_json::json!([]));

        let (code, body) = get(&s, "/tasks/report/1").await;
        assert_eq!(code, 200);
        let report = Report::from_slice(&body, "report").unwrap();
        assert_eq!(report.info.id, 1);
        assert_eq!(report.target.file.as_ref().unwrap().sha256.unwrap().to_string(), sha256_hex(&sample));
        assert!(report.info.options.contains("procmemdump=yes"));
        assert!(report.info.score > 0.0);
        assert_eq!(get(&s, "/tasks/report/1/json").await.1, body);

        // the folder as Cuckoo's bzip2 tarball
        let (code, tarball) = get(&s, "/tasks/report/1/all").await;
        assert_eq!(code, 200);
        let mut ar = tar::Archive::new(bzip2::read::BzDecoder::new(&tarball[..]));
        let mut files = std::collections::BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            files.insert(e.path().unwrap().to_string_lossy().into_owned(), content);
        }
        assert_eq!(files["binary"], sample);
        assert_eq!(files["reports/report.json"], body);
        let dropped = &report.dropped[0];
        assert_eq!(sha256_hex(&files[&dropped.file.path]), dropped.file.sha256.unwrap().to_string());

        let (code, v) = get_json(&s, &format!("/files/view/sha256/{}", sha256_hex(&sample))).await;
        assert_eq!((code, v["sample"]["file_size"].as_u64()), (200, Some(sample.len() as u64)));
        let md5 = v["sample"]["md5"].as_str().unwrap().to_string();
        assert_eq!(get_json(&s, &format!("/files/view/md5/{md5}")).await.0, 200);
        assert_eq!(get(&s, &format!("/files/get/{}", sha256_hex(&sample))).await, (200, sample.clone()));
        let (_, v) = get_json(&s, "/tasks/list").await;
        assert_eq!(v["tasks"].as_array().unwrap().len(), 1);
        assert_eq!(get_json(&s, "/tasks/list/0").await.1["tasks"].as_array().unwrap().len(), 0);
        assert_eq!(get_json(&s, "/tasks/list/5/1").await.1["tasks"].as_array().unwrap().len(), 0);
        let (_, v) = get_json(&s, "/cuckoo/status").await;
        assert_eq!(
            (v["version"].as_str(), v["tasks"]["reported"].as_i64(), v["tasks"]["total"].as_i64()),
            (Some("2.0.7"), Some(1), Some(1))
        );
        let (_, v) = get_json(&s, "/machines/list").await;
        assert_eq!(v["machines"][0]["platform"], "linux");

        // delete: gone, with its folder; the sample stays (Cuckoo keeps binaries)
        let (code, v) = get_json(&s, "/tasks/delete/1").await;
        assert_eq!((code, v["status"].as_str()), (200, Some("OK")));
        assert_eq!(get_json(&s, "/tasks/view/1").await, (404, serde_json::json!({"message": "Task not found"})));
        assert_eq!(get_json(&s, "/tasks/report/1").await, (404, serde_json::json!({"message": "Report not found"})));
        assert!(!s.storage.path().join("analyses/1").exists());
        assert_eq!(get_json(&s, "/tasks/delete/1").await.0, 404);
    });
}

#[test]
fn url_tasks_and_failed_detonations() {
    let s = serve(Some(TOKEN));
    block_on(async {
        // the form misp-modules' cuckoo_submit sends
        let r = client()
            .post(format!("{}/tasks/create/url", s.url))
            .bearer_auth(TOKEN)
            .form(&[("url", "http://why.kunai.rocks/"), ("owner", "MISP")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.json::<Value>().await.unwrap()["task_id"].as_i64().unwrap();
        let task = wait_final(&s, id).await;
        assert_eq!(
            (task["status"].as_str(), task["category"].as_str(), task["owner"].as_str()),
            (Some("reported"), Some("url"), Some("MISP"))
        );
        let (_, report) = get_json(&s, &format!("/tasks/report/{id}")).await;
        assert_eq!(report["target"]["url"], "http://why.kunai.rocks/");

        for bad in [&[("url", "")][..], &[("url", "ftp://x")], &[("nope", "x")]] {
            let r =
                client().post(format!("{}/tasks/create/url", s.url)).bearer_auth(TOKEN).form(bad).send().await.unwrap();
            assert_eq!(r.status(), 400, "{bad:?}");
            assert!(r.json::<Value>().await.unwrap()["message"].is_string());
        }

        // a data file: no package runs it; the task fails with the reason
        let (code, v) = submit(&s, "blob.dat", vec![0, 1, 2, 3], &[]).await;
        assert_eq!(code, 200);
        let task = wait_final(&s, v["task_id"].as_i64().unwrap()).await;
        assert_eq!(task["status"], "failed_analysis");
        assert!(task["errors"][0].as_str().unwrap().contains("no package can run blob.dat"), "{task}");
        assert_eq!(get_json(&s, &format!("/tasks/report/{}", v["task_id"])).await.0, 404);
    });
}

fn tasks_and_binaries(s: &Server) -> (usize, usize) {
    let tasks = block_on(get_json(s, "/tasks/list")).1["tasks"].as_array().unwrap().len();
    let bins = std::fs::read_dir(s.storage.path().join("binaries")).map(|d| d.count()).unwrap_or(0);
    (tasks, bins)
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = serve(Some(TOKEN));
    block_on(async {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty.sh", vec![], "is empty"),
            ("big.sh", vec![b'a'; (1 << 20) + 1], "1048576-byte limit"),
            ("../escape.sh", b"x".to_vec(), "is a path"),
            ("a/../../b", b"x".to_vec(), "is a path"),
            // a raw NUL cannot even be in a multipart header: the parser refuses it (check_filename's own test covers NUL)
            ("nul\0.sh", b"x".to_vec(), "malformed multipart body"),
        ];
        for (name, bytes, expected) in cases {
            let (code, v) = submit(&s, name, bytes, &[]).await;
            assert_eq!(code, 400, "{name:?}: {v}");
            assert!(v["message"].as_str().unwrap().contains(expected), "{name:?}: {v}");
        }
        let (code, v) = submit(&s, "ok.sh", b"echo".to_vec(), &[("timeout", "soon")]).await;
        assert_eq!((code, v["message"].as_str().unwrap().starts_with("timeout")), (400, true), "{v}");
        // malformed multipart: wrong boundary, truncated body, no file
        for (ctype, body) in [
            (
                "multipart/form-data; boundary=XYZ",
                "--ABC\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nx\r\n--ABC--\r\n",
            ),
            (
                "multipart/form-data; boundary=XYZ",
                "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nxx",
            ),
            ("multipart/form-data", "garbage"),
            (
                "multipart/form-data; boundary=XYZ",
                "--XYZ\r\nContent-Disposition: form-data; name=\"timeout\"\r\n\r\n5\r\n--XYZ--\r\n",
            ),
        ] {
            let r = client()
                .post(format!("{}/tasks/create/file", s.url))
                .bearer_auth(TOKEN)
                .header("content-type", ctype)
                .body(body)
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            assert_eq!(code, 400, "{body:?}: {v}");
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
        assert_eq!(get_json(&s, "/tasks/view/999").await, (404, serde_json::json!({"message": "Task not found"})));
        assert_eq!(get_json(&s, "/tasks/view/abc").await.0, 404);
        assert_eq!(
            get_json(&s, "/tasks/report/999/all").await,
            (404, serde_json::json!({"message": "Report not found"}))
        );
        assert_eq!(get_json(&s, "/tasks/report/1/pdf").await.0, 400);
        assert_eq!(get_json(&s, "/files/get/00").await.0, 400);
        assert_eq!(
            get_json(&s, &format!("/files/get/{}", "0".repeat(64))).await,
            (404, serde_json::json!({"message": "File not found"}))
        );
        assert_eq!(get_json(&s, "/nowhere").await.0, 404);
    });
    assert_eq!(tasks_and_binaries(&s), (0, 0), "bad input changed nothing");
}

#[test]
fn the_token_is_required_exactly_as_cuckoo_2_0_7() {
    let s = serve(Some(TOKEN));
    let expected = serde_json::json!({"message": "Authentication in the form of an 'Authorization: Bearer <TOKEN>' header is required"});
    block_on(async {
        for auth in [None, Some("Bearer wrong"), Some(TOKEN), Some("Token s3cr3tT0kenForTheTests")] {
            let mut req = client().post(format!("{}/tasks/create/file", s.url));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let form = reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(b"echo".to_vec()).file_name("x.sh"));
            let r = req.multipart(form).send().await.unwrap();
            assert_eq!(r.status(), 401, "{auth:?}");
            assert_eq!(r.json::<Value>().await.unwrap(), expected);
        }
        let r = client().get(format!("{}/cuckoo/status", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 401);
    });
    assert_eq!(tasks_and_binaries(&s), (0, 0));
    // --no-auth: no token at all
    let open = serve(None);
    let r = block_on(client().get(format!("{}/cuckoo/status", open.url)).send()).unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn tasks_left_running_by_a_killed_server_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sandbox.db");
    block_on(async {
        use ioclab_sandbox::api::db::{NewTask, TaskDb};
        let db = TaskDb::open(&db_path).await.unwrap();
        let id = db
            .create(&NewTask { category: "url", target: "http://x/".into(), timeout: 5, ..Default::default() })
            .await
            .unwrap();
        let claimed = db.claim_next().await.unwrap().unwrap();
        assert_eq!((claimed.id, claimed.status.as_str()), (id, "running"));
        // the server dies here; a new one opens the same database
        let db = TaskDb::open(&db_path).await.unwrap();
        assert_eq!(db.fail_interrupted().await.unwrap(), vec![id]);
        let v = db.view(id).await.unwrap().unwrap();
        assert_eq!(v["status"], "failed_analysis");
        assert!(v["errors"][0].as_str().unwrap().contains("server stopped during the analysis"), "{v}");
        assert!(db.fail_interrupted().await.unwrap().is_empty());
    });
}

fn multipart_body(boundary: &str, parts: &[(String, Option<String>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, content) in parts {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(f) = filename {
            out.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any multipart body: a task (only for a valid file) or a 400 with a message; never a 5xx, never a change on error.
    #[test]
    fn multipart_bodies_are_accepted_or_refused_cleanly(
        parts in prop::collection::vec((
            prop_oneof![Just("file".to_string()), Just("timeout".to_string()), Just("options".to_string()), "[a-z]{1,6}"],
            prop::option::of("[a-zA-Z0-9._/\\\\-]{0,12}"),
            prop::collection::vec(any::<u8>(), 0..64),
        ), 0..4),
        cut in prop::option::of(0usize..400),
        garbage in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let s = serve(None);
        let mut body = multipart_body("B0UNDARY", &parts);
        if let Some(c) = cut { body.truncate(c.min(body.len())); body.extend_from_slice(&garbage); }
        let (code, v) = block_on(async {
            let r = client().post(format!("{}/tasks/create/file", s.url))
                .header("content-type", "multipart/form-data; boundary=B0UNDARY").body(body).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap())
        });
        prop_assert!(code == 200 || code == 400, "{} {}", code, v);
        if code == 400 {
            prop_assert!(!v["message"].as_str().unwrap().is_empty());
            prop_assert_eq!(tasks_and_binaries(&s), (0, 0));
        } else {
            prop_assert!(v["task_id"].as_i64().is_some());
        }
    }
}

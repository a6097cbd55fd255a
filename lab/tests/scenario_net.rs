//! A scenario's services as the fake internet runs them
//! (`LabNetConfig::from_scenario`): no namespace needed.

use std::path::{Path, PathBuf};

use ioclab_lab::network::LabNetConfig;
use ioclab_lab::scenario::load;
use ioclab_sandbox::fakenet::ServiceKind;

/// A copy of the shipped `id` in a temp folder named after it.
fn copy(id: &str) -> (tempfile::TempDir, PathBuf) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab-scenarios").join(id);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(id);
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    (tmp, dir)
}

#[test]
fn services_serve_their_body_file_and_send_their_text() {
    let (_t, dir) = copy("dns-ioc-why-kunai-rocks");
    let f = dir.join("scenario.yaml");
    std::fs::write(dir.join("stage.b64"), "ZWNobyBsYWIK\n").unwrap();
    let sha = ioclab_sandbox::sample::facts(&dir.join("stage.b64")).unwrap().sha256;
    let text = std::fs::read_to_string(&f).unwrap().replace(
        "  services:\n    - {id: web, kind: http_sink, address: 127.0.66.80, port: 80}\n",
        "  services:\n    - {id: web, kind: http_sink, address: 127.0.66.80, port: 80}\n    \
         - {id: stager, kind: http_sink, address: 127.0.66.81, port: 8080, body: stage.b64, content_type: text/plain}\n    \
         - {id: c2, kind: c2, address: 127.0.66.82, port: 4444, send: \"id\\nexit\\n\"}\n",
    );
    let text = text.replace("misp:\n", &format!("assets:\n  - {{file: stage.b64, sha256: {sha}}}\nmisp:\n"));
    std::fs::write(&f, text).unwrap();
    let loaded = load::load(&dir).unwrap_or_else(|d| panic!("{d:#?}"));

    let config = LabNetConfig::from_scenario(&loaded).unwrap();
    let kinds: Vec<(String, &ServiceKind)> =
        config.services.iter().map(|s| (format!("{}:{}", s.ip.unwrap(), s.port), &s.kind)).collect();
    assert_eq!(kinds.len(), 3);
    match kinds[0] {
        (ref at, ServiceKind::Http { body, content_type }) => {
            assert_eq!(at, "127.0.66.80:80");
            assert!(String::from_utf8_lossy(body).contains("dns-ioc-why-kunai-rocks") && content_type == "text/html");
        }
        ref other => panic!("{other:?}"),
    }
    assert!(
        matches!(kinds[1], (ref at, ServiceKind::Http { body, content_type })
            if at == "127.0.66.81:8080" && body == b"ZWNobyBsYWIK\n" && content_type == "text/plain"),
        "{:?}",
        kinds[1]
    );
    assert!(
        matches!(kinds[2], (ref at, ServiceKind::C2 { send }) if at == "127.0.66.82:4444" && send == b"id\nexit\n"),
        "{:?}",
        kinds[2]
    );
    assert_eq!(config.records.len(), 2);

    // the file went away after loading: a clear error naming it, not a panic
    std::fs::remove_file(dir.join("stage.b64")).unwrap();
    let err = LabNetConfig::from_scenario(&loaded).unwrap_err().to_string();
    assert!(err.contains("stage.b64") && err.contains("stager"), "{err}");
}

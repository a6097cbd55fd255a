//! `ioclab sandbox config` and `ioclab sandbox to-misp`, run as a user would.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ioclab")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn config_dump_is_a_commented_sandbox_toml_and_a_bad_file_names_its_key() {
    let (code, dump, err) = run(&["sandbox", "config", "--dump"]);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "[processing.misp]",
        "[reporting.misp]",
        "maxioc = 100",
        "only_ids = true",
        "mode = \"ipaddr hashes url\"",
        "threat_level = 4",
        "tag = [\"Cuckoo\"]",
        "publish = false",
        "url = \"http://127.0.0.1:8080\"",
        "# Cuckoo: reporting.conf [misp] min_malscore",
    ] {
        assert!(dump.contains(needle), "--dump lacks {needle}: {dump}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox.toml");
    std::fs::write(&file, &dump).unwrap();
    let (code, out, err) = run(&["sandbox", "config", "-c", file.to_str().unwrap()]);
    assert_eq!(code, 0, "the dump is a valid sandbox.toml: {err}");
    assert!(out.contains("[reporting.misp]"), "{out}");
    std::fs::write(&file, "[reporting.misp]\napikey = \"s3cret\"\nthreat_level = 9\n").unwrap();
    let (code, _, err) = run(&["sandbox", "config", "-c", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("sandbox.toml") && err.contains("reporting.misp.threat_level") && err.contains("line 3"),
        "{err}"
    );
    std::fs::write(&file, "[reporting.misp]\napikey = \"s3cret\"\n").unwrap();
    let (code, out, _) = run(&["sandbox", "config", "-c", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(!out.contains("s3cret"), "keys are not printed: {out}");
}

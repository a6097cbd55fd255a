//! `ioclab lab list|check|schema`, run as an author would.

use std::path::{Path, PathBuf};

mod common;
use common::{ioclab, output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `ioclab lab ARGS` run from `dir` with IOCLAB_SCENARIOS unset (or set to `env`).
fn lab(dir: &Path, env: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ioclab();
    cmd.current_dir(dir).arg("lab").args(args).env_remove("IOCLAB_SCENARIOS");
    if let Some(e) = env {
        cmd.env("IOCLAB_SCENARIOS", e);
    }
    output(&mut cmd)
}

/// A scenario folder copied from the shipped one into `into/<id>`.
fn copy_good(into: &Path) -> PathBuf {
    let from = root().join("lab-scenarios/dns-ioc-why-kunai-rocks");
    let to = into.join("dns-ioc-why-kunai-rocks");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            continue; // the committed replay/: a run, not a file of the scenario
        }
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

#[test]
fn list_shows_the_shipped_scenarios_from_the_default_folder() {
    let (code, out, err) = lab(root(), None, &["list"]);
    assert_eq!(code, 0, "{err}");
    let row = out.lines().find(|l| l.starts_with("dns-ioc-why-kunai-rocks")).unwrap_or_else(|| panic!("{out}"));
    for word in ["beginner", "15", "T1071.004", "Why Kunai rocks"] {
        assert!(row.contains(word), "{word} missing from {row:?}");
    }
}

#[test]
fn list_and_check_follow_dir_and_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = lab(tmp.path(), None, &["list"]);
    assert_ne!(code, 0, "no lab-scenarios/ here: must fail");
    assert!(err.contains("lab-scenarios") && err.contains("IOCLAB_SCENARIOS"), "{err}");

    let dir = copy_good(&tmp.path().join("mine"));
    let (code, out, err) = lab(tmp.path(), Some(&tmp.path().join("mine")), &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dns-ioc-why-kunai-rocks"), "{out}");

    std::fs::write(dir.join("scenario.yaml"), "id: dns-ioc-why-kunai-rocks\n").unwrap();
    let mine = tmp.path().join("mine");
    let (code, _, err) = lab(tmp.path(), None, &["list", "--dir", mine.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid scenario") && err.contains("ioclab lab check"), "{err}");
}

#[test]
fn check_passes_on_the_shipped_scenarios() {
    let (code, out, err) = lab(root(), None, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok dns-ioc-why-kunai-rocks") && out.contains("0 error(s), 0 warning(s)"), "{out}");
}

#[test]
fn check_prints_each_error_with_its_place_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_good(tmp.path());
    let f = dir.join("scenario.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let text = text.replace("dig #{domain}", "dig #{name}").replace("address: 127.0.66.80", "address: 203.0.113.9");
    std::fs::write(&f, &text).unwrap();
    let (code, out, _) = lab(tmp.path(), None, &["check", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cmd = format!("{}:{}:16: error: steps[0].run.command: #{{name}} is used", f.display(), line("dig #{name}"));
    assert!(out.contains(&cmd), "{cmd}\nnot in\n{out}");
    let addr = format!("{}:{}:", f.display(), line("203.0.113.9"));
    assert!(out.lines().any(|l| l.starts_with(&addr) && l.contains("network.services[0].address")), "{out}");
    assert!(out.contains("2 error(s)"), "{out}");
}

#[test]
fn check_of_a_missing_path_is_an_error_naming_it() {
    let (code, out, _) = lab(root(), None, &["check", "no/such/scenario"]);
    assert_eq!(code, 1);
    assert!(out.contains("no/such/scenario") && out.contains("cannot read"), "{out}");
}

#[test]
fn schema_prints_a_json_schema_of_both_files() {
    let (code, out, err) = lab(root(), None, &["schema"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"), "{v}");
    for key in ["id", "attack", "network", "sample", "misp", "steps", "expect", "questions", "cleanup"] {
        assert!(v["properties"].get(key).is_some(), "no {key} in the schema");
    }
    assert_eq!(v["additionalProperties"], false, "unknown keys must be refused");
    let (code, out, _) = lab(root(), None, &["schema", "--answers"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["properties"].get("answers").is_some(), "{v}");
}

#[test]
fn help_teaches_with_examples() {
    for sub in ["list", "check", "schema"] {
        let (code, out, _) = lab(root(), None, &[sub, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Examples:") && out.contains(&format!("ioclab lab {sub}")), "{sub}: {out}");
    }
}

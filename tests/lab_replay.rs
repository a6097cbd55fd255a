//! `ioclab lab replay` and `ioclab lab record` as a trainer runs them, and
//! every shipped scenario's committed replay played.

#[path = "../lab/tests/common/recording.rs"]
mod recording;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{ioclab, output};
use recording::{copy_dir, copy_fixture};

const ID: &str = "malicious-script-dropper";
const RUN: &str = "malicious-script-dropper-20261130T090000Z";
/// Who plays replays in these tests when they run as root: nobody, to show no privilege is needed.
const NOBODY: u32 = 65534;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    root().join(recording::FIXTURE)
}

/// The fixture copied to `to` as a run of the scenario at `scen` as it is now.
fn stamped_fixture(scen: &Path, to: &Path) {
    let s = ioclab_lab::scenario::load::load(scen).expect("the scenario loads").scenario;
    copy_fixture(&fixture(), to, s.uuid.as_str(), s.version);
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Gives `path` and everything under it to `uid`.
fn chown_all(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_all(&e.unwrap().path(), uid);
        }
    }
}

/// A temp folder holding `scenarios/ID` (the shipped scenario, the fixture as
/// its replay) and an empty data folder, owned by nobody when we are root.
fn lab_with_replay() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let scen = tmp.path().join("scenarios").join(ID);
    copy_dir(&root().join("lab-scenarios").join(ID), &scen);
    stamped_fixture(&scen, &scen.join("replay"));
    std::fs::create_dir(tmp.path().join("data")).unwrap();
    if is_root() {
        chown_all(tmp.path(), NOBODY);
    }
    tmp
}

/// `ioclab lab ARGS --dir <tmp>/scenarios --data <tmp>/data`, as nobody when we are root.
fn lab(tmp: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd: Command = ioclab();
    cmd.arg("lab").args(args).arg("--dir").arg(tmp.join("scenarios")).arg("--data").arg(tmp.join("data"));
    cmd.env_remove("IOCLAB_DATA").env_remove("IOCLAB_SCENARIOS");
    if is_root() {
        cmd.uid(NOBODY).gid(NOBODY); // std drops the supplementary groups too
    }
    output(&mut cmd)
}

/// The run folders under `<tmp>/data/runs`.
fn runs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp.join("data/runs")).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
}

#[test]
fn replay_prints_the_recorded_timeline_without_privileges() {
    let tmp = lab_with_replay();
    let (code, out, err) = lab(tmp.path(), &["replay", ID, "--instant"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for word in
        ["sandbox", "report.json", "misp-event.json", "iocs.json", "script-hash", "beacon-lookup", "run folder:"]
    {
        assert!(out.contains(word), "{word} missing from:\n{out}");
    }
    let played = runs(tmp.path());
    assert_eq!(played.len(), 1, "{played:?}");
    assert!(out.contains(&played[0].display().to_string()));
    for f in ["report.json", "events.jsonl", "timeline.jsonl", "run.json"] {
        assert!(played[0].join(f).is_file(), "{f}");
    }
    assert!(std::fs::read_to_string(played[0].join("run.json")).unwrap().contains("\"mode\": \"replay\""));
}

#[test]
fn replay_exits_1_when_the_recorded_run_failed() {
    let tmp = lab_with_replay();
    let rec = tmp.path().join("scenarios").join(ID).join("replay");
    let m = std::fs::read_to_string(rec.join("run.json")).unwrap().replace("\"passed\": true", "\"passed\": false");
    std::fs::write(rec.join("run.json"), m).unwrap();
    let t = std::fs::read_to_string(rec.join("timeline.jsonl")).unwrap();
    let failed = r#"{"at_ms":3135,"kind":"expectation_failed","expected":"beacon-lookup","reason":"no dns_query event with update.dropper.lab in detection.iocs within 10 s"}"#;
    let t = t.replace(
        "{\"at_ms\":3140,\"kind\":\"finished\",\"passed\":true}",
        &format!("{failed}\n{{\"at_ms\":3140,\"kind\":\"finished\",\"passed\":false}}"),
    );
    std::fs::write(rec.join("timeline.jsonl"), t).unwrap();
    let (code, out, err) = lab(tmp.path(), &["replay", ID, "--speed", "0"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("beacon-lookup") && out.contains("within 10 s"), "{out}");
}

#[test]
fn replay_errors_say_what_to_do() {
    let tmp = lab_with_replay();
    let (code, _, err) = lab(tmp.path(), &["replay", ID, "--speed", "fast"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"fast\" is not a number"), "{err}");
    std::fs::remove_dir_all(tmp.path().join("scenarios").join(ID).join("replay")).unwrap();
    let (code, _, err) = lab(tmp.path(), &["replay", ID]);
    assert_ne!(code, 0);
    assert!(err.contains("has no replay") && err.contains("ioclab lab record"), "{err}");
}

#[test]
fn replay_names_the_broken_file_and_line() {
    let tmp = lab_with_replay();
    let tl = tmp.path().join("scenarios").join(ID).join("replay/timeline.jsonl");
    let t = std::fs::read_to_string(&tl).unwrap().replacen("{\"at_ms\":1810", "{\"at_ms\":", 1);
    std::fs::write(&tl, t).unwrap();
    let (code, _, err) = lab(tmp.path(), &["replay", ID, "--instant"]);
    assert_ne!(code, 0);
    assert!(err.contains("replay/timeline.jsonl:4:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn record_stores_a_run_then_replay_plays_it() {
    let tmp = tempfile::tempdir().unwrap();
    let scen = tmp.path().join("scenarios").join(ID);
    copy_dir(&root().join("lab-scenarios").join(ID), &scen);
    stamped_fixture(&scen, &tmp.path().join("data/runs").join(RUN));
    if is_root() {
        chown_all(tmp.path(), NOBODY);
    }
    let (code, out, err) = lab(tmp.path(), &["record", ID, "--run", "latest"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(RUN) && out.contains("3 endpoint events kept"), "{out}");
    assert!(scen.join("replay/report.json").is_file() && !scen.join("replay/iocs.before.json").exists());
    let (code, out, err) = lab(tmp.path(), &["replay", ID, "--instant"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, _, err) = lab(tmp.path(), &["record", ID, "--run", "no-such-run"]);
    assert_ne!(code, 0);
    assert!(err.contains("no-such-run"), "{err}");
}

/// Every shipped scenario has a committed replay, and it plays and passes.
/// (Fails until `ioclab lab record` has stored one for each scenario.)
#[test]
fn every_shipped_scenario_has_a_replay_that_plays_and_passes() {
    let scenarios: Vec<PathBuf> = std::fs::read_dir(root().join("lab-scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("scenario.yaml").is_file())
        .collect();
    assert!(!scenarios.is_empty());
    let missing: Vec<String> = scenarios
        .iter()
        .filter(|p| !p.join("replay").is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        missing.is_empty(),
        "no committed replay for {missing:?}: record each with `sudo ioclab lab record ID` (a live run, stored)"
    );
    for s in &scenarios {
        let manifest = std::fs::read_to_string(s.join("replay/run.json")).unwrap();
        assert!(manifest.contains("\"mode\": \"live\""), "{}: a replay is a recorded live run", s.display());
        let data = tempfile::tempdir().unwrap();
        let mut cmd = ioclab();
        cmd.args(["lab", "replay"]).arg(s).arg("--instant").arg("--data").arg(data.path());
        let (code, out, err) = output(&mut cmd);
        assert_eq!(code, 0, "{}:\n{out}\n{err}", s.display());
    }
}

/// `lab record ID` without `--run`: a live run now (root, eBPF), stored,
/// then played. Under `CI=true` it fails when it cannot run; elsewhere it skips.
#[test]
fn record_without_a_run_records_a_live_run_that_then_plays() {
    if !is_root() {
        assert!(!common::in_ci(), "CI=true and the live lab cannot run: not root");
        eprintln!("SKIPPED (not in CI): the live lab needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let id = "dns-ioc-why-kunai-rocks";
    let scen = tmp.path().join("scenarios").join(id);
    copy_dir(&root().join("lab-scenarios").join(id), &scen);
    let _ = std::fs::remove_dir_all(scen.join("replay"));
    let mut cmd = ioclab();
    cmd.args(["lab", "record", id, "--dir"])
        .arg(tmp.path().join("scenarios"))
        .arg("--data")
        .arg(tmp.path().join("data"));
    let (code, out, err) = output(&mut cmd);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dig-detected") && out.contains("recorded run"), "{out}");
    let rec = scen.join("replay");
    assert!(!rec.join("iocs.before.json").exists() && !rec.join("sample").exists(), "host files or the sample kept");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let events = std::fs::read_to_string(rec.join("events.jsonl")).unwrap();
    assert!(!events.contains(&format!("\"name\":\"{}\"", host.trim())), "the recording host's name is in events.jsonl");
    chown_all(tmp.path(), NOBODY); // played without privileges
    let (code, out, err) = lab(tmp.path(), &["replay", id, "--instant"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dig-detected"), "{out}");
}

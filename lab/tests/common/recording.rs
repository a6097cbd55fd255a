//! Recording fixtures for the replay, record and scoring tests (the lab
//! crate's and `ioclab lab replay`'s, tests/lab_replay.rs).

#![allow(dead_code)] // each test file uses its own part

use std::path::Path;

/// The hand-made run folder of malicious-script-dropper, relative to the workspace.
pub const FIXTURE: &str = "lab/tests/fixtures/recording-dropper";

/// Copies folder `from` into `to` (created), recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Copies the fixture recording (`fixture`) into `to`, stamped with the
/// scenario's `uuid` and `version` in `run.json` and in its `started` event:
/// the fixture stands for a run of the shipped scenario as it is now.
pub fn copy_fixture(fixture: &Path, to: &Path, uuid: &str, version: u32) {
    copy_dir(fixture, to);
    let run = to.join("run.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&run).unwrap()).unwrap();
    m["scenario_uuid"] = uuid.into();
    m["version"] = version.into();
    std::fs::write(&run, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let timeline = to.join("timeline.jsonl");
    let mut lines = Vec::new();
    for line in std::fs::read_to_string(&timeline).unwrap().lines() {
        let mut e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["kind"] == "started" {
            e["version"] = version.into();
        }
        lines.push(serde_json::to_string(&e).unwrap());
    }
    std::fs::write(&timeline, lines.join("\n") + "\n").unwrap();
}

//! `record`: a finished live run stored as a scenario's replay, what is left
//! out, trimming, the atomic swap, and refusals.

mod common {
    pub mod recording;
}

use std::path::{Path, PathBuf};

use common::recording::{copy_dir, copy_fixture};
use ioclab_lab::record::{find_run, record, RecordError, EVENTS_TRIM_BYTES, LAB_HOST_NAME};
use ioclab_lab::replay::{replay, Recording, Speed};
use ioclab_lab::run::{Mode, RunFolder};
use ioclab_lab::scenario::{load, Loaded};

const ID: &str = "malicious-script-dropper";
const RUN: &str = "malicious-script-dropper-20261130T090000Z";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A temp folder with a copy of the shipped scenario (`<tmp>/scenarios/ID`)
/// and the fixture as a finished live run (`<tmp>/runs/RUN`).
fn setup() -> (tempfile::TempDir, Loaded, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let scen = tmp.path().join("scenarios").join(ID);
    copy_dir(&manifest_dir().join("../lab-scenarios").join(ID), &scen);
    let _ = std::fs::remove_dir_all(scen.join("replay"));
    let runs = tmp.path().join("runs");
    let loaded = load::load(&scen).unwrap();
    let (uuid, version) = (loaded.scenario.uuid.as_str(), loaded.scenario.version);
    copy_fixture(&manifest_dir().join("..").join(common::recording::FIXTURE), &runs.join(RUN), uuid, version);
    (tmp, loaded, runs)
}

fn set_manifest(run: &Path, from: &str, to: &str) {
    let p = run.join("run.json");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&p, text.replace(from, to)).unwrap();
}

#[test]
fn a_passed_live_run_becomes_the_replay_without_what_belongs_to_its_machine() {
    let (tmp, loaded, runs) = setup();
    let run = find_run(&runs, &loaded.scenario.id, "latest").unwrap();
    let r = record(&loaded, &run, false).unwrap();
    assert_eq!((r.run.as_str(), r.passed, r.events_kept, r.events_dropped), (RUN, true, 3, 0));
    let dir = loaded.dir.join("replay");
    assert_eq!(r.dir, dir);
    assert!(!dir.join("iocs.before.json").exists());
    for f in ["report.json", "misp-event.json", "iocs.json", "sample/sample.sh", "steps/run-dropper.log"] {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(run.path(f)).unwrap(), "{f}");
    }
    let m = RunFolder::open(&dir).manifest().unwrap();
    assert_eq!((m.mode, m.passed, m.run.as_str()), (Mode::Live, Some(true), RUN));
    assert!(m.created.misp_events.is_empty() && m.created.sandbox_tasks.is_empty() && m.created.ioc_backup.is_none());
    for f in ["events.jsonl", "timeline.jsonl"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!text.contains("ci-runner-7") && !text.contains("c0ffee00"), "{f} keeps the recording host");
        assert!(text.contains(LAB_HOST_NAME), "{f}");
    }
    // the rest of each event is kept
    let events = RunFolder::open(&dir).events().unwrap();
    assert_eq!(events[0]["info"]["task"]["pid"], 4242);
    // it plays
    let out = replay(&loaded, &dir, Speed::Instant, &tmp.path().join("played")).unwrap().wait().unwrap();
    assert!(out.passed);
    let hidden = std::fs::read_dir(&loaded.dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'));
    assert_eq!(hidden.count(), 0, "no temporary folder left beside replay/");
}

#[test]
fn recording_again_replaces_the_old_replay_whole() {
    let (_tmp, loaded, runs) = setup();
    let run = RunFolder::open(runs.join(RUN));
    record(&loaded, &run, false).unwrap();
    let dir = loaded.dir.join("replay");
    std::fs::write(dir.join("stale"), "from the old replay").unwrap();
    std::fs::remove_file(run.path("README")).unwrap();
    record(&loaded, &run, false).unwrap();
    assert!(!dir.join("stale").exists() && !dir.join("README").exists());
    assert!(dir.join("report.json").is_file());
    let names: Vec<String> = std::fs::read_dir(&loaded.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "{names:?}");
}

#[test]
fn failed_replayed_unfinished_and_foreign_runs_are_refused() {
    let (_tmp, loaded, runs) = setup();
    let dir = runs.join(RUN);
    let run = RunFolder::open(&dir);

    set_manifest(&dir, "\"mode\": \"live\"", "\"mode\": \"replay\"");
    assert!(matches!(record(&loaded, &run, true), Err(RecordError::NotLive(_))));
    set_manifest(&dir, "\"mode\": \"replay\"", "\"mode\": \"live\"");

    set_manifest(&dir, "\"passed\": true", "\"passed\": false");
    let t = std::fs::read_to_string(dir.join("timeline.jsonl")).unwrap().replace("\"passed\":true", "\"passed\":false");
    std::fs::write(dir.join("timeline.jsonl"), t).unwrap();
    let e = record(&loaded, &run, false).unwrap_err();
    assert!(matches!(e, RecordError::Failed(_)) && e.to_string().contains("--force"), "{e}");
    assert!(!loaded.dir.join("replay").exists());
    let r = record(&loaded, &run, true).unwrap();
    assert!(!r.passed);

    set_manifest(&dir, "\"passed\": false", "\"passed\": null");
    assert!(record(&loaded, &run, true).unwrap_err().to_string().contains("never finished"));

    set_manifest(&dir, "\"passed\": null", "\"passed\": false");
    let other = load::load(&manifest_dir().join("../lab-scenarios/dns-ioc-why-kunai-rocks")).unwrap();
    let e = record(&other, &run, true).unwrap_err().to_string();
    assert!(e.contains(ID) && e.contains("dns-ioc-why-kunai-rocks"), "{e}");

    assert!(matches!(find_run(&runs, &loaded.scenario.id, "../etc"), Err(RecordError::BadRunId(_))));
    let e = find_run(&runs, &other.scenario.id, "latest").unwrap_err().to_string();
    assert!(e.contains("no finished live run of dns-ioc-why-kunai-rocks"), "{e}");
}

#[test]
fn latest_is_the_last_finished_live_run_of_the_scenario() {
    let (_tmp, loaded, runs) = setup();
    let newer = runs.join(format!("{RUN}-1"));
    copy_dir(&runs.join(RUN), &newer);
    set_manifest(&newer, "\"started\": 1796029200.0", "\"started\": 1796029300.0");
    assert_eq!(find_run(&runs, &loaded.scenario.id, "latest").unwrap().root(), newer);
    // a replay run, however new, is not a live run
    let replayed = runs.join(format!("{RUN}-2"));
    copy_dir(&runs.join(RUN), &replayed);
    set_manifest(&replayed, "\"started\": 1796029200.0", "\"started\": 1796029400.0");
    set_manifest(&replayed, "\"mode\": \"live\"", "\"mode\": \"replay\"");
    assert_eq!(find_run(&runs, &loaded.scenario.id, "latest").unwrap().root(), newer);
}

#[test]
fn large_event_logs_keep_what_the_run_needs() {
    let (_tmp, loaded, runs) = setup();
    let dir = runs.join(RUN);
    let mut text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let filler =
        r#"{"data":{"command_line":"ls"},"info":{"event":{"name":"execve","uuid":"u"},"host":{"name":"ci-runner-7"}}}"#;
    let n = EVENTS_TRIM_BYTES as usize / filler.len() + 10;
    for _ in 0..n {
        text += filler;
        text.push('\n');
    }
    std::fs::write(dir.join("events.jsonl"), text).unwrap();
    let r = record(&loaded, &RunFolder::open(&dir), false).unwrap();
    // both detections and the undetected execve_script (an answer reads execve_script events)
    assert_eq!((r.events_kept, r.events_dropped), (3, n));
    let kept = Recording::read(&r.dir).unwrap();
    assert!(kept.passed());
    assert!(std::fs::metadata(r.dir.join("events.jsonl")).unwrap().len() < 8 * 1024);
}

#[test]
fn the_scenarios_own_sample_is_not_committed_twice_and_the_replay_still_shows_it() {
    let (tmp, loaded, runs) = setup();
    let run = runs.join(RUN);
    // a live run copies the scenario's sample into sample/
    std::fs::copy(loaded.dir.join("sample.sh"), run.join("sample/sample.sh")).unwrap();
    let r = record(&loaded, &RunFolder::open(&run), false).unwrap();
    assert!(!r.dir.join("sample").exists(), "the scenario's sample was committed again in replay/");
    let played = replay(&loaded, &r.dir, Speed::Instant, &tmp.path().join("played")).unwrap();
    let folder = played.folder.clone();
    played.wait().unwrap();
    assert_eq!(
        std::fs::read(folder.path("sample/sample.sh")).unwrap(),
        std::fs::read(loaded.dir.join("sample.sh")).unwrap()
    );

    // another sample (the fixture's stand-in) is kept
    copy_dir(&manifest_dir().join("..").join(common::recording::FIXTURE).join("sample"), &run.join("sample"));
    let r = record(&loaded, &RunFolder::open(&run), false).unwrap();
    assert!(r.dir.join("sample/sample.sh").is_file());
}

#[test]
fn copies_of_the_scenarios_sample_and_assets_are_left_out_and_emptied_folders_too() {
    let (_tmp, loaded, runs) = setup();
    let run = runs.join(RUN);
    std::fs::create_dir_all(run.join("work/deeper")).unwrap();
    std::fs::copy(loaded.dir.join("sample.sh"), run.join("work/deeper/sample.sh")).unwrap();
    std::fs::copy(loaded.dir.join("sample.sh"), run.join("work/copy.sh")).unwrap();
    std::fs::write(run.join("work/other.txt"), "a step's output file").unwrap();
    // an asset of the scenario, and the steps' copy of it
    let mut loaded = loaded;
    std::fs::write(loaded.dir.join("helper.txt"), "a scenario asset").unwrap();
    let asset = serde_json::json!({"file": "helper.txt", "sha256": "00".repeat(32)});
    loaded.scenario.assets.push(serde_json::from_value(asset).unwrap());
    std::fs::write(run.join("work/helper.txt"), "a scenario asset").unwrap();
    // a step log that happens to hold the same bytes is an artifact: kept
    std::fs::write(run.join("steps/run-dropper.log"), "a scenario asset").unwrap();
    let r = record(&loaded, &RunFolder::open(&run), false).unwrap();
    assert!(!r.dir.join("work/deeper").exists() && !r.dir.join("work/copy.sh").exists());
    assert!(!r.dir.join("work/helper.txt").exists());
    assert!(r.dir.join("work/other.txt").is_file() && r.dir.join("steps/run-dropper.log").is_file());
}

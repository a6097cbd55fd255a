//! The replay player on a hand-made recording (tests/fixtures/recording-dropper,
//! a run folder of malicious-script-dropper): timing, artifacts appearing at
//! their stage, scenario checks, and corrupt recordings named, never a panic.

mod common {
    pub mod recording;
}

use std::path::{Path, PathBuf};

use common::recording::copy_fixture;
use ioclab_lab::replay::{replay, Recording, ReplayError, Speed};
use ioclab_lab::run::{Mode, RunEvent, RunEventKind, RunFolder};
use ioclab_lab::scenario::{load, Loaded, Stage};
use proptest::prelude::*;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scenario(id: &str) -> Loaded {
    load::load(&manifest_dir().join("../lab-scenarios").join(id)).expect("shipped scenario loads")
}

/// A copy of the fixture recording in a temp folder.
fn recording() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("replay");
    let s = scenario("malicious-script-dropper").scenario;
    copy_fixture(&manifest_dir().join("..").join(common::recording::FIXTURE), &to, s.uuid.as_str(), s.version);
    (tmp, to)
}

/// The timeline as `timeline.jsonl` holds it.
fn raw_timeline(dir: &Path) -> Vec<RunEvent> {
    RunFolder::open(dir).timeline().unwrap()
}

/// The timeline as the player plays it.
fn recorded(dir: &Path) -> Vec<RunEvent> {
    Recording::read(dir).unwrap().events().cloned().collect()
}

/// Rewrites the recording's timeline through `f`.
fn edit_timeline(dir: &Path, f: impl Fn(usize, &mut RunEvent)) {
    let mut events = raw_timeline(dir);
    let mut text = String::new();
    for (i, e) in events.iter_mut().enumerate() {
        f(i, e);
        text += &serde_json::to_string(e).unwrap();
        text.push('\n');
    }
    std::fs::write(dir.join("timeline.jsonl"), text).unwrap();
}

fn runs_in(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("runs")
}

#[test]
fn an_instant_replay_plays_the_recorded_timeline_into_a_run_folder_of_its_own() {
    let (tmp, rec) = recording();
    let s = scenario("malicious-script-dropper");
    let r = replay(&s, &rec, Speed::Instant, &runs_in(&tmp)).unwrap();
    let (folder, id, log) = (r.folder.clone(), r.id.clone(), r.log.clone());
    let outcome = r.wait().unwrap();
    assert!(outcome.passed && !outcome.stopped && outcome.failed.is_empty(), "{outcome:?}");

    let played = folder.timeline().unwrap();
    assert_eq!(played, log.events(), "the file holds what watchers saw");
    let original = recorded(&rec);
    assert_eq!(played.len(), original.len());
    match &played[0].kind {
        RunEventKind::Started { run, mode, scenario, .. } => {
            assert_eq!(
                (run.as_str(), *mode, scenario.as_str()),
                (id.as_str(), Mode::Replay, "malicious-script-dropper")
            );
        }
        other => panic!("first event {other:?}"),
    }
    // instant: the recorded times are kept, every other event as recorded
    assert_eq!(&played[1..], &original[1..]);

    for f in [
        "report.json",
        "misp-event.json",
        "iocs.json",
        "events.jsonl",
        "steps/run-dropper.log",
        "sample/sample.sh",
        "README",
    ] {
        assert_eq!(std::fs::read(folder.path(f)).unwrap(), std::fs::read(rec.join(f)).unwrap(), "{f}");
    }
    assert!(!folder.path("iocs.before.json").exists(), "the recording host's IoC backup is never copied");
    // nor shown as the agent stage's artifact
    let agent = |events: &[RunEvent]| {
        events.iter().find_map(|e| match &e.kind {
            RunEventKind::StageFinished { stage: Stage::Agent, artifact, .. } => Some(artifact.clone()),
            _ => None,
        })
    };
    assert_eq!(agent(&raw_timeline(&rec)), Some(Some("iocs.before.json".into())));
    assert_eq!(agent(&played), Some(None));
    let m = folder.manifest().unwrap();
    assert_eq!((m.mode, m.passed, m.run.as_str()), (Mode::Replay, Some(true), id.as_str()));
    assert!(m.finished.is_some() && m.created.misp_events.is_empty() && m.created.ioc_backup.is_none());
}

#[test]
fn speed_divides_the_recorded_times_and_keeps_the_order() {
    let (tmp, rec) = recording();
    let s = scenario("malicious-script-dropper");
    let r = replay(&s, &rec, Speed::Times(40.0), &runs_in(&tmp)).unwrap();
    let log = r.log.clone();
    r.wait().unwrap();
    let played = log.events();
    let original = recorded(&rec);
    for (p, o) in played.iter().zip(&original).skip(1) {
        assert_eq!(p.kind, o.kind);
        assert_eq!(p.at_ms, (o.at_ms as f64 / 40.0).round() as u64, "{:?}", o.kind);
    }
    assert!(played.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    // the player waited for each event's time on the log's own clock
    assert!(log.elapsed_ms() >= played.last().unwrap().at_ms);
    assert_eq!("4".parse::<Speed>(), Ok(Speed::Times(4.0)));
    assert_eq!("0".parse::<Speed>(), Ok(Speed::Instant));
    for bad in ["-1", "fast", "inf", "NaN", ""] {
        assert!(bad.parse::<Speed>().is_err(), "{bad}");
    }
}

#[test]
fn artifacts_appear_only_once_their_stage_finished() {
    let (tmp, rec) = recording();
    // everything after the sandbox stage a minute later: the player sleeps
    // there, so what the folder holds then is what the sandbox stage showed
    edit_timeline(&rec, |i, e| {
        if i > 2 {
            e.at_ms += 60_000;
        }
    });
    let s = scenario("malicious-script-dropper");
    let r = replay(&s, &rec, Speed::Times(1.0), &runs_in(&tmp)).unwrap();
    let (_, mut rx) = r.log.watch();
    loop {
        let e = rx.blocking_recv().unwrap();
        if let RunEventKind::StageFinished { stage: Stage::Sandbox, artifact, .. } = &e.kind {
            assert_eq!(artifact.as_deref(), Some("report.json"));
            break;
        }
    }
    let f = r.folder.clone();
    assert!(f.path("report.json").is_file() && f.path("sample/sample.sh").is_file());
    for later in ["misp-event.json", "iocs.json", "events.jsonl", "steps"] {
        assert!(!f.path(later).exists(), "{later} appeared before its stage");
    }
    r.stop();
    let log = r.log.clone();
    let outcome = r.wait().unwrap();
    assert!(outcome.stopped && !outcome.passed);
    assert_eq!(log.events().last().unwrap().kind, RunEventKind::Finished { passed: false });
    assert_eq!(f.manifest().unwrap().passed, Some(false));
}

#[test]
fn every_artifact_is_there_when_its_event_is_seen() {
    let (tmp, rec) = recording();
    let s = scenario("malicious-script-dropper");
    let r = replay(&s, &rec, Speed::Times(50.0), &runs_in(&tmp)).unwrap();
    let (past, mut rx) = r.log.watch();
    let mut seen = past;
    while !matches!(seen.last().map(|e| &e.kind), Some(RunEventKind::Finished { .. })) {
        let e = rx.blocking_recv().unwrap();
        let name = match &e.kind {
            RunEventKind::StageFinished { artifact: Some(a), .. } => Some(a.clone()),
            RunEventKind::StepFinished { step, .. } => Some(format!("steps/{step}.log")),
            _ => None,
        };
        if let Some(n) = name {
            assert!(r.folder.path(&n).is_file(), "{n} missing when {:?} was seen", e.kind);
        }
        seen.push(e);
    }
    assert_eq!(seen.len(), recorded(&rec).len());
    r.wait().unwrap();
}

#[test]
fn a_recording_of_another_scenario_or_version_is_refused_naming_both() {
    let (tmp, rec) = recording();
    let other = scenario("dns-ioc-why-kunai-rocks");
    let e = replay(&other, &rec, Speed::Instant, &runs_in(&tmp)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ReplayError::Mismatch { .. }), "{msg}");
    assert!(msg.contains("malicious-script-dropper") && msg.contains("dns-ioc-why-kunai-rocks"), "{msg}");
    assert!(msg.contains("run.json"), "{msg}");

    let m = rec.join("run.json");
    let shipped = scenario("malicious-script-dropper");
    let v = shipped.scenario.version;
    let text = std::fs::read_to_string(&m).unwrap().replace(&format!("\"version\": {v}"), "\"version\": 999");
    std::fs::write(&m, text).unwrap();
    let msg = replay(&shipped, &rec, Speed::Instant, &runs_in(&tmp)).unwrap_err().to_string();
    assert!(msg.contains("version 999") && msg.contains(&format!("version {v})")), "{msg}");
    assert!(!runs_in(&tmp).exists(), "no run folder for a refused recording");
}

/// The error of reading the recording at `dir`, as text.
fn read_error(dir: &Path) -> String {
    Recording::read(dir).expect_err("a broken recording was accepted").to_string()
}

#[test]
fn broken_recordings_are_named_by_file_and_line() {
    let line_of = |dir: &Path, needle: &str| {
        let t = std::fs::read_to_string(dir.join("timeline.jsonl")).unwrap();
        t.lines().position(|l| l.contains(needle)).unwrap() + 1
    };
    let (_t, rec) = recording();
    let mut t = std::fs::read_to_string(rec.join("timeline.jsonl")).unwrap();
    t = t.replacen("{\"at_ms\":1810", "{\"at_ms\":oops", 1);
    std::fs::write(rec.join("timeline.jsonl"), t).unwrap();
    let e = read_error(&rec);
    assert!(e.contains("timeline.jsonl:4:"), "{e}");

    let (_t, rec) = recording();
    std::fs::remove_file(rec.join("report.json")).unwrap();
    let e = read_error(&rec);
    let line = line_of(&rec, "\"artifact\":\"report.json\"");
    assert!(e.contains(&format!("timeline.jsonl:{line}:")) && e.contains("report.json"), "{e}");

    let (_t, rec) = recording();
    edit_timeline(&rec, |i, e| {
        if i == 2 {
            e.kind = RunEventKind::StageFinished {
                stage: Stage::Sandbox,
                result: ioclab_lab::run::StageResult::Passed,
                summary: String::new(),
                artifact: Some("../../etc/passwd".into()),
            };
        }
    });
    let e = read_error(&rec);
    assert!(e.contains("timeline.jsonl:3:") && e.contains("not a plain path"), "{e}");

    let (_t, rec) = recording();
    let t = std::fs::read_to_string(rec.join("timeline.jsonl")).unwrap();
    let cut: Vec<&str> = t.lines().collect();
    std::fs::write(rec.join("timeline.jsonl"), cut[..cut.len() - 1].join("\n")).unwrap();
    let e = read_error(&rec);
    assert!(e.contains(&format!("timeline.jsonl:{}:", cut.len() - 1)) && e.contains("does not end with"), "{e}");

    let (_t, rec) = recording();
    std::fs::write(rec.join("run.json"), "{\"run\": 3}").unwrap();
    let e = read_error(&rec);
    assert!(e.contains("run.json:1:"), "{e}");

    let (_t, rec) = recording();
    std::fs::remove_file(rec.join("run.json")).unwrap();
    assert!(read_error(&rec).contains("run.json"));

    let (_t, rec) = recording();
    let m = std::fs::read_to_string(rec.join("run.json")).unwrap().replace("\"passed\": true", "\"passed\": null");
    std::fs::write(rec.join("run.json"), m).unwrap();
    let e = read_error(&rec);
    assert!(e.contains("run.json:1:") && e.contains("never finished"), "{e}");

    let (_t, rec) = recording();
    let events = std::fs::read_to_string(rec.join("events.jsonl")).unwrap();
    std::fs::write(rec.join("events.jsonl"), events.replacen("\n", "\n{\"truncated\n", 1)).unwrap();
    let e = read_error(&rec);
    assert!(e.contains("events.jsonl:2:"), "{e}");

    let (_t, rec) = recording();
    std::fs::write(rec.join("report.json"), "{\"info\": {\n  \"id\": }").unwrap();
    let e = read_error(&rec);
    assert!(e.contains("report.json:2:"), "{e}");

    let (_t, rec) = recording();
    std::os::unix::fs::symlink("/etc/passwd", rec.join("sample/passwd")).unwrap();
    let e = read_error(&rec);
    assert!(e.contains("sample/passwd") && e.contains("link"), "{e}");
}

proptest! {
    #[test]
    fn any_timeline_bytes_give_a_recording_or_an_error_naming_the_file_and_line(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (_t, rec) = recording();
        std::fs::write(rec.join("timeline.jsonl"), &bytes).unwrap();
        if let Err(e) = Recording::read(&rec) {
            let msg = e.to_string();
            prop_assert!(msg.contains("timeline.jsonl:"), "{}", msg);
        }
    }

    #[test]
    fn damaged_recorded_lines_are_named_never_a_panic(
        line in 0usize..22,
        junk in "[{}\\[\\]\":,a-z0-9 ]{0,40}",
    ) {
        let (_t, rec) = recording();
        let t = std::fs::read_to_string(rec.join("timeline.jsonl")).unwrap();
        let mut lines: Vec<String> = t.lines().map(String::from).collect();
        let n = line.min(lines.len() - 1);
        lines[n] = junk;
        std::fs::write(rec.join("timeline.jsonl"), lines.join("\n")).unwrap();
        if let Err(e) = Recording::read(&rec) {
            let msg = e.to_string();
            prop_assert!(msg.contains("timeline.jsonl:"), "{}", msg);
        }
    }
}

#[test]
fn run_json_says_passed_by_the_time_finished_is_seen() {
    // the SSE stream of a run ends at `finished`, and its reader then reads
    // run.json: it was written after the event, and said "not finished" now and then
    let (tmp, rec) = recording();
    let s = scenario("malicious-script-dropper");
    for attempt in 0..20 {
        let r = replay(&s, &rec, Speed::Instant, &runs_in(&tmp)).unwrap();
        let (mut past, mut rx) = r.log.watch();
        let finished = loop {
            if let Some(e) = past.iter().find(|e| matches!(e.kind, RunEventKind::Finished { .. })) {
                break e.clone();
            }
            past = vec![rx.blocking_recv().expect("the replay ends with finished")];
        };
        let m = r.folder.manifest().unwrap();
        assert_eq!(finished.kind, RunEventKind::Finished { passed: true });
        assert_eq!(
            (m.passed, m.finished.is_some()),
            (Some(true), true),
            "attempt {attempt}: run.json when finished was seen"
        );
        r.wait().unwrap();
    }
}

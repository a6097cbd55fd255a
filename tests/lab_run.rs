//! `ioclab lab run`, live: every shipped scenario under lab-scenarios/ runs
//! through every stage and passes, its artifacts present and consistent;
//! nothing is left afterwards; a sandbox detonation never counts as an
//! endpoint detection; a failing expectation exits non-zero naming it and
//! the nearest event. Needs root and eBPF: under `CI=true` the tests fail
//! when they cannot run, elsewhere they say why and skip.
//!
//! One lab (one agent, one sandbox) runs every scenario in sequence: that is
//! what a lab does, and it keeps CI time to the runs themselves. Then one
//! `lab reset` through the lab undoes them all, and the files the scenarios'
//! steps wrote on this machine are gone (tests/lab_reset.rs checks each
//! scenario's reset, twice, in detail).

mod common;
#[path = "../lab/tests/common/leftovers.rs"]
mod leftovers;
#[path = "../sandbox/tests/common/mod.rs"]
mod sandbox_common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use common::{in_ci, ioclab};
use ioclab_lab::data_dir::DataDir;
use ioclab_lab::engine::{EngineError, Lab, LabConfig, RunOptions};
use ioclab_lab::reset::{self, ResetRequest, Scope};
use ioclab_lab::run::{RunEventKind, RunFolder, StageResult};
use ioclab_lab::scenario::{load, Loaded, Stage};
use serde_json::Value;

/// One live lab at a time: each loads the eBPF programs.
static LIVE: Mutex<()> = Mutex::new(());

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab-scenarios")
}

fn cannot_run(reason: &str) {
    assert!(!in_ci(), "CI=true and the live lab cannot run: {reason}");
    eprintln!("SKIPPED (not in CI): {reason}");
}

/// The lab on `data`, or `None` (skipped) where it cannot run.
fn open(data: &Path) -> Option<Lab> {
    match Lab::open(LabConfig { data: DataDir::new(data) }) {
        Ok(lab) => Some(lab),
        Err(EngineError::Unsupported(why)) => {
            cannot_run(&why);
            None
        }
        Err(e) => panic!("the lab did not start: {e}"),
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_lowercase)).collect()).unwrap_or_default()
}

/// A copy of scenario `id` in `dir` with `edit` applied to its scenario.yaml.
fn edited(id: &str, dir: &Path, edit: impl Fn(String) -> String) -> Loaded {
    let src = scenarios_dir().join(id);
    let dst = dir.join(id);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap().flatten().filter(|f| f.path().is_file()) {
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    let yaml = dst.join("scenario.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    let changed = edit(text.clone());
    assert_ne!(changed, text, "the edit changed nothing");
    std::fs::write(&yaml, changed).unwrap();
    load::load(&dst).unwrap_or_else(|d| panic!("{d:?}"))
}

/// Checks a passed run's folder against its scenario.
fn check_artifacts(loaded: &Loaded, folder: &RunFolder) {
    let s = &loaded.scenario;
    let id = s.id.as_str();
    let m = folder.manifest().unwrap();
    assert_eq!((m.passed, m.scenario.as_str()), (Some(true), id));
    assert!(m.finished.is_some_and(|f| f >= m.started), "{id}: {m:?}");
    assert_eq!(m.created.misp_events.len(), 1, "{id}: one MISP event: {m:?}");
    assert_eq!(m.created.sandbox_tasks.len(), 1, "{id}: one sandbox task: {m:?}");
    assert_eq!(m.created.ioc_backup.as_deref(), Some(RunFolder::IOCS_BEFORE));
    assert!(folder.path(RunFolder::IOCS_BEFORE).is_file());

    // the timeline: every stage finished, none failed, ends passed
    let timeline = folder.timeline().unwrap();
    for stage in Stage::ALL {
        let finished = timeline.iter().find_map(|e| match &e.kind {
            RunEventKind::StageFinished { stage: st, result, .. } if st == stage => Some(result.clone()),
            _ => None,
        });
        let finished = finished.unwrap_or_else(|| panic!("{id}: stage {stage} never finished"));
        assert!(!matches!(finished, StageResult::Failed { .. }), "{id}: {stage}: {finished:?}");
    }
    assert!(matches!(timeline.last().unwrap().kind, RunEventKind::Finished { passed: true }));
    let at: Vec<u64> = timeline.iter().map(|e| e.at_ms).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{id}: times go forward: {at:?}");

    // the sample and its report
    let name = s.sample.file.file_name().unwrap();
    let copy = folder.path(RunFolder::SAMPLE_DIR).join(name);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(loaded.dir.join(&s.sample.file)).unwrap());
    let report: Value = serde_json::from_slice(&std::fs::read(folder.path(RunFolder::REPORT)).unwrap()).unwrap();
    assert_eq!(report["target"]["file"]["sha256"], s.sample.sha256.to_string(), "{id}");
    assert_eq!(report["info"]["id"], m.created.sandbox_tasks[0], "{id}: the report is the task's");

    // the MISP event, as the API returned it
    let event: Value = serde_json::from_slice(&std::fs::read(folder.path(RunFolder::MISP_EVENT)).unwrap()).unwrap();
    let event = event.get("Event").unwrap_or(&event);
    assert_eq!(event["uuid"], m.created.misp_events[0].as_str(), "{id}");
    let tags: Vec<String> =
        event["Tag"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().into()).collect();
    for t in &s.misp.tags {
        assert!(tags.contains(t), "{id}: tag {t} on the event: {tags:?}");
    }

    // the export: this event's IoCs, every expected one
    let iocs = lines(&folder.path(RunFolder::IOCS));
    assert!(iocs.iter().all(|l| l["event_uuid"] == event["uuid"]), "{id}: {iocs:?}");
    for want in &s.expect.iocs {
        let v = want.value.as_str().to_lowercase();
        assert!(iocs.iter().any(|l| l["value"].as_str().is_some_and(|x| x.to_lowercase() == v)), "{id}: {v}");
    }

    // the endpoint events: each expected detection, from a step's process
    let events = lines(&folder.path(RunFolder::EVENTS));
    for d in &s.expect.detections {
        let ioc = d.ioc.as_str().to_lowercase();
        let seen = events
            .iter()
            .any(|e| e["info"]["event"]["name"] == d.event.as_str() && strs(&e["detection"]["iocs"]).contains(&ioc));
        assert!(seen, "{id}: no {} event with {ioc} in events.jsonl", d.event);
        let detection = timeline.iter().find_map(|e| match &e.kind {
            RunEventKind::Detection { expected, event } if expected == &d.id => Some(event.clone()),
            _ => None,
        });
        let detection = detection.unwrap_or_else(|| panic!("{id}: no detection event for {}", d.id));
        assert!(events.contains(&detection), "{id}: the detection's event is in events.jsonl");
    }
    for step in &s.steps {
        assert!(folder.step_log(&step.id).is_file(), "{id}: steps/{}.log", step.id);
        let code = timeline.iter().find_map(|e| match &e.kind {
            RunEventKind::StepFinished { step: st, exit_code } if st == &step.id => Some(*exit_code),
            _ => None,
        });
        assert!(code.is_some(), "{id}: step {} finished", step.id);
    }
    // the scenario's folder was never written: the steps ran from a copy
    assert!(folder.path("work").join(&s.sample.file).is_file());
}

/// What a lab on `data` run by process `pid` may leave: the sandbox's task
/// cgroups and mounts, and what [`leftovers::of_lab`] looks for.
fn leftovers_of(data: &Path, pid: u32) -> Vec<String> {
    let mut left = sandbox_common::leftovers(pid, None);
    left.extend(leftovers::of_lab(data, pid));
    left
}

/// The entries of /tmp and /dev/shm named for the lab: the only places the
/// shipped scenarios' steps may write (lab/tests/shipped.rs checks it).
fn step_files() -> std::collections::BTreeSet<String> {
    ["/tmp", "/dev/shm"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.flatten())
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.contains("ioclab"))
        .collect()
}

#[test]
fn every_scenario_runs_live_and_passes_and_the_sandbox_never_counts() {
    let _one = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(lab) = open(&data) else { return };
    let files_before = step_files();
    let scenarios = load::find(&scenarios_dir()).unwrap();
    assert!(scenarios.len() >= 2, "{scenarios:?}");
    let mut sandbox_pids_seen = 0;
    for path in &scenarios {
        let loaded = load::load(path).unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
        let t0 = std::time::Instant::now();
        let run = lab.start_run(&loaded, RunOptions { auto_publish: true, ..Default::default() }).unwrap();
        let folder = run.folder.clone();
        let passed = run.wait();
        let timeline = folder.timeline().unwrap();
        let text: Vec<String> = timeline.iter().map(ioclab_lab::run::timeline::line).collect();
        assert!(passed, "{} failed:\n{}", loaded.scenario.id, text.join("\n"));
        eprintln!("{}: passed in {:.1} s", loaded.scenario.id, t0.elapsed().as_secs_f64());
        check_artifacts(&loaded, &folder);
        sandbox_pids_seen += 1;
    }
    assert_eq!(sandbox_pids_seen, scenarios.len());

    // The same sample detonated again while the agent holds its IoCs (the
    // runs above loaded them), but the step does nothing on the endpoint:
    // the detection must fail, and no event of the sandbox's processes (they
    // run as the unprivileged sandbox user) reached the endpoint output.
    let quiet = edited("dns-ioc-why-kunai-rocks", tmp.path(), |y| y.replace("\"dig #{domain}\"", "\"true #{domain}\""));
    let from = lab.feed_position();
    let run = lab.start_run(&quiet, RunOptions { auto_publish: true, ..Default::default() }).unwrap();
    let folder = run.folder.clone();
    let passed = run.wait();
    let timeline = folder.timeline().unwrap();
    let text: Vec<String> = timeline.iter().map(ioclab_lab::run::timeline::line).collect();
    assert!(!passed, "a step that does nothing cannot pass:\n{}", text.join("\n"));
    let sandbox_ok = timeline.iter().any(|e| {
        matches!(&e.kind, RunEventKind::StageFinished { stage: Stage::Sandbox, result: StageResult::Passed, .. })
    });
    assert!(sandbox_ok, "the sandbox ran the sample: {timeline:?}");
    let report: Value = serde_json::from_slice(&std::fs::read(folder.path(RunFolder::REPORT)).unwrap()).unwrap();
    assert!(
        report["network"]["domains"].as_array().unwrap().iter().any(|d| d["domain"] == "why.kunai.rocks"),
        "the detonation looked the domain up: {}",
        report["network"]
    );
    let failed = timeline
        .iter()
        .any(|e| matches!(&e.kind, RunEventKind::ExpectationFailed { expected, .. } if expected == "dig-detected"));
    assert!(failed, "the detection failed, named: {timeline:?}");
    // this process started the sandbox: its samples have it among their ancestors
    let me = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let ours = |e: &Value| {
        e["info"]["task"]["uid"] == 65534 && e["data"]["ancestors"].as_str().is_some_and(|a| a.contains(&me))
    };
    let all = lab.endpoint_events_since(from);
    let leaked: Vec<&Value> = all.iter().map(|e| &*e.event).filter(|e| ours(e)).collect();
    assert!(leaked.is_empty(), "sandbox events reached the endpoint output: {}", leaked[0]);
    assert!(!lines(&folder.path(RunFolder::EVENTS)).iter().any(ours));

    // what the steps did on this machine is undone by the scenarios' cleanup
    let loaded: Vec<Loaded> = scenarios.iter().map(|p| load::load(p).unwrap()).collect();
    let data_dir = DataDir::new(&data);
    let req = ResetRequest { data: &data_dir, scope: Scope::All, scenarios: &loaded, check: false, purge: false };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = rt.block_on(reset::reset(&req, Some(&lab), &mut |_| {})).unwrap();
    assert!(!report.failed(), "{report:?}");
    let new: Vec<String> = step_files().difference(&files_before).cloned().collect();
    assert!(new.is_empty(), "files the steps wrote outlived the reset: {new:?}");

    drop(lab);
    let left = leftovers_of(&data, std::process::id());
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn a_failing_expectation_exits_non_zero_naming_it_and_the_nearest_event() {
    let _one = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run("not root: the live lab needs eBPF and namespaces");
    }
    let tmp = tempfile::tempdir().unwrap();
    // dig runs no script: the domain's detection comes on dns_query, the nearest event to name
    let strict = edited("dns-ioc-why-kunai-rocks", tmp.path(), |y| {
        y.replace("event: dns_query\n      field: data.query", "event: execve_script\n      field: data.query")
    });
    let data = tmp.path().join("data");
    let child = ioclab()
        .args(["lab", "run", "--data"])
        .arg(&data)
        .arg(&strict.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let done = child.wait_with_output().unwrap();
    let (code, out, err) = (
        done.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&done.stdout).into_owned(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    );
    if code != 0 && err.contains("cannot run here") {
        return cannot_run(&err);
    }
    assert_eq!(code, 1, "{out}\n{err}");
    let failed = out.lines().find(|l| l.contains("EXPECTATION FAILED dig-detected")).unwrap_or_else(|| panic!("{out}"));
    assert!(failed.contains("no execve_script event with why.kunai.rocks in detection.iocs"), "{failed}");
    assert!(failed.contains("nearest event seen: dns_query detection.iocs=[why.kunai.rocks"), "{failed}");
    // the table names the failed stage and the expectation; the folder is printed
    assert!(out.lines().any(|l| l.starts_with("detection") && l.contains("FAILED")), "{out}");
    assert!(out.contains("failed expectation dig-detected"), "{out}");
    let folder = out.lines().find_map(|l| l.strip_prefix("run folder: ")).unwrap_or_else(|| panic!("{out}"));
    let m = RunFolder::open(folder).manifest().unwrap();
    assert_eq!(m.passed, Some(false));
    let left = leftovers_of(&data, pid);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn replay_flags_play_the_recording_and_speed_needs_replay() {
    let tmp = tempfile::tempdir().unwrap();
    // a scenario without a recording: --replay goes to the player, which says how to make one
    let copy = edited("dns-ioc-why-kunai-rocks", tmp.path(), |y| y.replace("level: beginner", "level: intermediate"));
    let _ = std::fs::remove_dir_all(copy.dir.join("replay"));
    let data = tmp.path().join("data");
    let out =
        ioclab().args(["lab", "run", "--replay", "--speed", "0", "--data"]).arg(&data).arg(&copy.dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("has no replay") && err.contains("ioclab lab record"), "{err}");
    let out = ioclab().args(["lab", "run", "--speed", "2", "dns-ioc-why-kunai-rocks"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--replay"), "{err}");
}

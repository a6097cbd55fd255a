//! `ioclab lab reset`: runs' folders and the lab's state are built here (a
//! MISP store with events, a task database with tasks, an agent IoC file and
//! its backups, run.json manifests), then reset undoes exactly what the runs
//! created. Cleanup commands run in the lab network: those tests need root
//! and fail under `CI=true` when they cannot run.

mod common;
#[path = "../lab/tests/common/leftovers.rs"]
mod leftovers;
#[path = "../sandbox/tests/common/mod.rs"]
mod sandbox_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use ioclab_intel::store::{Role, Store, StoreError};
use ioclab_lab::data_dir::DataDir;
use ioclab_lab::engine::{EngineError, Lab, LabConfig, RunOptions};
use ioclab_lab::network::{LabNetConfig, LabNetwork};
use ioclab_lab::reset::{self, Action, AgentReload, Outcome, ResetRequest, Scope, Target};
use ioclab_lab::run::{Created, Manifest, Mode, RunFolder};
use ioclab_lab::scenario::{load, Loaded};
use ioclab_sandbox::api::db::{NewTask, TaskDb};
use ioclab_sandbox::api::queue::task_dir;
use leftovers::{alive, can_isolate, ns_users};
use serde_json::json;

const DNS: &str = "dns-ioc-why-kunai-rocks";
const DROPPER: &str = "malicious-script-dropper";
/// The agent's IoC file before any run: valid for the agent, with bytes a rewrite would not keep.
const ORIGINAL_IOCS: &[u8] =
    b"{\"value\": \"original.example\", \"severity\": 3}\n\n{\"severity\":5,\"value\":\"instructor.example\"}  \n";

/// A lab data directory with what runs leave behind (built here, no engine).
struct State {
    _tmp: tempfile::TempDir,
    data: DataDir,
}

impl State {
    fn new() -> State {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        std::fs::create_dir_all(data.agent_iocs().parent().unwrap()).unwrap();
        std::fs::write(data.agent_iocs(), ORIGINAL_IOCS).unwrap();
        State { _tmp: tmp, data }
    }

    fn arg(&self) -> &str {
        self.data.root().to_str().unwrap()
    }

    async fn store(&self) -> Store {
        Store::open(&self.data.misp_db()).await.unwrap()
    }

    /// An event added through the store (as the sandbox's MISP reporting does); its uuid.
    async fn add_event(&self, info: &str) -> String {
        let store = self.store().await;
        let key = store.create_key(&format!("{info}@lab.example"), Role::Publisher).await.unwrap();
        let user = store.user_for_key(&key).await.unwrap().unwrap();
        let ev = serde_json::from_value(json!({"info": info, "Attribute": [
            {"type": "domain", "value": format!("{info}.example"), "to_ids": true}]}))
        .unwrap();
        let id = store.add_event(&user, ev).await.unwrap();
        store.event(&id.to_string()).await.unwrap()["Event"]["uuid"].as_str().unwrap().to_string()
    }

    async fn has_event(&self, uuid: &str) -> bool {
        match self.store().await.event(uuid).await {
            Ok(_) => true,
            Err(StoreError::NotFound(_)) => false,
            Err(e) => panic!("{e}"),
        }
    }

    async fn tasks(&self) -> TaskDb {
        TaskDb::open(&self.data.sandbox_db()).await.unwrap()
    }

    /// A reported task with its folder (a report inside); its id.
    async fn add_task(&self) -> u64 {
        let t = NewTask { category: "file", target: "sample.sh".into(), timeout: 10, ..Default::default() };
        let id = self.tasks().await.create_reported(&t, 1.0, 2.0).await.unwrap();
        let dir = task_dir(&self.data.sandbox(), id).join("reports");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.json"), "{}").unwrap();
        id as u64
    }

    async fn has_task(&self, id: u64) -> bool {
        let row = self.tasks().await.view(id as i64).await.unwrap().is_some();
        let folder = task_dir(&self.data.sandbox(), id as i64).exists();
        assert_eq!(row, folder, "task {id}: its row and its folder go together");
        row
    }

    /// A finished live run of `scenario` that created `events` and `tasks`
    /// and, when `iocs` is given, wrote it as the agent's IoC file (saving
    /// the file it found first, as the engine does).
    fn run(&self, scenario: &str, started: f64, events: &[&str], tasks: &[u64], iocs: Option<&[u8]>) -> RunFolder {
        let (id, folder) = RunFolder::create(&self.data.runs(), &scenario.parse().unwrap(), started).unwrap();
        let mut created = Created {
            misp_events: events.iter().map(|e| e.to_string()).collect(),
            sandbox_tasks: tasks.to_vec(),
            ..Created::default()
        };
        if let Some(bytes) = iocs {
            folder.save_iocs_before(&self.data.agent_iocs(), &mut created).unwrap();
            std::fs::write(self.data.agent_iocs(), bytes).unwrap();
            std::fs::write(folder.path(RunFolder::IOCS), bytes).unwrap();
        }
        let m = Manifest {
            run: id,
            scenario: scenario.parse().unwrap(),
            scenario_uuid: "4f3b2a10-6c1d-4e8f-9a2b-0c1d2e3f4a5b".into(),
            version: 1,
            mode: Mode::Live,
            started,
            finished: Some(started + 5.0),
            passed: Some(true),
            created,
        };
        folder.write_manifest(&m).unwrap();
        folder
    }

    fn iocs(&self) -> Option<Vec<u8>> {
        std::fs::read(self.data.agent_iocs()).ok()
    }

    /// `ioclab lab reset ARGS --data DATA --dir DIR`.
    fn reset_cli(&self, args: &[&str], dir: &Path) -> (i32, String, String) {
        let mut all = vec!["lab", "reset"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data", self.arg(), "--dir", dir.to_str().unwrap()]);
        run(&all)
    }

    /// Every file under the data directory with its bytes, but the lock a
    /// reset takes while it works (it says which process holds the lab) and
    /// the SQLite stores, whose bytes change when this test's own connections
    /// close (a checkpoint): their contents are checked through the stores.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n != ioclab_lab::engine::lock::LOCK_FILE
                        && ![".db", ".db-wal", ".db-shm"].iter().any(|x| n.ends_with(x))
                }) {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.data.root(), &mut out);
        out
    }
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab-scenarios")
}

fn shipped(id: &str) -> Loaded {
    load::load(&scenarios_dir().join(id)).unwrap()
}

/// Runs reset through the API, collecting the actions it reports as it goes.
async fn api_reset(
    lab: &State,
    scope: Scope,
    scenarios: &[Loaded],
    check: bool,
    agent: Option<&dyn AgentReload>,
) -> (reset::ResetReport, Vec<Action>) {
    let req = ResetRequest { data: &lab.data, scope, scenarios, check, purge: false };
    let mut seen = Vec::new();
    let report = reset::reset(&req, agent, &mut |a: &Action| seen.push(a.clone())).await.unwrap();
    (report, seen)
}

#[tokio::test]
async fn reset_removes_exactly_what_the_runs_created_and_a_second_reset_says_there_is_nothing_to_do() {
    let lab = State::new();
    let kept_event = lab.add_event("instructor-made").await;
    let kept_task = lab.add_task().await;
    let (e1, e2) = (lab.add_event("run-one").await, lab.add_event("run-two").await);
    let (t1, t2) = (lab.add_task().await, lab.add_task().await);
    // two runs, each exporting IoCs: the second run's backup is the first run's export
    let r1 = lab.run(DNS, 1000.0, &[&e1], &[t1], Some(b"run one's IoCs\n"));
    let r2 = lab.run(DNS, 2000.0, &[&e2], &[t2], Some(b"run two's IoCs\n"));
    assert_eq!(std::fs::read(r2.path(RunFolder::IOCS_BEFORE)).unwrap(), b"run one's IoCs\n");

    let (code, out, err) = lab.reset_cli(&[DNS], &scenarios_dir());
    assert_eq!(code, 0, "{out}\n{err}");
    for uuid in [&e1, &e2] {
        assert!(out.contains(&format!("MISP event {uuid} (run ")) && !lab.has_event(uuid).await, "{out}");
    }
    for id in [t1, t2] {
        assert!(out.contains(&format!("sandbox task {id} (run ")) && !lab.has_task(id).await, "{out}");
    }
    // what no run created survives
    assert!(lab.has_event(&kept_event).await && lab.has_task(kept_task).await);
    // the IoC file is what it was before the FIRST run, byte for byte
    assert_eq!(lab.iocs().unwrap(), ORIGINAL_IOCS, "{out}");
    assert!(out.contains(&format!("restored from {}", r1.path(RunFolder::IOCS_BEFORE).display())), "{out}");
    assert!(out.contains("agent reload: nothing to do: no agent runs in this process"), "{out}");
    assert!(out.contains("cleanup of dns-ioc-why-kunai-rocks: nothing to do: the scenario has no cleanup commands"));
    assert!(out.contains("runs of dns-ioc-why-kunai-rocks: 2 reset, 0 already reset"), "{out}");
    // recorded, and the trainees' artifacts kept
    for r in [&r1, &r2] {
        let m = r.manifest().unwrap();
        assert!(m.created.reset.is_some() && m.created.iocs_restored && m.created.cleaned_up, "{m:?}");
        assert!(r.path(RunFolder::IOCS).exists());
    }

    // again: nothing to do, and it says so; nothing changes
    let before = lab.snapshot();
    let (code, out2, err) = lab.reset_cli(&[DNS], &scenarios_dir());
    assert_eq!(code, 0, "{out2}\n{err}");
    assert_eq!(out2.matches("nothing to do: already reset (").count(), 2, "{out2}");
    assert!(out2.contains("runs of dns-ioc-why-kunai-rocks: 0 reset, 2 already reset"), "{out2}");
    assert!(!out2.contains("MISP event") && !out2.contains("restored"), "{out2}");
    assert_eq!(lab.snapshot(), before);
    assert!(lab.has_event(&kept_event).await && lab.has_task(kept_task).await);
    assert!(!lab.has_event(&e1).await && !lab.has_task(t1).await);
}

#[tokio::test]
async fn check_says_what_it_would_do_and_changes_nothing() {
    let lab = State::new();
    let e1 = lab.add_event("run-one").await;
    let t1 = lab.add_task().await;
    let r1 = lab.run(DNS, 1000.0, &[&e1], &[t1], Some(b"run one's IoCs\n"));
    let before = lab.snapshot();
    let (code, out, err) = lab.reset_cli(&["--check", "--purge"], &scenarios_dir());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("MISP event {e1} (run {}): would delete it", r1.manifest().unwrap().run)), "{out}");
    assert!(out.contains(&format!("sandbox task {t1} (run ")) && out.contains("would delete it and its folder"));
    assert!(
        out.contains("would restore from ") && out.contains("would mark it reset") && out.contains("would remove it")
    );
    assert!(out.contains("runs: 1 would be reset, 0 already reset"), "{out}");
    assert_eq!(lab.snapshot(), before, "--check changed the data directory");
    assert!(lab.has_event(&e1).await && lab.has_task(t1).await);
}

#[tokio::test]
async fn what_is_already_gone_is_not_an_error_and_no_file_before_means_none_after() {
    let lab = State::new();
    std::fs::remove_file(lab.data.agent_iocs()).unwrap();
    let e1 = lab.add_event("run-one").await;
    let t1 = lab.add_task().await;
    let r = lab.run(DNS, 1000.0, &[&e1], &[t1], Some(b"run one's IoCs\n"));
    assert!(r.manifest().unwrap().created.ioc_file_absent);
    // someone deleted them already (the task's folder too)
    lab.store().await.delete_event(&e1).await.unwrap();
    lab.tasks().await.delete(t1 as i64).await.unwrap();
    std::fs::remove_dir_all(task_dir(&lab.data.sandbox(), t1 as i64)).unwrap();

    let (rep, seen) = api_reset(&lab, Scope::All, &[shipped(DNS)], false, None).await;
    assert!(!rep.failed(), "{seen:#?}");
    assert_eq!(seen, rep.actions, "every action was reported as it happened");
    let gone: Vec<&Target> = seen.iter().filter(|a| a.outcome == Outcome::AlreadyGone).map(|a| &a.target).collect();
    assert!(matches!(gone[..], [Target::MispEvent { .. }, Target::SandboxTask { .. }]), "{seen:#?}");
    assert_eq!(lab.iocs(), None, "there was no IoC file before the run");
    assert_eq!(rep.reset.len(), 1);
}

/// The running agent, as the engine would implement it.
struct CountingAgent(std::sync::atomic::AtomicU32);

impl AgentReload for CountingAgent {
    fn reload(&self) -> Result<String, String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok("the agent reloads its IoCs".into())
    }
}

#[tokio::test]
async fn resetting_one_scenario_keeps_another_scenarios_later_iocs_until_that_one_is_reset() {
    let lab = State::new();
    let (ea, eb) = (lab.add_event("run-a").await, lab.add_event("run-b").await);
    lab.run(DNS, 1000.0, &[&ea], &[], Some(b"A's IoCs\n"));
    let rb = lab.run(DROPPER, 2000.0, &[&eb], &[], Some(b"A's and B's IoCs\n"));
    let agent = CountingAgent(Default::default());
    let scenarios = [shipped(DNS)];

    let (rep, seen) = api_reset(&lab, Scope::Scenario(DNS.parse().unwrap()), &scenarios, false, Some(&agent)).await;
    assert!(!rep.failed(), "{seen:#?}");
    assert!(!lab.has_event(&ea).await && lab.has_event(&eb).await, "only A's event goes");
    assert_eq!(lab.iocs().unwrap(), b"A's and B's IoCs\n", "B's IoCs stay while B's run is not reset");
    let deferred = seen.iter().find(|a| matches!(a.target, Target::IocFile { .. })).unwrap().to_string();
    assert!(
        deferred.contains("stay for now") && deferred.contains(&format!("`ioclab lab reset {DROPPER}`")),
        "{deferred}"
    );
    assert_eq!(agent.0.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing changed: no reload");

    // B's cleanup needs root: give B no scenario, so that its runs stay
    // unreset, then reset it for real (the dropper's cleanup is `rm -f`)
    let (rep, _) = api_reset(&lab, Scope::Scenario(DROPPER.parse().unwrap()), &[], false, Some(&agent)).await;
    assert!(rep.failed() && rep.reset.is_empty(), "a run whose cleanup cannot run is not reset");
    assert_eq!(lab.iocs().unwrap(), ORIGINAL_IOCS, "the file itself is restored, A's backup first in the chain");
    assert!(!lab.has_event(&eb).await);
    assert_eq!(agent.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    let m = rb.manifest().unwrap();
    assert!(m.created.iocs_restored && !m.created.cleaned_up && m.created.reset.is_none(), "{m:?}");
}

#[tokio::test]
async fn purge_removes_reset_runs_folders_only() {
    let lab = State::new();
    let a = lab.run(DNS, 1000.0, &[], &[], Some(b"A\n"));
    let b = lab.run(DROPPER, 2000.0, &[], &[], None);
    let (code, out, err) = lab.reset_cli(&[DNS, "--purge"], &scenarios_dir());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!a.root().exists() && b.root().exists(), "{out}");
    assert!(out.contains(&format!("run folder {}: removed", a.root().display())), "{out}");
    assert_eq!(lab.iocs().unwrap(), ORIGINAL_IOCS);
}

#[test]
fn an_unknown_scenario_and_an_empty_lab_get_clear_answers() {
    let lab = State::new();
    let (code, out, err) = lab.reset_cli(&[], &scenarios_dir());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("no runs under ") && out.contains("nothing to reset"), "{out}");
    let (code, out, err) = lab.reset_cli(&["no-such-scenario"], &scenarios_dir());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("scenario no-such-scenario is not under"), "{err}");
    assert!(out.contains("no runs of no-such-scenario under"), "{out}");
    let (code, _, err) = lab.reset_cli(&["Not A Scenario"], &scenarios_dir());
    assert_ne!(code, 0);
    assert!(err.contains("Not A Scenario"), "{err}");
    let (code, out, _) = run(&["lab", "reset", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Examples:") && out.contains("--check") && out.contains("--purge"), "{out}");
}

/// A copy of the dns scenario whose cleanup is `cleanup` (YAML list items).
fn scenario_with_cleanup(root: &Path, cleanup: &str) -> PathBuf {
    let dir = root.join(DNS);
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(scenarios_dir().join(DNS)).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
    }
    let yaml = std::fs::read_to_string(dir.join("scenario.yaml")).unwrap();
    assert!(yaml.contains("\ncleanup: []\n"), "the dns scenario's cleanup changed: update this test");
    std::fs::write(dir.join("scenario.yaml"), yaml.replace("\ncleanup: []\n", &format!("\ncleanup:\n{cleanup}")))
        .unwrap();
    root.to_path_buf()
}

#[test]
fn cleanup_commands_run_in_the_lab_network_and_leave_nothing_behind() {
    if !can_isolate() {
        return;
    }
    let lab = State::new();
    let out_dir = tempfile::tempdir().unwrap();
    let o = out_dir.path().display().to_string();
    let cleanup = format!(
        "  - command: \"pwd > #{{out}}/cwd; readlink /proc/self/ns/net > #{{out}}/netns; readlink /proc/self/ns/mnt > #{{out}}/mntns; dig +short +time=3 +tries=1 why.kunai.rocks > #{{out}}/dns; \
         mkdir -p #{{out}}/mnt && mount -t tmpfs lab-reset-test #{{out}}/mnt; sleep 300 & echo $! > #{{out}}/bg; rm -f #{{out}}/marker\"\n    \
         args:\n      out: {{description: where the test looks, default: '{o}'}}\n"
    );
    let dir = scenario_with_cleanup(out_dir.path().join("scenarios").as_path(), &cleanup);
    std::fs::write(out_dir.path().join("marker"), "a step's leftover").unwrap();
    let r = lab.run(DNS, 1000.0, &[], &[], None);
    std::fs::create_dir(r.path(RunFolder::WORK_DIR)).unwrap();

    let (code, out, err) = lab.reset_cli(&[DNS], &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    // where the steps ran: the run's copy of the scenario, never the scenario's folder
    let cwd = std::fs::read_to_string(out_dir.path().join("cwd")).unwrap();
    assert_eq!(Path::new(cwd.trim()), r.path(RunFolder::WORK_DIR), "{out}");
    assert!(out.contains(&format!("cleanup of {DNS}: pwd > {o}/cwd; readlink /proc/self/ns/net > {o}/netns")), "{out}");
    assert!(out.contains(": exit 0 (in the lab network)"), "{out}");
    assert!(!out_dir.path().join("marker").exists(), "the cleanup ran");
    // in the lab's network namespace, with its resolver
    let netns = std::fs::read_to_string(out_dir.path().join("netns")).unwrap();
    assert_ne!(
        netns.trim(),
        std::fs::read_link("/proc/self/ns/net").unwrap().to_string_lossy(),
        "ran in the host's network"
    );
    let dns = std::fs::read_to_string(out_dir.path().join("dns")).unwrap();
    assert!(dns.contains("127.0.66.80"), "the lab resolver answered: {dns:?}");
    // nothing outlives it: the background process, the mount, the namespace
    let bg = std::fs::read_to_string(out_dir.path().join("bg")).unwrap();
    assert!(!alive(bg.trim()), "the cleanup's background process {bg} outlived it");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("lab-reset-test"), "the cleanup's mount leaked to the host");
    assert!(ns_users(netns.trim()).is_empty(), "the lab network is still held: {:?}", ns_users(netns.trim()));
    let mntns = std::fs::read_to_string(out_dir.path().join("mntns")).unwrap();
    assert!(ns_users(mntns.trim()).is_empty(), "its mount namespace is still held: {:?}", ns_users(mntns.trim()));
    assert!(r.manifest().unwrap().created.cleaned_up);

    // safe twice: reset again finds the run reset and does not run it again
    std::fs::write(out_dir.path().join("marker"), "again").unwrap();
    let (code, out, _) = lab.reset_cli(&[DNS], &dir);
    assert_eq!(code, 0);
    assert!(out.contains("already reset") && out_dir.path().join("marker").exists(), "{out}");
}

#[test]
fn a_failing_cleanup_is_named_with_its_output_and_the_run_stays_to_reset_again() {
    if !can_isolate() {
        return;
    }
    let lab = State::new();
    let tmp = tempfile::tempdir().unwrap();
    let flag = tmp.path().join("fixed");
    let cleanup =
        format!("  - command: \"echo cleaning up; echo 'no such thing' >&2; test -e {} || exit 3\"\n", flag.display());
    let dir = scenario_with_cleanup(&tmp.path().join("scenarios"), &cleanup);
    let r = lab.run(DNS, 1000.0, &[], &[], Some(b"run's IoCs\n"));
    let (code, out, err) = lab.reset_cli(&[DNS], &dir);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("FAILED: exit 3; its output:\n    cleaning up\n    no such thing"), "{out}");
    assert!(out.contains("FAILED: not reset: an action above failed"), "{out}");
    assert!(r.manifest().unwrap().created.reset.is_none());
    assert_eq!(lab.iocs().unwrap(), ORIGINAL_IOCS, "what could be undone was");

    std::fs::write(&flag, "").unwrap();
    let (code, out, err) = lab.reset_cli(&[DNS], &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("exit 0 (in the lab network)") && out.contains("reset (recorded in its run.json)"), "{out}");
    assert_eq!(lab.iocs().unwrap(), ORIGINAL_IOCS);
}

/// Runs `dig NAME` in a lab network (the fake internet answers every name)
/// and returns the agent's `dns_query` event of it.
fn dig_seen_by(lab: &Lab, name: &str) -> serde_json::Value {
    let from = lab.feed_position();
    let net = LabNetwork::start(LabNetConfig::default()).unwrap();
    let mut dig = std::process::Command::new("dig");
    dig.args(["+short", "+time=3", "+tries=1", name]).stdout(std::process::Stdio::null());
    let mut child = net.spawn(&mut dig).unwrap();
    let pid = u64::from(child.id());
    assert!(child.wait().unwrap().success(), "dig {name}");
    net.stop();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // dig queries from a thread: its events carry the process as tgid
        let seen = lab.endpoint_events_since(from).into_iter().find(|e| {
            e.name() == "dns_query"
                && e.event.pointer("/info/task/tgid").and_then(serde_json::Value::as_u64) == Some(pid)
        });
        if let Some(e) = seen {
            return (*e.event).clone();
        }
        assert!(std::time::Instant::now() < deadline, "the agent never saw dig {name} (pid {pid})");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The IoCs an event was flagged with.
fn flagged(event: &serde_json::Value) -> Vec<&str> {
    event
        .pointer("/detection/iocs")
        .and_then(|i| i.as_array())
        .map_or(Vec::new(), |i| i.iter().filter_map(|v| v.as_str()).collect())
}

/// A live run of `scenario`, then reset through the lab (as the web does,
/// its agent reloading); returns the run's folder and its sandbox tasks.
/// Whether each scenario passes is tests/lab_run.rs's business: a run that
/// failed midway is reset all the same (whatever it created goes), only
/// dns-ioc-why-kunai-rocks, whose detection this test checks, must pass.
fn run_then_reset(lab: &Lab, state: &State, rt: &tokio::runtime::Runtime, scenario: &Loaded) -> (RunFolder, Vec<u64>) {
    let id = scenario.scenario.id.as_str();
    let iocs_before = state.iocs();
    let run = lab.start_run(scenario, RunOptions { auto_publish: true, ..Default::default() }).unwrap();
    let folder = run.folder.clone();
    let passed = run.wait();
    assert!(passed || id != DNS, "{id}: the run failed: {:#?}", folder.timeline().unwrap());
    if !passed {
        eprintln!("note: {id}'s run failed (tests/lab_run.rs checks it passes); resetting it all the same");
    }
    let created = folder.manifest().unwrap().created;
    if passed {
        assert!(created.misp_events.len() == 1 && created.sandbox_tasks.len() == 1, "{id}: {created:?}");
        assert_ne!(state.iocs(), iocs_before, "{id}: the run loaded its IoCs");
    }
    for e in &created.misp_events {
        assert!(rt.block_on(state.has_event(e)), "{id}: event {e}");
    }
    for t in &created.sandbox_tasks {
        assert!(rt.block_on(state.has_task(*t)), "{id}: task {t}");
    }
    if id == DNS {
        assert_eq!(flagged(&dig_seen_by(lab, "why.kunai.rocks")), ["why.kunai.rocks"]);
    }

    let scope = Scope::Scenario(scenario.scenario.id.clone());
    let (rep, seen) = rt.block_on(api_reset(state, scope, std::slice::from_ref(scenario), false, Some(lab)));
    assert!(!rep.failed(), "{id}: {seen:#?}");
    assert_eq!(rep.reset, [folder.manifest().unwrap().run], "{id}");
    let cleaned = seen.iter().filter(|a| matches!(a.target, Target::Cleanup { command: Some(_), .. })).count();
    assert_eq!(cleaned, scenario.scenario.cleanup.len(), "{id}: each cleanup command ran: {seen:#?}");
    assert_eq!(state.iocs(), iocs_before, "{id}: restored byte for byte");
    for e in &created.misp_events {
        assert!(!rt.block_on(state.has_event(e)), "{id}: event {e} is still there");
    }
    for t in &created.sandbox_tasks {
        assert!(!rt.block_on(state.has_task(*t)), "{id}: task {t} is still there");
    }
    if id == DNS {
        // the agent dropped the run's IoC: the same query is seen, not flagged
        assert!(flagged(&dig_seen_by(lab, "why.kunai.rocks")).is_empty(), "the agent still holds the run's IoC");
    }
    (folder, created.sandbox_tasks)
}

/// Issue 14 item 8 (reset's part): live runs, each reset through the lab,
/// then reset again from the command line: nothing of the runs is left and
/// the agent is back to its IoCs of before. dns-ioc-why-kunai-rocks first on
/// a fresh lab (no IoC at all), then every shipped scenario with an
/// instructor's IoC file in place.
#[test]
fn live_runs_then_two_resets_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let state = State { data: DataDir::new(tmp.path().join("data")), _tmp: tmp };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = match Lab::open(LabConfig { data: state.data.clone() }) {
        Ok(lab) => lab,
        Err(EngineError::Unsupported(why)) => {
            assert!(!in_ci(), "CI=true and the live lab cannot run: {why}");
            return eprintln!("SKIPPED (not in CI): {why}");
        }
        Err(e) => panic!("the lab did not start: {e}"),
    };
    // what no run made: an instructor's event, an earlier task
    let kept_event = rt.block_on(state.add_event("instructor-made"));
    let kept_task = rt.block_on(state.add_task());

    // a fresh lab: the agent starts with no IoC, and is back to none
    let mut runs = vec![run_then_reset(&lab, &state, &rt, &shipped(DNS))];
    assert_eq!(state.iocs().unwrap(), b"", "a fresh lab's IoC file is empty");

    // an instructor's IoCs: restored byte for byte after each scenario's run, and in use again
    std::fs::write(state.data.agent_iocs(), ORIGINAL_IOCS).unwrap();
    lab.reload_agent().unwrap();
    let scenarios: Vec<Loaded> = load::find(&scenarios_dir())
        .unwrap()
        .iter()
        .map(|p| load::load(p).unwrap_or_else(|d| panic!("{d:?}")))
        .collect();
    for scenario in &scenarios {
        runs.push(run_then_reset(&lab, &state, &rt, scenario));
        assert_eq!(state.iocs().unwrap(), ORIGINAL_IOCS);
    }
    assert_eq!(flagged(&dig_seen_by(&lab, "original.example")), ["original.example"]);
    drop(lab);

    // reset again, from the command line: nothing to do, and it says so
    let before = state.snapshot();
    let (code, out, err) = state.reset_cli(&[], &scenarios_dir());
    assert_eq!(code, 0, "{out}\n{err}");
    for (f, _) in &runs {
        let run = f.manifest().unwrap().run;
        assert!(out.contains(&format!("run {run}: nothing to do: already reset")), "{out}");
    }
    assert!(out.contains(&format!("runs: 0 reset, {} already reset", runs.len())), "{out}");
    assert_eq!(state.snapshot(), before);

    // nothing of the runs is left: MISP events, sandbox tasks, IoCs, processes, mounts, namespaces
    let events = rt.block_on(async { state.store().await.index(&Default::default()).await.unwrap() });
    let uuids: Vec<&str> = events.iter().filter_map(|e| e["uuid"].as_str()).collect();
    assert_eq!(uuids, [kept_event.as_str()], "only the event no run made is left");
    for t in runs.iter().flat_map(|(_, tasks)| tasks) {
        assert!(!rt.block_on(state.has_task(*t)));
    }
    assert!(rt.block_on(state.has_task(kept_task)));
    let counts = rt.block_on(async { state.tasks().await.counts().await.unwrap() });
    assert_eq!(counts["total"], 1, "{counts}");
    assert_eq!(state.iocs().unwrap(), ORIGINAL_IOCS);
    let mut left = sandbox_common::leftovers(std::process::id(), None);
    left.extend(leftovers::of_lab(state.data.root(), std::process::id()));
    assert!(left.is_empty(), "left behind: {left:#?}");
}

//! Reset: undo what runs created outside their folders, so that the lab is
//! as before them. For each run not reset yet (of one scenario, or all):
//!
//! 1. its scenario's cleanup commands run in the scenario's lab network
//!    (once per scenario; they are safe to run twice);
//! 2. the MISP events it created are deleted from the embedded store, and
//!    its sandbox tasks (rows and folders);
//! 3. the agent's IoC file is put back as it was before the first run not
//!    undone (see [`runs`] for the backup chain), and a running agent is
//!    asked to reload it ([`AgentReload`]);
//! 4. its `run.json` records what was undone (`created.reset`): a second
//!    reset finds nothing to do and says so.
//!
//! Run folders stay (they are the trainees' artifacts) unless `purge`.
//! Every step is reported as an [`Action`]; with `check` nothing is changed
//! and the actions say what would be done. Something already gone is not an
//! error; a failing cleanup command is, and leaves the run not reset, so
//! that reset can be run again once it is fixed.

pub mod action;
pub mod cleanup;
pub mod runs;
pub mod stores;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use action::{Action, Outcome, Target};

use crate::data_dir::DataDir;
use crate::run::folder::{utc_stamp, FolderError};
use crate::run::{Mode, RunFolder, RunId};
use crate::scenario::{Loaded, ScenarioId};
use runs::{plan_iocs, read_runs, RunEntry};
use stores::Stores;

/// Asks the running endpoint agent to load its IoC file again (the engine
/// implements it over the agent's control; the CLI runs no agent).
pub trait AgentReload: Send + Sync {
    /// Requests the reload; `Ok` says what happened, for the report.
    fn reload(&self) -> Result<String, String>;
}

/// The live lab's agent (the web resets through the lab it runs).
impl AgentReload for crate::engine::Lab {
    fn reload(&self) -> Result<String, String> {
        let event = self.reload_agent()?;
        let n = event.pointer("/data/iocs").and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok(format!("the agent reloaded its IoC file ({n} IoCs)"))
    }
}

/// Which runs to reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every run.
    All,
    /// The runs of one scenario.
    Scenario(ScenarioId),
    /// These runs (one trainee's, from the web's dashboard); the cleanup
    /// commands of their scenarios run too (they are safe to run twice).
    Runs(std::collections::BTreeSet<RunId>),
}

impl Scope {
    fn covers(&self, run: &crate::run::Manifest) -> bool {
        match self {
            Scope::All => true,
            Scope::Scenario(s) => s == &run.scenario,
            Scope::Runs(ids) => ids.contains(&run.run),
        }
    }

    /// Whether a run folder named `name` may belong to this scope (for
    /// folders whose run.json cannot be read).
    fn may_hold(&self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Scenario(s) => name.strip_prefix(s.as_str()).is_some_and(|rest| rest.starts_with('-')),
            Scope::Runs(ids) => ids.iter().any(|id| id.as_str() == name),
        }
    }
}

/// What to reset, and how.
#[derive(Debug, Clone)]
pub struct ResetRequest<'a> {
    /// The lab's data directory.
    pub data: &'a DataDir,
    /// Which runs.
    pub scope: Scope,
    /// The scenarios, for their cleanup commands and lab networks (a run
    /// whose scenario is not here cannot be cleaned up: an error).
    pub scenarios: &'a [Loaded],
    /// Say what would be done, change nothing.
    pub check: bool,
    /// Also remove the folders of reset runs.
    pub purge: bool,
}

/// What a reset did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResetReport {
    /// Every action, in order.
    pub actions: Vec<Action>,
    /// The runs reset now (with `check`: that would be).
    pub reset: Vec<RunId>,
    /// The runs in scope that were already reset.
    pub already_reset: Vec<RunId>,
}

impl ResetReport {
    /// Whether an action failed.
    pub fn failed(&self) -> bool {
        self.actions.iter().any(Action::failed)
    }
}

/// Why reset could not start.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The runs' folder could not be read.
    #[error(transparent)]
    Runs(#[from] FolderError),
}

/// Resets the runs `req` names; each action goes to `on_action` as it is done.
///
/// Call it when no run is going on (a run being reset would lose its event
/// and task under it): the CLI holds the data directory's lock, which a
/// running lab holds too; the web calls it between runs of its lab, with the
/// lab as `agent`.
pub async fn reset(
    req: &ResetRequest<'_>,
    agent: Option<&dyn AgentReload>,
    on_action: &mut (dyn FnMut(&Action) + Send),
) -> Result<ResetReport, ResetError> {
    let runs::Runs { runs, unreadable } = read_runs(&req.data.runs())?;
    let read = runs.iter().map(|e| e.manifest.clone()).collect();
    let mut r = Resetter { req, runs, read, report: ResetReport::default(), on_action, ok: Vec::new() };
    for (path, e) in unreadable {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if req.scope.may_hold(&name) {
            r.act(Target::Folder { path }, Outcome::failed(format!("not a readable run, left as is: {e}")));
        }
    }
    let resetting: Vec<bool> =
        r.runs.iter().map(|e| req.scope.covers(&e.manifest) && e.manifest.created.reset.is_none()).collect();
    r.ok = vec![true; r.runs.len()];
    r.already_reset();
    let cleaned = r.cleanup(&resetting).await;
    r.delete_created(&resetting).await;
    r.restore_iocs(&resetting, agent);
    r.mark(&resetting, &cleaned);
    if req.purge {
        r.purge();
    }
    Ok(r.report)
}

struct Resetter<'r, 'a> {
    req: &'r ResetRequest<'a>,
    runs: Vec<RunEntry>,
    /// The manifests as read: each one that changes is written back.
    read: Vec<crate::run::Manifest>,
    report: ResetReport,
    on_action: &'r mut (dyn FnMut(&Action) + Send),
    /// Per run: every action about it went well so far.
    ok: Vec<bool>,
}

impl Resetter<'_, '_> {
    fn act(&mut self, target: Target, outcome: Outcome) -> bool {
        let a = Action::new(target, outcome);
        (self.on_action)(&a);
        let ok = !a.failed();
        self.report.actions.push(a);
        ok
    }

    fn run_id(&self, i: usize) -> RunId {
        self.runs[i].manifest.run.clone()
    }

    fn already_reset(&mut self) {
        for i in 0..self.runs.len() {
            let m = &self.runs[i].manifest;
            let Some(at) = m.created.reset.filter(|_| self.req.scope.covers(m)) else { continue };
            let run = m.run.clone();
            self.report.already_reset.push(run.clone());
            self.act(Target::Run { run }, Outcome::skipped(format!("already reset ({})", utc_stamp(at as i64))));
        }
    }

    /// Runs the cleanup commands of every scenario with a live run being
    /// reset that was not cleaned up yet (once: they are safe to run twice,
    /// and undo what any of its runs did); returns which scenarios are clean.
    async fn cleanup(&mut self, resetting: &[bool]) -> BTreeMap<ScenarioId, bool> {
        // each scenario's newest such run: the commands run where its steps ran
        let mut newest = BTreeMap::new();
        for (i, &resetting) in resetting.iter().enumerate() {
            let c = &self.runs[i].manifest;
            if resetting && c.mode == Mode::Live && !c.created.cleaned_up {
                newest.insert(c.scenario.clone(), i);
            }
        }
        let mut clean = BTreeMap::new();
        for (id, i) in newest {
            let ok = self.cleanup_scenario(&id, i).await;
            clean.insert(id, ok);
        }
        clean
    }

    /// Runs scenario `id`'s cleanup commands in the folder where run `i`'s
    /// steps ran (its `work/` copy of the scenario's files; the run folder
    /// when the steps never ran), never in the scenario's own folder.
    async fn cleanup_scenario(&mut self, id: &ScenarioId, i: usize) -> bool {
        let Some(loaded) = self.req.scenarios.iter().find(|l| &l.scenario.id == id) else {
            return self.act(
                Target::Cleanup { scenario: id.clone(), command: None },
                Outcome::failed("scenario not found, so its cleanup commands cannot run (give its folder with --dir)"),
            );
        };
        if loaded.scenario.cleanup.is_empty() {
            return self.act(
                Target::Cleanup { scenario: id.clone(), command: None },
                Outcome::skipped("the scenario has no cleanup commands"),
            );
        }
        let work = self.runs[i].folder.path(RunFolder::WORK_DIR);
        let cwd = if work.is_dir() { work } else { self.runs[i].folder.root().to_path_buf() };
        let mut all_ok = true;
        for cmd in &loaded.scenario.cleanup {
            let target = Target::Cleanup { scenario: id.clone(), command: Some(cleanup::rendered(cmd)) };
            if self.req.check {
                self.act(target, Outcome::would(format!("run it in the scenario's lab network, in {}", cwd.display())));
                continue;
            }
            let (scenario, cmd, dir) = (loaded.clone(), cmd.clone(), cwd.clone());
            let done = tokio::task::spawn_blocking(move || {
                cleanup::run(&scenario, &cmd, &dir).map(|f| (f.ok(), f.status(cmd.timeout_secs), f.output))
            })
            .await;
            let outcome = match done {
                Ok(Ok((true, status, _))) => Outcome::done(format!("{status} (in the lab network)")),
                Ok(Ok((false, status, output))) => {
                    Outcome::failed(format!("{status}; its output:\n{}", indent(&output)))
                }
                Ok(Err(e)) => Outcome::failed(format!("{e} (cleanup runs in the lab network: needs root)")),
                Err(e) => Outcome::failed(format!("the cleanup command's thread failed: {e}")),
            };
            all_ok &= self.act(target, outcome);
        }
        all_ok
    }

    /// Deletes the MISP events and sandbox tasks of the runs being reset.
    async fn delete_created(&mut self, resetting: &[bool]) {
        let mut stores = Stores::new(self.req.data);
        for i in (0..self.runs.len()).filter(|&i| resetting[i]) {
            let (run, created) = (self.run_id(i), self.runs[i].manifest.created.clone());
            for uuid in created.misp_events {
                let outcome =
                    if self.req.check { Outcome::would("delete it") } else { stores.delete_event(&uuid).await };
                self.ok[i] &= self.act(Target::MispEvent { run: run.clone(), uuid }, outcome);
            }
            for id in created.sandbox_tasks {
                let outcome = if self.req.check {
                    Outcome::would("delete it and its folder")
                } else {
                    stores.delete_task(id).await
                };
                self.ok[i] &= self.act(Target::SandboxTask { run: run.clone(), id }, outcome);
            }
        }
    }

    /// Puts the agent's IoC file back (see [`runs::plan_iocs`]), then asks the agent to reload it.
    fn restore_iocs(&mut self, resetting: &[bool], agent: Option<&dyn AgentReload>) {
        let plan = plan_iocs(&self.runs, resetting);
        let path = self.req.data.agent_iocs();
        if let Some(from) = plan.restore_from {
            let source = &self.runs[from];
            let before = source.manifest.run.clone();
            let outcome = match ioc_source(source) {
                Err(e) => Outcome::failed(e),
                Ok(src) if self.req.check => Outcome::would(describe_restore(src.as_deref(), &before, "")),
                Ok(src) => match restore(src.as_deref(), &path) {
                    Ok(()) => Outcome::done(describe_restore(src.as_deref(), &before, "d")),
                    Err(e) => Outcome::failed(e),
                },
            };
            let ok = self.act(Target::IocFile { path: path.clone() }, outcome);
            for &i in &plan.restored {
                self.ok[i] &= ok;
                self.runs[i].manifest.created.iocs_restored |= ok;
            }
            if ok {
                let outcome = match (self.req.check, agent) {
                    (true, Some(_)) => Outcome::would("ask the running agent to reload its IoCs"),
                    (_, None) => {
                        Outcome::skipped("no agent runs in this process (an `ioclab agent` reloads on SIGHUP)")
                    }
                    (false, Some(a)) => match a.reload() {
                        Ok(what) => Outcome::done(what),
                        Err(e) => Outcome::failed(e),
                    },
                };
                self.act(Target::AgentReload, outcome);
            }
        }
        for (i, blocker) in plan.deferred {
            let (run, later) = (self.run_id(i), &self.runs[blocker].manifest);
            let reason = format!(
                "run {run}'s IoCs stay for now: run {} of {} changed the file after it and is not being reset \
                 (`ioclab lab reset {}`, or reset all, restores it)",
                later.run, later.scenario, later.scenario
            );
            self.act(Target::IocFile { path: path.clone() }, Outcome::skipped(reason));
        }
    }

    /// Records in each run.json what was undone: a run is reset when all of it was.
    fn mark(&mut self, resetting: &[bool], cleaned: &BTreeMap<ScenarioId, bool>) {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        for (i, &resetting) in resetting.iter().enumerate() {
            if resetting {
                let created = &mut self.runs[i].manifest.created;
                if let Some(&clean) = cleaned.get(&self.read[i].scenario) {
                    self.ok[i] &= clean;
                    created.cleaned_up = clean;
                }
                if self.ok[i] {
                    created.reset = Some(now);
                }
            }
            let changed = self.runs[i].manifest != self.read[i];
            if changed && !self.req.check {
                if let Err(e) = self.runs[i].folder.write_manifest(&self.runs[i].manifest) {
                    self.ok[i] = false;
                    let outcome = Outcome::failed(format!("recording the reset: {e}"));
                    self.act(Target::Run { run: self.run_id(i) }, outcome);
                    continue;
                }
            }
            if !resetting {
                continue;
            }
            let run = self.run_id(i);
            let outcome = match (self.req.check, self.ok[i]) {
                (true, true) => Outcome::would("mark it reset in its run.json"),
                (false, true) => Outcome::done("reset (recorded in its run.json)"),
                (_, false) => Outcome::failed(
                    "not reset: an action above failed; fix it and reset again (every action is safe to repeat)",
                ),
            };
            if self.ok[i] {
                self.report.reset.push(run.clone());
            }
            self.act(Target::Run { run }, outcome);
        }
    }

    /// Removes the folders of the reset runs in scope, unless one still holds
    /// the IoC backup a later reset needs.
    fn purge(&mut self) {
        for i in 0..self.runs.len() {
            let m = &self.runs[i].manifest;
            if !self.req.scope.covers(m) || m.created.reset.is_none() {
                continue;
            }
            let (run, path) = (m.run.clone(), self.runs[i].folder.root().to_path_buf());
            let outcome = if m.created.changed_iocs() && !m.created.iocs_restored {
                Outcome::skipped("kept: its iocs.before.json is needed to restore the agent's IoC file later")
            } else if self.req.check {
                Outcome::would("remove it")
            } else {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => Outcome::done("removed"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::AlreadyGone,
                    Err(e) => Outcome::failed(format!("removing it: {e}")),
                }
            };
            self.act(Target::Purge { run, path }, outcome);
        }
    }
}

/// The file a run kept of the agent's IoC file (`None`: there was none).
fn ioc_source(run: &RunEntry) -> Result<Option<PathBuf>, String> {
    let Some(name) = &run.manifest.created.ioc_backup else { return Ok(None) };
    // run.json is read from disk: its backup must be a file of the run folder
    let plain = Path::new(name).file_name().is_some_and(|n| n == name.as_str()) && name != "..";
    if !plain {
        return Err(format!("run {}: ioc_backup {name:?} is not a file name in its folder", run.manifest.run));
    }
    Ok(Some(run.folder.path(name)))
}

/// "restore it from X (as before run R)" / "remove it (there was none before run R)"; `ed` makes it past tense.
fn describe_restore(src: Option<&Path>, before: &RunId, ed: &str) -> String {
    match src {
        Some(p) => format!("restore{ed} from {} (as before run {before})", p.display()),
        None if ed.is_empty() => format!("remove it (there was none before run {before})"),
        None => format!("removed (there was none before run {before})"),
    }
}

/// Makes `path` hold exactly the bytes of `src` (atomically), or not exist.
fn restore(src: Option<&Path>, path: &Path) -> Result<(), String> {
    let Some(src) = src else {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing it: {e}")),
        };
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // the agent may reload at any moment: it must never see half a file
    let tmp = path.with_extension("restore.tmp");
    std::fs::copy(src, &tmp).map_err(|e| format!("copying {}: {e}", src.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("replacing it: {e}")
    })
}

/// `text` indented by four spaces (a command's output under its action).
fn indent(text: &str) -> String {
    let t = text.trim_end();
    if t.is_empty() {
        return "    (no output)".into();
    }
    t.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenarios_scope_holds_its_runs_folders_only() {
        let s = Scope::Scenario("dns".parse().unwrap());
        assert!(s.may_hold("dns-20261130T000000Z"));
        assert!(!s.may_hold("dns2-20261130T000000Z") && !s.may_hold("dns"));
        assert!(Scope::All.may_hold("anything"));
    }

    #[test]
    fn a_runs_scope_covers_those_runs_only() {
        let mine = entry("x").manifest;
        let mut other = mine.clone();
        other.run = RunId::parse("other").unwrap();
        let s = Scope::Runs([mine.run.clone()].into_iter().collect());
        assert!(s.covers(&mine) && !s.covers(&other));
        assert!(s.may_hold("r") && !s.may_hold("other"));
    }

    fn entry(name: &str) -> RunEntry {
        RunEntry {
            folder: RunFolder::open("/runs/r"),
            manifest: crate::run::Manifest {
                run: RunId::parse("r").unwrap(),
                scenario: "s".parse().unwrap(),
                scenario_uuid: String::new(),
                version: 1,
                mode: Mode::Live,
                started: 0.0,
                finished: None,
                passed: None,
                created: crate::run::Created { ioc_backup: Some(name.into()), ..Default::default() },
            },
        }
    }

    #[test]
    fn a_backup_outside_the_run_folder_is_refused() {
        assert_eq!(ioc_source(&entry("iocs.before.json")).unwrap(), Some(PathBuf::from("/runs/r/iocs.before.json")));
        for bad in ["../../etc/passwd", "/etc/passwd", "..", "a/b", ""] {
            assert!(ioc_source(&entry(bad)).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever run.json says, the backup read is a file right inside the run's folder.
        #[test]
        fn a_backup_name_never_leads_out_of_the_run_folder(name in "[./a-z\\\\\\-]{0,12}") {
            if let Ok(Some(p)) = ioc_source(&entry(&name)) {
                proptest::prop_assert_eq!(p.parent(), Some(Path::new("/runs/r")));
                proptest::prop_assert!(p.file_name().is_some_and(|n| n != ".."));
            }
        }
    }

    #[test]
    fn restore_is_byte_for_byte_or_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (src, path) = (dir.path().join("before"), dir.path().join("agent/iocs.json"));
        std::fs::write(&src, b"{\"a\":1}\n\0bytes").unwrap();
        restore(Some(&src), &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n\0bytes");
        restore(None, &path).unwrap();
        assert!(!path.exists());
        restore(None, &path).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("agent")).unwrap().count(), 0, "no temporary file left");
    }

    #[test]
    fn output_is_indented_under_its_action() {
        assert_eq!(indent("a\nb\n"), "    a\n    b");
        assert_eq!(indent("\n"), "    (no output)");
    }
}

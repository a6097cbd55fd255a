//! The runs reset looks at, and which state of the agent's IoC file it can
//! put back.
//!
//! The IoC file is one for the whole lab, and each run that changed it kept
//! the file as it found it. Those backups form a chain: after runs R1 then
//! R2, R1 kept the original and R2 kept R1's result. Undoing both means
//! restoring R1's backup (the state before the FIRST run not undone), not
//! R2's. Undoing only a run that another run not being reset changed the
//! file after would remove that other run's IoCs too: then the restore waits
//! until that run is reset as well (and is done then, from the older backup).

use std::path::{Path, PathBuf};

use crate::run::folder::FolderError;
use crate::run::{Manifest, RunFolder};

/// A run's folder and its manifest.
#[derive(Debug, Clone)]
pub struct RunEntry {
    /// The folder.
    pub folder: RunFolder,
    /// Its `run.json`.
    pub manifest: Manifest,
}

/// What the runs' folder holds.
#[derive(Debug, Default)]
pub struct Runs {
    /// The runs, oldest first.
    pub runs: Vec<RunEntry>,
    /// The folders that are not readable runs, with why.
    pub unreadable: Vec<(PathBuf, FolderError)>,
}

/// The runs under `runs`. No `runs` folder: no runs.
pub fn read_runs(runs: &Path) -> Result<Runs, FolderError> {
    let dir = match std::fs::read_dir(runs) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Runs::default()),
        Err(e) => return Err(FolderError::Io { path: runs.to_path_buf(), source: e }),
    };
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for entry in dir {
        let entry = entry.map_err(|source| FolderError::Io { path: runs.to_path_buf(), source })?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let folder = RunFolder::open(&path);
        match folder.manifest() {
            Ok(manifest) => good.push(RunEntry { folder, manifest }),
            Err(e) => bad.push((path, e)),
        }
    }
    good.sort_by(|a: &RunEntry, b: &RunEntry| {
        a.manifest.started.total_cmp(&b.manifest.started).then_with(|| a.manifest.run.cmp(&b.manifest.run))
    });
    bad.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Runs { runs: good, unreadable: bad })
}

/// What to do with the agent's IoC file, over `runs` (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IocPlan {
    /// Put back the state kept by this run (an index into `runs`): its
    /// backup, or no file when there was none before it.
    pub restore_from: Option<usize>,
    /// The runs whose IoCs leave the file with that restore (to mark).
    pub restored: Vec<usize>,
    /// Runs being reset whose IoCs stay for now, each with the run (not
    /// being reset) that changed the file after it.
    pub deferred: Vec<(usize, usize)>,
}

/// Plans the IoC file's restore when the runs flagged in `resetting` are
/// being reset (see the module's doc). Runs already reset whose restore was
/// deferred are undone with them when nothing newer stands in the way.
pub fn plan_iocs(runs: &[RunEntry], resetting: &[bool]) -> IocPlan {
    let pending: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].manifest.created.changed_iocs() && !runs[i].manifest.created.iocs_restored)
        .collect();
    let free = |i: usize| resetting[i] || runs[i].manifest.created.reset.is_some();
    // the longest run of free entries at the newest end of the chain
    let start = pending.iter().rposition(|&i| !free(i)).map_or(0, |p| p + 1);
    let mut plan = IocPlan::default();
    if start < pending.len() {
        plan.restore_from = Some(pending[start]);
        plan.restored = pending[start..].to_vec();
    }
    if start > 0 {
        let blocker = pending[start - 1];
        plan.deferred = pending[..start].iter().copied().filter(|&i| resetting[i]).map(|i| (i, blocker)).collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Created, Mode, RunId};

    fn run(name: &str, started: f64, changed: bool, restored: bool, reset: bool) -> RunEntry {
        RunEntry {
            folder: RunFolder::open(name),
            manifest: Manifest {
                run: RunId::parse(name).unwrap(),
                scenario: "s".parse().unwrap(),
                scenario_uuid: String::new(),
                version: 1,
                mode: Mode::Live,
                started,
                finished: Some(started + 1.0),
                passed: Some(true),
                created: Created {
                    ioc_backup: changed.then(|| RunFolder::IOCS_BEFORE.to_string()),
                    iocs_restored: restored,
                    reset: reset.then_some(started + 2.0),
                    ..Created::default()
                },
            },
        }
    }

    #[test]
    fn two_runs_then_one_reset_restore_the_first_runs_backup() {
        let runs = [run("a", 1.0, true, false, false), run("b", 2.0, true, false, false)];
        let plan = plan_iocs(&runs, &[true, true]);
        assert_eq!(plan, IocPlan { restore_from: Some(0), restored: vec![0, 1], deferred: vec![] });
    }

    #[test]
    fn runs_that_did_not_touch_the_file_or_were_restored_are_not_in_the_chain() {
        let runs =
            [run("old", 0.0, true, true, true), run("a", 1.0, false, false, false), run("b", 2.0, true, false, false)];
        assert_eq!(plan_iocs(&runs, &[false, true, true]).restore_from, Some(2));
        assert_eq!(plan_iocs(&runs, &[false, true, false]), IocPlan::default());
    }

    #[test]
    fn a_newer_run_not_being_reset_defers_the_restore_and_an_older_one_is_kept() {
        // a (scenario A), then b (scenario B): resetting A alone must not drop B's IoCs
        let runs = [run("a", 1.0, true, false, false), run("b", 2.0, true, false, false)];
        let plan = plan_iocs(&runs, &[true, false]);
        assert_eq!(plan, IocPlan { restore_from: None, restored: vec![], deferred: vec![(0, 1)] });
        // once a is reset (restore deferred), resetting b restores from a's backup
        let runs = [run("a", 1.0, true, false, true), run("b", 2.0, true, false, false)];
        assert_eq!(
            plan_iocs(&runs, &[false, true]),
            IocPlan { restore_from: Some(0), restored: vec![0, 1], deferred: vec![] }
        );
        // resetting b alone when a is not being reset: back to the state after a
        let runs = [run("a", 1.0, true, false, false), run("b", 2.0, true, false, false)];
        assert_eq!(
            plan_iocs(&runs, &[false, true]),
            IocPlan { restore_from: Some(1), restored: vec![1], deferred: vec![] }
        );
    }

    #[test]
    fn runs_are_read_oldest_first_and_unreadable_folders_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_runs(&dir.path().join("none")).unwrap().runs.is_empty());
        for r in [run("late", 5.0, false, false, false), run("early", 1.0, false, false, false)] {
            let f = RunFolder::open(dir.path().join(r.manifest.run.as_str()));
            std::fs::create_dir(f.root()).unwrap();
            f.write_manifest(&r.manifest).unwrap();
        }
        std::fs::create_dir(dir.path().join("broken")).unwrap();
        std::fs::write(dir.path().join("broken/run.json"), "{").unwrap();
        let Runs { runs: good, unreadable: bad } = read_runs(dir.path()).unwrap();
        let names: Vec<&str> = good.iter().map(|r| r.manifest.run.as_str()).collect();
        assert_eq!(names, ["early", "late"]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].1.to_string().contains("broken/run.json:1:"), "{}", bad[0].1);
    }
}

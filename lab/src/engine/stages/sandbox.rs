//! Stage `sandbox`: the scenario's sample, detonated as a task of the lab's
//! sandbox store with the scenario's DNS records and services (the same
//! fake internet the endpoint steps meet), or its recorded report imported.

use std::path::Path;

use ioclab_sandbox::api::db::{NewTask, Status};
use ioclab_sandbox::api::{import, queue};
use ioclab_sandbox::detonation::{Detonator, Job, Target};
use ioclab_sandbox::report::{self, Report};
use ioclab_sandbox::sample;

use super::Outcome;
use crate::engine::run::Run;
use crate::network::LabNetConfig;
use crate::run::RunFolder;
use crate::scenario::SandboxKind;

/// Wall-clock limit of a lab detonation, seconds (the sample ends sooner: the task ends with it).
const DETONATION_TIMEOUT_S: u64 = 30;

pub(super) fn run(run: &mut Run) -> Outcome {
    match detonate(run) {
        Ok(o) => o,
        Err(why) => Outcome::failed(why),
    }
}

fn detonate(run: &mut Run) -> Result<Outcome, String> {
    let s = run.loaded.scenario.clone();
    let src = run.loaded.dir.join(&s.sample.file);
    let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or("the sample has no file name")?;
    let copy_dir = run.artifact(RunFolder::SAMPLE_DIR);
    std::fs::create_dir_all(&copy_dir).map_err(|e| format!("{}: {e}", copy_dir.display()))?;
    let copy = copy_dir.join(&name);
    std::fs::copy(&src, &copy).map_err(|e| format!("copying the sample {}: {e}", src.display()))?;
    let storage = run.lab.data.sandbox();
    let report = match s.sample.sandbox {
        SandboxKind::Embedded => embedded(run, &copy, &name, &storage)?,
        SandboxKind::Recorded => recorded(run, &storage)?,
        other => {
            return Err(format!(
                "sandbox {other:?} is not run by the live lab: use `embedded`, or `recorded` with the report it made"
            ))
        }
    };
    let dest = run.artifact(RunFolder::REPORT);
    crate::run::folder::write_json(&dest, &report).map_err(|e| e.to_string())?;
    let summary = format!(
        "task {}: score {:.1}, {} processes, {} domains, {} hosts, {} dropped files{}",
        report.info.id,
        report.info.score,
        report.behavior.processes.len(),
        report.network.domains.len(),
        report.network.hosts.len(),
        report.dropped.len(),
        if s.sample.sandbox == SandboxKind::Recorded { " (recorded report, no detonation)" } else { "" }
    );
    run.report = Some(report);
    Ok(Outcome::passed(summary, Some(RunFolder::REPORT)))
}

/// A detonation in the embedded sandbox, as a task of the lab's store.
fn embedded(run: &mut Run, sample_file: &Path, name: &str, storage: &Path) -> Result<Report, String> {
    let lab = run.lab.clone();
    let facts = sample::facts(sample_file).map_err(|e| format!("{}: {e}", sample_file.display()))?;
    let sha = facts.sha256.to_string();
    let bin = queue::binary_path(storage, &sha);
    if let Some(dir) = bin.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::copy(sample_file, &bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let task = NewTask {
        category: "file",
        target: name.to_string(),
        sample: Some(facts),
        timeout: DETONATION_TIMEOUT_S,
        priority: 1,
        custom: Some(format!("ioclab lab run {}", run.manifest.run)),
        owner: Some("ioclab-lab".into()),
        tags: "ioclab-lab".into(),
        ..Default::default()
    };
    let id = lab.rt.block_on(lab.tasks.create(&task)).map_err(|e| format!("adding the sandbox task: {e}"))?;
    // running at once: no queue of this store picks it up meanwhile
    let set = |status: Status, error: Option<&str>| {
        lab.rt.block_on(lab.tasks.set_status(id, status, error)).map_err(|e| format!("task {id}: {e}"))
    };
    set(Status::Running, None)?;
    run.created(|c| c.sandbox_tasks.push(id as u64));
    let dir = queue::task_dir(storage, id);
    let binary = dir.join("binary");
    let prepared = std::fs::create_dir_all(dir.join("reports")).and_then(|_| std::fs::copy(&bin, &binary));
    if let Err(e) = prepared {
        let why = format!("preparing {}: {e}", dir.display());
        set(Status::FailedAnalysis, Some(&why))?;
        return Err(why);
    }
    let net = LabNetConfig::from_scenario(&run.loaded).map_err(|e| format!("the scenario's lab network: {e}"))?;
    let job = Job {
        task_id: id as u64,
        target: Target::File { path: binary, name: name.to_string() },
        args: Vec::new(),
        package: None,
        timeout_s: DETONATION_TIMEOUT_S,
        enforce_timeout: false,
        memory_bytes: 512 << 20,
        max_pids: 256,
        as_root: run.loaded.scenario.sample.as_root,
        dns: net.records,
        services: net.services,
        options: Default::default(),
    };
    let det = match lab.sandbox.detonate(&job, &dir) {
        Ok(d) => d,
        Err(e) => {
            let why = format!("the detonation failed: {e}");
            set(Status::FailedAnalysis, Some(&why))?;
            return Err(why);
        }
    };
    set(Status::Completed, None)?;
    let report = report::build(&job, &det);
    let path = queue::report_path(storage, id);
    if let Err(e) = crate::run::folder::write_json(&path, &report) {
        set(Status::FailedReporting, Some(&e.to_string()))?;
        return Err(e.to_string());
    }
    set(Status::Reported, None)?;
    Ok(report)
}

/// A recorded report, imported as a task (reported) of the lab's store.
fn recorded(run: &mut Run, storage: &Path) -> Result<Report, String> {
    let lab = run.lab.clone();
    let rel = run.loaded.scenario.sample.report.clone().ok_or("sandbox: recorded needs sample.report")?;
    let path = run.loaded.dir.join(rel);
    let report = Report::from_file(&path).map_err(|e| e.to_string())?;
    let origin = path.display().to_string();
    let id = lab.rt.block_on(import::import(&lab.tasks, storage, report, &origin)).map_err(|e| e.to_string())?;
    run.created(|c| c.sandbox_tasks.push(id as u64));
    Report::from_file(&queue::report_path(storage, id)).map_err(|e| e.to_string())
}

//! Stage `export`: the published events' IoCs exported from the embedded
//! MISP with warninglists (intel's export, as `ioclab misp export` does);
//! iocs.json keeps this run's event's lines. Every `expect.iocs` value must
//! be among them, and no `expect.absent` value: either fails the stage, named.

use ioclab_intel::export::config::{ExportConfig, MispConfig};
use ioclab_intel::export::iocs::IocLine;
use ioclab_intel::export::{self, ExportOptions};
use ioclab_intel::warninglists::Warninglists;

use super::{declared_addresses, Outcome};
use crate::engine::run::Run;
use crate::run::{RunEventKind, RunFolder};

/// The `source` of the lab's IoC lines.
pub(super) const SOURCE: &str = "ioclab-lab";

pub(super) fn run(run: &mut Run) -> Outcome {
    match export(run) {
        Ok(o) => o,
        Err(why) => Outcome::failed(why),
    }
}

/// Reads IoC lines (JSON lines; others are reported by the agent, not here).
pub(super) fn read_lines(text: &str) -> Vec<IocLine> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn export(run: &mut Run) -> Result<Outcome, String> {
    let uuid = run.event_uuid.clone().ok_or("no MISP event")?;
    let lab = run.lab.clone();
    let cfg = ExportConfig {
        misp: MispConfig {
            name: SOURCE.into(),
            url: lab.misp.url.clone(),
            key: lab.misp.keys.publisher.clone(),
            ssl: true,
            enable: true,
            ca_file: None,
            max_answer_mib: ioclab_intel::client::DEFAULT_ANSWER_LIMIT >> 20,
        },
        feeds: Vec::new(),
    };
    let all = run.artifact(".export-all.json");
    let warninglists = run.loaded.scenario.misp.warninglists;
    let opts = ExportOptions {
        last_days: None,
        all: false,
        warninglists,
        allow: declared_addresses(run),
        overwrite: true,
        output: Some(all.clone()),
        ..ExportOptions::default()
    };
    let none = Warninglists::empty();
    let lists = if warninglists { Warninglists::embedded() } else { &none };
    let report = lab.rt.block_on(export::export(&cfg, &opts, lists)).map_err(|e| format!("export: {e}"))?;
    let text = std::fs::read_to_string(&all).map_err(|e| format!("{}: {e}", all.display()))?;
    let _ = std::fs::remove_file(&all);
    let ours: Vec<IocLine> = read_lines(&text).into_iter().filter(|l| l.event_uuid == uuid).collect();
    let mut out = String::new();
    for l in &ours {
        out += &serde_json::to_string(l).expect("IoC lines serialise");
        out.push('\n');
    }
    let dest = run.artifact(RunFolder::IOCS);
    std::fs::write(&dest, out).map_err(|e| format!("{}: {e}", dest.display()))?;
    let warned: Vec<String> = report
        .warned
        .iter()
        .filter(|(l, _)| l.event_uuid == uuid)
        .map(|(l, hit)| format!("{} ({})", l.value, hit.name))
        .collect();
    let mut summary = format!("{} IoCs of event {uuid} exported", ours.len());
    if !warned.is_empty() {
        summary += &format!(", {} left out by warninglists: {}", warned.len(), warned.join(", "));
    }
    let has = |v: &str| ours.iter().any(|l| l.value.eq_ignore_ascii_case(v));
    let missing: Vec<String> =
        run.loaded.scenario.expect.iocs.iter().map(|i| i.value.as_str().to_string()).filter(|v| !has(v)).collect();
    for v in &missing {
        let reason = match report.warned.iter().find(|(l, _)| l.event_uuid == uuid && l.value.eq_ignore_ascii_case(v)) {
            Some((_, hit)) => format!("expected IoC {v} is not in the export: on warninglist {}", hit.name),
            None => format!("expected IoC {v} is not in the export (not in MISP event {uuid} as an IDS attribute)"),
        };
        run.log.emit(RunEventKind::ExpectationFailed { expected: v.clone(), reason, nearest: None });
    }
    // values the filters must keep out (a public resolver, a well-known domain)
    let present: Vec<String> =
        run.loaded.scenario.expect.absent.iter().map(|i| i.value.as_str().to_string()).filter(|v| has(v)).collect();
    for v in &present {
        let reason = format!("{v} was exported although the scenario expects the filters to keep it out");
        run.log.emit(RunEventKind::ExpectationFailed { expected: v.clone(), reason, nearest: None });
    }
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!("expected IoCs missing from the export: {}", missing.join(", ")));
    }
    if !present.is_empty() {
        why.push(format!("values exported that must not be: {}", present.join(", ")));
    }
    if why.is_empty() {
        Ok(Outcome::passed(summary, Some(RunFolder::IOCS)))
    } else {
        Ok(Outcome::failed(why.join("; ")).with_summary(summary).with_artifact(RunFolder::IOCS))
    }
}

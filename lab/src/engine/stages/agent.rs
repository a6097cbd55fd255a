//! Stage `agent`: the run's IoCs reach the running endpoint agent. Its IoC
//! file is backed up into the run folder (iocs.before.json, for reset),
//! the new set written, and the agent asked to reload; the stage ends with
//! the agent's outcome event (`ioc_reload`, or the `error` saying why not).
//!
//! The new set is the previous one plus this run's IoCs (merge, not
//! replace): the IoCs an instructor loaded, and earlier runs' not reset
//! yet, keep detecting; reset restores the file as it was before the
//! first run it undoes, so nothing accumulates past a reset.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::export::read_lines;
use super::Outcome;
use crate::engine::run::Run;
use crate::engine::LabInner;
use crate::run::RunFolder;

/// How long the agent may take to reload its IoCs.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn run(run: &mut Run) -> Outcome {
    match load(run) {
        Ok(o) => o,
        Err(why) => Outcome::failed(why),
    }
}

fn load(run: &mut Run) -> Result<Outcome, String> {
    let file = run.lab.data.agent_iocs();
    let before = std::fs::read_to_string(&file).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(String::new()),
        _ => Err(format!("{}: {e}", file.display())),
    })?;
    let mut created = run.manifest.created.clone();
    run.folder.save_iocs_before(&file, &mut created).map_err(|e| e.to_string())?;
    run.created(|c| *c = created);
    let ours =
        std::fs::read_to_string(run.artifact(RunFolder::IOCS)).map_err(|e| format!("{}: {e}", RunFolder::IOCS))?;
    let (merged, added) = merge(&before, &ours);
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, merged)
        .and_then(|_| std::fs::rename(&tmp, &file))
        .map_err(|e| format!("writing {}: {e}", file.display()))?;
    let outcome = reload(&run.lab)?;
    let loaded = outcome.pointer("/data/iocs").and_then(Value::as_u64).unwrap_or(0);
    let mut summary = format!(
        "{added} new IoCs added to {} ({loaded} loaded by the agent); the previous file is kept as {}",
        file.display(),
        RunFolder::IOCS_BEFORE
    );
    if let Some(endpoint) = &run.remote {
        // a push replaces the endpoint's set: its current one (the class's) plus the run's, merged as here
        let name = endpoint.name();
        let current = endpoint.current_iocs().map_err(|e| format!("the IoCs of endpoint {name}: {e}"))?;
        let (merged, added) = merge(&current, &ours);
        let label = format!("run {}", run.manifest.run);
        let said = endpoint
            .push_iocs(&label, &merged, RELOAD_TIMEOUT)
            .map_err(|e| format!("pushing the run's IoCs to endpoint {name}: {e}"))?;
        let kept = read_lines(&current).len();
        summary += &format!("; {added} new IoCs pushed to endpoint {name} (its {kept} kept), applied: {said}");
    }
    Ok(Outcome::passed(summary, Some(RunFolder::IOCS_BEFORE)))
}

/// `before` with the lines of `ours` it lacks (by attribute uuid and value); and how many were added.
fn merge(before: &str, ours: &str) -> (String, usize) {
    let mut seen: HashSet<(String, String)> = read_lines(before).into_iter().map(|l| (l.uuid, l.value)).collect();
    let mut out = before.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut added = 0;
    for (line, parsed) in ours.lines().filter_map(|l| Some((l, read_lines(l).pop()?))) {
        if seen.insert((parsed.uuid, parsed.value)) {
            out += line;
            out.push('\n');
            added += 1;
        }
    }
    (out, added)
}

/// Asks the agent to reload and waits for its outcome: the `ioc_reload` event, or the `error` saying why not.
pub(crate) fn reload(lab: &LabInner) -> Result<Value, String> {
    let from = lab.endpoint.lock().unwrap_or_else(|e| e.into_inner()).request_reload();
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    match lab.feed.wait_for(from, deadline, |e| e.name() == "ioc_reload" || (e.name() == "error" && own_event(e))) {
        Some(e) if e.name() == "ioc_reload" => Ok((*e.event).clone()),
        Some(e) => Err(format!(
            "the agent kept its previous IoCs: {}",
            e.event.pointer("/data/message").and_then(Value::as_str).unwrap_or("error")
        )),
        None => Err(format!("the agent did not say it reloaded within {} s", RELOAD_TIMEOUT.as_secs())),
    }
}

/// Whether `e` is the agent's own (its `error` events have the agent's pid; others' errors are about processes).
fn own_event(e: &crate::engine::FeedEvent) -> bool {
    let pid = std::process::id() as u64;
    e.event.pointer("/info/task/tgid").and_then(Value::as_u64) == Some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(uuid: &str, value: &str) -> String {
        format!(r#"{{"type":"domain","uuid":"{uuid}","source":"s","value":"{value}","event_uuid":"e","severity":7}}"#)
    }

    #[test]
    fn merging_keeps_the_previous_set_and_adds_only_new_lines() {
        let before = format!("{}\n# a comment kept\n{}", line("a", "x.example"), line("b", "y.example"));
        let ours = format!("{}\n{}\n", line("b", "y.example"), line("c", "z.example"));
        let (merged, added) = merge(&before, &ours);
        assert_eq!(added, 1);
        assert_eq!(merged, format!("{before}\n{}\n", line("c", "z.example")));
        assert_eq!(merge("", &ours), (ours.clone(), 2));
    }
}

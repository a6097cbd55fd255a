//! The timeline as text: one line per event as it comes ([`line`]), and a
//! final table of the stages ([`table`]: stage, start, duration, result,
//! artifact). `ioclab lab run` prints both, live or replayed alike.

use std::fmt::Write as _;
use std::io::Write;

use serde_json::Value;

use super::event::{Mode, RunEvent, RunEventKind, StageResult, StreamName};
use super::log::RunLog;
use crate::scenario::Stage;

/// Seconds with two decimals (`12.34s`).
fn secs(ms: u64) -> String {
    format!("{}.{:02}s", ms / 1000, ms % 1000 / 10)
}

/// `passed`, `FAILED: why`, `skipped: why`.
fn result_text(r: &StageResult) -> String {
    match r {
        StageResult::Passed => "passed".into(),
        StageResult::Failed { reason } => format!("FAILED: {reason}"),
        StageResult::Skipped { reason } => format!("skipped: {reason}"),
    }
}

/// An event's JSON on one line, cut at `max` characters (an agent event is long).
pub fn compact(v: &Value, max: usize) -> String {
    let s = v.to_string();
    if s.chars().count() <= max {
        return s;
    }
    let mut cut: String = s.chars().take(max).collect();
    cut.push('…');
    cut
}

/// What an agent event is, in a few words: name, detection IoCs and severity.
pub fn describe_event(event: &Value) -> String {
    let name = event.pointer("/info/event/name").and_then(Value::as_str).unwrap_or("event");
    let mut out = name.to_string();
    if let Some(iocs) = event.pointer("/detection/iocs").and_then(Value::as_array) {
        let iocs: Vec<&str> = iocs.iter().filter_map(Value::as_str).collect();
        let _ = write!(out, " detection.iocs=[{}]", iocs.join(", "));
    }
    if let Some(sev) = event.pointer("/detection/severity").and_then(Value::as_u64) {
        let _ = write!(out, " severity={sev}");
    }
    if let Some(exe) = event.pointer("/info/task/exe/path").and_then(Value::as_str) {
        let _ = write!(out, " by {exe}");
    }
    out
}

/// What a stage does while it runs, for a watcher who would think it hangs.
fn stage_hint(stage: Stage) -> &'static str {
    match stage {
        Stage::Sandbox => " (detonating the sample: a few seconds)",
        Stage::Agent => " (the endpoint agent reloads its IoCs)",
        Stage::Detection => " (waiting for the expected detections)",
        _ => "",
    }
}

/// One line for `event` (no newline).
pub fn line(event: &RunEvent) -> String {
    let at = format!("[{:>8}]", secs(event.at_ms));
    let text = match &event.kind {
        RunEventKind::Started { scenario, version, run, mode, .. } => {
            let mode = match mode {
                Mode::Live => "live",
                Mode::Replay => "replay",
            };
            format!("run {run}: scenario {scenario} v{version} ({mode})")
        }
        RunEventKind::StageStarted { stage } => format!("{:<9} started{}", stage.to_string(), stage_hint(*stage)),
        RunEventKind::StageWaiting { stage, reason } => format!("{:<9} waiting: {reason}", stage.to_string()),
        RunEventKind::StageFinished { stage, result, summary, artifact } => {
            let mut s = format!("{:<9} {}", stage.to_string(), result_text(result));
            if !summary.is_empty() {
                let _ = write!(s, " — {summary}");
            }
            if let Some(a) = artifact {
                let _ = write!(s, " [{a}]");
            }
            s
        }
        RunEventKind::StepsAsked { endpoint, steps, .. } => {
            let commands: Vec<&str> = steps.iter().map(|a| a.command.as_str()).collect();
            format!("steps     asked of the trainee on endpoint {endpoint}: $ {}", commands.join(" ; $ "))
        }
        RunEventKind::StepStarted { step, command } => format!("step {step} $ {command}"),
        RunEventKind::StepOutput { step, stream, line } => {
            let mark = match stream {
                StreamName::Stdout => '|',
                StreamName::Stderr => '!',
            };
            format!("step {step} {mark} {line}")
        }
        RunEventKind::StepFinished { step, exit_code } => match exit_code {
            Some(c) => format!("step {step} exited {c}"),
            None => format!("step {step} killed at its timeout"),
        },
        RunEventKind::Detection { expected, event } => {
            format!("detection {expected}: {}", describe_event(event))
        }
        RunEventKind::ExpectationFailed { expected, reason, nearest } => {
            let mut s = format!("EXPECTATION FAILED {expected}: {reason}");
            match nearest {
                Some(n) => {
                    let _ = write!(s, "; nearest event seen: {} {}", describe_event(n), compact(n, 400));
                }
                None => s.push_str("; no event seen that comes near"),
            }
            s
        }
        RunEventKind::Finished { passed } => {
            if *passed {
                "run passed".into()
            } else {
                "run FAILED".into()
            }
        }
    };
    format!("{at} {text}")
}

/// One stage's row of the final table.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    /// The stage.
    pub stage: Stage,
    /// When it started (ms since the run started).
    pub start_ms: u64,
    /// How long it took (`None`: it never finished).
    pub duration_ms: Option<u64>,
    /// How it ended (`None`: it never finished).
    pub result: Option<StageResult>,
    /// Its artifact, relative to the run folder.
    pub artifact: Option<String>,
}

/// The stages the events show, in the order they started.
pub fn stage_rows(events: &[RunEvent]) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = Vec::new();
    for e in events {
        match &e.kind {
            RunEventKind::StageStarted { stage } => rows.push(StageRow {
                stage: *stage,
                start_ms: e.at_ms,
                duration_ms: None,
                result: None,
                artifact: None,
            }),
            RunEventKind::StageFinished { stage, result, artifact, .. } => {
                let row = match rows.iter_mut().rev().find(|r| r.stage == *stage && r.result.is_none()) {
                    Some(r) => r,
                    None => {
                        // finished without a start (a skipped stage may only say so)
                        rows.push(StageRow {
                            stage: *stage,
                            start_ms: e.at_ms,
                            duration_ms: None,
                            result: None,
                            artifact: None,
                        });
                        rows.last_mut().expect("just pushed")
                    }
                };
                row.duration_ms = Some(e.at_ms.saturating_sub(row.start_ms));
                row.result = Some(result.clone());
                row.artifact = artifact.clone();
            }
            _ => {}
        }
    }
    rows
}

/// The final table: stage, start, duration, result, artifact path.
pub fn table(events: &[RunEvent]) -> String {
    let mut out = format!("{:<10} {:>9} {:>9}  {:<8} {}\n", "stage", "start", "duration", "result", "artifact");
    for r in stage_rows(events) {
        let result = match &r.result {
            None => "unfinished",
            Some(StageResult::Passed) => "passed",
            Some(StageResult::Failed { .. }) => "FAILED",
            Some(StageResult::Skipped { .. }) => "skipped",
        };
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>9}  {:<8} {}",
            r.stage.to_string(),
            secs(r.start_ms),
            r.duration_ms.map(secs).unwrap_or_else(|| "-".into()),
            result,
            r.artifact.as_deref().unwrap_or("-")
        );
    }
    let failures: Vec<&RunEvent> =
        events.iter().filter(|e| matches!(e.kind, RunEventKind::ExpectationFailed { .. })).collect();
    for f in failures {
        if let RunEventKind::ExpectationFailed { expected, reason, .. } = &f.kind {
            let _ = writeln!(out, "failed expectation {expected}: {reason}");
        }
    }
    out
}

/// Whether the events end with a passed run (`None`: not finished).
pub fn outcome(events: &[RunEvent]) -> Option<bool> {
    events.iter().rev().find_map(|e| match e.kind {
        RunEventKind::Finished { passed } => Some(passed),
        _ => None,
    })
}

/// Prints `log`'s events to `out` as they come (the past first), until the
/// run finishes, then the table; returns whether the run passed. Blocking:
/// call it from a plain thread, not from an async task.
pub fn follow(log: &RunLog, out: &mut dyn Write) -> std::io::Result<bool> {
    let (past, mut rx) = log.watch();
    for e in &past {
        writeln!(out, "{}", line(e))?;
    }
    let mut finished = outcome(&past);
    while finished.is_none() {
        match rx.blocking_recv() {
            Ok(e) => {
                writeln!(out, "{}", line(&e))?;
                out.flush()?;
                if let RunEventKind::Finished { passed } = e.kind {
                    finished = Some(passed);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                writeln!(out, "(timeline: {n} events skipped by a slow terminal; timeline.jsonl has them all)")?;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    let events = log.events();
    write!(out, "\n{}", table(&events))?;
    Ok(outcome(&events).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: u64, kind: RunEventKind) -> RunEvent {
        RunEvent { at_ms, kind }
    }

    fn sample_run() -> Vec<RunEvent> {
        vec![
            ev(0, RunEventKind::StageStarted { stage: Stage::Sandbox }),
            ev(
                2500,
                RunEventKind::StageFinished {
                    stage: Stage::Sandbox,
                    result: StageResult::Passed,
                    summary: "score 4".into(),
                    artifact: Some("report.json".into()),
                },
            ),
            ev(2500, RunEventKind::StageStarted { stage: Stage::Publish }),
            ev(2510, RunEventKind::StageWaiting { stage: Stage::Publish, reason: "an instructor must publish".into() }),
            ev(
                9000,
                RunEventKind::StageFinished {
                    stage: Stage::Publish,
                    result: StageResult::Failed { reason: "never published".into() },
                    summary: String::new(),
                    artifact: None,
                },
            ),
            ev(
                9100,
                RunEventKind::ExpectationFailed {
                    expected: "dns-why".into(),
                    reason: "no dns_query within 10 s".into(),
                    nearest: Some(serde_json::json!({"info": {"event": {"name": "dns_query"}}})),
                },
            ),
            ev(9200, RunEventKind::StageStarted { stage: Stage::Steps }),
            ev(9300, RunEventKind::Finished { passed: false }),
        ]
    }

    #[test]
    fn the_table_has_each_stage_with_start_duration_result_and_artifact() {
        let t = table(&sample_run());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], "sandbox        0.00s     2.50s  passed   report.json");
        assert_eq!(lines[2], "publish        2.50s     6.50s  FAILED   -");
        assert_eq!(lines[3], "steps          9.20s         -  unfinished -");
        assert_eq!(lines[4], "failed expectation dns-why: no dns_query within 10 s");
        assert_eq!(outcome(&sample_run()), Some(false));
    }

    #[test]
    fn lines_say_what_happened_and_name_the_nearest_event() {
        let run = sample_run();
        assert_eq!(line(&run[1]), "[   2.50s] sandbox   passed — score 4 [report.json]");
        assert_eq!(line(&run[3]), "[   2.51s] publish   waiting: an instructor must publish");
        let failed = line(&run[5]);
        assert!(failed.contains("EXPECTATION FAILED dns-why: no dns_query within 10 s"), "{failed}");
        assert!(failed.contains("nearest event seen: dns_query"), "{failed}");
        let out = ev(1, RunEventKind::StepOutput { step: id("dig"), stream: StreamName::Stderr, line: "oops".into() });
        assert_eq!(line(&out), "[   0.00s] step dig ! oops");
        let killed = ev(12_345, RunEventKind::StepFinished { step: id("dig"), exit_code: None });
        assert_eq!(line(&killed), "[  12.34s] step dig killed at its timeout");
        let step =
            |n: &str, c: &str| crate::run::AskedStep { step: id(n), description: String::new(), command: c.into() };
        let asked = ev(
            1000,
            RunEventKind::StepsAsked {
                endpoint: "alice/laptop".into(),
                steps: vec![step("dig", "dig why.kunai.rocks"), step("run", "./sample.sh")],
                timeout_secs: 900,
            },
        );
        assert_eq!(
            line(&asked),
            "[   1.00s] steps     asked of the trainee on endpoint alice/laptop: $ dig why.kunai.rocks ; $ ./sample.sh"
        );
    }

    #[test]
    fn long_events_are_cut() {
        let v = serde_json::json!({"a": "x".repeat(1000)});
        let c = compact(&v, 50);
        assert_eq!(c.chars().count(), 51);
        assert!(c.ends_with('…'));
    }

    #[test]
    fn follow_prints_until_finished_then_the_table() {
        let log = RunLog::new(None).unwrap();
        for e in sample_run().into_iter().take(3) {
            log.emit_at(e.at_ms, e.kind);
        }
        let writer = log.clone();
        let t = std::thread::spawn(move || {
            writer.emit_at(9300, RunEventKind::Finished { passed: true });
        });
        let mut out = Vec::new();
        let passed = follow(&log, &mut out).unwrap();
        t.join().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(passed);
        assert!(text.contains("run passed") && text.contains("stage ") && text.contains("report.json"), "{text}");
    }

    fn id(s: &str) -> crate::scenario::ScenarioId {
        serde_json::from_str(&format!("\"{s}\"")).unwrap()
    }
}

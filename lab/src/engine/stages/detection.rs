//! Stage `detection`: each expected detection must be seen in the endpoint
//! events of the run's steps (event name, the IoC in `detection.iocs`, the
//! field's value, the minimum severity) within its `within_secs` from the
//! start of the steps. A miss names the expectation and the nearest event
//! seen instead. Only the steps' processes count: a sandbox detonation's
//! events go to its tap, never to the endpoint output, and an event of
//! another process of the machine is not the run's.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Outcome;
use crate::engine::endpoint::FeedEvent;
use crate::engine::run::Run;
use crate::run::{RunEventKind, RunFolder};
use crate::scenario::ExpectedDetection;

/// Watches the run's feed for the expected detections from the start of
/// the steps, in a thread: each `detection` is emitted as it comes.
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    /// How many expectations were seen so far.
    seen: Arc<AtomicUsize>,
    /// From when each expectation's `within_secs` counts (`None`: not yet).
    clock: Clock,
    thread: Option<JoinHandle<Vec<Option<f64>>>>,
}

/// From when the expectations' `within_secs` count: the steps' start, or,
/// for steps a trainee runs by hand, when they said they ran them (a person
/// takes longer to type them than a step's window). Shared with the watch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock(Arc<Mutex<Option<Instant>>>);

impl Clock {
    /// Counting from `at`.
    pub fn started(at: Instant) -> Clock {
        Clock(Arc::new(Mutex::new(Some(at))))
    }

    /// Starts counting now (once: a later call keeps the first start).
    pub fn start_now(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Instant::now);
    }

    fn deadline(&self, within: Duration) -> Option<Instant> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).map(|t| t + within)
    }
}

/// How often a waiting watch looks whether it was stopped.
const SLICE: Duration = Duration::from_millis(200);

impl Watch {
    /// Starts watching for `run`'s expected detections, timed from `t0`, their windows counted on `clock`.
    pub(super) fn start(run: &Run, t0: Instant, clock: Clock) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen_count = Arc::new(AtomicUsize::new(0));
        let (expected, feed, log) = (run.loaded.scenario.expect.detections.clone(), run.feed.clone(), run.log.clone());
        let (filter, from, halt) = (run.steps_filter.clone(), run.feed_start, stop.clone());
        // on a trainee's endpoint every event of the run's time is the run's
        let everything = run.remote.is_some();
        let (counter, clk) = (seen_count.clone(), clock.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for d in &expected {
                let within = Duration::from_secs(u64::from(d.within_secs));
                let found = loop {
                    let deadline = clk.deadline(within);
                    let slice = deadline.map_or(Instant::now() + SLICE, |dl| (Instant::now() + SLICE).min(dl));
                    if let Some(e) = feed.wait_for(from, slice, |e| (everything || filter.contains(e)) && matches(d, e))
                    {
                        break Some(e);
                    }
                    if halt.load(Ordering::Relaxed) || deadline.is_some_and(|dl| Instant::now() >= dl) {
                        break None;
                    }
                };
                seen.push(found.map(|e| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    log.emit(RunEventKind::Detection { expected: d.id.clone(), event: (*e.event).clone() });
                    e.at.saturating_duration_since(t0).as_secs_f64()
                }));
            }
            seen
        });
        Watch { stop, seen: seen_count, clock, thread: Some(thread) }
    }

    /// Whether every expected detection was seen already.
    pub(super) fn all_seen(&self, expected: usize) -> bool {
        self.seen.load(Ordering::Relaxed) >= expected
    }

    /// The clock the expectations' windows count on.
    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// When each expected detection was seen, seconds after the steps' start (waits for their deadlines).
    fn wait(mut self) -> Vec<Option<f64>> {
        self.clock.start_now();
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }

    /// Stops watching (the run ended early).
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wait();
    }
}

pub(super) fn run(run: &mut Run) -> Outcome {
    let expected = run.loaded.scenario.expect.detections.clone();
    if expected.is_empty() {
        return Outcome::skipped("the scenario expects no detection", "");
    }
    let Some(watch) = run.detections.take() else { return Outcome::failed("the steps did not run") };
    let found = watch.wait();
    let mut seen = Vec::new();
    let mut missed = Vec::new();
    for (d, at) in expected.iter().zip(found.iter().copied().chain(std::iter::repeat(None))) {
        match at {
            Some(after) => seen.push(format!("{} after {after:.2} s", d.id)),
            None => {
                let nearest = nearest(run, d).map(|e| (*e.event).clone());
                let reason = format!("no {} within {} s of the steps' start", wanted(d, &place(run)), d.within_secs);
                missed.push(d.id.to_string());
                run.log.emit(RunEventKind::ExpectationFailed { expected: d.id.to_string(), reason, nearest });
            }
        }
    }
    if let Err(e) = run.write_events() {
        return Outcome::failed(format!("{}: {e}", RunFolder::EVENTS));
    }
    let summary = format!("{}/{} expected detections seen: {}", seen.len(), expected.len(), seen.join(", "));
    if missed.is_empty() {
        Outcome::passed(summary, Some(RunFolder::EVENTS))
    } else {
        Outcome::failed(format!("expected detections not seen: {}", missed.join(", ")))
            .with_summary(summary)
            .with_artifact(RunFolder::EVENTS)
    }
}

/// What the expectation waits for, in words.
fn wanted(d: &ExpectedDetection, place: &str) -> String {
    let mut s = format!("{} event with {} in detection.iocs", d.event, d.ioc);
    if d.min_severity > 0 {
        s += &format!(" (severity ≥ {})", d.min_severity);
    }
    if let Some(f) = &d.field {
        s += &format!(" and {f} = {}", d.ioc);
    }
    s + place
}

/// Where the run awaits its detections, for a miss's reason.
fn place(run: &Run) -> String {
    match &run.remote {
        Some(r) => format!(" on the trainee's endpoint {}", r.name()),
        None => " from the steps' processes".into(),
    }
}

/// The value at a dotted path (`data.exe.sha256`).
fn field<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(event, |v, k| v.get(k))
}

/// Whether `v` is (or holds) `text`, ignoring case.
fn holds(v: &Value, text: &str) -> bool {
    match v {
        Value::String(s) => s.eq_ignore_ascii_case(text),
        Value::Array(a) => a.iter().any(|x| holds(x, text)),
        Value::Number(n) => n.to_string() == text,
        _ => false,
    }
}

/// Whether `e`'s detection names the expected IoC.
fn detects(d: &ExpectedDetection, e: &FeedEvent) -> bool {
    let det = &e.event["detection"];
    det.get("iocs").is_some_and(|i| holds(i, d.ioc.as_str()))
        && det.get("severity").and_then(Value::as_u64).unwrap_or(0) >= u64::from(d.min_severity)
}

/// Whether `e` is what `d` expects.
pub(super) fn matches(d: &ExpectedDetection, e: &FeedEvent) -> bool {
    e.name() == d.event
        && detects(d, e)
        && d.field.as_deref().is_none_or(|f| field(&e.event, f).is_some_and(|v| holds(v, d.ioc.as_str())))
}

/// The event nearest to what `d` expects, among those the run saw: first
/// the steps' events of that name (with a detection first), then any
/// detection of that IoC, of that name, or any detection at all.
fn nearest(run: &Run, d: &ExpectedDetection) -> Option<FeedEvent> {
    let events = run.feed.since(run.feed_start);
    let ranks: [&dyn Fn(&FeedEvent) -> bool; 6] = [
        &|e| run.is_step_event(e) && e.name() == d.event && e.detected(),
        &|e| run.is_step_event(e) && e.name() == d.event,
        &|e| e.detected() && detects(d, e),
        &|e| e.detected() && e.name() == d.event,
        &|e| run.is_step_event(e) && e.detected(),
        &|e| e.detected(),
    ];
    ranks.iter().find_map(|rank| events.iter().find(|e| rank(e)).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(field: Option<&str>, min_severity: u8) -> ExpectedDetection {
        ExpectedDetection {
            id: "dig".parse().unwrap(),
            event: "dns_query".into(),
            field: field.map(str::to_string),
            ioc: "why.kunai.rocks".parse().unwrap(),
            min_severity,
            within_secs: 10,
        }
    }

    fn event(v: Value) -> FeedEvent {
        FeedEvent { seq: 0, at: Instant::now(), event: Arc::new(v) }
    }

    #[test]
    fn an_event_matches_by_name_ioc_severity_and_field() {
        let e = event(serde_json::json!({
            "data": {"query": "Why.Kunai.Rocks", "response": ["127.0.66.80"]},
            "info": {"event": {"name": "dns_query"}},
            "detection": {"iocs": ["why.kunai.rocks"], "severity": 7}
        }));
        assert!(matches(&expected(Some("data.query"), 7), &e));
        assert!(!matches(&expected(Some("data.query"), 8), &e), "severity too low");
        assert!(!matches(&expected(Some("data.response"), 0), &e), "the field holds another value");
        assert!(!matches(&expected(Some("data.nothing"), 0), &e), "no such field");
        let mut other = expected(None, 0);
        other.event = "connect".into();
        assert!(!matches(&other, &e), "another event name");
        let plain =
            event(serde_json::json!({"data": {"query": "why.kunai.rocks"}, "info": {"event": {"name": "dns_query"}}}));
        assert!(!matches(&expected(None, 0), &plain), "no detection");
        assert!(wanted(&expected(Some("data.query"), 3), "").contains("severity ≥ 3"));
    }
}

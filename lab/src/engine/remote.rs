//! A trainee's own endpoint, as a run sees it (`expect.endpoint: trainee`).
//!
//! The lab engine does not know how endpoints reach the appliance (the web
//! crate's enrolment, batches and orders do): it asks this trait to push
//! the run's IoCs and wait until they are applied, to read the endpoint's
//! events from a point on, and to run the steps there when the endpoint
//! allows it. [`Pump`] copies those events into a run's own [`Feed`], so the
//! detection stage, the nearest event of a miss and `events.jsonl` (which
//! the questions judge from) work on them as on the lab agent's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::endpoint::Feed;
use crate::scenario::{Executor, LabNetwork, ScenarioId};

/// Why an endpoint did not do what a run asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

/// One event of an endpoint, with its position (increasing) in the endpoint's store.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEvent {
    /// Its position: [`RemoteEndpoint::events_after`] this one gives the next ones.
    pub position: u64,
    /// The Kunai JSON event, as the agent shipped it.
    pub event: Value,
}

/// The steps of a run sent to an endpoint that joined with `--allow-steps`:
/// what its agent runs in a lab network namespace of its own machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepsOrder {
    /// The scenario.
    pub scenario: ScenarioId,
    /// The run's id.
    pub run: String,
    /// The lab network the steps need (DNS records, fake services).
    pub network: LabNetwork,
    /// The steps, in order, their arguments filled in.
    pub steps: Vec<OrderedStep>,
}

/// One step of a [`StepsOrder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderedStep {
    /// The step's id.
    pub id: ScenarioId,
    /// The shell.
    pub executor: Executor,
    /// The command, `#{args}` filled in.
    pub command: String,
    /// Killed (with its children) after this many seconds.
    pub timeout_secs: u32,
}

/// A trainee's endpoint a run pushes IoCs to, reads events from and (when
/// allowed) runs steps on. Calls block (the engine runs in threads).
pub trait RemoteEndpoint: Send + Sync + std::fmt::Debug {
    /// Who it is, for the timeline (`alice/laptop`).
    fn name(&self) -> String;

    /// Pushes `lines` (Kunai IoC file lines) as the endpoint's IoC set and
    /// waits, up to `timeout`, until its agent says it applied them; the
    /// agent's message.
    fn push_iocs(&self, label: &str, lines: &str, timeout: Duration) -> Result<String, RemoteError>;

    /// The IoC set the endpoint holds now (the newest push targeting it; empty: none), as IoC file lines.
    fn current_iocs(&self) -> Result<String, RemoteError>;

    /// The position of its newest stored event (0: none): what comes later is after it.
    fn position(&self) -> Result<u64, RemoteError>;

    /// Up to `limit` of its events after `position`, oldest first.
    fn events_after(&self, position: u64, limit: usize) -> Result<Vec<RemoteEvent>, RemoteError>;

    /// Whether its agent joined with `--allow-steps` (steps may be sent to it).
    fn allows_steps(&self) -> bool;

    /// Sends `order` to run there and waits, up to `timeout`, for its
    /// outcome message. Must refuse when [`RemoteEndpoint::allows_steps`] is false.
    fn run_steps(&self, order: &StepsOrder, timeout: Duration) -> Result<String, RemoteError>;
}

/// How many events one read of the endpoint takes at most.
const BATCH: usize = 1000;
/// How long the pump sleeps when the endpoint had nothing new.
const IDLE: Duration = Duration::from_millis(100);

/// Copies an endpoint's events, from a position on, into a feed, in a thread.
pub(crate) struct Pump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pump {
    /// Starts copying `endpoint`'s events after `from` into `feed`.
    pub fn start(endpoint: Arc<dyn RemoteEndpoint>, from: u64, feed: Feed) -> Pump {
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut at = from;
            let mut warned = false;
            loop {
                // read once more after the stop: what arrived meanwhile is the run's too
                let last = halt.load(Ordering::Relaxed);
                match endpoint.events_after(at, BATCH) {
                    Ok(events) => {
                        let full = events.len() == BATCH;
                        for e in events {
                            at = at.max(e.position);
                            feed.push_value(e.event);
                        }
                        if full && !last {
                            continue;
                        }
                    }
                    Err(e) if !warned => {
                        tracing::warn!("reading the events of endpoint {}: {e}", endpoint.name());
                        warned = true;
                    }
                    Err(_) => {}
                }
                if last {
                    return;
                }
                std::thread::sleep(IDLE);
            }
        });
        Pump { stop, thread: Some(thread) }
    }

    /// Stops copying (after a last read) and waits for the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An endpoint holding a list of events.
    #[derive(Debug, Default)]
    struct Stored(Mutex<Vec<Value>>);

    impl RemoteEndpoint for Stored {
        fn name(&self) -> String {
            "alice/laptop".into()
        }
        fn push_iocs(&self, _: &str, _: &str, _: Duration) -> Result<String, RemoteError> {
            Ok(String::new())
        }
        fn current_iocs(&self) -> Result<String, RemoteError> {
            Ok(String::new())
        }
        fn position(&self) -> Result<u64, RemoteError> {
            Ok(self.0.lock().unwrap().len() as u64)
        }
        fn events_after(&self, position: u64, limit: usize) -> Result<Vec<RemoteEvent>, RemoteError> {
            let all = self.0.lock().unwrap();
            Ok(all
                .iter()
                .enumerate()
                .map(|(i, e)| RemoteEvent { position: i as u64 + 1, event: e.clone() })
                .filter(|e| e.position > position)
                .take(limit)
                .collect())
        }
        fn allows_steps(&self) -> bool {
            false
        }
        fn run_steps(&self, _: &StepsOrder, _: Duration) -> Result<String, RemoteError> {
            Err(RemoteError("no".into()))
        }
    }

    fn ev(n: u64) -> Value {
        serde_json::json!({"info": {"event": {"name": "execve"}}, "n": n})
    }

    #[test]
    fn the_pump_copies_the_events_after_its_start_and_those_before_its_stop() {
        let endpoint = Arc::new(Stored::default());
        // before the run: not the run's
        endpoint.0.lock().unwrap().extend((0..3).map(ev));
        let from = endpoint.position().unwrap();
        let feed = Feed::new(None);
        let pump = Pump::start(endpoint.clone(), from, feed.clone());
        // more than one read's worth, and one just before the stop
        endpoint.0.lock().unwrap().extend((3..3 + BATCH as u64 + 5).map(ev));
        let seen = feed.wait_for(0, std::time::Instant::now() + Duration::from_secs(60), |e| e.event["n"] == 1007);
        assert!(seen.is_some(), "the pump copied nothing");
        endpoint.0.lock().unwrap().push(ev(9999));
        pump.stop();
        let ns: Vec<u64> = feed.since(0).iter().map(|e| e.event["n"].as_u64().unwrap()).collect();
        let want: Vec<u64> = (3..3 + BATCH as u64 + 5).chain([9999]).collect();
        assert_eq!(ns, want);
    }
}

//! Stage `steps` of a run on a trainee's endpoint. When its agent joined
//! with `--allow-steps` the steps are sent to it (it runs them in a lab
//! network of its own machine); otherwise they are never sent: the trainee
//! is shown the commands (a `steps_asked` event) and the run waits for
//! their "I ran them", every expected detection, or [`MANUAL_TIMEOUT`].
//! Either way the detections' windows count from the moment the steps ran.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::detection::{Clock, Watch};
use super::steps::await_trigger;
use super::Outcome;
use crate::engine::control::{Wake, RAN_STEPS};
use crate::engine::remote::{OrderedStep, RemoteEndpoint, StepsOrder};
use crate::engine::run::Run;
use crate::run::{AskedStep, RunEventKind};
use crate::scenario::Stage;

/// How long a trainee has to run the commands by hand.
pub(crate) const MANUAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long an endpoint may take beyond the steps' own timeouts to report.
const SEND_MARGIN: Duration = Duration::from_secs(30);
/// How often the wait looks whether the detections are all in.
const SLICE: Duration = Duration::from_millis(200);

pub(super) fn run(run: &mut Run, endpoint: Arc<dyn RemoteEndpoint>) -> Result<Outcome, String> {
    let steps = run.loaded.scenario.steps.clone();
    for step in &steps {
        await_trigger(run, step)?;
    }
    let ordered: Vec<OrderedStep> = steps
        .iter()
        .map(|s| OrderedStep {
            id: s.id.clone(),
            executor: s.run.executor,
            command: s.run.render(&run.opts.args.get(s.id.as_str()).cloned().unwrap_or_default()),
            timeout_secs: s.run.timeout_secs,
        })
        .collect();
    let t0 = Instant::now();
    run.steps_started = Some(t0);
    let name = endpoint.name();
    if endpoint.allows_steps() {
        // the steps run there now: their windows count from now, as on the lab's endpoint
        run.detections = Some(Watch::start(run, t0, Clock::started(t0)));
        let order = StepsOrder {
            scenario: run.loaded.scenario.id.clone(),
            run: run.manifest.run.to_string(),
            network: run.loaded.scenario.network.clone(),
            steps: ordered.clone(),
        };
        for s in &ordered {
            run.log.emit(RunEventKind::StepStarted { step: s.id.clone(), command: s.command.clone() });
        }
        let budget = Duration::from_secs(ordered.iter().map(|s| u64::from(s.timeout_secs.max(1))).sum()) + SEND_MARGIN;
        let said = endpoint.run_steps(&order, budget).map_err(|e| format!("the steps on endpoint {name}: {e}"))?;
        return Ok(Outcome::passed(format!("{} steps ran on endpoint {name}: {said}", ordered.len()), None));
    }
    let asked = steps
        .iter()
        .zip(&ordered)
        .map(|(s, o)| AskedStep { step: s.id.clone(), description: s.description.clone(), command: o.command.clone() })
        .collect();
    run.log.emit(RunEventKind::StepsAsked {
        endpoint: name.clone(),
        steps: asked,
        timeout_secs: MANUAL_TIMEOUT.as_secs(),
    });
    run.log.emit(RunEventKind::StageWaiting {
        stage: Stage::Steps,
        reason: format!(
            "endpoint {name} did not join with --allow-steps: the trainee runs the {} commands shown on it, then clicks \"I ran them\"",
            ordered.len()
        ),
    });
    // the windows start when the trainee says they ran them (or the wait ends)
    let watch = Watch::start(run, t0, Clock::default());
    let expected = run.loaded.scenario.expect.detections.len();
    let deadline = t0 + MANUAL_TIMEOUT;
    let why = loop {
        match run.control.wait_click(RAN_STEPS, SLICE) {
            Wake::Done => break "the trainee ran them",
            Wake::Cancelled => {
                watch.stop();
                return Err("the run was stopped".into());
            }
            Wake::Timeout if watch.all_seen(expected) => break "every expected detection arrived",
            Wake::Timeout if Instant::now() >= deadline => break "the wait ended",
            Wake::Timeout => {}
        }
    };
    watch.clock().start_now();
    run.detections = Some(watch);
    Ok(Outcome::passed(
        format!(
            "{} commands asked of the trainee on endpoint {name} (not sent: no --allow-steps); {why} after {:.0} s",
            ordered.len(),
            t0.elapsed().as_secs_f64()
        ),
        None,
    ))
}

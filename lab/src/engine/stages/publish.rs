//! Stage `publish`: the event is published at once when the scenario says
//! so (the lab acts as the instructor), otherwise the run waits until
//! someone publishes it: [`RunControl::publish`](crate::engine::RunControl::publish)
//! (the web, the CLI's `--publish`), `ioclab misp`, PyMISP... The store is polled.

use std::time::Duration;

use ioclab_intel::store::keys::Role;
use serde_json::Value;

use super::Outcome;
use crate::engine::control::Wake;
use crate::engine::run::Run;
use crate::run::RunEventKind;
use crate::scenario::Stage;

/// How often the store is asked whether someone else published the event.
const POLL: Duration = Duration::from_millis(500);

pub(super) fn run(run: &mut Run) -> Outcome {
    let Some(uuid) = run.event_uuid.clone() else { return Outcome::failed("no MISP event") };
    if run.loaded.scenario.misp.publish {
        return match publish(run, &uuid) {
            Ok(()) => {
                Outcome::passed(format!("event {uuid} published at once (the scenario says misp.publish: true)"), None)
            }
            Err(e) => Outcome::failed(e),
        };
    }
    match published(run, &uuid) {
        Ok(true) => return Outcome::skipped("the event was already published", format!("event {uuid}")),
        Ok(false) => {}
        Err(e) => return Outcome::failed(e),
    }
    run.log.emit(RunEventKind::StageWaiting {
        stage: Stage::Publish,
        reason: format!(
            "an instructor must review and publish MISP event {uuid} (the scenario leaves it unpublished); \
             publish it in the web UI, with PyMISP or `ioclab misp`, or run with --publish"
        ),
    });
    if run.opts.auto_publish {
        run.control.publish();
    }
    loop {
        match run.control.wait_publish(POLL) {
            Wake::Cancelled => {
                return Outcome::failed("the run was stopped while waiting for the event to be published")
            }
            Wake::Done => {
                return match publish(run, &uuid) {
                    Ok(()) => Outcome::passed(format!("event {uuid} published by the instructor"), None),
                    Err(e) => Outcome::failed(e),
                }
            }
            Wake::Timeout => match published(run, &uuid) {
                Ok(true) => return Outcome::passed(format!("event {uuid} published (from outside the run)"), None),
                Ok(false) => {}
                Err(e) => return Outcome::failed(e),
            },
        }
    }
}

/// Publishes the event with the instructor's key.
fn publish(run: &Run, uuid: &str) -> Result<(), String> {
    let lab = &run.lab;
    let client = lab.misp.client(Role::Publisher).map_err(|e| e.to_string())?;
    lab.rt
        .block_on(client.post(&format!("/events/publish/{uuid}"), &serde_json::json!({})))
        .map(|_| ())
        .map_err(|e| format!("publishing event {uuid}: {e}"))
}

/// Whether the event is published, as the API says.
fn published(run: &Run, uuid: &str) -> Result<bool, String> {
    let lab = &run.lab;
    let client = lab.misp.client(Role::User).map_err(|e| e.to_string())?;
    let v = lab
        .rt
        .block_on(client.get(&format!("/events/view/{uuid}")))
        .map_err(|e| format!("reading event {uuid}: {e}"))?;
    let e = v.get("Event").unwrap_or(&v);
    Ok(match &e["published"] {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64() == Some(1),
        Value::String(s) => s == "1" || s == "true",
        _ => false,
    })
}

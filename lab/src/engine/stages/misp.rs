//! Stage `misp`: the report becomes an event of the embedded MISP, sent
//! over its REST API with the sandbox's `user` key and the scenario's
//! settings (`MispSettings::apply`), as `ioclab sandbox to-misp` does.
//! misp-event.json is the event as the API returns it.

use ioclab_intel::store::keys::Role;
use ioclab_intel::warninglists::Warninglists;
use ioclab_sandbox::misp::event::{self, Built};
use ioclab_sandbox::misp::{push, ReportingMisp};

use super::{declared_addresses, Outcome};
use crate::engine::run::Run;
use crate::run::RunFolder;

/// The sandbox's name in the lab's event uuids (distinct from `ioclab sandbox`'s on this host).
const SANDBOX_NAME: &str = "ioclab-lab";

pub(super) fn run(run: &mut Run) -> Outcome {
    match send(run) {
        Ok(o) => o,
        Err(why) => Outcome::failed(why),
    }
}

fn send(run: &mut Run) -> Result<Outcome, String> {
    let report = run.report.clone().ok_or("no sandbox report")?;
    let lab = run.lab.clone();
    let settings = run.loaded.scenario.misp.clone();
    // the lab publishes in the publish stage, with the instructor's key: the sandbox's may not
    let cfg = ReportingMisp {
        enabled: true,
        url: lab.misp.url.clone(),
        apikey: lab.misp.keys.user.clone(),
        sandbox_name: SANDBOX_NAME.into(),
        allow: ioclab_sandbox::misp::config::List(declared_addresses(run)),
        ..settings.apply(&ReportingMisp::default())
    };
    let cfg = ReportingMisp { publish: false, ..cfg };
    let none = Warninglists::empty();
    let lists = if cfg.warninglists { Warninglists::embedded() } else { &none };
    let built: Built = event::build(&report, &cfg, lists, None, SANDBOX_NAME).map_err(|e| e.to_string())?;
    let client = lab.misp.client(Role::User).map_err(|e| e.to_string())?;
    let pushed =
        lab.rt.block_on(push::push(&client, &built, false)).map_err(|e| push::misp_error(&e, report.info.id))?;
    run.created(|c| c.misp_events.push(pushed.uuid.clone()));
    run.event_uuid = Some(pushed.uuid.clone());
    let answer = lab
        .rt
        .block_on(client.get(&format!("/events/view/{}", pushed.uuid)))
        .map_err(|e| format!("reading the event back: {e}"))?;
    crate::run::folder::write_json(&run.artifact(RunFolder::MISP_EVENT), &answer).map_err(|e| e.to_string())?;
    let left: Vec<String> = built.left_out.iter().map(|l| l.to_string()).collect();
    let mut summary = format!(
        "event {} ({}): {} attributes, {} objects, tags {}",
        pushed.id,
        pushed.uuid,
        built.event.attributes.len(),
        built.event.objects.len(),
        settings.tags.join(", ")
    );
    if !left.is_empty() {
        summary += &format!("; left out: {}", left.join("; "));
    }
    Ok(Outcome::passed(summary, Some(RunFolder::MISP_EVENT)))
}

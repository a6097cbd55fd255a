//! Runs on a trainee's own endpoint (`expect.endpoint: trainee`): which
//! endpoints a user may start one on (a trainee: those of the token named
//! as their login; an instructor: any), and the run page's prompt when the
//! run asks the trainee to run its steps by hand, with its "I ran them"
//! button (`POST /runs/{id}/ran-steps`, CSRF-checked).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ioclab_lab::run::{RunEvent, RunEventKind};
use ioclab_lab::scenario::Stage;
use serde::Deserialize;

use crate::auth::{CurrentUser, Trainee};
use crate::csrf::CsrfForm;
use crate::endpoints::lab::{endpoints_of, EndpointRef};
use crate::runs::RunSummary;
use crate::state::AppState;

/// The endpoint a start request names (`TOKEN/ENDPOINT`; empty: the lab's),
/// if the user may use it; the status and reason of the refusal otherwise.
pub fn chosen_endpoint(who: &CurrentUser, field: &str) -> Result<Option<EndpointRef>, (StatusCode, String)> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    let Some(e) = EndpointRef::parse(field) else {
        return Err((StatusCode::BAD_REQUEST, format!("endpoint {field:?}: expected TOKEN/ENDPOINT")));
    };
    if !who.is_instructor() && e.token != who.user.name {
        return Err((
            StatusCode::FORBIDDEN,
            format!("endpoint {e} is not yours (yours are enrolled as {})", who.user.name),
        ));
    }
    Ok(Some(e))
}

/// The endpoints `who` may run on, as `token/endpoint` (none without an endpoint store).
pub async fn usable_endpoints(state: &AppState, who: &CurrentUser) -> Vec<String> {
    let Some(db) = state.runs().endpoints() else { return Vec::new() };
    let token = (!who.is_instructor()).then_some(&who.user.name);
    match endpoints_of(db, token).await {
        Ok(list) => list.iter().map(ToString::to_string).collect(),
        Err(e) => {
            tracing::error!("listing the endpoints: {e}");
            Vec::new()
        }
    }
}

/// The commands a run asks its trainee to run, shown while it waits.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The endpoint (`alice/laptop`).
    pub endpoint: String,
    /// `(step, description, command)`, in order.
    pub steps: Vec<(String, String, String)>,
    /// How long the run waits, minutes.
    pub minutes: u64,
}

/// What the run asks of its trainee, while it runs and its steps stage has not ended.
pub fn asked(run: &RunSummary, events: &[RunEvent]) -> Option<Asked> {
    if !run.running {
        return None;
    }
    let ended = events.iter().any(|e| matches!(e.kind, RunEventKind::StageFinished { stage: Stage::Steps, .. }));
    if ended {
        return None;
    }
    events.iter().rev().find_map(|e| match &e.kind {
        RunEventKind::StepsAsked { endpoint, steps, timeout_secs } => Some(Asked {
            endpoint: endpoint.clone(),
            steps: steps.iter().map(|s| (s.step.to_string(), s.description.clone(), s.command.clone())).collect(),
            minutes: timeout_secs.div_ceil(60),
        }),
        _ => None,
    })
}

/// The "I ran them" form (its CSRF field only).
#[derive(Debug, Deserialize)]
pub struct RanForm {}

/// POST /runs/{id}/ran-steps: the run's owner (or an instructor) ran the steps asked.
pub async fn ran_steps(
    State(state): State<AppState>,
    who: Trainee,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<RanForm>,
) -> Response {
    match state.runs().summary(&id).await {
        Ok(Some(run)) if who.may_see(&run.owner) => {}
        Ok(Some(_)) => return (StatusCode::FORBIDDEN, "this run is another trainee's").into_response(),
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no run {id}")).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
    if state.runs().ran_steps(&id) {
        Redirect::to(&format!("/runs/{id}")).into_response()
    } else {
        (StatusCode::CONFLICT, format!("run {id} is not a live run going on")).into_response()
    }
}

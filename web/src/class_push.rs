//! Pushing an IoC set to the class's endpoints from the web: to all of
//! them, a group, or one; the lines pasted, the lab agent's, or those a
//! run exported. Each
//! push is listed with the endpoints that applied (or refused) it. The
//! store and the agents' side are [`crate::endpoints::db`]'s
//! ([`EndpointDb::push_iocs`](crate::endpoints::EndpointDb::push_iocs));
//! this module checks the form and shows the pushes. Instructors only.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ioclab_lab::run::RunFolder;
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::Instructor;
use crate::class_pages::{view, Refused};
use crate::csrf::CsrfForm;
use crate::dashboard::message;
use crate::endpoints::db::{EndpointRow, Push, PushTarget};
use crate::endpoints::view::ClassEndpoint;
use crate::endpoints::EndpointError;
use crate::pages::{render, Page};
use crate::state::AppState;
use crate::users::{now, UserName};

/// Why a push form was refused, said to the instructor.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

/// Parses a target as the form's select sends it: `all`, `group:NAME` or `endpoint:TOKEN/ENDPOINT`.
pub fn parse_target(s: &str) -> Result<PushTarget, Refusal> {
    let bad = |why: String| Refusal(format!("target {s:?}: {why}"));
    match s.split_once(':') {
        None if s == "all" => Ok(PushTarget::All),
        Some(("group", g)) => g.parse().map(PushTarget::Group).map_err(bad),
        Some(("endpoint", rest)) => {
            let (token, endpoint) = rest.split_once('/').ok_or_else(|| bad("not TOKEN/ENDPOINT".into()))?;
            if endpoint.is_empty() {
                return Err(bad("no endpoint name".into()));
            }
            Ok(PushTarget::Endpoint { token: token.parse().map_err(bad)?, endpoint: endpoint.to_string() })
        }
        _ => Err(bad("all, group:NAME or endpoint:TOKEN/ENDPOINT".into())),
    }
}

/// The form's value for `target`.
fn target_value(target: &PushTarget) -> String {
    match target {
        PushTarget::All => "all".into(),
        PushTarget::Group(g) => format!("group:{g}"),
        PushTarget::Endpoint { token, endpoint } => format!("endpoint:{token}/{endpoint}"),
    }
}

/// A choice of the target select.
struct Choice {
    value: String,
    label: String,
}

/// A push as the page lists it.
struct PushRow {
    id: i64,
    created: String,
    label: String,
    target: String,
    bytes: i64,
    /// `(endpoint, ok, message)` of each endpoint that reported it.
    applied: Vec<(String, bool, String)>,
    /// The endpoints it reaches that have not reported it yet.
    waiting: Vec<String>,
}

/// Whether a push to `target` reaches the endpoint of `row`.
fn reaches(target: &PushTarget, row: &EndpointRow) -> bool {
    match target {
        PushTarget::All => true,
        PushTarget::Group(g) => row.group.as_ref() == Some(g),
        PushTarget::Endpoint { token, endpoint } => &row.token == token && &row.endpoint == endpoint,
    }
}

/// For each of `pushes` (newest first), the endpoints the class still waits
/// for: reached by it, not revoked, not reported, and reached by no newer
/// push (an agent only ever gets the newest push that reaches it).
pub fn waiting(pushes: &[Push], endpoints: &[ClassEndpoint]) -> Vec<Vec<String>> {
    let mut newer: Vec<&Push> = Vec::new();
    let mut out = Vec::with_capacity(pushes.len());
    for p in pushes {
        let reported = |e: &EndpointRow| p.applied.iter().any(|a| a.token == e.token && a.endpoint == e.endpoint);
        out.push(
            endpoints
                .iter()
                .map(|e| &e.row)
                .filter(|row| reaches(&p.target, row) && !reported(row))
                .filter(|row| !newer.iter().any(|n| reaches(&n.target, row)))
                .filter(|row| !endpoints.iter().any(|e| e.revoked && &e.row == *row))
                .map(|row| format!("{}/{}", row.token, row.endpoint))
                .collect(),
        );
        newer.push(p);
    }
    out
}

impl PushRow {
    fn new(p: &Push, waiting: Vec<String>) -> PushRow {
        PushRow {
            waiting,
            id: p.id,
            created: ioclab_lab::run::folder::utc_stamp(p.created),
            label: p.label.clone(),
            target: p.target.to_string(),
            bytes: p.bytes,
            applied: p
                .applied
                .iter()
                .map(|a| (format!("{}/{}", a.token, a.endpoint), a.ok, a.message.clone()))
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "class_push.html")]
struct PushPage {
    page: Page,
    targets: Vec<Choice>,
    runs: Vec<String>,
    /// The lab's agent has an IoC file.
    lab: bool,
    pushes: Vec<PushRow>,
}

/// The runs whose export wrote IoC lines, newest first.
async fn runs_with_iocs(state: &AppState) -> Vec<String> {
    let runs = state.runs().list(None).await.unwrap_or_default();
    let root = state.runs().data().runs();
    runs.into_iter()
        .filter(|r| RunFolder::open(root.join(&r.id)).path(RunFolder::IOCS).is_file())
        .map(|r| r.id)
        .collect()
}

/// GET /class/push: the push form and every push with the endpoints that applied it.
pub async fn push_page(State(state): State<AppState>, who: Instructor, session: Session) -> Response {
    let v = match view(&state) {
        Ok(v) => v,
        Err(e) => return e.page(&state, &session, &who).await,
    };
    let (endpoints, pushes, tokens) = match (v.endpoints(now()).await, v.db().pushes().await, v.db().tokens().await) {
        (Ok(e), Ok(p), Ok(t)) => (e, p, t),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return Refused::Store(e.to_string()).page(&state, &session, &who).await;
        }
    };
    let groups: BTreeSet<&UserName> = tokens.iter().filter_map(|t| t.group.as_ref()).collect();
    let mut targets = vec![Choice { value: "all".into(), label: "every endpoint".into() }];
    targets.extend(
        groups
            .into_iter()
            .map(|g| Choice { value: target_value(&PushTarget::Group(g.clone())), label: format!("group {g}") }),
    );
    targets.extend(endpoints.iter().filter(|e| !e.revoked).map(|e| {
        let target = PushTarget::Endpoint { token: e.row.token.clone(), endpoint: e.row.endpoint.clone() };
        Choice { value: target_value(&target), label: format!("endpoint {target}") }
    }));
    render(PushPage {
        page: Page::new(&state, &session, Some(&who.0)).await,
        targets,
        runs: runs_with_iocs(&state).await,
        lab: state.runs().data().agent_iocs().is_file(),
        pushes: pushes.iter().zip(waiting(&pushes, &endpoints)).map(|(p, w)| PushRow::new(p, w)).collect(),
    })
}

/// The push form: whom, a label, and the IoC lines, or where to take them
/// (`from`: `lab`, the lab agent's IoC file; `run:ID`, a run's export).
#[derive(Debug, Deserialize)]
pub struct PushForm {
    target: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    lines: String,
    #[serde(default)]
    from: String,
}

/// The lines and label the form asks for: the pasted lines, the lab
/// agent's current IoCs, or a run's export.
async fn lines_of(state: &AppState, form: &PushForm) -> Result<(String, String), Refusal> {
    let label = form.label.trim();
    let from = form.from.trim();
    if from.is_empty() {
        let label = if label.is_empty() { "IoCs pasted on the web" } else { label };
        return Ok((label.to_string(), form.lines.clone()));
    }
    if !form.lines.trim().is_empty() {
        return Err(Refusal("paste IoC lines or choose where to take them, not both".into()));
    }
    let (path, default_label) = match from.strip_prefix("run:") {
        None if from == "lab" => (state.runs().data().agent_iocs(), "the lab agent's IoCs".to_string()),
        Some(run) if runs_with_iocs(state).await.iter().any(|r| r == run) => {
            (RunFolder::open(state.runs().data().runs().join(run)).path(RunFolder::IOCS), format!("IoCs of run {run}"))
        }
        Some(run) => return Err(Refusal(format!("run {run:?} has no IoC export"))),
        None => return Err(Refusal(format!("no IoC source {from:?}: lab or run:ID"))),
    };
    let lines = std::fs::read_to_string(&path).map_err(|e| Refusal(format!("reading {}: {e}", path.display())))?;
    Ok((if label.is_empty() { default_label } else { label.to_string() }, lines))
}

/// POST /class/push: stores the push (refused when the agents would refuse its lines)
/// (the targeted agents' long-polls answer at once), and shows the pushes.
pub async fn push_post(
    State(state): State<AppState>,
    who: Instructor,
    session: Session,
    CsrfForm(form): CsrfForm<PushForm>,
) -> Response {
    let v = match view(&state) {
        Ok(v) => v,
        Err(e) => return e.page(&state, &session, &who).await,
    };
    let checked = async {
        let target = parse_target(form.target.trim())?;
        let (label, lines) = lines_of(&state, &form).await?;
        Ok::<_, Refusal>((target, label, lines))
    };
    let (target, label, lines) = match checked.await {
        Ok(c) => c,
        Err(Refusal(why)) => {
            let text = format!("Nothing pushed: {why}");
            return message(&state, &session, &who, StatusCode::BAD_REQUEST, "No push", text).await;
        }
    };
    match v.db().push_iocs(&target, &label, &lines).await {
        Ok(id) => {
            tracing::info!(by = %who.0.user.name, push = id, %target, "IoC push");
            Redirect::to("/class/push").into_response()
        }
        // the lines are checked there, as the agents will read them
        Err(e @ (EndpointError::BadIocs(_) | EndpointError::EmptyGroup(_) | EndpointError::Unknown(_))) => {
            let text = format!("Nothing pushed: {e}");
            message(&state, &session, &who, StatusCode::BAD_REQUEST, "No push", text).await
        }
        Err(e) => Refused::Store(e.to_string()).page(&state, &session, &who).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_the_select_and_back() {
        let one = PushTarget::Endpoint { token: "alice".parse().unwrap(), endpoint: "pc/01".into() };
        for t in [PushTarget::All, PushTarget::Group("blue".parse().unwrap()), one] {
            assert_eq!(parse_target(&target_value(&t)), Ok(t));
        }
        for bad in ["", "everyone", "group:", "group:Blue Team", "endpoint:alice", "endpoint:alice/", "endpoint:/pc"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    fn endpoint(token: &str, name: &str, group: Option<&str>, revoked: bool) -> ClassEndpoint {
        ClassEndpoint {
            row: EndpointRow {
                token: token.parse().unwrap(),
                group: group.map(|g| g.parse().unwrap()),
                endpoint: name.into(),
                agent_version: "t".into(),
                last_seen: 0,
                events: 0,
                last_push: None,
            },
            ago: 0,
            stale: false,
            per_second: 0.0,
            losses: 0,
            lost: 0,
            detections: 0,
            revoked,
        }
    }

    fn push(id: i64, target: PushTarget, applied_by: &[(&str, &str)]) -> Push {
        Push {
            id,
            target,
            label: String::new(),
            bytes: 0,
            created: 0,
            applied: applied_by
                .iter()
                .map(|(t, e)| crate::endpoints::Applied {
                    token: t.parse().unwrap(),
                    endpoint: e.to_string(),
                    ok: true,
                    message: String::new(),
                    at: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_push_waits_for_the_endpoints_it_reaches_that_no_newer_push_reaches() {
        let class = [
            endpoint("alice", "pc-a", Some("blue"), false),
            endpoint("bob", "pc-b", Some("blue"), false),
            endpoint("carol", "pc-c", None, false),
            endpoint("dave", "pc-d", Some("blue"), true),
        ];
        let pushes = [
            push(3, PushTarget::Group("blue".parse().unwrap()), &[("alice", "pc-a")]),
            push(2, PushTarget::Endpoint { token: "carol".parse().unwrap(), endpoint: "pc-c".into() }, &[]),
            push(1, PushTarget::All, &[]),
        ];
        let w = waiting(&pushes, &class);
        assert_eq!(w[0], ["bob/pc-b"], "the group's, less the reported and the revoked");
        assert_eq!(w[1], ["carol/pc-c"]);
        assert!(w[2].is_empty(), "every endpoint has a newer push: {:?}", w[2]);
    }
}

//! Pushing an IoC set to the class's endpoints from the web: to all of
//! them, a group, or one; the lines pasted or those a run exported. Each
//! push is listed with the endpoints that applied (or refused) it. The
//! store and the agents' side are [`crate::endpoints::db`]'s
//! ([`EndpointDb::push_iocs`](crate::endpoints::EndpointDb::push_iocs));
//! this module checks the form and shows the pushes. Instructors only.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ioclab_agent::ioc::loader::parse_line;
use ioclab_lab::run::RunFolder;
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::Instructor;
use crate::class_pages::{now, view, Refused};
use crate::csrf::CsrfForm;
use crate::endpoints::db::{Push, PushTarget};
use crate::endpoints::EndpointError;
use crate::pages::{render, ErrorPage, Page};
use crate::state::AppState;
use crate::users::UserName;

/// Most bytes of IoC lines in one push (a class's set is a few hundred lines).
pub const MAX_PUSH_BYTES: usize = 4 * 1024 * 1024;

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

/// Checks IoC file `lines` as the agent will read them; the count of IoCs,
/// or the first bad line named by its number.
pub fn check_lines(lines: &str) -> Result<usize, Refusal> {
    if lines.len() > MAX_PUSH_BYTES {
        return Err(Refusal(format!("{} bytes of IoC lines, more than the {MAX_PUSH_BYTES} allowed", lines.len())));
    }
    let mut count = 0;
    for (n, line) in lines.lines().enumerate() {
        match parse_line(line.as_bytes()) {
            Ok(Some(_)) => count += 1,
            Ok(None) => {}
            Err(e) => return Err(Refusal(format!("IoC line {}: {e}", n + 1))),
        }
    }
    if count == 0 {
        return Err(Refusal("no IoC in these lines: paste IoC lines or choose a run's export".into()));
    }
    Ok(count)
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
}

impl From<&Push> for PushRow {
    fn from(p: &Push) -> PushRow {
        PushRow {
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
        let target = PushTarget::Endpoint { token: e.token.clone(), endpoint: e.endpoint.clone() };
        Choice { value: target_value(&target), label: format!("endpoint {target}") }
    }));
    render(PushPage {
        page: Page::new(&state, &session, Some(&who.0)).await,
        targets,
        runs: runs_with_iocs(&state).await,
        pushes: pushes.iter().map(PushRow::from).collect(),
    })
}

/// The push form: whom, a label, and the IoC lines or the run whose export to push.
#[derive(Debug, Deserialize)]
pub struct PushForm {
    target: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    lines: String,
    #[serde(default)]
    run: String,
}

/// The lines and label the form asks for: the pasted lines, or a run's export.
async fn lines_of(state: &AppState, form: &PushForm) -> Result<(String, String), Refusal> {
    let label = form.label.trim();
    let run = form.run.trim();
    if run.is_empty() {
        let label = if label.is_empty() { "IoCs pasted on the web" } else { label };
        return Ok((label.to_string(), form.lines.clone()));
    }
    if !form.lines.trim().is_empty() {
        return Err(Refusal("paste IoC lines or choose a run, not both".into()));
    }
    if !runs_with_iocs(state).await.iter().any(|r| r == run) {
        return Err(Refusal(format!("run {run:?} has no IoC export")));
    }
    let path = RunFolder::open(state.runs().data().runs().join(run)).path(RunFolder::IOCS);
    let lines = std::fs::read_to_string(&path).map_err(|e| Refusal(format!("reading {}: {e}", path.display())))?;
    let label = if label.is_empty() { format!("IoCs of run {run}") } else { label.to_string() };
    Ok((label, lines))
}

/// POST /class/push: checks the lines as the agent will, stores the push
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
        let count = check_lines(&lines)?;
        Ok::<_, Refusal>((target, label, lines, count))
    };
    let (target, label, lines, count) = match checked.await {
        Ok(c) => c,
        Err(Refusal(why)) => {
            let page = Page::new(&state, &session, Some(&who.0)).await;
            let message = format!("Nothing pushed: {why}");
            return (StatusCode::BAD_REQUEST, render(ErrorPage { page, title: "No push".into(), message }))
                .into_response();
        }
    };
    match v.db().push_iocs(&target, &label, &lines).await {
        Ok(id) => {
            tracing::info!(by = %who.0.user.name, push = id, %target, iocs = count, "IoC push");
            Redirect::to("/class/push").into_response()
        }
        Err(e @ (EndpointError::EmptyGroup(_) | EndpointError::Unknown(_))) => {
            let page = Page::new(&state, &session, Some(&who.0)).await;
            let message = format!("Nothing pushed: {e}");
            (StatusCode::BAD_REQUEST, render(ErrorPage { page, title: "No push".into(), message })).into_response()
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

    #[test]
    fn lines_are_checked_as_the_agent_reads_them_naming_the_bad_one() {
        let good = r#"{"uuid": "u", "source": "lab", "value": "why.kunai.rocks", "severity": 4}"#;
        assert_eq!(check_lines(&format!("# a comment\n{good}\n\n{good}\n")), Ok(2));
        let e = check_lines(&format!("{good}\n{{\"value\": \"x.example\"}}\n")).unwrap_err();
        assert!(e.0.starts_with("IoC line 2: ") && e.0.contains("severity"), "{e:?}");
        assert!(check_lines("# nothing\n").is_err());
        assert!(check_lines(&"#".repeat(MAX_PUSH_BYTES + 1)).unwrap_err().0.contains("allowed"));
    }
}

//! What the instructor changes from the class pages: enrolment tokens
//! (made with a name, the secret shown once with the agent's whole command
//! line; listed; revoked after a confirmation) and IoC pushes to the
//! class's endpoints. Instructors only; every form carries the CSRF token.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::Instructor;
use crate::class_pages::{view, Refused};
use crate::csrf::CsrfForm;
use crate::dashboard::message;
use crate::endpoints::{EndpointError, EnrolToken};
use crate::pages::{render, Page};
use crate::state::AppState;
use crate::users::UserName;

/// The `Host` the browser reached the web UI by.
fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// A token as the list shows it.
struct TokenRow {
    name: String,
    group: String,
    created: String,
    revoked: Option<String>,
    events: i64,
}

impl From<&EnrolToken> for TokenRow {
    fn from(t: &EnrolToken) -> TokenRow {
        let stamp = ioclab_lab::run::folder::utc_stamp;
        TokenRow {
            name: t.name.to_string(),
            group: t.group.as_ref().map(UserName::to_string).unwrap_or_default(),
            created: stamp(t.created),
            revoked: t.revoked.map(stamp),
            events: t.events,
        }
    }
}

#[derive(Template)]
#[template(path = "class_tokens.html")]
struct TokensPage {
    page: Page,
    tokens: Vec<TokenRow>,
    appliance: String,
    fingerprint: String,
}

/// GET /class/tokens: the enrolment tokens, a form to make one, a button to revoke each.
pub async fn tokens_page(
    State(state): State<AppState>,
    who: Instructor,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let v = match view(&state) {
        Ok(v) => v,
        Err(e) => return e.page(&state, &session, &who).await,
    };
    match v.db().tokens().await {
        Ok(tokens) => render(TokensPage {
            page: Page::new(&state, &session, Some(&who.0)).await,
            tokens: tokens.iter().map(TokenRow::from).collect(),
            appliance: v.appliance_url(host(&headers)),
            fingerprint: v.fingerprint().to_string(),
        }),
        Err(e) => Refused::Store(e.to_string()).page(&state, &session, &who).await,
    }
}

/// The form making a token: its name (empty: `endpoint-NN`) and group (empty: none).
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    group: String,
}

/// An optional name field: empty is `None`.
fn optional_name(field: &str, what: &str) -> Result<Option<UserName>, String> {
    match field.trim() {
        "" => Ok(None),
        n => n.parse().map(Some).map_err(|e| format!("{what} {n:?}: {e}")),
    }
}

#[derive(Template)]
#[template(path = "class_token_made.html")]
struct MadePage {
    page: Page,
    name: String,
    secret: String,
    command: String,
}

/// POST /class/tokens: makes a token; its secret is shown on the answer, once.
pub async fn create_token(
    State(state): State<AppState>,
    who: Instructor,
    session: Session,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Response {
    let v = match view(&state) {
        Ok(v) => v,
        Err(e) => return e.page(&state, &session, &who).await,
    };
    let (name, group) = match (optional_name(&form.name, "name"), optional_name(&form.group, "group")) {
        (Ok(n), Ok(g)) => (n, g),
        (Err(e), _) | (_, Err(e)) => {
            return message(&state, &session, &who, StatusCode::BAD_REQUEST, "No token made", e).await;
        }
    };
    match v.db().create_token_in(name, group).await {
        Ok((token, secret)) => {
            tracing::info!(by = %who.0.user.name, token = %token.name, "enrolment token made");
            render(MadePage {
                page: Page::new(&state, &session, Some(&who.0)).await,
                name: token.name.to_string(),
                command: v.agent_command(host(&headers), &secret),
                secret,
            })
        }
        Err(e @ EndpointError::Exists(_)) => {
            message(&state, &session, &who, StatusCode::CONFLICT, "No token made", e.to_string()).await
        }
        Err(e) => Refused::Store(e.to_string()).page(&state, &session, &who).await,
    }
}

/// The revocation form: `confirm=yes` from its checkbox.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    confirm: String,
}

/// POST /class/tokens/{name}/revoke: the token's agents get 401 from now on (their events stay).
pub async fn revoke_token(
    State(state): State<AppState>,
    who: Instructor,
    session: Session,
    Path(name): Path<String>,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> Response {
    let v = match view(&state) {
        Ok(v) => v,
        Err(e) => return e.page(&state, &session, &who).await,
    };
    if form.confirm != "yes" {
        let text = format!("The token {name} is still valid: tick the box to confirm its revocation.");
        return message(&state, &session, &who, StatusCode::BAD_REQUEST, "Nothing revoked", text).await;
    }
    let Ok(token) = name.parse::<UserName>() else {
        let text = format!("no enrolment token named {name:?}");
        return message(&state, &session, &who, StatusCode::NOT_FOUND, "Nothing revoked", text).await;
    };
    match v.db().revoke(&token).await {
        Ok(()) => {
            tracing::info!(by = %who.0.user.name, token = %name, "enrolment token revoked");
            Redirect::to("/class/tokens").into_response()
        }
        Err(e @ EndpointError::Unknown(_)) => {
            message(&state, &session, &who, StatusCode::NOT_FOUND, "Nothing revoked", e.to_string()).await
        }
        Err(e) => Refused::Store(e.to_string()).page(&state, &session, &who).await,
    }
}

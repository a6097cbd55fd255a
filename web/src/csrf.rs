//! CSRF protection: one random token per session, put in every form as the
//! hidden field `csrf` (or sent by scripts as the `X-CSRF-Token` header),
//! and checked on every POST before the handler runs.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tower_sessions::Session;

use crate::state::AppState;

/// The session key of the token.
const CSRF_KEY: &str = "csrf";
/// The header a script sends the token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session's token, made on first use.
pub async fn token(session: &Session) -> String {
    if let Ok(Some(t)) = session.get::<String>(CSRF_KEY).await {
        return t;
    }
    let t = crate::password::token();
    if let Err(e) = session.insert(CSRF_KEY, &t).await {
        tracing::error!("session: storing the CSRF token: {e}");
    }
    t
}

/// Whether `given` is the session's token (constant time).
pub async fn matches(session: &Session, given: &str) -> bool {
    match session.get::<String>(CSRF_KEY).await {
        Ok(Some(t)) => {
            t.len() == given.len() && t.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        }
        _ => false,
    }
}

/// A refused form: 403 with a message that says what to do.
#[derive(Debug)]
pub struct CsrfRejected;

impl IntoResponse for CsrfRejected {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this appliance (CSRF check failed): go back, reload the page and try again.",
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct WithToken<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: T,
}

/// A form whose `csrf` field matched the session's token.
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<CsrfForm<T>, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await.map_err(|e| e.into_response())?;
        let req = Request::from_parts(parts, body);
        let Form(form) = Form::<WithToken<T>>::from_request(req, state).await.map_err(|e| e.into_response())?;
        if !matches(&session, &form.csrf).await {
            return Err(CsrfRejected.into_response());
        }
        Ok(CsrfForm(form.fields))
    }
}

/// For the API's POSTs: a session-authenticated call must send the token in
/// `X-CSRF-Token` (a token-authenticated one has no session to ride on).
pub async fn check_header(parts: &Parts, session: &Session) -> Result<(), CsrfRejected> {
    let given = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if matches(session, given).await {
        Ok(())
    } else {
        Err(CsrfRejected)
    }
}

//! Who is calling: the session's user (pages, and the API from a page) or
//! the user of a `Authorization: Bearer` API token. The extractors enforce
//! roles on the server: a handler taking [`Instructor`] never runs for a
//! trainee, whatever URL or form they send.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use tower_sessions::Session;

use crate::state::AppState;
use crate::users::{Role, User, UserName};

/// The session key holding the logged-in user's name.
pub const USER_KEY: &str = "user";

/// Any logged-in user: trainee or instructor.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user.
    pub user: User,
    /// Authenticated by an API token (no session, so no CSRF token to check).
    pub by_token: bool,
}

/// Trainee or better: the same as [`CurrentUser`], named for what a route allows.
pub type Trainee = CurrentUser;

/// An instructor; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct Instructor(pub CurrentUser);

/// Why a request was refused.
#[derive(Debug)]
pub enum AuthError {
    /// No session or token: 401 for the API, the login page for pages.
    Unauthenticated {
        /// The request was to `/api/`.
        api: bool,
    },
    /// Logged in, but not allowed: 403.
    Forbidden {
        /// The request was to `/api/`.
        api: bool,
        /// What was refused.
        what: &'static str,
    },
    /// The account store failed.
    Store(String),
}

/// Whether the request is to the API (the nested router strips `/api`: ask the original URI).
fn is_api(parts: &Parts) -> bool {
    let path = parts.extensions.get::<OriginalUri>().map(|o| o.0.path()).unwrap_or(parts.uri.path());
    path.starts_with("/api/")
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            AuthError::Unauthenticated { api: true } => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"ioclab\"")],
                Json(serde_json::json!({"error": "log in, or send Authorization: Bearer <token> (ioclab users token NAME)"})),
            )
                .into_response(),
            AuthError::Unauthenticated { api: false } => Redirect::to("/login").into_response(),
            AuthError::Forbidden { api: true, what } => {
                (StatusCode::FORBIDDEN, Json(serde_json::json!({"error": format!("{what}: instructors only")})))
                    .into_response()
            }
            AuthError::Forbidden { api: false, what } => {
                (StatusCode::FORBIDDEN, format!("{what}: instructors only")).into_response()
            }
            AuthError::Store(e) => {
                tracing::error!("account store: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "the account store failed; see the server's log").into_response()
            }
        }
    }
}

/// The token of an `Authorization: Bearer` header (API tokens, endpoint enrolment tokens).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(str::trim)
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<CurrentUser, AuthError> {
        let api = is_api(parts);
        if let Some(token) = bearer(&parts.headers) {
            let user = state.users().by_token(token).await.map_err(|e| AuthError::Store(e.to_string()))?;
            return user.map(|user| CurrentUser { user, by_token: true }).ok_or(AuthError::Unauthenticated { api });
        }
        let session =
            Session::from_request_parts(parts, state).await.map_err(|_| AuthError::Unauthenticated { api })?;
        let name: Option<UserName> = session.get(USER_KEY).await.ok().flatten();
        let Some(name) = name else { return Err(AuthError::Unauthenticated { api }) };
        // looked up on every request: a removed account loses its sessions at once
        let user = state.users().get(&name).await.map_err(|e| AuthError::Store(e.to_string()))?;
        user.map(|user| CurrentUser { user, by_token: false }).ok_or(AuthError::Unauthenticated { api })
    }
}

impl FromRequestParts<AppState> for Instructor {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Instructor, AuthError> {
        let who = CurrentUser::from_request_parts(parts, state).await?;
        if who.user.role == Role::Instructor {
            Ok(Instructor(who))
        } else {
            Err(AuthError::Forbidden { api: is_api(parts), what: "this page or action" })
        }
    }
}

impl CurrentUser {
    /// Whether this user may see what `owner` did (their own, or an instructor).
    pub fn may_see(&self, owner: &str) -> bool {
        self.user.role == Role::Instructor || self.user.name.as_str() == owner
    }

    /// Whether this is an instructor.
    pub fn is_instructor(&self) -> bool {
        self.user.role == Role::Instructor
    }
}

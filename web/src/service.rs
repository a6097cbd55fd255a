//! What the MISP and sandbox pages share: the answer to a request from what
//! a service gave, a page or JSON, saying why (with its status) when the
//! service could not.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error a service's pages answer with.
pub trait ServiceError: std::fmt::Display {
    /// The HTTP status it answers with.
    fn status(&self) -> StatusCode;
}

/// `make(None, Some(value))`, or on an error `make(Some(why), None)` with the error's status.
pub fn html<T, E: ServiceError>(
    result: Result<T, E>,
    make: impl FnOnce(Option<String>, Option<T>) -> Response,
) -> Response {
    match result {
        Ok(v) => make(None, Some(v)),
        Err(e) => (e.status(), make(Some(e.to_string()), None)).into_response(),
    }
}

/// The value as JSON, or `{"error": why}` with the error's status.
pub fn json<T: Serialize, E: ServiceError>(result: Result<T, E>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (e.status(), Json(serde_json::json!({"error": e.to_string()}))).into_response(),
    }
}

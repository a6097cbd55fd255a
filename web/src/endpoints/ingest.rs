//! The HTTP API agents post their batches to (on the TLS listener of [`super::tls`]).
//!
//! `POST /v1/batches` with `Authorization: Bearer <enrolment token>` and a
//! batch body (`ioclab_agent::remote::wire`): 200 and an [`Ack`] once the
//! batch is committed; 401 for an unknown or revoked token; 400 naming the
//! batch and the line for a bad batch; 500 when the store fails (the agent
//! keeps the batch and sends it again).
//!
//! [`Ack`]: ioclab_agent::remote::wire::Ack

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use ioclab_agent::remote::wire::{Batch, BATCH_PATH, MAX_BATCH_BYTES};

use super::db::EndpointDb;
use crate::auth::bearer;

/// The ingest API's routes.
pub fn router(db: EndpointDb) -> Router {
    Router::new().route(BATCH_PATH, post(post_batch)).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES)).with_state(db)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn post_batch(State(db): State<EndpointDb>, headers: HeaderMap, body: Bytes) -> Response {
    let unauthorized = || {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <enrolment token> (ioclab endpoints token create); \
             this one is unknown or revoked"
                .into(),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"ioclab endpoints\""));
        r
    };
    let Some(secret) = bearer(&headers) else { return unauthorized() };
    let token = match db.token_by_secret(secret).await {
        Ok(Some(t)) => t,
        Ok(None) => return unauthorized(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let batch = match Batch::parse(&body) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("endpoint token {}: refused {e}", token.name);
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    match db.store_batch(&token, &batch).await {
        Ok(ack) => Json(ack).into_response(),
        Err(e) => {
            tracing::error!("storing batch {} of {}: {e}", batch.header.batch, token.name);
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

//! The HTTP API agents talk to (on the TLS listener of [`super::tls`]),
//! every route with `Authorization: Bearer <enrolment token>` (401 for an
//! unknown or revoked token).
//!
//! - `POST /v1/batches` with a batch body (`ioclab_agent::remote::wire`):
//!   200 and an [`Ack`] once the batch is committed; 400 naming the batch
//!   and the line for a bad batch; 500 when the store fails (the agent
//!   keeps the batch and sends it again).
//! - `GET /v1/orders?endpoint=NAME&after=ID`: a long-poll, answered with
//!   the newest [`Order`] for the endpoint above `after` as soon as there
//!   is one, or 204 after [`ORDERS_WAIT`].
//! - `POST /v1/orders/{id}/done?endpoint=NAME` with an [`OrderDone`]: the
//!   endpoint's report, recorded on the push and the endpoint's row.
//! - `POST /v1/steps/{id}/done?endpoint=NAME` with an [`OrderDone`]: the
//!   outcome of a steps order handed to that endpoint (once; 404 otherwise).
//!
//! A long-poll's `allow_steps=true` (the agent's `--allow-steps`) is
//! recorded on the endpoint's row each time; only then may it get steps.
//!
//! [`Ack`]: ioclab_agent::remote::wire::Ack
//! [`Order`]: ioclab_agent::remote::wire::Order

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ioclab_agent::remote::wire::{
    Batch, OrderDone, OrdersQuery, BATCH_PATH, MAX_BATCH_BYTES, ORDERS_PATH, ORDERS_WAIT, STEPS_PATH,
};

use super::db::{EndpointDb, EnrolToken};
use crate::auth::bearer;

/// How often a waiting long-poll looks at the pushes table: pushes made by
/// another process (`ioclab endpoints push`) do not wake it.
const OTHER_PROCESS_POLL: Duration = Duration::from_millis(500);

/// The ingest API's routes.
pub fn router(db: EndpointDb) -> Router {
    router_waiting(db, ORDERS_WAIT)
}

/// The routes, with long-polls answering 204 after `wait` (tests: shorter than [`ORDERS_WAIT`]).
pub fn router_waiting(db: EndpointDb, wait: Duration) -> Router {
    Router::new()
        .route(BATCH_PATH, post(post_batch))
        .route(ORDERS_PATH, get(get_order))
        .route(&format!("{ORDERS_PATH}/{{id}}/done"), post(post_done::<false>))
        .route(&format!("{STEPS_PATH}/{{id}}/done"), post(post_done::<true>))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(Ingest { db, wait })
}

/// What the handlers share.
#[derive(Clone)]
struct Ingest {
    db: EndpointDb,
    /// How long a long-poll waits for an order.
    wait: Duration,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The live token of the request's bearer, or the 401 (or 500) to answer.
async fn authorize(db: &EndpointDb, headers: &HeaderMap) -> Result<EnrolToken, Response> {
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
    let Some(secret) = bearer(headers) else { return Err(unauthorized()) };
    match db.token_by_secret(secret).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(unauthorized()),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn post_batch(State(Ingest { db, .. }): State<Ingest>, headers: HeaderMap, body: Bytes) -> Response {
    let token = match authorize(&db, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let batch = match Batch::parse(&body) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("endpoint token {}: refused {e}", token.name);
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let id = batch.header.batch.clone();
    match db.store_batch(&token, batch).await {
        Ok(ack) => Json(ack).into_response(),
        Err(e) => {
            tracing::error!("storing batch {id} of {}: {e}", token.name);
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// The token of an order request, which must name its endpoint (`?endpoint=NAME`).
async fn authorize_endpoint(db: &EndpointDb, headers: &HeaderMap, q: &OrdersQuery) -> Result<EnrolToken, Response> {
    let token = authorize(db, headers).await?;
    match q.endpoint.is_empty() {
        true => Err(error(StatusCode::BAD_REQUEST, "?endpoint=NAME must name the endpoint".into())),
        false => Ok(token),
    }
}

async fn get_order(
    State(Ingest { db, wait }): State<Ingest>,
    headers: HeaderMap,
    Query(q): Query<OrdersQuery>,
) -> Response {
    let token = match authorize_endpoint(&db, &headers, &q).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Err(e) = db.announce(&token, &q.endpoint, q.allow_steps).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut woken = db.push_watch();
    loop {
        // marked seen before the look: a push made during it wakes the wait below
        woken.borrow_and_update();
        match db.order_for(&token, &q).await {
            Ok(Some(order)) => return Json(order).into_response(),
            Ok(None) => {}
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return StatusCode::NO_CONTENT.into_response();
        }
        tokio::select! {
            _ = woken.changed() => {}
            _ = tokio::time::sleep(OTHER_PROCESS_POLL.min(deadline - now)) => {}
        }
    }
}

/// What a `done` report is about: an IoC push or a steps order (their ids are apart).
#[derive(Clone, Copy)]
enum Reported {
    Push,
    Steps,
}

/// `POST .../{id}/done` of an IoC push (`STEPS` false) or of a steps order (`STEPS` true).
async fn post_done<const STEPS: bool>(
    State(Ingest { db, .. }): State<Ingest>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<OrdersQuery>,
    body: Bytes,
) -> Response {
    let what = if STEPS { Reported::Steps } else { Reported::Push };
    record(what, &db, &headers, id, &q, &body).await
}

/// Records the endpoint's report on order `id` of kind `what`.
async fn record(
    what: Reported,
    db: &EndpointDb,
    headers: &HeaderMap,
    id: u64,
    q: &OrdersQuery,
    body: &[u8],
) -> Response {
    let token = match authorize_endpoint(db, headers, q).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let done = match OrderDone::parse(body) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let recorded = match what {
        Reported::Push => db.record_done(&token, &q.endpoint, id, &done).await,
        Reported::Steps => db.record_steps_done(&token, &q.endpoint, id, &done).await,
    };
    let (name, endpoint) = (&token.name, &q.endpoint);
    match (recorded, what) {
        (Ok(true), Reported::Push) => {
            let how = if done.ok { "applied" } else { "refused" };
            tracing::info!("endpoint {name}/{endpoint} {how} push {id}: {}", done.message);
            StatusCode::NO_CONTENT.into_response()
        }
        (Ok(true), Reported::Steps) => {
            tracing::info!("endpoint {name}/{endpoint} ran steps order {id} (ok: {}): {}", done.ok, done.message);
            StatusCode::NO_CONTENT.into_response()
        }
        (Ok(false), Reported::Push) => error(StatusCode::NOT_FOUND, format!("no push {id}")),
        (Ok(false), Reported::Steps) => {
            error(StatusCode::NOT_FOUND, format!("no steps order {id} awaits a report from this endpoint"))
        }
        (Err(e), _) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

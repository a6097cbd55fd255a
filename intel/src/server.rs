//! The embedded store over HTTP: the subset of MISP's REST API in
//! shared/spec/misp.md, with MISP's envelopes and errors, so that PyMISP and
//! misp-to-kunai work against it unmodified. `router` can be mounted by the
//! appliance's web UI; `serve` runs it alone (`ioclab misp serve`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};

pub use crate::connections::ConnLimits;
use crate::model::input::EventIn;
use crate::model::types;
use crate::store::filter::Filters;
use crate::store::stream::Format;
use crate::store::{Store, StoreError, User};
use crate::warninglists::Warninglists;

/// Largest request body accepted (MISP events with thousands of attributes fit).
pub const BODY_LIMIT: usize = 32 << 20;

/// The version the store reports: PyMISP checks it is dot-separated integers.
pub const MISP_VERSION: &str = "2.5.1";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The data.
    pub store: Store,
    /// The lists /warninglists/checkValue and enforceWarninglist use.
    pub warninglists: Arc<Warninglists>,
}

/// An error in MISP's shape: `{"name", "message", "url"}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    name: String,
    message: String,
    url: String,
    /// Seconds for `Retry-After` (503 when the store is busy).
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, name: impl Into<String>, message: impl Into<String>, uri: &Uri) -> Self {
        ApiError { status, name: name.into(), message: message.into(), url: uri.path().to_string(), retry_after: None }
    }

    fn from_store(e: StoreError, name: &str, uri: &Uri) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m.clone(), m, uri),
            StoreError::Invalid(m) => ApiError::new(StatusCode::FORBIDDEN, name, m, uri),
            StoreError::Busy { ref what, retry_after } => {
                tracing::warn!("{} {}: {what}", name, uri.path());
                let mut a = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service busy", e.to_string(), uri);
                a.retry_after = Some(retry_after);
                a
            }
            StoreError::Interrupted(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Search stopped", m, uri),
            other => {
                // the details (SQL, paths, schema) go to the log; the client gets an id to quote
                let id = format!("{:08x}", rand::random::<u32>());
                tracing::error!(error_id = %id, "{} {}: {other}", name, uri.path());
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    format!("internal error {id}: the details are in the server's log"),
                    uri,
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r =
            (self.status, Json(json!({"name": self.name, "message": self.message, "url": self.url}))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type ApiResult = Result<Response, ApiError>;

/// The JSON of a request body, or a MISP-shaped error naming the problem and where.
fn json_body(body: Result<Bytes, BytesRejection>, uri: &Uri) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body over the {} MiB limit", BODY_LIMIT >> 20)
        } else {
            e.body_text()
        };
        ApiError::new(status, "Invalid request", msg, uri)
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid JSON",
            format!("the body is not valid JSON: {e} (line {}, column {})", e.line(), e.column()),
            uri,
        )
    })
}

/// Builds the router of every endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/servers/getVersion", get(get_version))
        .route("/servers/getVersion.json", get(get_version))
        .route("/users/view/me", get(users_view_me))
        .route("/users/view/me.json", get(users_view_me))
        .route("/attributes/describeTypes.json", get(describe_types))
        .route("/events/add", post(events_add))
        .route("/events/view/{id}", get(events_view))
        .route("/events/edit/{id}", post(events_edit))
        .route("/events/publish/{id}", post(events_publish))
        .route("/events/unpublish/{id}", post(events_unpublish))
        .route("/events/delete/{id}", post(events_delete).delete(events_delete))
        .route("/events/index", post(events_index).get(events_index))
        .route("/events/restSearch", post(events_rest_search))
        .route("/attributes/restSearch", post(attributes_rest_search))
        .route("/attributes/delete/{uuid}", post(attributes_delete).delete(attributes_delete))
        .route("/tags/attachTagToObject", post(tags_attach))
        .route("/sightings/add", post(sightings_add))
        .route("/warninglists/checkValue", post(warninglists_check))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serves `router` on `addr` until Ctrl-C or SIGTERM, with the default [`ConnLimits`].
pub async fn serve(state: AppState, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("MISP-compatible API on http://{}", listener.local_addr()?);
    serve_on(listener, state, ConnLimits::default(), crate::connections::shutdown_signal()).await
}

/// Serves `router` on `listener` within `limits` until `stop` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ConnLimits,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    crate::connections::serve(listener, router(state), limits, stop).await
}

const AUTH_FAILED: &str = "Authentication failed. Please make sure you pass the API key of an API enabled user along in the Authorization header.";

/// Every endpoint needs a valid key in `Authorization` (raw, as MISP wants it) or `X-MISP-AUTH`.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let key = {
        // a block: no borrow of the (non-Sync) request may live across the await below
        let header =
            |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).map(str::to_string);
        header("authorization").or_else(|| header("x-misp-auth")).unwrap_or_default()
    };
    match state.store.user_for_key(&key).await {
        Ok(Some(user)) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Ok(None) => ApiError::new(StatusCode::FORBIDDEN, AUTH_FAILED, AUTH_FAILED, req.uri()).into_response(),
        Err(e) => ApiError::from_store(e, "Authentication", req.uri()).into_response(),
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found", format!("{} is not an endpoint of this MISP", uri.path()), &uri)
}

async fn wrong_method(uri: Uri, method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        format!("{method} is not allowed on {}", uri.path()),
        &uri,
    )
}

async fn get_version() -> Json<Value> {
    Json(json!({
        "version": MISP_VERSION, "pymisp_recommended_version": MISP_VERSION, "perm_sync": false,
        "perm_sighting": true, "perm_galaxy_editor": false, "perm_analyst_data": false, "uuid": "-",
        "request_encoding": ["gzip", "br"], "filter_sightings": true,
    }))
}

async fn users_view_me(Extension(user): Extension<User>) -> Json<Value> {
    let admin = user.role == crate::store::Role::Admin;
    let publish = user.role.can_publish();
    let role_id = user.role.misp_id();
    Json(json!({
        "User": {"id": user.id.to_string(), "email": user.email, "org_id": user.org_id.to_string(),
            "role_id": role_id, "password": "*****", "disabled": false, "autoalert": false,
            "termsaccepted": true, "change_pw": false, "last_login": "0", "date_created": "0"},
        "Role": {"id": role_id, "name": user.role.name(), "perm_add": true, "perm_modify": true,
            "perm_modify_org": true, "perm_publish": publish, "perm_delegate": false, "perm_sync": false, "perm_admin": admin,
            "perm_audit": false, "perm_auth": true, "perm_site_admin": admin, "perm_regexp_access": false,
            "perm_tagger": true, "perm_template": false, "perm_sharing_group": false, "perm_tag_editor": true,
            "perm_sighting": true, "perm_object_template": false, "perm_galaxy_editor": false, "perm_warninglist": admin},
        "UserSetting": [],
        "Organisation": {"id": user.org_id.to_string(), "name": user.org_name, "uuid": user.org_uuid, "local": true},
    }))
}

/// MISP's answer to a key without the right: 403.
fn forbidden(uri: &Uri) -> ApiError {
    const NO: &str = "You do not have permission to do that.";
    ApiError::new(StatusCode::FORBIDDEN, NO, NO, uri)
}

/// Route guard: `user` may edit, tag or delete what belongs to `org`
/// (the organisation that created the event).
fn may_modify(user: &User, org: i64, uri: &Uri) -> Result<(), ApiError> {
    user.may_modify(org).then_some(()).ok_or_else(|| forbidden(uri))
}

/// Route guard: `rule` ([`User::may_modify`] or [`User::may_publish`]) on
/// the organisation of the event `id`.
async fn guard_event(
    st: &AppState,
    user: &User,
    id: &str,
    uri: &Uri,
    rule: fn(&User, i64) -> bool,
) -> Result<(), ApiError> {
    let org = st.store.event_org(id).await.map_err(|e| ApiError::from_store(e, "Invalid event", uri))?;
    rule(user, org).then_some(()).ok_or_else(|| forbidden(uri))
}

/// Route guard: a body asking to publish needs `perm_publish`.
fn may_publish_body(user: &User, e: &EventIn, uri: &Uri) -> Result<(), ApiError> {
    (e.published != Some(true) || user.role.can_publish()).then_some(()).ok_or_else(|| forbidden(uri))
}

async fn describe_types() -> Json<Value> {
    let mut sane = Map::new();
    let mut mappings: Map<String, Value> = Map::new();
    for (t, cat, ids) in types::TYPES {
        sane.insert((*t).into(), json!({"default_category": cat, "to_ids": u8::from(*ids)}));
        if let Value::Array(list) = mappings.entry((*cat).to_string()).or_insert_with(|| json!([])) {
            list.push(json!(t));
        }
    }
    Json(json!({"result": {
        "sane_defaults": sane,
        "types": types::TYPES.iter().map(|t| t.0).collect::<Vec<_>>(),
        "categories": types::CATEGORIES,
        "category_type_mappings": mappings,
    }}))
}

async fn events_add(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let v = json_body(body, &uri)?;
    let e = EventIn::from_body(v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "Could not add Event", format!("Event: {e}"), &uri))?;
    may_publish_body(&user, &e, &uri)?;
    let id = st.store.add_event(&user, e).await.map_err(|e| ApiError::from_store(e, "Could not add Event", &uri))?;
    let ev = st.store.event(&id.to_string()).await.map_err(|e| ApiError::from_store(e, "Could not add Event", &uri))?;
    Ok(Json(ev).into_response())
}

async fn events_view(State(st): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let key = id.trim_end_matches(".json");
    match st.store.event(key).await {
        Ok(ev) => Ok(Json(ev).into_response()),
        Err(StoreError::NotFound(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "Invalid event.", "Invalid event.", &uri))
        }
        Err(e) => Err(ApiError::from_store(e, "Invalid event.", &uri)),
    }
}

async fn events_edit(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let v = json_body(body, &uri)?;
    let e = EventIn::from_body(v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "Could not edit Event", format!("Event: {e}"), &uri))?;
    guard_event(&st, &user, &id, &uri, User::may_modify).await?;
    may_publish_body(&user, &e, &uri)?;
    let id = st.store.edit_event(&id, e).await.map_err(|e| ApiError::from_store(e, "Could not edit Event", &uri))?;
    let ev =
        st.store.event(&id.to_string()).await.map_err(|e| ApiError::from_store(e, "Could not edit Event", &uri))?;
    Ok(Json(ev).into_response())
}

async fn publish(st: AppState, user: User, id: String, uri: Uri, published: bool) -> ApiResult {
    guard_event(&st, &user, &id, &uri, User::may_publish).await?;
    let id =
        st.store.set_published(&id, published).await.map_err(|e| ApiError::from_store(e, "Invalid event", &uri))?;
    let msg = if published { "Event published without alerts" } else { "Event unpublished." };
    Ok(Json(
        json!({"saved": true, "success": true, "name": msg, "message": msg, "url": uri.path(), "id": id.to_string()}),
    )
    .into_response())
}

async fn events_publish(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    publish(st, user, id, uri, true).await
}

async fn events_unpublish(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    publish(st, user, id, uri, false).await
}

async fn events_delete(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    guard_event(&st, &user, &id, &uri, User::may_modify).await?;
    st.store.delete_event(&id).await.map_err(|e| ApiError::from_store(e, "Invalid event", &uri))?;
    Ok(Json(json!({"saved": true, "success": true, "name": "Event deleted.", "message": "Event deleted.", "url": uri.path()}))
        .into_response())
}

async fn attributes_delete(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    Path(uuid): Path<String>,
    uri: Uri,
) -> ApiResult {
    let org = st.store.owner_org(&uuid).await.map_err(|e| ApiError::from_store(e, "Invalid attribute", &uri))?;
    may_modify(&user, org, &uri)?;
    st.store.delete_attribute(&uuid).await.map_err(|e| ApiError::from_store(e, "Invalid attribute", &uri))?;
    Ok(Json(json!({"message": "Attribute deleted."})).into_response())
}

fn filters(body: Result<Bytes, BytesRejection>, uri: &Uri) -> Result<Filters, ApiError> {
    let v = json_body(body, uri)?;
    Filters::from_body(&v).map_err(|e| match e {
        // a malformed or oversized filter is the request's fault: 400, saying which and why
        StoreError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "Invalid filters", m, uri),
        other => ApiError::from_store(other, "Invalid filters", uri),
    })
}

/// A streamed answer.
fn streamed(content_type: &'static str, chunks: crate::store::stream::Chunks) -> Response {
    ([("content-type", content_type)], axum::body::Body::from_stream(chunks)).into_response()
}

async fn events_index(State(st): State<AppState>, uri: Uri, body: Result<Bytes, BytesRejection>) -> ApiResult {
    // the index splits a bare string filter on `|`, restSearch does not
    let v = json_body(body, &uri)?;
    let f = Filters::from_index_body(&v).map_err(|e| ApiError::from_store(e, "Invalid filters", &uri))?;
    let events = st.store.index(&f).await.map_err(|e| ApiError::from_store(e, "Invalid filters", &uri))?;
    let mut headers = HeaderMap::new();
    headers.insert("X-Result-Count", HeaderValue::from(events.len()));
    Ok((headers, Json(Value::Array(events))).into_response())
}

async fn events_rest_search(State(st): State<AppState>, uri: Uri, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let f = filters(body, &uri)?;
    let events = st.store.stream_events(&f).await.map_err(|e| ApiError::from_store(e, "Invalid filters", &uri))?;
    Ok(streamed("application/json", events))
}

async fn attributes_rest_search(
    State(st): State<AppState>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut f = filters(body, &uri)?;
    let fail = |e| ApiError::from_store(e, "Invalid filters", &uri);
    if f.enforce_warninglist {
        // the values on a warninglist are left out by id, then the answer is rendered (and paged) as usual
        let unpaged = Filters { limit: None, page: None, ..f.clone() };
        let found = st.store.search_attribute_values(&unpaged).await.map_err(fail)?;
        f.exclude_ids = found
            .into_iter()
            .filter(|(_, kind, value)| !st.warninglists.check_attribute(kind, value).is_empty())
            .map(|(id, _, _)| id)
            .collect();
    }
    // JSON or CSV rendered by SQLite in chunks, sent as they come
    match f.return_format.clone().as_deref().unwrap_or("json") {
        "json" => Ok(streamed("application/json", st.store.stream_attributes(f, Format::Json).await.map_err(fail)?)),
        "csv" => Ok(streamed("text/csv", st.store.stream_attributes(f, Format::Csv).await.map_err(fail)?)),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid return format",
            format!("returnFormat {other:?} is not served here: json or csv"),
            &uri,
        )),
    }
}

async fn tags_attach(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let v = json_body(body, &uri)?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(uuid), Some(tag)) = (field("uuid"), field("tag")) else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Invalid request", "uuid and tag are required", &uri));
    };
    let local = match v.get("local") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(Value::String(s)) => s == "1" || s == "true",
        _ => false,
    };
    let org = st.store.owner_org(&uuid).await.map_err(|e| ApiError::from_store(e, "Invalid Target.", &uri))?;
    may_modify(&user, org, &uri)?;
    st.store.attach_tag(&uuid, &tag, local).await.map_err(|e| ApiError::from_store(e, "Invalid Target.", &uri))?;
    Ok(Json(json!({"saved": true, "success": format!("Tag {tag} successfully attached."), "check_publish": true}))
        .into_response())
}

async fn sightings_add(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let v = json_body(body, &uri)?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let kind = match v.get("type") {
        Some(Value::String(s)) => s.parse().unwrap_or(-1),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        _ => 0,
    };
    let (first, _) = st
        .store
        .add_sighting(
            &user,
            field("uuid").as_deref(),
            field("value").as_deref(),
            kind,
            &field("source").unwrap_or_default(),
        )
        .await
        .map_err(|e| ApiError::from_store(e, "Could not add the Sighting", &uri))?;
    Ok(Json(first).into_response())
}

async fn warninglists_check(State(st): State<AppState>, uri: Uri, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let v = json_body(body, &uri)?;
    let values: Vec<String> = match v {
        Value::Array(a) => a.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Value::String(s) => vec![s],
        Value::Object(m) => match m.get("value") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => vec![],
        },
        _ => vec![],
    };
    let mut out = Map::new();
    for value in values {
        let hits = st.warninglists.check(&value);
        if !hits.is_empty() {
            out.insert(
                value,
                Value::Array(
                    hits.iter()
                        .map(|h| json!({"id": h.id.to_string(), "name": h.name, "matched": h.matched}))
                        .collect(),
                ),
            );
        }
    }
    Ok(if out.is_empty() { Json(json!([])) } else { Json(Value::Object(out)) }.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, HeaderMap, Value) {
        let r = e.into_response();
        let (status, headers) = (r.status(), r.headers().clone());
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn database_errors_reach_the_log_not_the_client() {
        let uri: Uri = "/events/add".parse().unwrap();
        let secret = "no such table: api_keys_v2 at /var/lib/ioclab/misp.db";
        let e = StoreError::Db(sqlx::Error::Protocol(secret.into()));
        let (status, _, v) = body(ApiError::from_store(e, "Could not add Event", &uri)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let message = v["message"].as_str().unwrap();
        assert!(!message.contains("api_keys") && !message.contains("/var/lib"), "{message}");
        assert!(message.starts_with("internal error ") && message.contains("log"), "an id to quote: {message}");
    }

    #[tokio::test]
    async fn busy_is_503_with_retry_after() {
        let uri: Uri = "/events/add".parse().unwrap();
        let e = StoreError::Busy { what: "the writer was busy for 15 s".into(), retry_after: 5 };
        let (status, headers, v) = body(ApiError::from_store(e, "Could not add Event", &uri)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers.get("retry-after").unwrap(), "5");
        assert!(v["message"].as_str().unwrap().contains("15 s"), "{v}");
    }
}

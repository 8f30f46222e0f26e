//! The admin API: JSON over HTTP on the admin listener, described by `GET /api/openapi.json`.
//!
//! Every `/api/` route passes the `gate` first: the caller's bearer token (401), the scope
//! the OpenAPI document names for the operation (403), and the query, parsed once against the
//! parameters the document declares (400). Handlers then decide what depends on what the
//! request names: a site the token does not reach is 403, a report it does not reach 404
//! (`auth`). Writes go through [`ControlPlane::change`], which audits them and swaps the
//! edge's snapshot.

mod audit;
mod auth;
mod edges;
mod gate;
mod mitigations;
mod openapi;
mod query;
mod reports;
mod site_state;
mod sites;
mod tokens;

pub use auth::Caller;
pub use openapi::document as openapi_document;
pub use query::{Query, QueryError};

use crate::documents::FieldError;
use crate::plane::{ChangeError, ControlPlane};
use crate::store::StoreError;
use crate::store::tokens::Scope;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Router, middleware};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest JSON body the API reads (a site with its certificate and key fits easily).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler is given: the control plane.
pub type Shared = State<Arc<ControlPlane>>;

/// The admin listener's routes.
pub fn router(plane: Arc<ControlPlane>) -> Router {
    let api = Router::new()
        .route("/api/openapi.json", get(openapi::serve))
        .route("/api/sites", get(sites::list).post(sites::create))
        .route(
            "/api/sites/{site}",
            get(sites::show)
                .patch(sites::patch)
                .put(sites::replace)
                .delete(sites::delete),
        )
        .route("/api/sites/{site}/state", put(site_state::put))
        .route("/api/sites/{site}/suspend", post(sites::suspend))
        .route("/api/sites/{site}/reinstate", post(sites::reinstate))
        .route("/api/sites/{site}/purge", post(sites::purge))
        .route("/api/sites/{site}/analytics", get(sites::analytics))
        .route("/api/sites/{site}/mitigations", get(mitigations::list))
        .route(
            "/api/sites/{site}/mitigations/{id}/dismiss",
            post(mitigations::dismiss),
        )
        .route(
            "/api/sites/{site}/mitigations/{id}/pin",
            post(mitigations::pin),
        )
        .route("/api/audit", get(audit::list))
        .route("/api/tokens", get(tokens::list).post(tokens::create))
        .route("/api/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/api/reports", get(reports::list))
        .route(
            "/api/reports/{id}",
            get(reports::show).patch(reports::patch),
        )
        .route("/api/events", get(events))
        .route("/api/edges", get(edges::list))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&plane),
            gate::gate,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(plane)
}

/// A refusal, as JSON: `{"error": "...", "field": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    /// The answer's status.
    pub status: StatusCode,
    /// What is wrong, for the client; cut to 400 characters.
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
}

impl ApiError {
    /// A refusal with `status` saying `message`, naming no field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A refusal with `status` about `field`.
    pub fn field(
        status: StatusCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// 422 for a document that is not a valid site, naming its field when it has one.
    pub fn invalid(error: FieldError) -> ApiError {
        let field = (!error.field.is_empty()).then_some(error.field);
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: error.message,
            field,
        }
    }
}

/// The most of an error's message (and of its `field`) an answer shows. Messages quote what
/// was sent through `model::shown`, which cuts each value; this bound holds for the ones
/// that quote by other means (a JSON parser's "unknown field `...`").
const MAX_MESSAGE_CHARS: usize = 400;
const MAX_FIELD_CHARS: usize = 100;

/// `text`, cut to `max` characters with an ellipsis.
fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": cut(self.message, MAX_MESSAGE_CHARS) });
        if let Some(field) = self.field {
            body["field"] = Value::from(cut(field, MAX_FIELD_CHARS));
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"palisade\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    /// The cause goes to the log, not to the client: it may name the data directory's files.
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "store error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store failed; the server's log says why",
        )
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> ApiError {
        match e {
            ChangeError::Invalid(error) => ApiError::invalid(error),
            ChangeError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
            ChangeError::NotFound(message) => ApiError::new(StatusCode::NOT_FOUND, message),
            ChangeError::Forbidden(error) => ApiError {
                status: StatusCode::FORBIDDEN,
                ..ApiError::invalid(error)
            },
            ChangeError::Store(e) => e.into(),
        }
    }
}

/// What a handler returns: the answer, or a refusal as JSON.
pub type ApiResult = Result<Response, ApiError>;

/// A JSON answer.
pub fn reply(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, axum::Json(body)).into_response())
}

/// Reads a request's body as JSON of type `T`: 400 for bad JSON (naming the field serde names),
/// 413 over [`MAX_BODY_BYTES`].
pub async fn read_json<T: DeserializeOwned>(body: axum::body::Body) -> Result<T, ApiError> {
    let bytes = read_body(body).await?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a JSON body is required",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))
}

/// Reads a request's body whole: 413 over [`MAX_BODY_BYTES`] (or a broken body), 408 when
/// it has not arrived within 30 s.
pub async fn read_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout(std::time::Duration::from_secs(30), limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_BODY_BYTES} bytes, or broken"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive within 30 s",
        )),
    }
}

/// Runs a read of the store on a blocking thread.
pub async fn read<T: Send + 'static>(
    plane: &ControlPlane,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    plane
        .store
        .run(move |conn| f(conn).map_err(ApiError::from))
        .await
}

/// The edge's own endpoint, answered as the edge answers it.
pub async fn edge_builtin(plane: &ControlPlane, request: Request) -> Response {
    plane.edge.admin_builtin(request).await.into_response()
}

async fn healthz(State(plane): Shared, request: Request) -> Response {
    edge_builtin(&plane, request).await
}

/// Fields by which a proxy says the request is someone else's: a relayed request's peer
/// address is the proxy's, so it says nothing of who is asking.
const RELAYED: [HeaderName; 3] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
];

/// `/metrics`: every site's names and traffic. Without a token only for a peer in
/// `metrics_open_to` (by default loopback, when the admin listener is bound to loopback) on a
/// request no proxy relayed: a reverse proxy on this host connects from loopback for every
/// client it relays. Anyone else needs a `read` token that reaches every site.
async fn metrics(State(plane): Shared, request: Request) -> ApiResult {
    if !open_without_token(&plane, &request) {
        let caller = auth::caller(&plane, request.headers()).await?;
        caller.require_scope(Scope::Read)?;
        caller.reach_every_site()?;
    }
    Ok(edge_builtin(&plane, request).await)
}

fn open_without_token(plane: &ControlPlane, request: &Request) -> bool {
    let Some(peer) = request.extensions().get::<edge::admin::Peer>() else {
        return false;
    };
    if RELAYED
        .iter()
        .any(|name| request.headers().contains_key(name))
    {
        return false;
    }
    // An IPv4 peer of a listener bound to `[::]` arrives as ::ffff:a.b.c.d.
    let ip = peer.0.ip().to_canonical();
    plane
        .base()
        .config
        .server
        .metrics_open_to(plane.edge.admin_addr())
        .iter()
        .any(|network| network.contains(&ip))
}

/// `GET /api/events?site=&limit=&after=`: recent security events, newest first. A token
/// limited to sites sees theirs only; naming another site is 403.
async fn events(
    State(plane): Shared,
    Extension(caller): Extension<Caller>,
    Extension(query): Extension<Query>,
) -> ApiResult {
    let site = query.get("site");
    if let Some(site) = site {
        caller.reach(site)?;
    }
    let sites = caller.sites();
    let events = plane.edge.security_events(&edge::EventQuery {
        site,
        sites: sites.as_deref(),
        after: query.parsed::<u64>("after", "an event id")?,
        limit: query.limit(100, 10_000)?,
    });
    reply(StatusCode::OK, json!({ "events": events }))
}

async fn not_found(State(plane): Shared, request: Request) -> ApiResult {
    // Unknown API paths still ask for a token first: they say nothing to a stranger.
    if request.uri().path().starts_with("/api/") {
        auth::caller(&plane, request.headers()).await?;
    }
    Err(ApiError::new(StatusCode::NOT_FOUND, "no such endpoint"))
}

async fn method_not_allowed(State(plane): Shared, request: Request) -> ApiResult {
    auth::caller(&plane, request.headers()).await?;
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "that method is not allowed here",
    ))
}

/// The admin listener's handler for the edge: this router, for every admin request.
pub fn admin_handler(plane: Arc<ControlPlane>) -> edge::admin::AdminHandler {
    use tower::ServiceExt;
    let router = router(plane);
    Arc::new(move |request: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request.map(axum::body::Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            response.map(|body| body.map_err(Into::into).boxed_unsync())
        })
    })
}

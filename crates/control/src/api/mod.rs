//! The admin API: JSON over HTTP on the admin listener, described by `GET /api/openapi.json`.
//!
//! Every `/api/` route checks the caller's bearer token before anything else: missing,
//! unknown or revoked is 401, a scope or site the token lacks is 403 (`auth`). Writes go
//! through [`ControlPlane::change`], which audits them and swaps the edge's snapshot.

mod audit;
mod auth;
mod openapi;
mod reports;
mod sites;
mod tokens;

pub use auth::{Caller, authorize};
pub use openapi::document as openapi_document;

use crate::documents::FieldError;
use crate::plane::{ChangeError, ControlPlane};
use crate::store::StoreError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest JSON body the API reads (a site with its certificate and key fits easily).
pub const MAX_BODY_BYTES: usize = 1 << 20;

pub type Shared = State<Arc<ControlPlane>>;

/// The admin listener's routes.
pub fn router(plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi::serve))
        .route("/api/sites", get(sites::list).post(sites::create))
        .route(
            "/api/sites/{site}",
            get(sites::show)
                .patch(sites::patch)
                .put(sites::replace)
                .delete(sites::delete),
        )
        .route("/api/sites/{site}/suspend", post(sites::suspend))
        .route("/api/sites/{site}/reinstate", post(sites::reinstate))
        .route("/api/sites/{site}/purge", post(sites::purge))
        .route("/api/sites/{site}/analytics", get(sites::analytics))
        .route("/api/audit", get(audit::list))
        .route("/api/tokens", get(tokens::list).post(tokens::create))
        .route("/api/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/api/reports", get(reports::list))
        .route(
            "/api/reports/{id}",
            get(reports::show).patch(reports::patch),
        )
        .route("/api/events", get(events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(plane)
}

/// A refusal, as JSON: `{"error": "...", "field": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

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

    pub fn invalid(error: FieldError) -> ApiError {
        let field = (!error.field.is_empty()).then_some(error.field);
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: error.message,
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::from(field);
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
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "store error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> ApiError {
        match e {
            ChangeError::Invalid(error) => ApiError::invalid(error),
            ChangeError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
            ChangeError::NotFound(message) => ApiError::new(StatusCode::NOT_FOUND, message),
            ChangeError::Store(e) => e.into(),
        }
    }
}

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

/// `limit` from a query: `default` when absent, at most `max`.
pub fn limit(value: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "limit",
            format!("limit must be 1 to {max}"),
        )),
    }
}

/// The edge's own endpoint, answered as the edge answers it.
pub async fn edge_builtin(plane: &ControlPlane, request: Request) -> Response {
    plane.edge.admin_builtin(request).await.into_response()
}

async fn healthz(State(plane): Shared, request: Request) -> Response {
    edge_builtin(&plane, request).await
}

/// `/metrics`: open to loopback scrapers (as before the API existed); from anywhere else it
/// needs a token with `read`, since site names and traffic are not public.
async fn metrics(State(plane): Shared, request: Request) -> ApiResult {
    let loopback = request
        .extensions()
        .get::<edge::admin::Peer>()
        .is_some_and(|peer| peer.0.ip().is_loopback());
    if !loopback {
        authorize(
            &plane,
            request.headers(),
            crate::store::tokens::Scope::Read,
            None,
        )
        .await?;
    }
    Ok(edge_builtin(&plane, request).await)
}

/// `GET /api/events`: a token limited to sites must ask for one of them (`?site=`).
async fn events(State(plane): Shared, request: Request) -> ApiResult {
    let site = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("site="))
            .map(str::to_string)
    });
    let caller = auth::caller(&plane, request.headers()).await?;
    caller.require(crate::store::tokens::Scope::Read, site.as_deref())?;
    Ok(edge_builtin(&plane, request).await)
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

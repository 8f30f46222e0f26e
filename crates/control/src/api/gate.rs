//! What every `/api/` route passes before its handler runs, in this order:
//!
//! 1. the caller's token (401: missing, malformed, unknown or revoked);
//! 2. the scope its operation names in the OpenAPI document (403);
//! 3. its query, parsed once against the parameters the document declares (400).
//!
//! The handler receives the [`Caller`] and the [`Query`] as extensions and decides only what
//! depends on what the request names: the site it is about (403 when the token does not reach
//! it) or the report (404). Nothing a handler reads of the query can differ from what the
//! decision read, and a route cannot be added without its token, scope and query checks: one
//! missing from the document answers 500.

use super::query::Query;
use super::{ApiError, Caller, Shared, auth, openapi};
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The gate, as an axum middleware on the API's routes (`route_layer`, so it knows which
/// route matched).
pub async fn gate(State(plane): Shared, mut request: Request, next: Next) -> Response {
    if let Err(refusal) = admit(&plane, &mut request).await {
        return refusal.into_response();
    }
    let wait = match request
        .extensions()
        .get::<Query>()
        .and_then(|q| q.get("wait"))
    {
        None => false,
        Some("applied") => true,
        Some(other) => {
            return ApiError::field(
                StatusCode::BAD_REQUEST,
                "wait",
                format!("wait={} is not known: wait=applied", model::shown(other)),
            )
            .into_response();
        }
    };
    let response = next.run(request).await;
    if wait && response.status().is_success() {
        super::edges::when_applied(&plane, response).await
    } else {
        response
    }
}

async fn admit(plane: &crate::ControlPlane, request: &mut Request) -> Result<(), ApiError> {
    let caller = auth::caller(plane, request.headers()).await?;
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let Some(operation) = openapi::operation(request.method(), &template) else {
        tracing::error!(method = %request.method(), route = %template, "a route the OpenAPI document does not describe");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this route is missing from the API's description, so it is not served",
        ));
    };
    if let Some(scope) = operation.scope {
        caller.require_scope(scope)?;
    }
    let query = Query::parse(request.uri().query(), &operation.query)?;
    request.extensions_mut().insert::<Caller>(caller);
    request.extensions_mut().insert(query);
    Ok(())
}

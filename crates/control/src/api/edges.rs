//! The cluster's nodes (`GET /api/edges`), and `?wait=applied` on writes: the answer waits
//! until every connected edge runs the change.

use super::{ApiError, ApiResult, Shared, reply};
use crate::cluster_view::APPLIED_TIMEOUT;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// `GET /api/edges`: every node that has sent a heartbeat; on a node alone, none.
pub async fn list(axum::extract::State(plane): Shared) -> ApiResult {
    let Some(cluster) = plane.cluster() else {
        return reply(StatusCode::OK, json!({"cluster": false, "edges": []}));
    };
    let nodes = cluster.nodes().await.map_err(|e| {
        tracing::warn!(error = %e, "cluster: heartbeats unreadable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster's Redis cannot be read now; the edges serve on",
        )
    })?;
    reply(StatusCode::OK, json!({"cluster": true, "edges": nodes}))
}

/// A write's answer, once every connected edge has applied what this node has written so far
/// (`edges_applied` added to a JSON object), or 504 naming the edges that did not in time.
/// On a node alone there is nothing to wait for: `edges_applied` is 0.
pub async fn when_applied(plane: &crate::ControlPlane, response: Response) -> Response {
    let applied = match plane.cluster() {
        None => Ok(0),
        Some(cluster) => {
            cluster
                .wait_applied(plane.outbox_version(), APPLIED_TIMEOUT)
                .await
        }
    };
    let edges = match applied {
        Ok(edges) => edges,
        Err(behind) => {
            // Accepted all the same: the names are for the operator (`GET /api/edges`).
            let timeout = APPLIED_TIMEOUT.as_secs();
            return (
                StatusCode::GATEWAY_TIMEOUT,
                axum::Json(json!({
                    "error": format!("accepted, but these edges did not apply it within {timeout} s; they will when they can"),
                    "edges": behind,
                })),
            )
                .into_response();
        }
    };
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the answer was lost")
            .into_response();
    };
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut object)) => {
            object.insert("edges_applied".into(), Value::from(edges));
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Body::from(serde_json::to_vec(&Value::Object(object)).unwrap_or_default())
        }
        _ => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

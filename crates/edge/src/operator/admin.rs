//! The admin listener and the edge's own endpoints: `GET /metrics` (Prometheus) and `GET
//! /healthz`.
//!
//! The control plane installs an [`AdminHandler`] that answers every admin request (its API,
//! with authentication, and these endpoints through [`Edge::admin_builtin`]). Until one is
//! installed only `/metrics` and `/healthz` answer: the edge alone never serves an
//! unauthenticated API. The API's security events and purges are typed calls
//! ([`Edge::security_events`], [`Edge::purge`]), never a request the edge parses again: what
//! the control plane authorized is exactly what the edge does.
//!
//! Every answer on this listener carries `X-Content-Type-Options: nosniff`: its bodies are
//! JSON and text that may quote what a client or a reporter sent, never pages.
//!
//! [`Edge::admin_builtin`]: crate::Edge::admin_builtin
//! [`Edge::security_events`]: crate::Edge::security_events
//! [`Edge::purge`]: crate::Edge::purge

use crate::conn_guard::ConnGuard;
use crate::state::EdgeState;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Error type of an admin response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// An admin response's body.
pub type AdminBody = UnsyncBoxBody<Bytes, BoxError>;
/// What answers admin requests once the control plane is up.
pub type AdminHandler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<AdminBody>> + Send>>
        + Send
        + Sync,
>;

/// The admin client's address, in every admin request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Accepts admin connections on `listener` until `shutdown` changes, within `guard`'s
/// connection caps. Requests go to the control plane's handler once it is installed, and
/// only `/metrics` and `/healthz` answer before.
pub async fn serve(
    listener: TcpListener,
    state: Arc<EdgeState>,
    handler: Arc<std::sync::OnceLock<AdminHandler>>,
    guard: Arc<ConnGuard>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = Arc::clone(&state);
        let handler = Arc::clone(&handler);
        let guard = Arc::clone(&guard);
        tokio::spawn(async move {
            let service = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                let state = Arc::clone(&state);
                let handler = Arc::clone(&handler);
                let guard = Arc::clone(&guard);
                async move {
                    let mut response = match handler.get() {
                        Some(handler) => handler(request).await,
                        None => builtin_before_control(request, &state, &guard).await,
                    };
                    response.headers_mut().insert(
                        header::X_CONTENT_TYPE_OPTIONS,
                        header::HeaderValue::from_static("nosniff"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            // Scrapers are short-lived; a stuck one is cut off rather than held forever.
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

/// Before the control plane installs its handler: health and metrics only.
async fn builtin_before_control(
    request: Request<Incoming>,
    state: &EdgeState,
    guard: &ConnGuard,
) -> Response<AdminBody> {
    let response = if request.uri().path().starts_with("/api/") {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the control plane is not running here",
        )
    } else {
        answer(request, state, guard).await
    };
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// The edge's own admin endpoints, for any request body type (the control plane's router
/// hands them its requests after deciding who may see them).
pub async fn answer<B>(
    request: Request<B>,
    state: &EdgeState,
    guard: &ConnGuard,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let snapshot = state.snapshot.load();
            let text = state.metrics.render(
                guard.open(),
                &snapshot.origin_reports(),
                &cache_report(&state.cache),
                &crate::metrics::BodyBufferReport {
                    held_bytes: state.body_buffers.held(),
                    overflowed: state.body_buffers.overflowed(),
                },
            );
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    reply(status, content_type, body)
}

fn cache_report(cache: &cache::Cache) -> crate::metrics::CacheReport {
    crate::metrics::CacheReport {
        memory_bytes: cache.memory().used_bytes(),
        memory_entries: cache.memory().len() as u64,
        disk_bytes: cache.disk().map_or(0, |d| d.used_bytes()),
        disk_objects: cache.disk().map_or(0, |d| d.len() as u64),
        fills: cache.fills() as u64,
        pending_purges: cache.pending_purges() as u64,
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    reply(status, "application/json", body + "\n")
}

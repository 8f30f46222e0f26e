//! The admin listener and the edge's own endpoints: `GET /metrics` (Prometheus), `GET
//! /healthz`, `GET /api/events` (recent security events, see `events`), and `POST
//! /api/sites/{site}/purge` (see `purge_api`).
//!
//! The control plane installs an [`AdminHandler`] that answers every admin request (its API,
//! with authentication, and these endpoints through [`Edge::admin_builtin`]). Until one is
//! installed only `/metrics` and `/healthz` answer: the edge alone never serves an
//! unauthenticated API.
//!
//! [`Edge::admin_builtin`]: crate::Edge::admin_builtin

use crate::conn_guard::ConnGuard;
use crate::pipeline::EdgeState;
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

pub async fn serve(
    listener: TcpListener,
    state: Arc<EdgeState>,
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
        let guard = Arc::clone(&guard);
        tokio::spawn(async move {
            let service = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                let state = Arc::clone(&state);
                let guard = Arc::clone(&guard);
                async move {
                    let response = match state.admin_handler.get() {
                        Some(handler) => handler(request).await,
                        None => builtin_before_control(request, &state, &guard).await,
                    };
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
/// hands them its requests after checking their token).
pub async fn answer<B>(
    request: Request<B>,
    state: &EdgeState,
    guard: &ConnGuard,
) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    if let Some(site) = request
        .uri()
        .path()
        .strip_prefix("/api/sites/")
        .and_then(|rest| rest.strip_suffix("/purge"))
    {
        let site = site.to_string();
        return purge(request, &site, state).await;
    }
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let snapshot = state.snapshot.load();
            let text = state.metrics.render(
                guard.open(),
                &snapshot.origin_reports(),
                &cache_report(&state.cache),
            );
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        (_, "/api/events") => return events(&request, state),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    reply(status, content_type, body)
}

/// Events returned when the query sets no `limit`, and the most it may ask for.
const EVENTS_DEFAULT_LIMIT: usize = 100;
const EVENTS_MAX_LIMIT: usize = 10_000;

/// `GET /api/events?site=NAME&limit=N&after=ID`: recent security events, newest first.
fn events<B>(request: &Request<B>, state: &EdgeState) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return response;
    }
    let mut query = shield::events::EventQuery {
        limit: EVENTS_DEFAULT_LIMIT,
        ..Default::default()
    };
    let text = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = form_pairs(text);
    for (name, value) in &pairs {
        match name.as_str() {
            "site" => query.site = Some(value.as_str()),
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=EVENTS_MAX_LIMIT).contains(&n) => query.limit = n,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("limit must be 1 to {EVENTS_MAX_LIMIT}"),
                    );
                }
            },
            "after" => match value.parse::<u64>() {
                Ok(id) => query.after = Some(id),
                Err(_) => return json_error(StatusCode::BAD_REQUEST, "after must be an event id"),
            },
            other => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown parameter {other:?} (site, limit, after)"),
                );
            }
        }
    }
    let events = state.events.recent(&query);
    let body = serde_json::json!({ "events": events }).to_string();
    reply(StatusCode::OK, "application/json", body + "\n")
}

/// `a=1&b=x%20y` as pairs, percent-decoded (`+` is a space).
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// `POST /api/sites/{site}/purge`: 200 with the purge's sequence number once it applies to
/// every request; 404 for a site the configuration does not have; 400 for a bad body; 405 for
/// another method.
async fn purge<B>(request: Request<B>, site: &str, state: &EdgeState) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    if request.method() != Method::POST {
        let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    let snapshot = state.snapshot.load();
    let Some(site) = snapshot.sites.iter().find(|s| &*s.name == site) else {
        return json_error(StatusCode::NOT_FOUND, &format!("no site named {site:?}"));
    };
    let limited =
        http_body_util::Limited::new(request.into_body(), crate::purge_api::MAX_BODY_BYTES);
    let body = match tokio::time::timeout(Duration::from_secs(10), limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "purge body over 64 KiB, or broken",
            );
        }
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                "purge body not sent within 10 s",
            );
        }
    };
    let purge = match crate::purge_api::parse(&site.name, &body) {
        Ok(purge) => purge,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let scope = format!("{:?}", purge.scope);
    let soft = purge.soft;
    let seq = state.cache.purge(purge);
    state.purge_wake.notify_one();
    tracing::info!(site = %site.name, %scope, soft, seq, "purge");
    let body = serde_json::json!({ "site": &*site.name, "purge": seq, "soft": soft }).to_string();
    reply(StatusCode::OK, "application/json", body + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_percent_decoded() {
        assert_eq!(
            form_pairs("site=my%2dsite&limit=5&x=a+b&bad=%zz&&"),
            vec![
                ("site".into(), "my-site".into()),
                ("limit".into(), "5".into()),
                ("x".into(), "a b".into()),
                ("bad".into(), "%zz".into()),
            ]
        );
    }
}

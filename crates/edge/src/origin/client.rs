//! Forwarding to an origin: pooled keep-alive connections, connect and response timeouts,
//! passive health, and failover.
//!
//! Retry rule: a request is sent again, to another origin, only when the previous attempt
//! never reached an origin (the TCP connect failed) *and* it is idempotent with no body. A
//! request that reached an origin is never replayed: the origin may have acted on it.

use super::pool::{ConnPool, PooledConn};
use super::{OriginState, Upstream};
use crate::body::{BodyTooLarge, OriginBody};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Version};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

fn has_source<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    ConnectFailed,
    TimedOut,
    Broken,
    BodyTooLarge,
}

/// A pooled connection idle longer than this may be closed by the origin's own keep-alive
/// timeout just as a request is written on it (Node.js closes after 5 s by default).
const STALE_RISK_AFTER: Duration = Duration::from_secs(1);

/// One request on one origin, within `timeout` (connect included): the response header and
/// the connection that carries its body.
///
/// A reused connection the origin had closed meanwhile is not a failure of the origin:
/// - when hyper hands the request back unsent, it goes out again on a new connection, whatever
///   its method, since the origin never saw it;
/// - when it was sent but the connection closed before any response, an idempotent request
///   without a body is sent again on a new connection (RFC 9110 §9.2.2), as browsers and nginx
///   do. A copy is kept for that only when the connection sat idle long enough to be at risk.
async fn exchange(
    origin: &OriginState,
    pool: &Arc<ConnPool>,
    mut request: Request<OriginBody>,
    timeout: Duration,
    retryable: bool,
) -> Result<(Response<Incoming>, PooledConn), Attempt> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut fresh = false;
    loop {
        let mut conn = match timeout_at(deadline, pool.checkout(fresh)).await {
            Err(_) => return Err(Attempt::TimedOut),
            Ok(Err(e)) => {
                tracing::debug!(origin = %origin.label, error = %e, "origin connect failed");
                return Err(Attempt::ConnectFailed);
            }
            Ok(Ok(conn)) => conn,
        };
        match timeout_at(deadline, conn.sender().ready()).await {
            Err(_) => return Err(Attempt::TimedOut),
            Ok(Err(_)) if conn.reused => {
                fresh = true;
                continue;
            }
            Ok(Err(e)) => {
                tracing::debug!(origin = %origin.label, error = %e, "new origin connection failed");
                return Err(Attempt::Broken);
            }
            Ok(Ok(())) => {}
        }
        let copy = (retryable && conn.reused && conn.idle_for >= STALE_RISK_AFTER)
            .then(|| copy_bodiless(&request));
        match timeout_at(deadline, conn.sender().try_send_request(request)).await {
            Err(_) => return Err(Attempt::TimedOut),
            Ok(Ok(response)) => return Ok((response, conn)),
            Ok(Err(mut e)) => {
                if has_source::<BodyTooLarge>(e.error()) {
                    return Err(Attempt::BodyTooLarge);
                }
                match (e.take_message(), copy) {
                    (Some(unsent), _) if conn.reused => request = unsent,
                    (None, Some(copy)) => request = copy,
                    _ => {
                        tracing::debug!(origin = %origin.label, error = ?e.error(), "origin request failed");
                        return Err(Attempt::Broken);
                    }
                }
                tracing::debug!(origin = %origin.label, "pooled connection was closed; sending on a new one");
                fresh = true;
            }
        }
    }
}

fn copy_bodiless(request: &Request<OriginBody>) -> Request<OriginBody> {
    let mut copy = Request::new(OriginBody::Empty);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// A request ready to be forwarded; headers already rewritten by the forward phase.
pub struct OriginRequest {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub body: OriginBody,
    /// Whether it may be sent again after a connect failure (idempotent, no body).
    pub retryable: bool,
}

/// The origin's answer.
pub struct OriginResponse {
    pub response: Response<Incoming>,
    /// The connection the body arrives on; released for reuse when the body has been read.
    pub conn: PooledConn,
    pub origin: Arc<OriginState>,
    /// From sending the request to receiving the response header.
    pub upstream_time: Duration,
}

/// Why no origin answered.
#[derive(Debug)]
pub enum OriginFailure {
    /// No origin could be reached (502).
    Unreachable { origin: Arc<OriginState> },
    /// The origin took longer than `response_timeout` (504).
    TimedOut { origin: Arc<OriginState> },
    /// The connection broke before a response header arrived (502).
    Broken { origin: Arc<OriginState> },
    /// The client's body passed `max_body_bytes` while being forwarded (413).
    BodyTooLarge,
}

impl Upstream {
    /// Forwards `request`, failing over to other origins when allowed.
    pub async fn forward(&self, request: OriginRequest) -> Result<OriginResponse, OriginFailure> {
        let OriginRequest {
            method,
            path_and_query,
            headers,
            body,
            retryable,
        } = request;
        let mut tried = 0u64;
        // Keep a copy of the header only when a retry is possible (an idempotent request and
        // another origin to try); the common case moves it once.
        let spare = (retryable && self.origins.len() > 1).then(|| headers.clone());
        let mut headers = Some(headers);
        let mut body = Some(body);
        loop {
            let index = self
                .pick(tried)
                .expect("the first pick always finds an origin");
            tried |= 1 << index;
            let origin = &self.origins[index];
            let request_headers = match headers.take() {
                Some(h) => h,
                None => spare.clone().unwrap_or_default(),
            };
            let mut request = Request::new(body.take().unwrap_or(OriginBody::Empty));
            *request.method_mut() = method.clone();
            *request.uri_mut() = path_and_query.clone().into();
            *request.version_mut() = Version::HTTP_11;
            *request.headers_mut() = request_headers;
            let started = Instant::now();
            match exchange(
                origin,
                &self.pools[index],
                request,
                self.settings.response_timeout,
                retryable,
            )
            .await
            {
                Ok((response, conn)) => {
                    origin.record_success();
                    return Ok(OriginResponse {
                        response,
                        conn,
                        origin: Arc::clone(origin),
                        upstream_time: started.elapsed(),
                    });
                }
                Err(Attempt::BodyTooLarge) => return Err(OriginFailure::BodyTooLarge),
                Err(Attempt::ConnectFailed) => {
                    origin.connect_errors.fetch_add(1, Ordering::Relaxed);
                    origin.record_failure(self.settings.max_fails, self.settings.fail_timeout);
                    // Only look for another origin when a retry is allowed: `pick` advances the
                    // round-robin cursor, and a needless advance would skew the rotation.
                    let untried = (0..self.origins.len()).any(|i| tried & (1 << i) == 0);
                    if !(retryable && untried) {
                        return Err(OriginFailure::Unreachable {
                            origin: Arc::clone(origin),
                        });
                    }
                }
                Err(Attempt::TimedOut) => {
                    origin.timeouts.fetch_add(1, Ordering::Relaxed);
                    origin.record_failure(self.settings.max_fails, self.settings.fail_timeout);
                    return Err(OriginFailure::TimedOut {
                        origin: Arc::clone(origin),
                    });
                }
                Err(Attempt::Broken) => {
                    origin.other_errors.fetch_add(1, Ordering::Relaxed);
                    origin.record_failure(self.settings.max_fails, self.settings.fail_timeout);
                    return Err(OriginFailure::Broken {
                        origin: Arc::clone(origin),
                    });
                }
            }
        }
    }

    /// A health probe: GET `path` with the site's Host; true on 2xx or 3xx within `timeout`.
    pub(super) async fn probe(&self, index: usize, path: &str, timeout: Duration) -> bool {
        let origin = &self.origins[index];
        let host = if self.settings.probe_host.is_empty() {
            origin.label.as_str()
        } else {
            self.settings.probe_host.as_str()
        };
        let Ok(request) = Request::get(path)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "palisade-health-check")
            .body(OriginBody::Empty)
        else {
            return false;
        };
        match exchange(origin, &self.pools[index], request, timeout, true).await {
            Ok((response, conn)) => {
                let status = response.status();
                // Read the (small) body so the connection can be reused.
                if http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .is_ok()
                {
                    conn.release();
                }
                status.is_success() || status.is_redirection()
            }
            Err(_) => false,
        }
    }
}

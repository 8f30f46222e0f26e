//! Forwarding to an origin: pooled keep-alive connections, connect and response timeouts,
//! passive health, and failover.
//!
//! Retry rule: a request is sent again, to another origin, only when the previous attempt
//! never reached an origin (the TCP connect failed) *and* it is idempotent with no body. A
//! request that reached an origin is never replayed: the origin may have acted on it.

use super::{OriginState, Upstream, UpstreamSettings};
use crate::body::{BodyTooLarge, OriginBody};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, OriginBody>,
}

impl Client {
    pub(super) fn new(settings: &UpstreamSettings) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            // The edge sets Host itself: the client's, not the origin's address.
            .set_host(false)
            .build(connector);
        Client { inner }
    }

    /// One request to one origin, with the response timeout applied.
    pub(super) async fn send(
        &self,
        origin: &OriginState,
        request: Request<OriginBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, Attempt> {
        match tokio::time::timeout(timeout, self.inner.request(request)).await {
            Err(_) => Err(Attempt::TimedOut),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => {
                tracing::debug!(origin = %origin.label, error = %e, "origin connect failed");
                Err(Attempt::ConnectFailed)
            }
            Ok(Err(e)) => {
                if has_source::<BodyTooLarge>(&e) {
                    return Err(Attempt::BodyTooLarge);
                }
                tracing::debug!(origin = %origin.label, error = ?e, "origin request failed");
                Err(Attempt::Broken)
            }
        }
    }
}

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
            let uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(origin.authority.clone())
                .path_and_query(path_and_query.clone());
            let request_headers = match headers.take() {
                Some(h) => h,
                None => spare.clone().unwrap_or_default(),
            };
            let mut builder = Request::builder()
                .method(method.clone())
                .version(Version::HTTP_11);
            if let Some(h) = builder.headers_mut() {
                *h = request_headers;
            }
            let request = match uri.build().ok().and_then(|uri| {
                builder
                    .uri(uri)
                    .body(body.take().unwrap_or(OriginBody::Empty))
                    .ok()
            }) {
                Some(r) => r,
                // Unreachable with validated parts; treated as a broken attempt, not a panic.
                None => {
                    return Err(OriginFailure::Broken {
                        origin: Arc::clone(origin),
                    });
                }
            };
            let started = Instant::now();
            match self
                .client
                .send(origin, request, self.settings.response_timeout)
                .await
            {
                Ok(response) => {
                    origin.record_success();
                    return Ok(OriginResponse {
                        response,
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
    pub(super) async fn probe(&self, origin: &OriginState, path: &str, timeout: Duration) -> bool {
        let Ok(uri) = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(origin.authority.clone())
            .path_and_query(path)
            .build()
        else {
            return false;
        };
        let host = if self.settings.probe_host.is_empty() {
            origin.label.as_str()
        } else {
            self.settings.probe_host.as_str()
        };
        let Ok(request) = Request::get(uri)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "palisade-health-check")
            .body(OriginBody::Empty)
        else {
            return false;
        };
        match self.client.send(origin, request, timeout).await {
            Ok(response) => {
                let status = response.status();
                // Drain the (small) body so the connection goes back to the pool.
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                status.is_success() || status.is_redirection()
            }
            Err(_) => false,
        }
    }
}

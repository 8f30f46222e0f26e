//! Forwarding to an origin: pooled keep-alive connections, connect and response timeouts,
//! passive health, and failover.
//!
//! Retry rule: a request is sent again, to another origin, only when the previous attempt
//! never reached an origin (the TCP connect failed) *and* it is idempotent with no body. A
//! request that reached an origin is never replayed: the origin may have acted on it.

use super::codec::{RequestFraming, encode_request_head};
use super::connection::{ExchangeError, Upload};
use super::pool::ConnPool;
use super::response_body::OriginResponseBody;
use super::{InterimSink, OriginState, Upstream};
use crate::body::limits::{BodyTooLarge, BodyTooSlow, BoxError};
use crate::body::to_origin::OriginBody;
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    ConnectFailed,
    TimedOut,
    Broken,
    BodyTooLarge,
    BodyTooSlow,
    /// The client's own body broke off; not the origin's doing.
    ClientBody,
}

/// A pooled connection idle longer than this may be closed by the origin's own keep-alive
/// timeout just as a request is written on it (Node.js closes after 5 s by default).
const STALE_RISK_AFTER: Duration = Duration::from_secs(1);

/// When an attempt began and how long it may take (connect, write, and the response head).
/// `started` is the caller's clock reading, reused for the deadline and the pool's idle check:
/// on the proxy path a clock read costs about as much as parsing a header field.
#[derive(Debug, Clone, Copy)]
struct AttemptTime {
    started: Instant,
    timeout: Duration,
}

/// One request on one origin, within its [`AttemptTime`]: the response, whose body owns the
/// connection.
///
/// A reused connection the origin had closed meanwhile is not a failure of the origin:
/// - when writing the request head on it fails, the request goes out again on a new
///   connection, whatever its method: an incomplete head is not a request the origin can
///   have acted on, and the body has not been touched;
/// - when the head was sent but the connection closed before any response, an idempotent
///   request without a body is sent again on a new connection (RFC 9110 §9.2.2), as browsers
///   and nginx do, when the connection sat idle long enough to be at risk.
async fn exchange(
    origin: &OriginState,
    pool: &Arc<ConnPool>,
    sending: &Sending<'_>,
    upload: Option<Box<Upload>>,
    time: AttemptTime,
) -> Result<Response<OriginResponseBody>, Attempt> {
    // One timer for the whole attempt: connect, write, and wait for the response head.
    let attempt = attempt(origin, pool, sending, upload, time);
    let deadline = tokio::time::Instant::from_std(time.started) + time.timeout;
    tokio::time::timeout_at(deadline, attempt)
        .await
        .unwrap_or(Err(Attempt::TimedOut))
}

/// What one request sends, the same on every attempt.
struct Sending<'a> {
    head: &'a [u8],
    method: &'a Method,
    /// May be sent again after a connect failure (idempotent, no body).
    retryable: bool,
    interim: Option<&'a dyn InterimSink>,
}

async fn attempt(
    origin: &OriginState,
    pool: &Arc<ConnPool>,
    sending: &Sending<'_>,
    mut upload: Option<Box<Upload>>,
    time: AttemptTime,
) -> Result<Response<OriginResponseBody>, Attempt> {
    let Sending {
        head,
        method,
        retryable,
        interim,
    } = *sending;
    let mut fresh = false;
    loop {
        let mut conn = pool.checkout(fresh, time.started).await.map_err(|e| {
            tracing::debug!(origin = %origin.label, error = %e, "origin connect failed");
            Attempt::ConnectFailed
        })?;
        match conn.connection().write_head(head).await {
            Err(e) if conn.reused => {
                tracing::debug!(origin = %origin.label, error = %e, "pooled connection was closed; sending on a new one");
                fresh = true;
                continue;
            }
            Err(e) => {
                tracing::debug!(origin = %origin.label, error = %e, "writing to a new origin connection failed");
                return Err(Attempt::Broken);
            }
            Ok(()) => {}
        }
        let had_body = upload.is_some();
        match conn
            .connection()
            .read_response(upload.take(), method, interim)
            .await
        {
            Ok((head, rest)) => {
                let switched = head.status == StatusCode::SWITCHING_PROTOCOLS;
                let body = OriginResponseBody::new(
                    conn,
                    head.framing,
                    switched,
                    head.keep_alive,
                    rest,
                    time.timeout,
                );
                let mut response = Response::new(body);
                *response.status_mut() = head.status;
                *response.version_mut() = head.version;
                *response.headers_mut() = head.headers;
                return Ok(response);
            }
            Err(ExchangeError::BodyTooLarge) => return Err(Attempt::BodyTooLarge),
            Err(ExchangeError::BodyTooSlow) => return Err(Attempt::BodyTooSlow),
            Err(ExchangeError::ClientBody(e)) => {
                tracing::debug!(origin = %origin.label, error = %e, "client body failed while forwarding");
                return Err(Attempt::ClientBody);
            }
            Err(ExchangeError::NoResponse)
                if retryable && !had_body && conn.reused && conn.idle_for >= STALE_RISK_AFTER =>
            {
                tracing::debug!(origin = %origin.label, "pooled connection closed without answering; sending on a new one");
                fresh = true;
            }
            Err(e) => {
                tracing::debug!(origin = %origin.label, error = %e, "origin request failed");
                return Err(Attempt::Broken);
            }
        }
    }
}

/// A request ready to be forwarded; its fields already written by the forward phase.
pub struct OriginRequest {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    /// `name: value\r\n` lines (see `origin::fields::write_origin_fields`).
    pub fields: Vec<u8>,
    /// The body's length, when the client declared one (hyper holds the body to it); the
    /// codec writes Content-Length from it. `None` with a body: sent chunked.
    pub length: Option<u64>,
    pub body: OriginBody,
    /// Whether it may be sent again after a connect failure (idempotent, no body).
    pub retryable: bool,
    /// Where the origin's 1xx responses go; `None` when the client cannot take them.
    pub interim: Option<Arc<dyn InterimSink>>,
}

/// The origin's answer.
pub struct OriginResponse {
    /// Its body owns the connection, and returns it to the pool when read to the end.
    pub response: Response<OriginResponseBody>,
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
    /// The client's body came slower than `min_request_body_rate` (408).
    BodyTooSlow,
    /// The client's body broke off while being forwarded (400; the client is usually gone).
    ClientBody,
}

impl OriginFailure {
    /// The failure for a client's body that failed before it reached an origin (read ahead):
    /// too large, too slow, or broken off.
    pub fn of_client_body(error: &BoxError) -> OriginFailure {
        if error.is::<BodyTooLarge>() {
            OriginFailure::BodyTooLarge
        } else if error.is::<BodyTooSlow>() {
            OriginFailure::BodyTooSlow
        } else {
            OriginFailure::ClientBody
        }
    }
}

impl Upstream {
    /// Forwards `request`, failing over to other origins when allowed.
    pub async fn forward(&self, request: OriginRequest) -> Result<OriginResponse, OriginFailure> {
        let OriginRequest {
            method,
            path_and_query,
            fields,
            length,
            body,
            retryable,
            interim,
        } = request;
        let framing = match (length, matches!(body, OriginBody::Empty)) {
            (Some(n), _) => RequestFraming::Length(n),
            (None, true) => RequestFraming::None,
            (None, false) => RequestFraming::Chunked,
        };
        // Encoded once: a retry on another origin or connection sends the same bytes.
        let head = encode_request_head(&method, &path_and_query, &fields, framing);
        let mut upload =
            (!matches!(body, OriginBody::Empty)).then(|| Box::new(Upload::new(body, framing)));
        let mut tried = 0u64;
        loop {
            let index = self
                .pick(tried)
                .expect("the first pick always finds an origin");
            tried |= 1 << index;
            let origin = &self.origins[index];
            let started = Instant::now();
            let sending = Sending {
                head: &head,
                method: &method,
                retryable,
                interim: interim.as_deref(),
            };
            match exchange(
                origin,
                &self.pools[index],
                &sending,
                upload.take(),
                AttemptTime {
                    started,
                    timeout: self.settings.response_timeout,
                },
            )
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
                Err(Attempt::BodyTooSlow) => return Err(OriginFailure::BodyTooSlow),
                Err(Attempt::ClientBody) => return Err(OriginFailure::ClientBody),
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
        let Ok(target) = PathAndQuery::try_from(path) else {
            return false;
        };
        if host.bytes().any(|b| b.is_ascii_control()) {
            return false;
        }
        let mut fields = Vec::with_capacity(host.len() + 64);
        fields.extend_from_slice(b"host: ");
        fields.extend_from_slice(host.as_bytes());
        fields.extend_from_slice(b"\r\nuser-agent: palisade-health-check\r\n");
        let head = encode_request_head(&Method::GET, &target, &fields, RequestFraming::None);
        let pool = &self.pools[index];
        let time = AttemptTime {
            started: Instant::now(),
            timeout,
        };
        let sending = Sending {
            head: &head,
            method: &Method::GET,
            retryable: true,
            interim: None,
        };
        match exchange(origin, pool, &sending, None, time).await {
            Ok(response) => {
                let status = response.status();
                // Read the (small) body so the connection can be reused.
                let body = http_body_util::BodyExt::collect(response.into_body());
                let _ = tokio::time::timeout(timeout, body).await;
                status.is_success() || status.is_redirection()
            }
            Err(_) => false,
        }
    }
}

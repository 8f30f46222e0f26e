//! The `origin` phase: the request goes to one of the site's origins, under the site's cap on
//! concurrent origin requests, and its answer comes back for the `respond` phase. How the
//! client's request header is rewritten for the origin is `origin::fields`.

use crate::body::{BodyMeter, BodyPace, ClientBody, EdgeBody, OriginBody};
use crate::metrics::CacheOutcome;
use crate::origin::fields::{Hop, is_websocket_upgrade, write_origin_fields};
use crate::origin::{InterimSink, OriginFailure, OriginRequest};
use crate::origin_gate::{OriginPermit, Standing};
use crate::own_responses::edge_page;
use crate::phases::challenge as challenge_phase;
use crate::phases::request::{OriginAnswer, SiteRequest};
use crate::phases::shield as shield_phase;
use http::header::HeaderMap;
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode, Version};
use shield::events::{EventAction, EventReason, NewEvent};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Runs after the cache, for every request it did not answer. Takes the request (its body
/// goes to the origin: a small one read whole first, a larger one's start read, then
/// streamed), its routing and the cache's fill. Writes the origin's slot under the site's cap,
/// the origin that answered and its time into the log. Continues with the origin's answer for
/// the `respond` phase.
///
/// The first `origin_body_buffer` bytes of a body are read before a slot is asked for (a body
/// that ends within them, whole), so a client that trickles its body holds the edge's memory
/// (bounded) and not the origin's capacity; they are sent once the slot is taken. Over the
/// site's `max_origin_concurrency` the request waits in the site's line for a slot
/// (`origin_gate`: the most deserving first).
///
/// Answers early: a body that fails while read (408 too slow, 413 too large, 400 broken); when
/// no slot frees up in time, or the line is full of more deserving requests, a stale copy the
/// cache holds or 503; when no origin answers, a stale copy (stale-if-error, always online) or
/// 502 (504 on a timeout, 413 or 408 for a body over the limit or too slow); an origin switching
/// protocols the client did not ask for → 502. A WebSocket upgrade the origin accepts becomes a
/// tunnel here.
pub async fn to_origin(
    request: &mut SiteRequest<'_>,
) -> ControlFlow<Response<EdgeBody>, OriginAnswer> {
    // A block, so that what it holds is gone before the origin's wait below (every byte of
    // this future is copied for every request).
    let (origin_request, sent) = {
        let cap = request.site.config.shield.max_origin_concurrency;
        let mut upload = take_body(request);
        // The common path (no body, the cap not reached) takes its slot here; the rest is
        // boxed, so that its state does not weigh on every request's future either.
        let permit = if upload.is_none()
            && let Some(permit) = request.site.protection.origin_permit(cap)
        {
            note_visit(request);
            permit
        } else {
            match Box::pin(admit(request, &mut upload, cap)).await {
                Ok(permit) => permit,
                Err(answer) => return ControlFlow::Break(answer),
            }
        };
        request.log.origin_permit = Some(permit);
        prepare(request, upload)
    };
    let site = request.site;
    let answer = site.upstream.forward(origin_request).await;
    // Interim responses the origin sent go to the client before whatever answers it.
    request.conn.interim.written().await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => {
            return ControlFlow::Break(failed(request, &sent.method, failure, sent.has_body).await);
        }
    };
    request.answered_by(&answer.origin, answer.upstream_time);
    site.protection.origin.record(answer.upstream_time);
    let mut response = answer.response;
    if response.status().is_server_error() {
        site.protection.attack.count_error();
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The origin connection now belongs to the tunnel, never to the pool.
        match (sent.client_upgrade, response.body_mut().take_upgraded()) {
            (Some(client_upgrade), Some((origin_io, origin_early))) => {
                crate::tunnel::spawn_tunnel(
                    Arc::clone(request.conn),
                    client_upgrade,
                    origin_io,
                    origin_early,
                    request.snapshot.limits.idle_timeout,
                );
            }
            // An origin may not switch protocols the client did not ask for.
            _ => {
                return ControlFlow::Break(edge_page(StatusCode::BAD_GATEWAY, false));
            }
        }
    }
    ControlFlow::Continue(OriginAnswer {
        response,
        method: sent.method,
        target: sent.target,
        invalidation: sent.invalidation,
    })
}

/// A slot for a request that has a body or met the cap: the body's start read first (it may
/// fail: 408, 413, 400), then a slot at once or after a wait in the site's line; `Err` with the
/// answer when the body failed or no slot came (a stale copy or 503).
async fn admit(
    request: &mut SiteRequest<'_>,
    upload: &mut Option<Upload>,
    cap: u32,
) -> Result<OriginPermit, Response<EdgeBody>> {
    if let Some(taken) = upload.take() {
        match read_ahead(request, taken).await {
            Ok(read) => *upload = Some(read),
            Err(failure) => {
                let method = request.request.method().clone();
                return Err(failed(request, &method, failure, true).await);
            }
        }
    }
    if let Some(permit) = request.site.protection.origin_permit(cap) {
        note_visit(request);
        return Ok(permit);
    }
    match wait_for_slot(request, cap).await {
        Some(permit) => Ok(permit),
        None => {
            let method = request.request.method().clone();
            Err(shed(request, &method).await)
        }
    }
}

/// The client's body on its way to the origin, and the length the origin is told.
struct Upload {
    body: OriginBody,
    /// The declared length (hyper holds the body to it); `None`: sent chunked.
    length: Option<u64>,
}

/// Takes the client's body out of the request, metered against `max_body_bytes` and paced
/// against `min_request_body_rate`; `None` for a request without one.
fn take_body(request: &mut SiteRequest<'_>) -> Option<Upload> {
    if http_body::Body::is_end_stream(request.request.body()) {
        return None;
    }
    let body = std::mem::replace(request.request.body_mut(), ClientBody::Taken);
    // The length the origin is told is the one the body is held to: hyper reads exactly a
    // declared Content-Length (h2 checks its DATA against it), and the upload checks again.
    let length = http_body::Body::size_hint(&body).exact();
    let meter = Arc::new(BodyMeter::default());
    request.log.meter = Some(Arc::clone(&meter));
    let pace = BodyPace::new(&request.snapshot.limits, Arc::clone(&request.state.metrics));
    let body = OriginBody::client(body, meter, request.site.config.max_body_bytes, pace);
    Some(Upload { body, length })
}

/// Reads the first `origin_body_buffer` bytes of a body before the origin is asked: a body
/// that ends within them is sent whole once a slot is taken, a longer one sends what was read
/// and streams the rest. Either way a client that trickles its body holds no origin slot while
/// it trickles the first part. The bytes held count against `body_buffer_memory` as they
/// arrive; with no room left there, what was read goes first and the rest streams.
async fn read_ahead(request: &SiteRequest<'_>, upload: Upload) -> Result<Upload, OriginFailure> {
    let limit = request.site.config.origin_body_buffer;
    if limit == 0 {
        return Ok(upload);
    }
    let read = upload.length.map_or(limit, |n| n.min(limit));
    let reservation = request.state.body_buffers.reservation();
    let bound = request.snapshot.limits.body_buffer_memory;
    match upload.body.read_ahead(read, reservation, bound).await {
        Ok(body) => Ok(Upload {
            body,
            length: upload.length,
        }),
        Err(e) => Err(OriginFailure::of_client_body(&e)),
    }
}

/// Waits in the site's line for a slot under `cap` (the request is ranked by its clearance,
/// the shield's verdict, and its network's share: `origin_gate`); `None` when it is shed.
async fn wait_for_slot(request: &mut SiteRequest<'_>, cap: u32) -> Option<OriginPermit> {
    let site = request.site;
    let trusted = request.allowed
        || challenge_phase::cleared(
            &request.snapshot.challenge_keys,
            site,
            request.client_ip,
            request.request.headers(),
        );
    let standing = Standing {
        client_ip: request.client_ip,
        trusted,
        suspect: request.suspect,
    };
    site.protection
        .gate
        .wait(
            cap,
            site.config.shield.origin_queue,
            standing,
            &site.metrics,
        )
        .await
        .ok()
}

/// A request let straight through to the origin: the client's address is noted as history for
/// the site's line, once per connection (per request behind a trusted proxy, whose connection
/// carries many clients).
#[inline]
fn note_visit(request: &SiteRequest<'_>) {
    let conn = request.conn;
    if request.client_ip == conn.client.peer {
        if conn.visit_noted.load(Ordering::Relaxed) {
            return;
        }
        conn.visit_noted.store(true, Ordering::Relaxed);
    }
    note_visit_now(request);
}

#[cold]
fn note_visit_now(request: &SiteRequest<'_>) {
    let protection = &request.site.protection;
    protection
        .gate
        .note_visit(request.client_ip, protection.attack.under_attack());
}

/// What the origin phase keeps of the request it sends.
struct Sent {
    method: Method,
    target: PathAndQuery,
    invalidation: Option<HeaderMap>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The client's body was sent on: a failure leaves the connection unusable.
    has_body: bool,
}

/// Takes the request out of the context and writes the origin's copy of it, with `upload`,
/// its body if it has one (a plain function, so that its work does not live in the phase's
/// future across the origin's wait).
fn prepare(request: &mut SiteRequest<'_>, upload: Option<Upload>) -> (OriginRequest, Sent) {
    let site = request.site;
    let settings = &site.config.cache;
    let version = request.framing.version;
    let mut http_request = request.take_request();
    let method = http_request.method().clone();
    // §4.4 needs the request's keyed fields after the request has gone to the origin.
    let invalidation = (settings.enabled && !cache::policy::invalidation::is_safe(&method))
        .then(|| http_request.headers().clone());
    let upgrade = is_websocket_upgrade(version, http_request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut http_request));
    let (parts, _taken) = http_request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut fields = Vec::with_capacity(512);
    let hop = Hop {
        version,
        authority: &request.authority,
        client: &request.conn.client,
        client_ip: request.client_ip,
        upgrade,
        cache_fill: request.fill.is_some().then_some(settings),
    };
    write_origin_fields(&mut fields, &parts.headers, &hop);
    if let Some(fill) = &mut request.fill {
        fill.write_validators(&mut fields);
    }
    let has_body = upload.is_some();
    let (body, length) = match upload {
        Some(upload) => (upload.body, upload.length),
        None => (
            OriginBody::Empty,
            request.declared_length.filter(|n| *n == 0),
        ),
    };
    let origin_request = OriginRequest {
        retryable: !has_body && method.is_idempotent(),
        method: method.clone(),
        path_and_query: target.clone(),
        fields,
        length,
        body,
        // HTTP/1.1 and HTTP/2 clients take interim responses (RFC 9110 §15.2: never an
        // HTTP/1.0 one): through the connection, or the HTTP/2 stream.
        interim: match version {
            Version::HTTP_11 => Some(Arc::clone(request.conn) as Arc<dyn InterimSink>),
            _ => request.h2_stream.take(),
        },
    };
    let sent = Sent {
        method,
        target,
        invalidation,
        client_upgrade,
        has_body,
    };
    (origin_request, sent)
}

/// The answer when the site's origins are at their cap and no slot came in time: a stale copy
/// the cache holds, or 503 with Retry-After.
async fn shed(request: &mut SiteRequest<'_>, method: &Method) -> Response<EdgeBody> {
    let site = request.site;
    request.record(NewEvent::for_client(
        &site.name,
        request.client_ip,
        EventAction::Shed,
        EventReason::OriginConcurrency,
    ));
    if let Some(fill) = &request.fill
        && let Some(stale) = fill.stale_when_shed(method).await
    {
        request.cache_outcome(CacheOutcome::Stale);
        return request.for_client(stale);
    }
    shield_phase::origin_busy()
}

/// The answer when no origin answered: a stale copy if the cache holds one it may serve
/// (RFC 5861 §4, always online), else the error page for the failure. `has_body`: the
/// client's body was being sent, so the connection cannot carry another request.
async fn failed(
    request: &mut SiteRequest<'_>,
    method: &Method,
    failure: OriginFailure,
    has_body: bool,
) -> Response<EdgeBody> {
    let site = request.site;
    site.protection.attack.count_error();
    if matches!(failure, OriginFailure::TimedOut { .. }) {
        // The slowest answer there is, for the origin's latency.
        site.protection.origin.record(site.config.response_timeout);
    }
    if let Some(fill) = &request.fill
        && let Some(stale) = fill.stale_on_error(method, None).await
    {
        request.cache_outcome(CacheOutcome::Stale);
        return request.for_client(stale);
    }
    let status = match &failure {
        OriginFailure::Unreachable { origin } | OriginFailure::Broken { origin } => {
            request.log.origin = Some(Arc::clone(origin));
            StatusCode::BAD_GATEWAY
        }
        OriginFailure::TimedOut { origin } => {
            request.log.origin = Some(Arc::clone(origin));
            StatusCode::GATEWAY_TIMEOUT
        }
        OriginFailure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        OriginFailure::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
        OriginFailure::ClientBody => StatusCode::BAD_REQUEST,
    };
    // A body we stopped reading leaves the connection unusable for the next request.
    edge_page(status, has_body)
}

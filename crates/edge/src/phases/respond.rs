//! The `respond` phase: the origin's answer, stored when the cache may and cleaned for the
//! client (the edge's own pages, which every phase answers with, are `own_responses`).

use crate::body::EdgeBody;
use crate::metrics::CacheOutcome;
use crate::origin::fields::origin_get;
use crate::own_responses::edge_page;
use crate::phases::cache::{self as cache_phase, NotModified};
use crate::phases::request::{OriginAnswer, SiteRequest};
use http::{Response, StatusCode};

/// Runs last, on the origin's answer. Reads the cache's fill and pass reason, and what the
/// origin phase kept of the request (method, target, fields for invalidation). Writes the stored response (while the body streams to the client), the
/// cache's outcome into the metrics and the log, and invalidates what an unsafe request made
/// stale (RFC 9111 §4.4).
///
/// What the client gets: a stale copy instead of the origin's 5xx when the cache may serve one
/// (stale-if-error, always online); for a 304 to the cache's validators, the refreshed stored
/// response, or, when the 304 names another representation (§4.3.4), the answer to the same GET
/// made again without validators (502 if that is a 304 too; a client that sent no condition is
/// never given a 304); otherwise the origin's response, cleaned (`client_response_headers`).
pub async fn deliver(request: &mut SiteRequest<'_>, answer: OriginAnswer) -> Response<EdgeBody> {
    let site = request.site;
    let settings = &site.config.cache;
    let OriginAnswer {
        response,
        method,
        target,
        invalidation,
    } = answer;
    let (mut parts, mut body) = response.into_parts();
    if let Some(fill) = &request.fill
        && let Some(stale) = fill.stale_on_error(&method, Some(parts.status)).await
    {
        request.cache_outcome(CacheOutcome::Stale);
        return request.for_client(stale);
    }
    if parts.status == StatusCode::NOT_MODIFIED
        && let Some(fill) = request.fill.take()
    {
        match fill.not_modified(&method, settings, &parts.headers).await {
            NotModified::Refreshed(refreshed) => {
                request.cache_outcome(CacheOutcome::Revalidated);
                return request.for_client(*refreshed);
            }
            // RFC 9111 §4.3.4: a 304 about another representation; the same GET again,
            // without validators, and its answer is the one sent and stored.
            NotModified::Refetch(fill, fields) => {
                // Boxed: rare, and the origin client's future would otherwise make this
                // phase's larger on every request.
                let again =
                    Box::pin(site.upstream.forward(origin_get(target.clone(), fields))).await;
                match again {
                    Ok(answer) if answer.response.status() != StatusCode::NOT_MODIFIED => {
                        request.answered_by(&answer.origin, answer.upstream_time);
                        (parts, body) = answer.response.into_parts();
                        request.fill = Some(fill);
                    }
                    _ => return edge_page(StatusCode::BAD_GATEWAY, false),
                }
            }
            // The client's conditions were never sent: a 304 cannot be its answer.
            NotModified::Unrequested => return edge_page(StatusCode::BAD_GATEWAY, false),
        }
    }
    if let Some(request_headers) = &invalidation {
        cache_phase::invalidate_after(
            &request.state.cache,
            &method,
            parts.status,
            &request.host,
            target.as_str(),
            &parts.headers,
            |path| request.cache_key(path, request_headers),
        );
    }
    if request.fill.is_some() {
        request.cache_outcome(CacheOutcome::Miss);
    }
    if let Some(why) = request.pass {
        cache_phase::mark_pass(&mut parts.headers, why, settings);
    }
    let tee = request
        .fill
        .take()
        .and_then(|fill| fill.respond(&method, settings, parts.status, &mut parts.headers));
    let body = match tee {
        Some(tee) => EdgeBody::origin_with_tee(body, tee),
        None => EdgeBody::origin(body),
    };
    request.for_client(Response::from_parts(parts, body))
}

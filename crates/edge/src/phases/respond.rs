//! The `respond` phase: the origin's answer, stored when the cache may and cleaned for the
//! client; and the edge's own pages, which every phase answers with.
//!
//! Error pages are fixed text: they say what went wrong in the visitor's terms and never show
//! an origin's address, port or error message (those go to the log and metrics).

use crate::body::EdgeBody;
use crate::http::fields::{append_list, strip_hop_by_hop, via};
use crate::metrics::CacheOutcome;
use crate::phases::cache::{self as cache_phase, NotModified};
use crate::phases::forward;
use crate::request::{OriginAnswer, SiteRequest};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Version};
use std::sync::LazyLock;

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
                let again = Box::pin(
                    site.upstream
                        .forward(forward::origin_get(target.clone(), fields)),
                )
                .await;
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

/// Removes hop-by-hop fields from an origin's response and adds this hop to `Via`.
/// A 101 keeps its Upgrade/Connection pair: it is the handshake being passed through.
/// `http10_keep_alive`: an HTTP/1.0 client asked to keep the connection; it reuses it only if
/// the response says so (RFC 9112 §C.2.2), which hyper does not write by itself.
pub fn client_response_headers(
    response: &mut Response<EdgeBody>,
    client_version: Version,
    http10_keep_alive: bool,
) {
    // The response is ours to frame: speak the client's HTTP version, not the origin's (an
    // HTTP/1.0 origin must not turn a keep-alive HTTP/1.1 client connection into 1.0).
    *response.version_mut() = client_version;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    let upgrade = switching
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    // origin::codec already dropped them while parsing; this keeps the rule true for any
    // response source (a cache, later) and costs one scan that finds nothing.
    strip_hop_by_hop(headers);
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
    if http10_keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    append_list(headers, &header::VIA, &via(client_version));
}

/// An answer the edge makes itself (an error page, a notice, a JSON refusal): fixed body,
/// `Content-Type` as given, and `Cache-Control: no-store`, since none of them may be kept by a
/// cache or a browser in place of the site's own content.
pub fn not_stored(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::fixed(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page the edge answers with itself.
pub fn edge_page(status: StatusCode, close: bool) -> Response<EdgeBody> {
    let body = match PAGES.iter().find(|(code, _)| *code == status) {
        Some((_, body)) => body.clone(),
        None => page(status.as_u16(), GENERIC_PAGE.0, GENERIC_PAGE.1).into(),
    };
    let mut response = not_stored(status, "text/html; charset=utf-8", body);
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Every listed page's body, written once: refusals come in floods (scans naming unknown hosts,
/// a dead origin under load), and each one should cost a lookup and a reference count, not a
/// freshly formatted string.
static PAGES: LazyLock<Vec<(StatusCode, Bytes)>> = LazyLock::new(|| {
    PAGE_TEXTS
        .iter()
        .filter_map(|&(code, title, text)| {
            let status = StatusCode::from_u16(code).ok()?;
            Some((status, Bytes::from(page(code, title, text))))
        })
        .collect()
});

fn page(code: u16, title: &str, text: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\
         <body><h1>{code} {title}</h1><p>{text}</p><hr><p>palisade</p></body></html>\n"
    )
}

/// What a suspended site's hosts answer: 451 when the suspension answers a legal demand
/// (RFC 7725), otherwise 403. The text is the same for every site and says nothing of the
/// reason (the operator's record holds it); it is never stored by a cache.
pub fn suspension_notice(legal: bool, request_headers: &http::HeaderMap) -> Response<EdgeBody> {
    let (status, _) = suspension_status(legal);
    let json = super::challenge::prefers_json(request_headers);
    let content_type = if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    let body = SUSPENSION_NOTICES[usize::from(legal)][usize::from(json)].clone();
    not_stored(status, content_type, body)
}

fn suspension_status(legal: bool) -> (StatusCode, &'static str) {
    if legal {
        (
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "Unavailable For Legal Reasons",
        )
    } else {
        (StatusCode::FORBIDDEN, "Service Suspended")
    }
}

/// The notices' bodies, `[not legal, legal][html, json]`, written once: a suspended site's
/// visitors (and whatever flood it drew) keep coming after its service stops.
static SUSPENSION_NOTICES: LazyLock<[[Bytes; 2]; 2]> = LazyLock::new(|| {
    const TEXT: &str = "Service to this site has been suspended by the operator of this network.";
    [false, true].map(|legal| {
        let (status, title) = suspension_status(legal);
        let code = status.as_u16();
        let json =
            format!("{{\"error\":\"site_suspended\",\"status\":{code},\"message\":\"{TEXT}\"}}\n");
        [page(code, title, TEXT).into(), json.into()]
    })
});

/// Status, title and text of the edge's own pages, in the visitor's terms.
const PAGE_TEXTS: &[(u16, &str, &str)] = &[
    (400, "Bad Request", "The request could not be understood."),
    (
        403,
        "Forbidden",
        "This site's security settings do not let this request through.",
    ),
    (
        405,
        "Method Not Allowed",
        "This server does not accept that method.",
    ),
    (
        408,
        "Request Timeout",
        "The request did not arrive in time. Please try again.",
    ),
    (
        413,
        "Content Too Large",
        "The request body is larger than this site accepts.",
    ),
    (
        429,
        "Too Many Requests",
        "Too many requests came from your network. Please wait a moment and try again.",
    ),
    (
        421,
        "Misdirected Request",
        "This server does not serve the requested host on this connection.",
    ),
    (
        502,
        "Bad Gateway",
        "The site's server could not be reached. Please try again in a moment.",
    ),
    (
        503,
        "Service Unavailable",
        "The site is temporarily unable to answer. Please try again in a moment.",
    ),
    (
        504,
        "Gateway Timeout",
        "The site's server took too long to answer. Please try again in a moment.",
    ),
];

/// Title and text for a status without its own entry.
const GENERIC_PAGE: (&str, &str) = ("Error", "The request could not be completed.");

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_pages_say_nothing_about_origins_and_are_not_stored() {
        for status in [StatusCode::BAD_GATEWAY, StatusCode::GATEWAY_TIMEOUT] {
            let response = edge_page(status, false);
            assert_eq!(response.headers()["cache-control"], "no-store");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(text.contains(&status.as_u16().to_string()));
            assert!(
                !text.contains("127.0.0.1") && !text.contains("http://"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn listed_pages_are_written_once_and_others_get_the_generic_text() {
        async fn body(status: StatusCode) -> Bytes {
            let response = edge_page(status, false);
            assert_eq!(response.status(), status);
            response.into_body().collect().await.unwrap().to_bytes()
        }
        for &(code, title, text) in PAGE_TEXTS {
            let status = StatusCode::from_u16(code).unwrap();
            let (first, second) = (body(status).await, body(status).await);
            assert_eq!(first, page(code, title, text).as_bytes());
            // The same bytes, not a copy: a flood of refusals formats nothing.
            assert_eq!(first.as_ptr(), second.as_ptr(), "{code}");
        }
        let other = body(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
        let other = String::from_utf8(other.to_vec()).unwrap();
        assert!(other.contains("<title>431 Error</title>"), "{other}");
        assert!(other.contains(GENERIC_PAGE.1), "{other}");
    }

    #[tokio::test]
    async fn suspension_notices_answer_in_the_asked_format() {
        let mut wants_json = http::HeaderMap::new();
        wants_json.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        for (legal, code) in [(false, 403), (true, 451)] {
            for (headers, content_type) in [
                (http::HeaderMap::new(), "text/html; charset=utf-8"),
                (wants_json.clone(), "application/json"),
            ] {
                let response = suspension_notice(legal, &headers);
                assert_eq!(response.status().as_u16(), code);
                assert_eq!(response.headers()["content-type"], content_type);
                assert_eq!(response.headers()["cache-control"], "no-store");
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let text = String::from_utf8(body.to_vec()).unwrap();
                assert!(text.contains(&code.to_string()), "{text}");
                assert!(text.contains("suspended by the operator"), "{text}");
                if content_type == "application/json" {
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(value["status"], code);
                }
            }
        }
    }

    #[test]
    fn strips_hop_by_hop_from_responses_but_keeps_a_101_handshake() {
        let mut response = Response::new(EdgeBody::empty());
        response
            .headers_mut()
            .insert("connection", HeaderValue::from_static("x-secret"));
        response
            .headers_mut()
            .insert("x-secret", HeaderValue::from_static("1"));
        response
            .headers_mut()
            .insert("keep-alive", HeaderValue::from_static("timeout=5"));
        client_response_headers(&mut response, Version::HTTP_11, false);
        assert!(!response.headers().contains_key("x-secret"));
        assert!(!response.headers().contains_key("keep-alive"));
        assert_eq!(response.headers()["via"], "1.1 palisade");

        let mut switching = Response::new(EdgeBody::empty());
        *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        switching
            .headers_mut()
            .insert("connection", HeaderValue::from_static("Upgrade"));
        switching
            .headers_mut()
            .insert("upgrade", HeaderValue::from_static("websocket"));
        client_response_headers(&mut switching, Version::HTTP_11, false);
        assert_eq!(switching.headers()["upgrade"], "websocket");
        assert_eq!(switching.headers()["connection"], "upgrade");
    }
}

//! The `origin` phase: the request goes to one of the site's origins, under the site's cap on
//! concurrent origin requests, and its answer comes back for the `respond` phase. Most of
//! this module is how the client's request header is rewritten for the origin:
//!
//! - Hop-by-hop fields (RFC 9110 §7.6.1) are removed, including every field the client named in
//!   Connection, so a client cannot make the edge pass on (or drop) a connection-level header.
//! - `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Real-IP` and `Forwarded`
//!   (RFC 7239) are set from what the edge saw. A client's own values are replaced, unless the
//!   peer is a trusted proxy, whose values are kept (and for the lists, appended to): origins
//!   get a chain they can believe.
//! - `Via` (RFC 9110 §7.6.3) gains this hop.
//! - `Host` and `Content-Length` are written by the edge, never copied: Host from the authority
//!   routing validated, the length from the body actually forwarded (`origin::codec`). A
//!   Connection option can therefore never take either away, nor any field the edge sets
//!   (`http::fields::connection_may_remove`).
//! - `Expect` is dropped: hyper has already answered `100-continue` when the body was read.

use crate::body::{BodyMeter, BodyPace, EdgeBody, OriginBody};
use crate::http::client::{ClientFacts, X_FORWARDED_FOR, proto};
use crate::http::fields::{
    connection_may_remove, has_token, is_connection_option, is_hop_by_hop, via,
};
use crate::metrics::CacheOutcome;
use crate::origin::{InterimSink, OriginFailure, OriginRequest};
use crate::phases::{respond, shield as shield_phase};
use crate::request::{OriginAnswer, SiteRequest};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode, Version};
use shield::events::{EventAction, EventReason, NewEvent};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Fields other proxies and CDNs use to tell an origin the client's address, which the edge
/// does not set: from a peer that is not a trusted proxy they are a client's claim about
/// itself, and an origin that trusts one (after a move from the CDN that set it) would log,
/// rate-limit or allow the address the client chose. Dropped, like the forwarding fields the
/// edge replaces.
fn names_another_client_address(name: &str) -> bool {
    matches!(
        name,
        "true-client-ip"
            | "x-client-ip"
            | "x-cluster-client-ip"
            | "cf-connecting-ip"
            | "fastly-client-ip"
            | "x-original-forwarded-for"
    )
}

/// Runs after the cache, for every request it did not answer. Takes the request (its body
/// streams to the origin), its routing and the cache's fill. Writes the origin's slot under
/// the site's cap, the origin that answered and its time into the log. Continues with the
/// origin's answer for the `respond` phase.
///
/// Answers early: over the site's `max_origin_concurrency`, a stale copy the cache holds or
/// 503; when no origin answers, a stale copy (stale-if-error, always online) or 502 (504 on a
/// timeout, 413 or 408 for a body over the limit or too slow); an origin switching protocols
/// the client did not ask for → 502. A WebSocket upgrade the origin accepts becomes a tunnel
/// here.
pub async fn to_origin(
    request: &mut SiteRequest<'_>,
) -> ControlFlow<Response<EdgeBody>, OriginAnswer> {
    let site = request.site;
    let (origin_request, sent) = prepare(request);
    // Origin protection: over the site's cap, a stale copy or 503.
    match site
        .protection
        .origin_permit(site.config.shield.max_origin_concurrency)
    {
        Some(permit) => request.log.origin_permit = Some(permit),
        None => return ControlFlow::Break(shed(request, &sent.method).await),
    }
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
                crate::conn::spawn_tunnel(
                    Arc::clone(request.conn),
                    client_upgrade,
                    origin_io,
                    origin_early,
                    request.snapshot.limits.idle_timeout,
                );
            }
            // An origin may not switch protocols the client did not ask for.
            _ => {
                return ControlFlow::Break(respond::edge_page(StatusCode::BAD_GATEWAY, false));
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

/// What the origin phase keeps of the request it sends.
struct Sent {
    method: Method,
    target: PathAndQuery,
    invalidation: Option<HeaderMap>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The client's body was sent on: a failure leaves the connection unusable.
    has_body: bool,
}

/// Takes the request out of the context and writes the origin's copy of it (a plain
/// function, so that its work does not live in the phase's future across the origin's wait).
fn prepare(request: &mut SiteRequest<'_>) -> (OriginRequest, Sent) {
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
    let (parts, body) = http_request.into_parts();
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
    let has_body = !http_body::Body::is_end_stream(&body);
    // The length the origin is told is the one the body is held to: hyper reads exactly a
    // declared Content-Length (h2 checks its DATA against it), and the upload checks again.
    let length = if has_body {
        http_body::Body::size_hint(&body).exact()
    } else {
        request.declared_length.filter(|n| *n == 0)
    };
    let body = if has_body {
        let meter = Arc::new(BodyMeter::default());
        request.log.meter = Some(Arc::clone(&meter));
        let pace = BodyPace::new(&request.snapshot.limits, Arc::clone(&request.state.metrics));
        OriginBody::client(body, meter, site.config.max_body_bytes, pace)
    } else {
        OriginBody::Empty
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

/// The answer when the site's origins are at their cap: a stale copy the cache holds, or 503.
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
    respond::edge_page(status, has_body)
}

/// A GET without a body to `path_and_query`, with `fields` as written for a fill (validators
/// included or not): a background refresh, or a fill made again after a 304 that named
/// another representation.
pub fn origin_get(path_and_query: PathAndQuery, fields: Vec<u8>) -> OriginRequest {
    OriginRequest {
        method: Method::GET,
        path_and_query,
        fields,
        length: None,
        body: OriginBody::Empty,
        retryable: true,
        interim: None,
    }
}

/// Whether the request asks to switch to WebSocket (RFC 6455 §4.1), the one upgrade the edge
/// passes through.
pub fn is_websocket_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket")
}

/// What the origin's copy of a request needs beyond the client's fields.
pub struct Hop<'a> {
    pub version: Version,
    /// The host the client asked for, as routing validated it.
    pub authority: &'a HeaderValue,
    pub client: &'a ClientFacts,
    /// The client's address as the edge resolved it: the peer, or behind a trusted proxy the
    /// rightmost untrusted X-Forwarded-For entry ([`crate::http::client::real_client_ip`]).
    pub client_ip: IpAddr,
    /// Keep a WebSocket handshake's Connection/Upgrade pair.
    pub upgrade: bool,
    /// The response may be stored for other clients, under these settings (see
    /// [`write_origin_fields`]).
    pub cache_fill: Option<&'a model::SiteCache>,
}

/// Writes the origin's copy of a client's request fields, each as a `name: value` line, into
/// `out`. The framing field is not among them: `origin::codec` writes it from the body it
/// sends.
///
/// Written straight to the wire rather than edited in the header map: five inserts, a removal
/// and their lookups per request cost more than one pass that skips and appends (callgrind,
/// `bench/README.md`). Lists the edge extends (X-Forwarded-For, Forwarded, Via) go out as one
/// line, the client's lines joined in front of this hop's entry, since many origins read only
/// the first line of a field.
///
/// `cache_fill`: the response may be stored for other clients, so the client's own
/// preconditions and Range are not passed on (the cache needs the full response, and answers
/// them itself), Accept-Encoding is sent reduced to the variant the response is stored under
/// (`cache::vary::accept_encoding`), so what comes back suits every client of that variant, and
/// the unkeyed fields origins commonly reflect (`cache::key::is_reflected_unkeyed_input`) are
/// dropped unless the site keys on them or lists them in `forward_unkeyed_fields`: one
/// client's `X-Forwarded-Host`-style field must not shape a response stored for everyone.
pub fn write_origin_fields(out: &mut Vec<u8>, headers: &HeaderMap, hop: &Hop<'_>) {
    let client = hop.client;
    // First pass: what the fields say about the others.
    let mut named: Vec<&[u8]> = Vec::new();
    let mut wants_trailers = false;
    let (mut has_forwarded_host, mut has_forwarded_proto, mut has_real_ip) = (false, false, false);
    for (name, value) in headers {
        match name.as_str() {
            "connection" => named.extend(
                value
                    .as_bytes()
                    .split(|b| *b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|t| {
                        !t.is_empty() && !is_connection_option(t) && connection_may_remove(t)
                    }),
            ),
            "te" => {
                wants_trailers |= value
                    .as_bytes()
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
            }
            "x-forwarded-host" => has_forwarded_host = true,
            "x-forwarded-proto" => has_forwarded_proto = true,
            "x-real-ip" => has_real_ip = true,
            _ => {}
        }
    }
    let keep_forwarded_host = client.trusted && has_forwarded_host;
    let keep_forwarded_proto = client.trusted && has_forwarded_proto;
    let keep_real_ip = client.trusted && has_real_ip;

    // Second pass: the client's fields the origin gets as they are.
    for (name, value) in headers {
        let n = name.as_str();
        let skip = is_hop_by_hop(n)
            || matches!(
                n,
                "host" | "content-length" | "expect" | "x-forwarded-for" | "forwarded" | "via"
            )
            || (n == "x-forwarded-host" && !keep_forwarded_host)
            || (n == "x-forwarded-proto" && !keep_forwarded_proto)
            || (n == "x-real-ip" && !keep_real_ip)
            || (!client.trusted && names_another_client_address(n))
            || named.iter().any(|t| t.eq_ignore_ascii_case(n.as_bytes()))
            || hop.cache_fill.is_some_and(|cache| {
                cache::key::is_reflected_unkeyed_input(n)
                    && !cache.key_headers.iter().any(|k| k == n)
                    && !cache.forward_unkeyed_fields.iter().any(|k| k == n)
            })
            || (hop.cache_fill.is_some()
                && matches!(
                    n,
                    "accept-encoding"
                        | "if-none-match"
                        | "if-modified-since"
                        | "if-match"
                        | "if-unmodified-since"
                        | "if-range"
                        | "range"
                ));
        if !skip {
            field(out, n, value.as_bytes());
        }
    }
    if hop.cache_fill.is_some() {
        let coding = cache::vary::accept_encoding(headers);
        if !coding.is_empty() {
            field(out, "accept-encoding", coding.as_bytes());
        }
    }

    // This hop's fields. Host always: an HTTP/2 client sends none, an absolute-form target
    // overrides the Host field, and otherwise it is the Host routing checked.
    field(out, "host", hop.authority.as_bytes());
    if hop.upgrade {
        field(out, "connection", b"upgrade");
        field(out, "upgrade", b"websocket");
    }
    if wants_trailers {
        // TE is hop-by-hop, but "trailers" is the client telling every hop it accepts them;
        // without it an HTTP/1.1 origin may drop them.
        field(out, "te", b"trailers");
    }
    if !keep_forwarded_host {
        field(out, "x-forwarded-host", hop.authority.as_bytes());
    }
    if !keep_forwarded_proto {
        field(out, "x-forwarded-proto", proto(client.tls).as_bytes());
    }
    if !keep_real_ip {
        if hop.client_ip == client.peer {
            field(out, "x-real-ip", client.peer_text.as_bytes());
        } else {
            field(out, "x-real-ip", hop.client_ip.to_string().as_bytes());
        }
    }
    let kept = |name: &HeaderName| client.trusted.then(|| headers.get_all(name));
    list_field(
        out,
        "x-forwarded-for",
        kept(&X_FORWARDED_FOR),
        &[client.peer_text.as_bytes()],
    );
    // The authority passed routing's host validation: safe inside a quoted string.
    list_field(
        out,
        "forwarded",
        kept(&header::FORWARDED),
        &[
            client.forwarded_base.as_bytes(),
            b";host=\"",
            hop.authority.as_bytes(),
            b"\"",
        ],
    );
    // Via is extended whoever the peer is (RFC 9110 §7.6.3).
    list_field(
        out,
        "via",
        Some(headers.get_all(header::VIA)),
        &[via(hop.version).as_bytes()],
    );
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `name: <earlier values, >this hop's entry` on one line.
fn list_field(
    out: &mut Vec<u8>,
    name: &str,
    earlier: Option<header::GetAll<'_, HeaderValue>>,
    entry: &[&[u8]],
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for value in earlier.into_iter().flatten() {
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b", ");
    }
    for part in entry {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::real_client_ip;

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Rewrites `h` as for a request to `host` whose Host field the edge must set: the fields
    /// the origin would receive, read back from the bytes written.
    fn rewrite(
        h: &mut HeaderMap,
        version: Version,
        host: &'static str,
        client: &ClientFacts,
        upgrade: bool,
    ) {
        let mut out = Vec::new();
        let authority = HeaderValue::from_static(host);
        let hop = Hop {
            version,
            authority: &authority,
            client,
            client_ip: real_client_ip(h, client, |_| false),
            upgrade,
            cache_fill: None,
        };
        write_origin_fields(&mut out, h, &hop);
        out.extend_from_slice(b"\r\n");
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let httparse::Status::Complete((_, fields)) =
            httparse::parse_headers(&out, &mut slots).expect("well-formed fields")
        else {
            panic!("incomplete fields: {}", String::from_utf8_lossy(&out));
        };
        let mut written = HeaderMap::new();
        for f in fields {
            written.append(
                HeaderName::from_bytes(f.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(f.value).unwrap(),
            );
        }
        *h = written;
    }

    fn peer() -> ClientFacts {
        ClientFacts::new("192.0.2.7".parse().unwrap(), false, false)
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let mut h = request(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eA=="),
            ("x-normal", "1"),
        ]);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &peer(), false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-connection",
            "te",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(!h.contains_key(gone), "{gone} leaked");
        }
        assert_eq!(h["x-normal"], "1");
    }

    #[test]
    fn connection_cannot_remove_framing_routing_or_the_edges_own_fields() {
        let mut h = request(&[
            (
                "connection",
                "Host, Content-Length, X-Forwarded-For, X-Real-IP, Via, Forwarded, \
                 X-Forwarded-Proto, X-Forwarded-Host, x-secret",
            ),
            ("host", "blog.example"),
            ("content-length", "3"),
            ("x-secret", "1"),
        ]);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &peer(), false);
        assert_eq!(h["host"], "blog.example");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "blog.example");
        assert_eq!(h["via"], "1.1 palisade");
        assert!(h.contains_key("forwarded"));
        assert!(
            !h.contains_key("x-secret"),
            "the client's own field is still its to drop"
        );
        // The length is the codec's to write, from the body it sends.
        assert!(!h.contains_key("content-length"));
    }

    #[test]
    fn reflected_unkeyed_fields_are_dropped_from_requests_the_cache_may_answer() {
        let fields = [
            ("x-forwarded-scheme", "nothttps"),
            ("x-forwarded-port", "1337"),
            ("x-host", "evil.example"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-device", "phone"),
        ];
        let settings = model::SiteCache {
            key_headers: vec!["x-device".into()],
            forward_unkeyed_fields: vec!["x-forwarded-port".into()],
            ..model::SiteCache::default()
        };
        let client = peer();
        let authority = HeaderValue::from_static("blog.example");
        let written = |cache_fill| {
            let mut out = Vec::new();
            let hop = Hop {
                version: Version::HTTP_11,
                authority: &authority,
                client: &client,
                client_ip: client.peer,
                upgrade: false,
                cache_fill,
            };
            write_origin_fields(&mut out, &request(&fields), &hop);
            String::from_utf8(out).unwrap()
        };
        let filled = written(Some(&settings));
        for gone in [
            "x-forwarded-scheme",
            "x-host",
            "x-original-url",
            "x-http-method-override",
        ] {
            assert!(!filled.contains(gone), "{gone} reached a fill: {filled}");
        }
        // Kept by the site, or keyed.
        assert!(filled.contains("x-forwarded-port: 1337"), "{filled}");
        assert!(filled.contains("x-device: phone"), "{filled}");
        // A request the cache will not store passes them on.
        let passed = written(None);
        assert!(passed.contains("x-host: evil.example"), "{passed}");
    }

    #[test]
    fn host_is_written_from_the_authority_never_copied() {
        let mut h = request(&[("host", "blog.example")]);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &peer(), false);
        assert_eq!(h.get_all("host").iter().count(), 1);
        assert_eq!(h["host"], "blog.example");
    }

    #[test]
    fn other_client_address_fields_are_dropped_unless_the_peer_is_trusted() {
        let fields = [
            ("true-client-ip", "6.6.6.6"),
            ("x-client-ip", "6.6.6.6"),
            ("cf-connecting-ip", "6.6.6.6"),
            ("x-cluster-client-ip", "6.6.6.6"),
        ];
        let mut h = request(&fields);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &peer(), false);
        for (name, _) in fields {
            assert!(
                !h.contains_key(name),
                "{name} from an untrusted peer reached the origin"
            );
        }
        let trusted = ClientFacts::new("10.0.0.1".parse().unwrap(), false, true);
        let mut h = request(&fields);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &trusted, false);
        assert_eq!(h["true-client-ip"], "6.6.6.6");
    }

    #[test]
    fn x_real_ip_is_replaced_unless_the_peer_is_trusted() {
        let mut h = request(&[("x-real-ip", "6.6.6.6")]);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &peer(), false);
        assert_eq!(h["x-real-ip"], "192.0.2.7");

        let trusted = ClientFacts::new("10.0.0.1".parse().unwrap(), false, true);
        let mut h = request(&[("x-real-ip", "203.0.113.9")]);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &trusted, false);
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        // A trusted proxy that sent none: the client it names in X-Forwarded-For.
        let mut h = request(&[("x-forwarded-for", "203.0.113.10")]);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &trusted, false);
        assert_eq!(h["x-real-ip"], "203.0.113.10");
    }

    #[test]
    fn untrusted_peer_cannot_spoof_forwarding_headers() {
        let mut h = request(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        rewrite(&mut h, Version::HTTP_11, "blog.example", &peer(), false);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "blog.example");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;proto=http;host=\"blog.example\""
        );
        assert_eq!(h["host"], "blog.example");
        assert_eq!(h["via"], "1.1 palisade");
    }

    #[test]
    fn trusted_peer_chain_is_kept_and_appended() {
        let trusted = ClientFacts::new("10.0.0.1".parse().unwrap(), true, true);
        let mut h = request(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9"),
            ("via", "1.1 cdn"),
        ]);
        rewrite(&mut h, Version::HTTP_2, "blog.example", &trusted, false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9, for=10.0.0.1;proto=https;host=\"blog.example\""
        );
        assert_eq!(h["via"], "1.1 cdn, 2 palisade");
        for list in ["x-forwarded-for", "forwarded", "via"] {
            assert_eq!(h.get_all(list).iter().count(), 1, "{list} on one line");
        }
        let ip = real_client_ip(&h, &trusted, |ip| ip.to_string().starts_with("10."));
        assert_eq!(ip.to_string(), "203.0.113.9");
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded() {
        let v6 = ClientFacts::new("2001:db8::1".parse().unwrap(), false, false);
        let mut h = HeaderMap::new();
        rewrite(&mut h, Version::HTTP_11, "a.example", &v6, false);
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::1]\";proto=http;host=\"a.example\""
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
    }

    #[test]
    fn websocket_upgrade_keeps_its_handshake_fields() {
        let mut h = request(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_websocket_upgrade(Version::HTTP_11, &h));
        rewrite(&mut h, Version::HTTP_11, "a.example", &peer(), true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn te_trailers_survives_as_the_only_te_value() {
        let mut h = request(&[("te", "trailers, deflate")]);
        rewrite(&mut h, Version::HTTP_11, "a.example", &peer(), false);
        assert_eq!(h["te"], "trailers");
    }
}

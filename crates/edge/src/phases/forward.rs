//! The request half of the `origin` phase: rewriting a client's request header for the origin.
//!
//! - Hop-by-hop fields (RFC 9110 §7.6.1) are removed, including every field the client named in
//!   Connection, so a client cannot make the edge pass on (or drop) a connection-level header.
//! - `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` (RFC 7239) are
//!   set from what the edge saw. A client's own values are replaced, unless the peer is a trusted
//!   proxy, whose values are kept and appended to: origins get a chain they can believe.
//! - `Via` (RFC 9110 §7.6.3) gains this hop.
//! - `Expect` is dropped: hyper has already answered `100-continue` when the body was read.

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Request and response fields that describe one connection, never the message
/// (RFC 9110 §7.6.1), plus Proxy-Authorization, which is meant for the edge itself.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// A Connection token that is an option or names a field removed anyway (any case).
pub(crate) fn is_connection_option(token: &[u8]) -> bool {
    [
        &b"close"[..],
        b"keep-alive",
        b"upgrade",
        b"te",
        b"transfer-encoding",
        b"proxy-connection",
        b"proxy-authorization",
        b"connection",
    ]
    .iter()
    .any(|known| token.eq_ignore_ascii_case(known))
}

/// Most hop-by-hop fields one message can carry (the list above).
const HOP_COUNT: usize = 7;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What is known about a client connection, computed once at accept so requests on it do not
/// format addresses again.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub peer: IpAddr,
    pub tls: bool,
    /// The peer is in `trusted_proxies`.
    pub trusted: bool,
    peer_text: HeaderValue,
    /// `for=...;proto=...` (host is added per request).
    forwarded_base: String,
}

impl ClientFacts {
    pub fn new(peer: IpAddr, tls: bool, trusted: bool) -> ClientFacts {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        let text = peer.to_string();
        let node = match peer {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        ClientFacts {
            peer,
            tls,
            trusted,
            peer_text: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_base: format!("for={node};proto={}", proto(tls)),
        }
    }
}

fn proto(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// Whether the request asks to switch to WebSocket (RFC 6455 §4.1), the one upgrade the edge
/// passes through.
pub fn is_websocket_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket")
}

/// Whether a comma-separated field holds `token` (case-insensitive).
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Removes hop-by-hop fields and those the Connection field names, from an origin's response
/// (requests skip them as they are written: [`write_origin_fields`]).
///
/// On the hot path, so it avoids hashing names that are not there:
/// one pass over the fields present finds the hop-by-hop ones, and Connection's tokens become
/// header names only when they name something other than a connection option.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present: [Option<HeaderName>; HOP_COUNT] = Default::default();
    let mut count = 0;
    for name in headers.keys() {
        if count < HOP_COUNT && is_hop_by_hop(name.as_str()) {
            present[count] = Some(name.clone());
            count += 1;
        }
    }
    if count == 0 {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() || is_connection_option(token) {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                named.push(name);
            }
        }
    }
    for name in present.iter().flatten().chain(named.iter()) {
        headers.remove(name);
    }
}

/// Writes the origin's copy of a client's request fields, each as a `name: value` line, into
/// `out`; `upgrade` keeps a WebSocket handshake's Connection/Upgrade pair.
/// `authority` is the host the client asked for; `host_is_set` says the request's Host field
/// already holds it (an HTTP/1.1 origin-form request), so it need not be written again.
///
/// Written straight to the wire rather than edited in the header map: five inserts, a removal
/// and their lookups per request cost more than one pass that skips and appends (callgrind,
/// `bench/README.md`). Lists the edge extends (X-Forwarded-For, Forwarded, Via) go out as one
/// line, the client's lines joined in front of this hop's entry, since many origins read only
/// the first line of a field.
///
/// `cache_fill`: the response will be stored for other clients, so the client's own
/// preconditions and Range are not passed on (the cache needs the full response, and answers
/// them itself), and Accept-Encoding is sent reduced to the variant the response is stored under
/// (`cache::vary::accept_encoding`), so what comes back suits every client of that variant.
#[allow(clippy::too_many_arguments)]
pub fn write_origin_fields(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    version: Version,
    authority: &HeaderValue,
    host_is_set: bool,
    client: &ClientFacts,
    upgrade: bool,
    cache_fill: bool,
) {
    // First pass: what the fields say about the others.
    let mut named: Vec<&[u8]> = Vec::new();
    let mut wants_trailers = false;
    let (mut has_forwarded_host, mut has_forwarded_proto) = (false, false);
    for (name, value) in headers {
        match name.as_str() {
            "connection" => named.extend(
                value
                    .as_bytes()
                    .split(|b| *b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|t| !t.is_empty() && !is_connection_option(t)),
            ),
            "te" => {
                wants_trailers |= value
                    .as_bytes()
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
            }
            "x-forwarded-host" => has_forwarded_host = true,
            "x-forwarded-proto" => has_forwarded_proto = true,
            _ => {}
        }
    }
    let keep_forwarded_host = client.trusted && has_forwarded_host;
    let keep_forwarded_proto = client.trusted && has_forwarded_proto;

    // Second pass: the client's fields the origin gets as they are.
    for (name, value) in headers {
        let n = name.as_str();
        let skip = is_hop_by_hop(n)
            || matches!(n, "expect" | "x-forwarded-for" | "forwarded" | "via")
            || (n == "host" && !host_is_set)
            || (n == "x-forwarded-host" && !keep_forwarded_host)
            || (n == "x-forwarded-proto" && !keep_forwarded_proto)
            || named.iter().any(|t| t.eq_ignore_ascii_case(n.as_bytes()))
            || (cache_fill
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
    if cache_fill {
        let coding = cache::vary::accept_encoding(headers);
        if !coding.is_empty() {
            field(out, "accept-encoding", coding.as_bytes());
        }
    }

    // This hop's fields.
    if !host_is_set {
        // An HTTP/2 client sends no Host; an absolute-form target overrides the Host field.
        field(out, "host", authority.as_bytes());
    }
    if upgrade {
        field(out, "connection", b"upgrade");
        field(out, "upgrade", b"websocket");
    }
    if wants_trailers {
        // TE is hop-by-hop, but "trailers" is the client telling every hop it accepts them;
        // without it an HTTP/1.1 origin may drop them.
        field(out, "te", b"trailers");
    }
    if !keep_forwarded_host {
        field(out, "x-forwarded-host", authority.as_bytes());
    }
    if !keep_forwarded_proto {
        field(out, "x-forwarded-proto", proto(client.tls).as_bytes());
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
            authority.as_bytes(),
            b"\"",
        ],
    );
    // Via is extended whoever the peer is (RFC 9110 §7.6.3).
    list_field(
        out,
        "via",
        Some(headers.get_all(header::VIA)),
        &[via(version).as_bytes()],
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

/// This hop's `Via` entry for a message of `version`.
pub fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 palisade",
        Version::HTTP_10 => "1.0 palisade",
        Version::HTTP_2 => "2 palisade",
        Version::HTTP_3 => "3 palisade",
        _ => "1.1 palisade",
    })
}

/// Appends `value` to a comma-separated field, folding existing lines into one.
pub fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    match headers.entry(name) {
        header::Entry::Vacant(slot) => {
            slot.insert(value.clone());
        }
        header::Entry::Occupied(mut slot) => {
            let mut joined: Vec<u8> = Vec::new();
            for existing in slot.iter() {
                joined.extend_from_slice(existing.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(value.as_bytes());
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                slot.insert(value);
            }
        }
    }
}

/// The client's address for logs and limits: the peer, or when the peer is a trusted proxy, the
/// rightmost address in X-Forwarded-For that is not itself trusted.
pub fn real_client_ip(
    headers: &HeaderMap,
    client: &ClientFacts,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    if !client.trusted {
        return client.peer;
    }
    let mut found = client.peer;
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                found = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

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
        write_origin_fields(
            &mut out,
            h,
            version,
            &HeaderValue::from_static(host),
            false,
            client,
            upgrade,
            false,
        );
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

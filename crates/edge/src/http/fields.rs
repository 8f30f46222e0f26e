//! Header fields at the wire level: which ones describe a hop rather than the message
//! (RFC 9110 §7.6.1), what a Connection option may remove, what may travel as a trailer
//! (RFC 9110 §6.5.1), comma-separated token lists, and `Via`. Used by the request's phases and by
//! the origin client alike; it knows nothing of either.

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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

/// Whether a Connection option may remove the field `name` (lowercase) at this hop.
///
/// Not the fields that frame or route a message (RFC 9110 §7.6.1 lets a hop drop what the
/// previous one named, but a body whose length the next hop no longer knows is read there as
/// the next request, and an HTTP/1.1 request without Host is malformed), nor the fields the
/// edge sets itself, which the client does not get to suppress. The framing phase refuses a
/// request whose Connection names Content-Length or Host; for the rest the option is ignored.
pub(crate) fn connection_may_remove(name: &[u8]) -> bool {
    ![
        &b"content-length"[..],
        b"transfer-encoding",
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
        b"forwarded",
        b"via",
    ]
    .iter()
    .any(|kept| name.eq_ignore_ascii_case(kept))
}

/// Whether a trailer field may be passed on, in either direction (`name` lowercase).
///
/// RFC 9110 §6.5.1: a trailer cannot carry what must be known before the content is
/// processed: framing, routing, request modifiers, authentication, response control data or
/// the content's format. A recipient that merged such a field into the header section (many
/// origins' frameworks do) could be told a second length, another Host, or a client address,
/// so the edge drops them; so are the hop-by-hop fields and the edge's own forwarding fields.
pub(crate) fn trailer_may_cross(name: &str) -> bool {
    !(is_hop_by_hop(name)
        || matches!(
            name,
            // framing and routing
            "content-length" | "host" | "trailer"
                // request modifiers (controls, conditionals, range)
                | "cache-control" | "expect" | "max-forwards" | "pragma" | "range"
                | "if-match" | "if-none-match" | "if-modified-since" | "if-unmodified-since"
                | "if-range"
                // authentication and state
                | "authorization" | "www-authenticate" | "proxy-authenticate"
                | "cookie" | "set-cookie"
                // response control data
                | "age" | "date" | "expires" | "location" | "retry-after" | "vary"
                | "warning" | "etag" | "last-modified"
                // how to process the content
                | "content-encoding" | "content-type" | "content-range" | "content-location"
                // the edge's own forwarding fields
                | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-real-ip"
                | "forwarded" | "via"
        ))
}

/// Most hop-by-hop fields one message can carry (the list above).
const HOP_COUNT: usize = 7;

/// Whether a comma-separated field holds `token` (case-insensitive).
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Removes hop-by-hop fields and those the Connection field names, from an origin's response
/// (requests skip them as they are written: `origin::fields::write_origin_fields`).
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
            if token.is_empty() || is_connection_option(token) || !connection_may_remove(token) {
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

/// True when the client's Accept ranks JSON above HTML (an API client, a `fetch`), so it gets
/// a JSON 403 rather than a page it cannot run.
pub fn prefers_json(headers: &HeaderMap) -> bool {
    let mut json = 0.0f32;
    let mut html = 0.0f32;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut params = item.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            if media == "application/json" || media.ends_with("+json") {
                json = json.max(q);
            } else if media == "text/html" || media == "application/xhtml+xml" || media == "*/*" {
                html = html.max(q);
            }
        }
    }
    json > html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9110_6_5_1_fields_that_frame_route_or_control_never_cross_as_trailers() {
        for forbidden in [
            "content-length",
            "transfer-encoding",
            "host",
            "authorization",
            "set-cookie",
            "cache-control",
            "content-type",
            "x-forwarded-for",
            "connection",
        ] {
            assert!(!trailer_may_cross(forbidden), "{forbidden}");
        }
        for allowed in ["x-checksum", "server-timing", "grpc-status", "digest"] {
            assert!(trailer_may_cross(allowed), "{allowed}");
        }
    }
}

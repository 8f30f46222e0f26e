//! The cache's own header fields (`Cache-Status`, RFC 9211), the fields it keeps out of what
//! it stores, and the small judgements the other parts share.

use super::CACHE_NAME;
use crate::body::EdgeBody;
use crate::own_responses::edge_page;
use bytes::Bytes;
use cache::policy::targeted::CDN_CACHE_CONTROL;
use cache::policy::{self};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use model::SiteCache;
use std::time::SystemTime;

/// RFC 5861 §4: the errors stale-if-error covers.
pub(super) fn is_error_for_stale(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// §5.2.1.7: "a cache SHOULD either respond using a stored response consistent with the other
/// constraints of the request or respond with a 504 (Gateway Timeout) status code".
pub(super) fn gateway_timeout() -> Response<EdgeBody> {
    let mut response = edge_page(StatusCode::GATEWAY_TIMEOUT, false);
    add_cache_status(response.headers_mut(), "fwd=miss; detail=only-if-cached");
    response
}

/// The site's target list (RFC 9213 §2.2): its own targeted field, when it names one, before
/// `CDN-Cache-Control` (without one, `CDN-Cache-Control` is simply looked at twice).
pub(super) fn target_list(settings: &SiteCache) -> [&str; 2] {
    [
        settings
            .targeted_field
            .as_deref()
            .unwrap_or(CDN_CACHE_CONTROL),
        CDN_CACHE_CONTROL,
    ]
}

/// Takes out the fields meant for this edge alone: the targeted fields and the purge tags.
///
/// On every response, and almost every response has none of them: one pass over the names
/// present decides, rather than a removal per name (each parses and hashes its name; together
/// about 900 instructions per request under callgrind).
pub(super) fn strip_edge_fields(headers: &mut HeaderMap, own_field: Option<&str>) {
    let present = headers.keys().any(|name| {
        let name = name.as_str();
        name == CDN_CACHE_CONTROL
            || own_field == Some(name)
            || cache::object::TAG_FIELDS.contains(&name)
    });
    if !present {
        return;
    }
    strip_targeted_fields(headers, own_field);
    for tag in cache::object::TAG_FIELDS {
        headers.remove(tag);
    }
}

/// Takes out `CDN-Cache-Control` (RFC 9213 §3: a CDN "MAY remove it" when nothing downstream
/// uses it, and this edge is the last CDN hop, the one that answers visitors) and the site's
/// own targeted field.
pub(super) fn strip_targeted_fields(headers: &mut HeaderMap, own_field: Option<&str>) {
    // Looked for first, as in `strip_edge_fields`: a hit pays for the scan, not the removals.
    let present = headers
        .keys()
        .any(|name| name.as_str() == CDN_CACHE_CONTROL || own_field == Some(name.as_str()));
    if !present {
        return;
    }
    headers.remove(CDN_CACHE_CONTROL);
    if let Some(own) = own_field {
        headers.remove(own);
    }
}

/// RFC 9211 §2: each cache appends its member; the last one is the cache closest to the client.
pub(super) fn add_cache_status(headers: &mut HeaderMap, params: &str) {
    add_cache_status_ttl(headers, params, None);
}

/// [`add_cache_status`] with `; ttl=N` (RFC 9211 §2.5) appended. Written byte by byte: on a hit
/// this is most of what the cache adds to hyper's own work, and `format!` cost more than the
/// lookup (callgrind).
pub(super) fn add_cache_status_ttl(headers: &mut HeaderMap, params: &str, ttl: Option<i64>) {
    let existing = headers.get(&CACHE_STATUS);
    let mut value = Vec::with_capacity(
        existing.map_or(0, |v| v.len() + 2) + CACHE_NAME.len() + params.len() + 32,
    );
    if let Some(existing) = existing {
        value.extend_from_slice(existing.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(CACHE_NAME.as_bytes());
    value.extend_from_slice(b"; ");
    value.extend_from_slice(params.as_bytes());
    if let Some(ttl) = ttl {
        value.extend_from_slice(b"; ttl=");
        push_decimal(&mut value, ttl);
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(CACHE_STATUS, value);
    }
}

pub(super) fn push_decimal(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Removes this cache's own member from Cache-Status (keeping those of caches nearer the origin).
pub(super) fn strip_own_cache_status(headers: &mut HeaderMap) {
    let Some(value) = headers.get(CACHE_STATUS).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let prefix = format!("{CACHE_NAME};");
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.starts_with(&prefix) && *m != CACHE_NAME)
        .collect();
    match HeaderValue::from_str(&kept.join(", ")) {
        Ok(v) if !kept.is_empty() => {
            headers.insert(CACHE_STATUS, v);
        }
        _ => {
            headers.remove(CACHE_STATUS);
        }
    }
}

pub(super) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn unix_now() -> u64 {
    policy::freshness::unix_seconds(SystemTime::now())
}

/// `*` matches any run of characters; everything else matches itself.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            resume = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            resume += 1;
            ti = resume;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_patterns_match_with_stars() {
        assert!(glob_match("/admin/*", "/admin/users"));
        assert!(glob_match("/admin/*", "/admin/"));
        assert!(!glob_match("/admin/*", "/administrator"));
        assert!(glob_match("*.php", "/index.php"));
        assert!(glob_match("/a/*/b", "/a/x/y/b"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exact/more"));
    }

    #[test]
    fn ttl_is_written_as_a_signed_decimal() {
        let mut h = HeaderMap::new();
        add_cache_status_ttl(&mut h, "hit", Some(-42));
        assert_eq!(h["cache-status"], "palisade; hit; ttl=-42");
        let mut h = HeaderMap::new();
        add_cache_status_ttl(&mut h, "hit", Some(0));
        assert_eq!(h["cache-status"], "palisade; hit; ttl=0");
        let mut h = HeaderMap::new();
        add_cache_status_ttl(&mut h, "hit", Some(i64::MIN));
        assert_eq!(h["cache-status"], "palisade; hit; ttl=-9223372036854775808");
    }

    #[test]
    fn rfc9211_members_are_appended_and_our_own_is_not_stored() {
        let mut h = HeaderMap::new();
        add_cache_status(&mut h, "fwd=miss; stored");
        assert_eq!(h["cache-status"], "palisade; fwd=miss; stored");
        let mut upstream = HeaderMap::new();
        upstream.insert("cache-status", HeaderValue::from_static("OriginCache; hit"));
        add_cache_status(&mut upstream, "hit; ttl=5");
        assert_eq!(
            upstream["cache-status"],
            "OriginCache; hit, palisade; hit; ttl=5"
        );
        strip_own_cache_status(&mut upstream);
        assert_eq!(upstream["cache-status"], "OriginCache; hit");
        strip_own_cache_status(&mut h);
        assert!(!h.contains_key("cache-status"));
    }
}

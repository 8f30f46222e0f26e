//! Invalidating stored responses (RFC 9111 §4.4).
//!
//! "A cache MUST invalidate the target URI when it receives a non-error status code in response
//! to an unsafe request method", and may invalidate the URIs in Location and Content-Location,
//! but only on the same host, "to help prevent denial-of-service attacks".

use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, Method, StatusCode};

/// Methods RFC 9110 §9.2.1 defines as safe. Any other method, including unknown ones, is
/// treated as unsafe.
pub fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The paths (with query) a response invalidates on the request's own host, target first.
/// `path_and_query` is the request target; `host` the request's host (lowercase, no port is
/// compared with the port stripped on both sides only when both omit it).
pub fn invalidated_paths(
    method: &Method,
    status: StatusCode,
    host: &str,
    path_and_query: &str,
    response: &HeaderMap,
) -> Vec<String> {
    // "non-error status code": 2xx and 3xx.
    if is_safe(method) || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let mut paths = vec![path_and_query.to_string()];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(value) = response.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(path) = same_host_path(value.trim(), host, path_and_query)
            && !paths.contains(&path)
        {
            paths.push(path);
        }
    }
    paths
}

/// Resolves a URI reference (RFC 3986 §5, the forms that occur in these fields) against the
/// request target; `None` when it names another host or cannot be read.
fn same_host_path(reference: &str, host: &str, base: &str) -> Option<String> {
    if reference.is_empty() || reference.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let rest = match scheme_of(reference) {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            Some(reference[scheme.len() + 1..].strip_prefix("//")?)
        }
        Some(_) => return None,
        None => reference.strip_prefix("//"),
    };
    if let Some(rest) = rest {
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if !authority.eq_ignore_ascii_case(host) {
            return None;
        }
        return Some(normalize(path));
    }
    if reference.starts_with('/') {
        return Some(normalize(reference));
    }
    // A relative path: replace the last segment of the base path.
    let base_path = base.split(['?', '#']).next().unwrap_or("/");
    let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(normalize(&format!("{dir}{reference}")))
}

/// The scheme of an absolute URI (RFC 3986 §3.1), if the reference has one.
fn scheme_of(reference: &str) -> Option<&str> {
    let end = reference.find(':')?;
    let scheme = &reference[..end];
    let mut bytes = scheme.bytes();
    let first_is_alpha = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_is_alpha && rest_ok).then_some(scheme)
}

/// Drops a fragment and resolves `.` and `..` segments (RFC 3986 §5.2.4).
fn normalize(path: &str) -> String {
    let path = path.split('#').next().unwrap_or("");
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *segment {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                segments.pop();
                if last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn paths(
        method: Method,
        status: u16,
        response: &[(&'static str, &'static str)],
    ) -> Vec<String> {
        let mut h = HeaderMap::new();
        for (n, v) in response {
            h.append(*n, HeaderValue::from_static(v));
        }
        invalidated_paths(
            &method,
            StatusCode::from_u16(status).unwrap(),
            "shop.example",
            "/cart/items?x=1",
            &h,
        )
    }

    #[test]
    fn s4_4_unsafe_method_with_success_invalidates_the_target() {
        assert_eq!(paths(Method::POST, 200, &[]), vec!["/cart/items?x=1"]);
        assert_eq!(paths(Method::DELETE, 303, &[]), vec!["/cart/items?x=1"]);
        let unknown = Method::from_bytes(b"PURGEALL").unwrap();
        assert_eq!(paths(unknown, 204, &[]), vec!["/cart/items?x=1"]);
    }

    #[test]
    fn s4_4_errors_and_safe_methods_invalidate_nothing() {
        assert!(paths(Method::POST, 500, &[]).is_empty());
        assert!(paths(Method::POST, 404, &[]).is_empty());
        assert!(paths(Method::GET, 200, &[]).is_empty());
        assert!(paths(Method::HEAD, 200, &[]).is_empty());
    }

    #[test]
    fn s4_4_location_and_content_location_on_the_same_host_only() {
        let got = paths(
            Method::POST,
            201,
            &[
                ("location", "/cart/items/7"),
                ("content-location", "http://shop.example/cart"),
            ],
        );
        assert_eq!(got, vec!["/cart/items?x=1", "/cart/items/7", "/cart"]);
        let other = paths(
            Method::POST,
            201,
            &[
                ("location", "https://evil.example/x"),
                ("content-location", "//evil.example/y"),
            ],
        );
        assert_eq!(other, vec!["/cart/items?x=1"]);
    }

    #[test]
    fn relative_references_resolve_against_the_target() {
        let got = paths(
            Method::PUT,
            200,
            &[("content-location", "items/../summary?v=2#top")],
        );
        assert_eq!(got, vec!["/cart/items?x=1", "/cart/summary?v=2"]);
        let odd = paths(Method::PUT, 200, &[("location", "javascript:alert(1)")]);
        assert_eq!(odd, vec!["/cart/items?x=1"]);
        let bad = paths(Method::PUT, 200, &[("location", "ftp://shop.example/x")]);
        assert_eq!(bad, vec!["/cart/items?x=1"]);
    }
}

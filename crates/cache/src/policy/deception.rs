//! Web cache deception armour: when this cache does not store on its own judgement.
//!
//! The attack (Omer Gil, 2017): a logged-in victim is lured to `/account/profile.css`; the
//! origin ignores the suffix and renders the private page; a cache that stores what the origin
//! did not forbid keeps it, and the attacker, without a cookie, gets the victim's page from the
//! cache. RFC 9111 lets a shared cache store a response that names no lifetime at all: a
//! heuristically cacheable status (§3) with a heuristic lifetime from Last-Modified (§4.2.2), or
//! a copy kept to be revalidated. That judgement is the cache's, not the origin's, and it is
//! what the attack borrows. (Revalidating does not make it safe: the attacker's conditional
//! request, without a cookie, can well be answered 304 by an origin that compares dates.)
//!
//! So without a lifetime from the origin (`max-age`, `s-maxage`, `Expires`) or the operator
//! (`ttl`), a response is not stored when:
//! - the request carried credentials: an `Authorization` field, or a cookie other than the
//!   edge's own (the origin may have made the page for that visitor, and did not say it may be
//!   shared);
//! - its `Content-Type` is not a type the path's extension names (Cloudflare's "cache
//!   deception armor"): a `.css` path answered with HTML is a page that ignored the path.
//!
//! A path without an extension, or with one not listed here, is not judged by type. What the
//! origin said explicitly is followed as it is, and a site can turn the armour off
//! (`deception_armour = false`).

use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};

/// Why the armour withheld the cache's own judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deception {
    /// The request carried Authorization or a cookie.
    Credentials,
    /// The response's Content-Type is not one the path's extension names.
    TypeBeliesExtension,
}

/// What a request tells the armour, worked out once at lookup (the response comes later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    credentials: bool,
    /// The media types the path's extension names, when it names any.
    expected: Option<&'static [&'static str]>,
}

impl Request {
    /// Reads the request's credentials and its path's extension. `edge_cookies`: cookies the
    /// edge itself sets (the challenge's clearance), which are no credential of the origin's.
    pub fn of(headers: &HeaderMap, path: &str, edge_cookies: &[&str]) -> Request {
        Request {
            credentials: headers.contains_key(AUTHORIZATION)
                || has_origin_cookie(headers, edge_cookies),
            expected: extension(path).and_then(media_types),
        }
    }
}

/// Whether the armour withholds storing a response that names no lifetime, and why.
pub fn withheld(request: &Request, response: &HeaderMap) -> Option<Deception> {
    if request.credentials {
        return Some(Deception::Credentials);
    }
    let expected = request.expected?;
    let mut types = response.get_all(CONTENT_TYPE).iter();
    // One Content-Type, naming a type the extension names; none, or several, do not match.
    let matches = match (types.next(), types.next()) {
        (Some(value), None) => {
            let essence = value.as_bytes().split(|b| *b == b';').next().unwrap_or(&[]);
            let essence = essence.trim_ascii();
            expected
                .iter()
                .any(|t| essence.eq_ignore_ascii_case(t.as_bytes()))
        }
        _ => false,
    };
    (!matches).then_some(Deception::TypeBeliesExtension)
}

/// A cookie in the request other than `edge_cookies` (RFC 6265 §5.4: `name=value` pairs
/// separated by `;`).
fn has_origin_cookie(headers: &HeaderMap, edge_cookies: &[&str]) -> bool {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|b| *b == b';'))
        .any(|pair| {
            let pair = pair.trim_ascii();
            let name = pair
                .split(|b| *b == b'=')
                .next()
                .unwrap_or(&[])
                .trim_ascii();
            !pair.is_empty() && !edge_cookies.iter().any(|c| c.as_bytes() == name)
        })
}

/// The extension of the path's last segment (before any `;` parameters), if it has one.
fn extension(path: &str) -> Option<&str> {
    let segment = path.rsplit('/').next()?;
    let segment = segment.split(';').next()?;
    let (_, extension) = segment.rsplit_once('.')?;
    (!extension.is_empty()).then_some(extension)
}

/// The media types an extension names, for the extensions a deception would dress a page in
/// (style, script, data, images, fonts, documents, media). Binary formats also accept
/// `application/octet-stream`, which servers send when they do not know better.
fn media_types(extension: &str) -> Option<&'static [&'static str]> {
    const JAVASCRIPT: &[&str] = &[
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/ecmascript",
    ];
    const TABLE: &[(&str, &[&str])] = &[
        ("css", &["text/css"]),
        ("js", JAVASCRIPT),
        ("mjs", JAVASCRIPT),
        ("json", &["application/json"]),
        ("map", &["application/json"]),
        ("html", &["text/html"]),
        ("htm", &["text/html"]),
        ("xml", &["application/xml", "text/xml"]),
        ("txt", &["text/plain"]),
        ("csv", &["text/csv"]),
        ("svg", &["image/svg+xml"]),
        ("png", &["image/png"]),
        ("jpg", &["image/jpeg"]),
        ("jpeg", &["image/jpeg"]),
        ("gif", &["image/gif"]),
        ("webp", &["image/webp"]),
        ("avif", &["image/avif"]),
        ("ico", &["image/x-icon", "image/vnd.microsoft.icon"]),
        ("bmp", &["image/bmp"]),
        (
            "woff",
            &[
                "font/woff",
                "application/font-woff",
                "application/octet-stream",
            ],
        ),
        ("woff2", &["font/woff2", "application/octet-stream"]),
        (
            "ttf",
            &[
                "font/ttf",
                "application/x-font-ttf",
                "application/octet-stream",
            ],
        ),
        ("otf", &["font/otf", "application/octet-stream"]),
        (
            "eot",
            &["application/vnd.ms-fontobject", "application/octet-stream"],
        ),
        ("pdf", &["application/pdf", "application/octet-stream"]),
        ("mp4", &["video/mp4", "application/octet-stream"]),
        (
            "webm",
            &["video/webm", "audio/webm", "application/octet-stream"],
        ),
        ("mp3", &["audio/mpeg", "application/octet-stream"]),
        (
            "ogg",
            &[
                "audio/ogg",
                "video/ogg",
                "application/ogg",
                "application/octet-stream",
            ],
        ),
        ("wasm", &["application/wasm", "application/octet-stream"]),
        ("zip", &["application/zip", "application/octet-stream"]),
        (
            "gz",
            &[
                "application/gzip",
                "application/x-gzip",
                "application/octet-stream",
            ],
        ),
    ];
    TABLE
        .iter()
        .find(|(known, _)| extension.eq_ignore_ascii_case(known))
        .map(|(_, types)| *types)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in lines {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    const EDGE: &[&str] = &["palisade_clearance"];
    const HTML: &[(&str, &str)] = &[("content-type", "text/html; charset=utf-8")];

    fn judge(
        request: &[(&'static str, &'static str)],
        path: &str,
        response: &[(&'static str, &'static str)],
    ) -> Option<Deception> {
        withheld(
            &Request::of(&headers(request), path, EDGE),
            &headers(response),
        )
    }

    #[test]
    fn deception_a_request_with_a_cookie_or_authorization_gets_no_judgement() {
        for credentials in [
            ("cookie", "session=alice"),
            ("cookie", "palisade_clearance=x; session=alice"),
            ("authorization", "Bearer x"),
        ] {
            assert_eq!(
                judge(&[credentials], "/account/page", HTML),
                Some(Deception::Credentials),
                "{credentials:?}"
            );
        }
        // The edge's own clearance cookie is nobody's credential at the origin.
        assert_eq!(
            judge(&[("cookie", "palisade_clearance=x")], "/page", HTML),
            None
        );
        assert_eq!(judge(&[("cookie", " ; ")], "/page", HTML), None);
    }

    #[test]
    fn deception_a_type_that_belies_the_extension_gets_no_judgement() {
        assert_eq!(
            judge(&[], "/account/profile.css", HTML),
            Some(Deception::TypeBeliesExtension)
        );
        assert_eq!(
            judge(&[], "/account/profile.CSS;jsessionid=1", HTML),
            Some(Deception::TypeBeliesExtension)
        );
        assert_eq!(
            judge(&[], "/logo.png", &[]),
            Some(Deception::TypeBeliesExtension),
            "no Content-Type matches nothing"
        );
        assert_eq!(
            judge(
                &[],
                "/app.js",
                &[
                    ("content-type", "text/javascript"),
                    ("content-type", "text/html")
                ]
            ),
            Some(Deception::TypeBeliesExtension),
            "two Content-Types are not one that matches"
        );
    }

    #[test]
    fn deception_a_type_that_fits_or_a_path_that_names_none_is_judged_as_usual() {
        for (path, content_type) in [
            ("/site.css", "text/css"),
            ("/site.css", "TEXT/CSS ; charset=utf-8"),
            ("/app.js", "application/javascript"),
            ("/font.woff2", "application/octet-stream"),
            ("/index.html", "text/html"),
            // No extension, an unlisted one, a dot in a directory name: not judged by type.
            ("/account/profile", "text/html"),
            ("/index.php", "text/html"),
            ("/v1.2/users", "application/json"),
            ("/trailing.css/", "text/html"),
            ("/dotfile.", "text/html"),
        ] {
            let ct = HeaderValue::from_static(content_type);
            let mut response = HeaderMap::new();
            response.insert(CONTENT_TYPE, ct);
            let request = Request::of(&HeaderMap::new(), path, EDGE);
            assert_eq!(withheld(&request, &response), None, "{path} {content_type}");
        }
    }
}

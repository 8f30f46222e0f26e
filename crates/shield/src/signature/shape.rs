//! The shapes of a request that a flood tends to share even when its values vary: the path
//! and query with their variable parts replaced by a class (`/item/{n}`, `q={id}`), and the
//! header names in the order they were sent. Rules read them as `http.request.uri.path_shape`,
//! `http.request.uri.query_shape` and `http.request.header_names`.
//!
//! Each is bounded in length (a hostile request cannot make one large) and written into a
//! caller's buffer.

use http::HeaderMap;

/// The longest shape written, in bytes; a longer one is cut at a character boundary.
pub const MAX_SHAPE_BYTES: usize = 256;
/// The longest list of header names written, in bytes.
pub const MAX_HEADER_NAMES_BYTES: usize = 512;
/// The most query parameters a query shape lists; more are summarised as `&…`.
const MAX_PARAMS: usize = 16;
/// The longest path segment or parameter name kept as sent.
const MAX_NAME_BYTES: usize = 48;

/// The path with each segment that looks like an identifier replaced by its class:
/// `{n}` (digits), `{hex}` (8 or more hex digits, with at least one digit), `{uuid}`, `{id}`
/// (6 or more letters, digits, `-` and `_` with both letters and digits), `{long}` (any segment
/// longer than 48 bytes). Other segments are kept: they are the site's own words.
///
/// ```
/// let mut shape = String::new();
/// shield::signature::shape::path_shape("/users/12345/avatar_3f2a9c81.png", &mut shape);
/// assert_eq!(shape, "/users/{n}/avatar_3f2a9c81.png");
/// ```
pub fn path_shape(path: &str, out: &mut String) {
    out.clear();
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        out.push_str(class(segment).unwrap_or(segment));
        if out.len() > MAX_SHAPE_BYTES {
            break;
        }
    }
    truncate(out, MAX_SHAPE_BYTES);
}

/// The query's parameter names in the order sent, each with its value's class: `name=` for
/// an empty value, `{n}`, `{hex}`, `{uuid}`, `{id}` or `{long}` as in [`path_shape`], `{w}`
/// for a word (letters only, up to 48 bytes), `{s}` for anything else. A name without `=` is
/// written alone. Empty for no query.
///
/// ```
/// let mut shape = String::new();
/// shield::signature::shape::query_shape("q=shoes&page=2&r=x8f3k2q9", &mut shape);
/// assert_eq!(shape, "q={w}&page={n}&r={id}");
/// ```
pub fn query_shape(query: &str, out: &mut String) {
    out.clear();
    for (index, pair) in query.split('&').enumerate() {
        if index == MAX_PARAMS {
            out.push_str("&…");
            break;
        }
        if index > 0 {
            out.push('&');
        }
        let (name, value) = match pair.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (pair, None),
        };
        if name.len() > MAX_NAME_BYTES {
            out.push_str("{long}");
        } else {
            out.push_str(name);
        }
        if let Some(value) = value {
            out.push('=');
            out.push_str(value_class(value));
        }
        if out.len() > MAX_SHAPE_BYTES {
            break;
        }
    }
    truncate(out, MAX_SHAPE_BYTES);
}

/// The request's header names, lowercase, in the order first sent, joined with `,`. A tool's
/// client library sends its own set in its own order, which rarely matches a browser's even
/// when the User-Agent does.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("user-agent", "curl/8.0".parse().unwrap());
/// headers.insert("accept", "*/*".parse().unwrap());
/// let mut names = String::new();
/// shield::signature::shape::header_names(&headers, &mut names);
/// assert_eq!(names, "user-agent,accept");
/// ```
pub fn header_names(headers: &HeaderMap, out: &mut String) {
    out.clear();
    for (index, name) in headers.keys().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(name.as_str());
        if out.len() > MAX_HEADER_NAMES_BYTES {
            break;
        }
    }
    truncate(out, MAX_HEADER_NAMES_BYTES);
}

/// The class of a path segment or value that looks like an identifier; `None` for one that
/// looks like a word of the site's own.
fn class(text: &str) -> Option<&'static str> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    if bytes.len() > MAX_NAME_BYTES {
        return Some("{long}");
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some("{n}");
    }
    if is_uuid(bytes) {
        return Some("{uuid}");
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if bytes.len() >= 8 && digits > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return Some("{hex}");
    }
    let token = bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    if token && bytes.len() >= 6 && digits > 0 && letters > 0 {
        return Some("{id}");
    }
    None
}

fn value_class(value: &str) -> &'static str {
    if value.is_empty() {
        return "";
    }
    if let Some(class) = class(value) {
        return class;
    }
    if value.bytes().all(|b| b.is_ascii_alphabetic()) {
        "{w}"
    } else {
        "{s}"
    }
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> String {
        let mut s = String::new();
        path_shape(p, &mut s);
        s
    }

    fn query(q: &str) -> String {
        let mut s = String::new();
        query_shape(q, &mut s);
        s
    }

    #[test]
    fn identifiers_in_paths_become_classes_and_words_stay() {
        assert_eq!(path("/"), "/");
        assert_eq!(path(""), "");
        assert_eq!(path("/blog/2024/hello-world"), "/blog/{n}/hello-world");
        assert_eq!(
            path("/o/5f2b9c1e-0d4a-4b8e-9f3a-2c6d7e8f9a0b/x"),
            "/o/{uuid}/x"
        );
        assert_eq!(path("/c/deadbeef01"), "/c/{hex}");
        // Letters only, even hex ones, are words.
        assert_eq!(path("/c/deadbeef"), "/c/deadbeef");
        assert_eq!(path("/s/a8Fk2pQ"), "/s/{id}");
        assert_eq!(path(&format!("/x/{}", "a".repeat(49))), "/x/{long}");
    }

    #[test]
    fn random_query_values_share_one_shape() {
        assert_eq!(query(""), "");
        assert_eq!(query("q=a8f3k2q9x"), query("q=zz91kdkd02"));
        assert_eq!(query("q=shoes&page=2"), "q={w}&page={n}");
        assert_eq!(query("flag&x="), "flag&x=");
        assert_eq!(query("q=hello%20world"), "q={s}");
    }

    #[test]
    fn shapes_are_bounded() {
        let many = (0..100)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>()
            .join("&");
        let shape = query(&many);
        assert!(shape.ends_with("&…"), "{shape}");
        assert!(shape.len() <= MAX_SHAPE_BYTES);
        let long = "/é".repeat(400);
        let shape = path(&long);
        assert!(shape.len() <= MAX_SHAPE_BYTES);
        let mut headers = HeaderMap::new();
        for i in 0..200 {
            headers.insert(
                http::HeaderName::from_bytes(format!("x-header-number-{i}").as_bytes()).unwrap(),
                http::HeaderValue::from_static("1"),
            );
        }
        let mut names = String::new();
        header_names(&headers, &mut names);
        assert!(names.len() <= MAX_HEADER_NAMES_BYTES);
        assert!(names.starts_with("x-header-number-0,x-header-number-1,"));
    }
}

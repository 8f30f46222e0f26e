//! What the origin's `/echo` route saw, as the test reads it back.

use serde_json::{Value, json};

/// The request as the origin received it: the JSON body of `/echo`.
///
/// ```
/// let echo = palisade_blackbox::Echo::parse(
///     br#"{"method":"GET","path":"/echo","version":"HTTP/1.1","headers":[["host","blog.example"]],"body_len":0,"trailers":[]}"#,
/// );
/// assert_eq!(echo.header("Host"), Some("blog.example"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    pub method: String,
    /// Path and query, as in the request line.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/1.0`, ...
    pub version: String,
    /// Every header line in order, names lower-cased, values as received (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// Trailer fields after a chunked body, in order, names lower-cased.
    pub trailers: Vec<(String, String)>,
}

impl Echo {
    /// Parses an `/echo` body; panics with the body when it is not one (a proxy error page, say).
    pub fn parse(body: &[u8]) -> Echo {
        let text = String::from_utf8_lossy(body);
        let value: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("not an /echo body ({e}): {text}"));
        let field = |name: &str| {
            value[name]
                .as_str()
                .unwrap_or_else(|| panic!("/echo body lacks `{name}`: {text}"))
                .to_owned()
        };
        let pairs = |name: &str| -> Vec<(String, String)> {
            value[name]
                .as_array()
                .unwrap_or_else(|| panic!("/echo body lacks `{name}`: {text}"))
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap_or_default().to_owned(),
                        pair[1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        Echo {
            method: field("method"),
            path: field("path"),
            version: field("version"),
            headers: pairs("headers"),
            body_len: value["body_len"].as_u64().unwrap_or_default(),
            trailers: pairs("trailers"),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of trailer field `name` (case-insensitive).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a header `name` arrived at all.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "version": self.version,
            "headers": self.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
            "body_len": self.body_len,
            "trailers": self.trailers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
        })
    }
}

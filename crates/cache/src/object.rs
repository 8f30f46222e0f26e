//! A stored response: its status, header, body, and what the policy needs to reuse it.

use crate::policy::{ResponseDirectives, Timing};
use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;

/// Fields the origin may use to tag a response for purging by tag (Fastly's `Surrogate-Key`,
/// space-separated; Cloudflare's `Cache-Tag`, comma-separated). Not passed on to clients.
pub const TAG_FIELDS: [&str; 2] = ["cache-tag", "surrogate-key"];

/// A response as the cache holds it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The response's status code.
    pub status: StatusCode,
    /// The stored header: hop-by-hop fields, tag fields and `private="..."` fields left out.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When it was received and how long it stays fresh (§4.2).
    pub timing: Timing,
    /// The directives this cache follows, parsed once: the stored header's Cache-Control, or
    /// the targeted field that replaced it (RFC 9213; `directives.targeted` names it).
    pub directives: ResponseDirectives,
    /// The keyed url (`https://host/path?query`), for purges.
    pub url: String,
    /// Purge tags from [`TAG_FIELDS`].
    pub tags: Box<[String]>,
    /// The purge log's position when the request that produced this response was sent: purges
    /// after it apply to this object.
    pub purge_mark: u64,
    /// The site it belongs to (purges are per site).
    pub site: Arc<str>,
    /// A soft purge marked it stale: it is revalidated before use.
    pub soft_purged: bool,
}

impl StoredObject {
    /// Builds a stored object from a response's parts, leaving out `strip` (qualified private),
    /// and taking the purge tags out of the header.
    pub fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        strip: &[HeaderName],
        body: Bytes,
        timing: Timing,
        url: String,
        purge_mark: u64,
    ) -> StoredObject {
        for name in strip {
            headers.remove(name);
        }
        let mut tags = Vec::new();
        for field in TAG_FIELDS {
            for value in headers.get_all(field) {
                let Ok(text) = value.to_str() else { continue };
                for tag in text
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                {
                    if !tags.iter().any(|t| t == tag) {
                        tags.push(tag.to_string());
                    }
                }
            }
            headers.remove(field);
        }
        let directives = ResponseDirectives::parse(&headers);
        StoredObject {
            status,
            headers,
            body,
            timing,
            directives,
            url,
            tags: tags.into_boxed_slice(),
            purge_mark,
            site: Arc::from(""),
            soft_purged: false,
        }
    }

    /// Refreshes the parsed directives after the stored header changed (a 304, §3.2), from the
    /// first of `targets` present and valid, else Cache-Control (RFC 9213 §2.2).
    pub fn reparse(&mut self, targets: &[&str]) {
        self.directives = crate::policy::targeted::response_directives(&self.headers, targets);
    }

    /// Bytes this object holds: body, fields, url and tags.
    pub fn stored_bytes(&self) -> u64 {
        let fields: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + 24).sum();
        (self.body.len() + fields + self.url.len() + tags + self.site.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn timing() -> Timing {
        Timing {
            initial_age: 0,
            response_time: 0,
            lifetime: 60,
            heuristic: false,
        }
    }

    #[test]
    fn tags_are_taken_out_of_the_header_and_private_fields_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert("cache-tag", HeaderValue::from_static("product-1, shelf"));
        h.insert("surrogate-key", HeaderValue::from_static("shelf  home"));
        h.insert("x-user", HeaderValue::from_static("alice"));
        h.insert(
            "cache-control",
            HeaderValue::from_static("max-age=60, private=\"x-user\""),
        );
        let object = StoredObject::new(
            StatusCode::OK,
            h,
            &[HeaderName::from_static("x-user")],
            Bytes::from_static(b"hello"),
            timing(),
            "https://a.example/".into(),
            0,
        );
        assert_eq!(&*object.tags, ["product-1", "shelf", "home"]);
        assert!(!object.headers.contains_key("cache-tag"));
        assert!(!object.headers.contains_key("surrogate-key"));
        assert!(!object.headers.contains_key("x-user"));
        assert!(object.stored_bytes() > 5);
    }
}

//! Validation (RFC 9111 §4.3) and updating stored header fields (§3.2).
//!
//! Three jobs: the conditional request a cache sends to revalidate (§4.3.1); whether a 304
//! applies to the stored response and how it refreshes it (§4.3.4, §3.2); and answering a
//! client's own conditional request from the cache (§4.3.2, RFC 9110 §13.2.2).

use super::freshness::{DateField, single_date};
use http::header::{
    self, CONTENT_LENGTH, DATE, ETAG, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue};

/// §4.3.1: the validators to send when revalidating a stored response: its entity tag as
/// If-None-Match and its Last-Modified as If-Modified-Since (RFC 9110 §13.1.3: a date not
/// taken from Last-Modified is not used).
pub fn conditional_fields(stored: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut fields = Vec::with_capacity(2);
    if let Some(etag) = stored.get(ETAG) {
        fields.push((IF_NONE_MATCH, etag.clone()));
    }
    if let Some(last_modified) = stored.get(LAST_MODIFIED) {
        fields.push((IF_MODIFIED_SINCE, last_modified.clone()));
    }
    fields
}

/// §4.3.4: does a 304 received for our conditional request describe the stored response?
///
/// A strong entity tag in the 304 must equal the stored one; a weak one must match it weakly;
/// without an entity tag, a Last-Modified must name the same time as the stored one (in
/// whichever HTTP-date format each is written). A 304 that carries no validator at all answers
/// the one stored response whose validators we sent, so it applies.
pub fn not_modified_applies(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    if let Some(new) = not_modified.get(ETAG) {
        let Some(old) = stored.get(ETAG) else {
            return false;
        };
        let (new_weak, new_tag) = split_etag(new.as_bytes());
        let (old_weak, old_tag) = split_etag(old.as_bytes());
        return new_tag == old_tag && (new_weak || !old_weak);
    }
    if let Some(new) = not_modified.get(LAST_MODIFIED) {
        return match (
            single_date(stored, LAST_MODIFIED),
            single_date(not_modified, LAST_MODIFIED),
        ) {
            (DateField::Valid(old), DateField::Valid(new)) => old == new,
            _ => stored.get(LAST_MODIFIED) == Some(new),
        };
    }
    true
}

/// §3.2: refreshes a stored response's header with the fields of a 304 (or a HEAD response):
/// each field the new response carries replaces the stored one, except Content-Length (which
/// describes the stored content, not the 304's) and hop-by-hop fields (never stored, §3.1).
pub fn update_stored_fields(stored: &mut HeaderMap, new: &HeaderMap) {
    for name in new.keys() {
        if *name == CONTENT_LENGTH || is_hop_by_hop(name) {
            continue;
        }
        stored.remove(name);
        for value in new.get_all(name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// The outcome of a client's preconditions evaluated against a stored response
/// (RFC 9110 §13.2.2, for GET and HEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No precondition, or all hold: send the stored response.
    Proceed,
    /// If-None-Match or If-Modified-Since say the client already has it: 304.
    NotModified,
    /// If-Match or If-Unmodified-Since failed: 412.
    Failed,
}

/// RFC 9110 §13.2.2's order: If-Match, If-Unmodified-Since (ignored when If-Match is present),
/// If-None-Match, If-Modified-Since (ignored when If-None-Match is present). `received` is when
/// the stored response arrived, the last resort §4.3.2 names for If-Modified-Since.
pub fn evaluate_preconditions(
    request: &HeaderMap,
    stored: &HeaderMap,
    received: u64,
) -> Precondition {
    let etag = stored.get(ETAG).map(|v| split_etag(v.as_bytes()));
    if request.contains_key(IF_MATCH) {
        // Strong comparison (§13.1.1): a weak stored tag never matches.
        let matched = list_matches(request, IF_MATCH, |candidate| match etag {
            Some((false, tag)) => {
                let (weak, c) = split_etag(candidate);
                !weak && c == tag
            }
            _ => false,
        });
        if !matched {
            return Precondition::Failed;
        }
    } else if let DateField::Valid(since) = single_date(request, IF_UNMODIFIED_SINCE)
        && let Some(modified) = modified_time(stored)
        && modified > since
    {
        return Precondition::Failed;
    }
    if request.contains_key(IF_NONE_MATCH) {
        // Weak comparison (§13.1.2).
        let matched = list_matches(request, IF_NONE_MATCH, |candidate| match etag {
            Some((_, tag)) => split_etag(candidate).1 == tag,
            None => false,
        });
        return if matched {
            Precondition::NotModified
        } else {
            Precondition::Proceed
        };
    }
    // §4.3.2: Last-Modified, else Date, else when the response was received.
    if let DateField::Valid(since) = single_date(request, IF_MODIFIED_SINCE) {
        let modified = modified_time(stored).unwrap_or(received);
        if modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Fields a 304 built from a stored response carries (RFC 9110 §15.4.5): those a 200 would
/// have sent among Cache-Control, Content-Location, Date, ETag, Expires and Vary.
pub fn not_modified_fields(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        DATE,
        ETAG,
        header::EXPIRES,
        header::VARY,
    ] {
        for value in stored.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn modified_time(stored: &HeaderMap) -> Option<u64> {
    match single_date(stored, LAST_MODIFIED) {
        DateField::Valid(t) => Some(t),
        _ => match single_date(stored, DATE) {
            DateField::Valid(t) => Some(t),
            _ => None,
        },
    }
}

/// `*` matches any stored representation; otherwise one of the listed tags must `matches`.
fn list_matches(request: &HeaderMap, name: HeaderName, matches: impl Fn(&[u8]) -> bool) -> bool {
    request.get_all(name).iter().any(|value| {
        value.as_bytes().split(|b| *b == b',').any(|member| {
            let member = member.trim_ascii();
            member == b"*" || (!member.is_empty() && matches(member))
        })
    })
}

/// An entity tag as (weak, opaque-tag with its quotes).
fn split_etag(value: &[u8]) -> (bool, &[u8]) {
    let value = value.trim_ascii();
    match value.strip_prefix(b"W/") {
        Some(tag) => (true, tag),
        None => (false, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in lines {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    const MAY_1: &str = "Mon, 01 May 2023 00:00:00 GMT";
    const JUN_1: &str = "Thu, 01 Jun 2023 00:00:00 GMT";
    const JUL_1: &str = "Sat, 01 Jul 2023 00:00:00 GMT";

    #[test]
    fn s4_3_1_revalidation_sends_the_stored_validators() {
        let stored = map(&[("etag", "\"v1\""), ("last-modified", JUN_1)]);
        let fields = conditional_fields(&stored);
        assert_eq!(
            fields,
            vec![
                (IF_NONE_MATCH, HeaderValue::from_static("\"v1\"")),
                (IF_MODIFIED_SINCE, HeaderValue::from_static(JUN_1)),
            ]
        );
        assert!(conditional_fields(&map(&[("date", JUN_1)])).is_empty());
    }

    #[test]
    fn s4_3_4_a_304_with_another_entity_tag_does_not_apply() {
        let stored = map(&[("etag", "\"v1\"")]);
        assert!(not_modified_applies(&stored, &map(&[("etag", "\"v1\"")])));
        assert!(!not_modified_applies(&stored, &map(&[("etag", "\"v2\"")])));
        // A weak 304 validator matches a strong stored one weakly; a strong one does not match
        // a weak stored tag.
        assert!(not_modified_applies(&stored, &map(&[("etag", "W/\"v1\"")])));
        let weak = map(&[("etag", "W/\"v1\"")]);
        assert!(!not_modified_applies(&weak, &map(&[("etag", "\"v1\"")])));
        assert!(not_modified_applies(&stored, &map(&[])));
        let dated = map(&[("last-modified", JUN_1)]);
        assert!(not_modified_applies(
            &dated,
            &map(&[("last-modified", JUN_1)])
        ));
        assert!(!not_modified_applies(
            &dated,
            &map(&[("last-modified", JUL_1)])
        ));
        // The same time in an obsolete format (RFC 9110 §5.6.7) is the same validator.
        assert!(not_modified_applies(
            &dated,
            &map(&[("last-modified", "Thu Jun  1 00:00:00 2023")])
        ));
    }

    #[test]
    fn s3_2_a_304_replaces_stored_fields_but_not_content_length() {
        let mut stored = map(&[
            ("cache-control", "max-age=10"),
            ("content-length", "1024"),
            ("x-version", "1"),
            ("x-kept", "yes"),
            ("set-cookie", "a=1"),
        ]);
        let not_modified = map(&[
            ("cache-control", "max-age=600"),
            ("content-length", "0"),
            ("x-version", "2"),
            ("connection", "close"),
        ]);
        update_stored_fields(&mut stored, &not_modified);
        assert_eq!(stored["cache-control"], "max-age=600");
        assert_eq!(stored["content-length"], "1024");
        assert_eq!(stored["x-version"], "2");
        assert_eq!(stored["x-kept"], "yes");
        assert!(!stored.contains_key("connection"));
    }

    #[test]
    fn s4_3_2_if_none_match_answers_304_from_the_cache() {
        let stored = map(&[("etag", "\"v1\""), ("last-modified", JUN_1)]);
        let r = |lines| evaluate_preconditions(&map(lines), &stored, 0);
        assert_eq!(
            r(&[("if-none-match", "\"v0\", \"v1\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            r(&[("if-none-match", "W/\"v1\"")]),
            Precondition::NotModified
        );
        assert_eq!(r(&[("if-none-match", "*")]), Precondition::NotModified);
        assert_eq!(r(&[("if-none-match", "\"v2\"")]), Precondition::Proceed);
        // If-None-Match present: If-Modified-Since is ignored.
        assert_eq!(
            r(&[("if-none-match", "\"v2\""), ("if-modified-since", JUL_1)]),
            Precondition::Proceed
        );
    }

    #[test]
    fn s4_3_2_if_modified_since_uses_last_modified_then_date_then_arrival() {
        let stored = map(&[("last-modified", JUN_1)]);
        let r = |stored: &HeaderMap, since, received| {
            evaluate_preconditions(&map(&[("if-modified-since", since)]), stored, received)
        };
        assert_eq!(r(&stored, JUL_1, 0), Precondition::NotModified);
        assert_eq!(r(&stored, JUN_1, 0), Precondition::NotModified);
        assert_eq!(r(&stored, MAY_1, 0), Precondition::Proceed);
        let dated = map(&[("date", JUN_1)]);
        assert_eq!(r(&dated, MAY_1, 0), Precondition::Proceed);
        assert_eq!(r(&dated, JUL_1, 0), Precondition::NotModified);
        let bare = map(&[]);
        let jun_1 = 1_685_577_600;
        assert_eq!(r(&bare, JUL_1, jun_1), Precondition::NotModified);
        assert_eq!(r(&bare, MAY_1, jun_1), Precondition::Proceed);
        // An invalid date is ignored.
        assert_eq!(r(&stored, "yesterday", 0), Precondition::Proceed);
    }

    #[test]
    fn rfc9110_13_2_2_if_match_and_if_unmodified_since_fail_with_412() {
        let stored = map(&[("etag", "\"v1\""), ("last-modified", JUN_1)]);
        let r = |lines| evaluate_preconditions(&map(lines), &stored, 0);
        assert_eq!(r(&[("if-match", "\"v1\"")]), Precondition::Proceed);
        assert_eq!(r(&[("if-match", "\"v2\"")]), Precondition::Failed);
        assert_eq!(r(&[("if-match", "*")]), Precondition::Proceed);
        assert_eq!(r(&[("if-unmodified-since", MAY_1)]), Precondition::Failed);
        assert_eq!(r(&[("if-unmodified-since", JUL_1)]), Precondition::Proceed);
        let weak = map(&[("etag", "W/\"v1\"")]);
        let r = evaluate_preconditions(&map(&[("if-match", "W/\"v1\"")]), &weak, 0);
        assert_eq!(
            r,
            Precondition::Failed,
            "If-Match uses the strong comparison"
        );
    }

    #[test]
    fn rfc9110_15_4_5_a_304_from_cache_carries_the_listed_fields_only() {
        let stored = map(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=60"),
            ("content-type", "text/html"),
            ("vary", "accept-encoding"),
        ]);
        let out = not_modified_fields(&stored);
        assert_eq!(out.len(), 3);
        assert!(!out.contains_key("content-type"));
    }
}

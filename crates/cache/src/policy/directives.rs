//! `Cache-Control` (RFC 9111 §5.2), read once per message into plain fields.
//!
//! Parsing rules, each from the RFC:
//! - directive names are case-insensitive tokens; arguments may be a token or a quoted-string
//!   and recipients accept both forms for every directive (§5.2);
//! - all field lines are one comma-separated list (RFC 9110 §5.3);
//! - a delta-seconds too large to represent counts as 2^31 (§1.2.2);
//! - a freshness directive that is invalid (`max-age=soon`) or repeated with different values
//!   makes the response stale rather than guessed at (§4.2.1: "caches are encouraged to
//!   consider responses that have invalid freshness information to be stale").
//!
//! Unknown directives are ignored (§5.2.3), except that their presence is remembered for
//! must-understand's sake by the caller's status check.

use http::HeaderMap;
use http::header::{CACHE_CONTROL, HeaderName, PRAGMA};

/// The value §1.2.2 tells a cache to use for a delta-seconds it cannot represent.
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// A delta-seconds argument as received: usable, or present but not trustworthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// A usable number of seconds (at most [`DELTA_SECONDS_MAX`]).
    Seconds(u64),
    /// Missing argument, not a number, or repeated with different values.
    Invalid,
}

impl Delta {
    /// The seconds, or `None` when the argument cannot be trusted.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Delta::Seconds(s) => Some(s),
            Delta::Invalid => None,
        }
    }
}

/// A directive that is either absent, present alone, or present with a list of field names
/// (`no-cache="Set-Cookie"`, `private="X-User"`): §5.2.2.4 and §5.2.2.7's qualified forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Qualified {
    /// Not sent.
    #[default]
    Absent,
    /// The unqualified form: applies to the whole response.
    All,
    /// The qualified form: applies only to these fields (lowercase names).
    Fields(Vec<HeaderName>),
}

impl Qualified {
    /// True when the directive was sent, qualified or not.
    pub fn is_present(&self) -> bool {
        !matches!(self, Qualified::Absent)
    }
}

/// A response's cache directives (§5.2.2, plus RFC 5861's two stale extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// §5.2.2.1: the response's freshness lifetime, for any cache.
    pub max_age: Option<Delta>,
    /// §5.2.2.10: the freshness lifetime for shared caches; wins over `max-age` here.
    pub s_maxage: Option<Delta>,
    /// §5.2.2.4: not to be used without validation (for the whole response, or only without
    /// the named fields).
    pub no_cache: Qualified,
    /// §5.2.2.5: not to be stored at all.
    pub no_store: bool,
    /// §5.2.2.7: for a private cache only (the whole response, or the named fields).
    pub private: Qualified,
    /// §5.2.2.9: may be stored even where it would not be (a request with Authorization).
    pub public: bool,
    /// §5.2.2.2: once stale, never served without validation.
    pub must_revalidate: bool,
    /// §5.2.2.8: `must-revalidate` for shared caches only.
    pub proxy_revalidate: bool,
    /// §5.2.2.3: store only if the status code's caching rules are understood.
    pub must_understand: bool,
    /// §5.2.2.6: no intermediary may change the content.
    pub no_transform: bool,
    /// RFC 8246: the body will not change while fresh; clients need not revalidate on reload.
    pub immutable: bool,
    /// RFC 5861 §3: how long after going stale the response may be served while it is
    /// revalidated in the background.
    pub stale_while_revalidate: Option<Delta>,
    /// RFC 5861 §4: how long after going stale the response may be served when the origin errs.
    pub stale_if_error: Option<Delta>,
    /// The targeted field (RFC 9213) these directives were read from, instead of Cache-Control;
    /// `Expires` is then ignored too (§2.2). See `policy::targeted`.
    pub targeted: Option<HeaderName>,
}

/// A request's cache directives (§5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// §5.2.1.1: the client wants a response no older than this.
    pub max_age: Option<Delta>,
    /// `Some(None)`: `max-stale` without a value, any staleness is acceptable (§5.2.1.2).
    pub max_stale: Option<Option<Delta>>,
    /// §5.2.1.3: the client wants a response that stays fresh at least this long.
    pub min_fresh: Option<Delta>,
    /// §5.2.1.4: the client wants a validated response, not a stored one as it is.
    pub no_cache: bool,
    /// §5.2.1.5: nothing of this request or its response may be stored.
    pub no_store: bool,
    /// §5.2.1.6: no intermediary may change the content.
    pub no_transform: bool,
    /// §5.2.1.7: answer from the cache or with 504, never from the origin.
    pub only_if_cached: bool,
    /// RFC 5861 §4: the client accepts a response stale by this much when the origin errs.
    pub stale_if_error: Option<Delta>,
}

impl ResponseDirectives {
    /// Reads the response's `Cache-Control`. (What this cache follows may be a targeted field
    /// instead: `policy::targeted::response_directives`.)
    pub fn parse(headers: &HeaderMap) -> ResponseDirectives {
        let mut d = ResponseDirectives::default();
        for_each_directive(headers, |name, arg| d.apply(name, arg));
        d
    }

    /// Adds one directive: `name` lowercase, `arg` its argument without quotes. The same
    /// meaning whichever field it came from (RFC 9213 §2.2).
    pub(super) fn apply(&mut self, name: &str, arg: Option<&str>) {
        match name {
            "max-age" => merge_delta(&mut self.max_age, arg),
            "s-maxage" => merge_delta(&mut self.s_maxage, arg),
            "no-cache" => merge_qualified(&mut self.no_cache, arg),
            "no-store" => self.no_store = true,
            "private" => merge_qualified(&mut self.private, arg),
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "no-transform" => self.no_transform = true,
            "immutable" => self.immutable = true,
            "stale-while-revalidate" => merge_delta(&mut self.stale_while_revalidate, arg),
            "stale-if-error" => merge_delta(&mut self.stale_if_error, arg),
            _ => {}
        }
    }
}

/// Response directives whose argument is delta-seconds (§1.2.2).
pub(super) fn takes_delta_seconds(name: &str) -> bool {
    matches!(
        name,
        "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
    )
}

impl RequestDirectives {
    /// Reads `Cache-Control`, and `Pragma: no-cache` when the request has no `Cache-Control`
    /// (HTTP/1.0 clients; RFC 9111 §5.4 deprecates Pragma, RFC 7234 §5.4 gave it this meaning,
    /// and treating it as no-cache can only make the cache more careful).
    pub fn parse(headers: &HeaderMap) -> RequestDirectives {
        let mut d = RequestDirectives::default();
        if !headers.contains_key(CACHE_CONTROL) {
            d.no_cache = headers.get_all(PRAGMA).iter().any(|v| {
                v.as_bytes()
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"no-cache"))
            });
            return d;
        }
        for_each_directive(headers, |name, arg| match name {
            "max-age" => merge_delta(&mut d.max_age, arg),
            "max-stale" => {
                d.max_stale = match (d.max_stale.take(), arg) {
                    // max-stale without a value accepts any staleness; keep the laxer reading
                    // only if every occurrence agrees.
                    (None, None) => Some(None),
                    (None, Some(a)) => Some(Some(parse_delta(Some(a)))),
                    (Some(previous), a) => {
                        let now = a.map(|a| parse_delta(Some(a)));
                        if previous == now {
                            Some(previous)
                        } else {
                            Some(Some(Delta::Invalid))
                        }
                    }
                }
            }
            "min-fresh" => merge_delta(&mut d.min_fresh, arg),
            "no-cache" => d.no_cache = true,
            "no-store" => d.no_store = true,
            "no-transform" => d.no_transform = true,
            "only-if-cached" => d.only_if_cached = true,
            "stale-if-error" => merge_delta(&mut d.stale_if_error, arg),
            _ => {}
        });
        d
    }
}

/// Calls `f(name, argument)` for every directive in every `Cache-Control` line; names are
/// lowercased, quoted arguments unquoted. Malformed members are skipped, not fatal.
fn for_each_directive(headers: &HeaderMap, mut f: impl FnMut(&str, Option<&str>)) {
    let mut name_buf = String::new();
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for member in split_list(text) {
            let (name, arg) = match member.split_once('=') {
                Some((n, a)) => (n.trim(), Some(unquote(a.trim()))),
                None => (member, None),
            };
            if name.is_empty() {
                continue;
            }
            name_buf.clear();
            name_buf.push_str(name);
            name_buf.make_ascii_lowercase();
            match &arg {
                Some(a) => f(&name_buf, Some(a.as_ref())),
                None => f(&name_buf, None),
            }
        }
    }
}

/// Splits a list on commas that are not inside a quoted-string; trims each member and skips
/// empty ones (RFC 9110 §5.6.1 lets recipients ignore empty elements).
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut in_quotes = false;
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            if i == bytes.len() {
                done = true;
                let member = text[start..].trim();
                if !member.is_empty() {
                    return Some(member);
                }
                break;
            }
            let b = bytes[i];
            i += 1;
            match b {
                b'\\' if in_quotes => i = (i + 1).min(bytes.len()),
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => {
                    let member = text[start..i - 1].trim();
                    start = i;
                    if !member.is_empty() {
                        return Some(member);
                    }
                }
                _ => {}
            }
        }
        None
    })
}

/// A quoted-string's content with its quoted-pairs resolved; a token as it is.
fn unquote(arg: &str) -> std::borrow::Cow<'_, str> {
    let Some(inner) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) else {
        return std::borrow::Cow::Borrowed(arg);
    };
    if !inner.contains('\\') {
        return std::borrow::Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn parse_delta(arg: Option<&str>) -> Delta {
    let Some(arg) = arg else {
        return Delta::Invalid;
    };
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Delta::Invalid;
    }
    // §1.2.2: anything beyond what we represent is 2^31.
    Delta::Seconds(
        arg.parse::<u64>()
            .map_or(DELTA_SECONDS_MAX, |v| v.min(DELTA_SECONDS_MAX)),
    )
}

fn merge_delta(slot: &mut Option<Delta>, arg: Option<&str>) {
    let value = parse_delta(arg);
    *slot = Some(match *slot {
        None => value,
        Some(previous) if previous == value => value,
        // §4.2.1: repeated directives with different values: consider the response stale.
        Some(_) => Delta::Invalid,
    });
}

fn merge_qualified(slot: &mut Qualified, arg: Option<&str>) {
    let fields: Option<Vec<HeaderName>> = arg.map(|list| {
        list.split(',')
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect()
    });
    *slot = match (std::mem::take(slot), fields) {
        // The unqualified form is the stricter one and wins over any list.
        (Qualified::All, _) | (_, None) => Qualified::All,
        (Qualified::Fields(mut have), Some(more)) => {
            have.extend(more);
            Qualified::Fields(have)
        }
        (Qualified::Absent, Some(fields)) if fields.is_empty() => Qualified::All,
        (Qualified::Absent, Some(fields)) => Qualified::Fields(fields),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn response(value: &'static str) -> ResponseDirectives {
        ResponseDirectives::parse(&headers(&[("cache-control", value)]))
    }

    #[test]
    fn s5_2_directive_names_are_case_insensitive_and_lines_combine() {
        let h = headers(&[
            ("cache-control", "Max-Age=60, PUBLIC"),
            ("cache-control", "must-revalidate"),
        ]);
        let d = ResponseDirectives::parse(&h);
        assert_eq!(d.max_age, Some(Delta::Seconds(60)));
        assert!(d.public && d.must_revalidate && !d.no_store);
    }

    #[test]
    fn s5_2_arguments_accept_token_and_quoted_string_forms() {
        assert_eq!(
            response("max-age=\"120\"").max_age,
            Some(Delta::Seconds(120))
        );
        assert_eq!(response("s-maxage=30").s_maxage, Some(Delta::Seconds(30)));
    }

    #[test]
    fn s1_2_2_delta_seconds_beyond_range_count_as_2_pow_31() {
        assert_eq!(
            response("max-age=99999999999999999999999").max_age,
            Some(Delta::Seconds(DELTA_SECONDS_MAX))
        );
    }

    #[test]
    fn s4_2_1_invalid_or_conflicting_freshness_is_marked_invalid() {
        assert_eq!(response("max-age=soon").max_age, Some(Delta::Invalid));
        assert_eq!(response("max-age=-5").max_age, Some(Delta::Invalid));
        assert_eq!(response("max-age").max_age, Some(Delta::Invalid));
        assert_eq!(
            response("max-age=60, max-age=120").max_age,
            Some(Delta::Invalid)
        );
        assert_eq!(
            response("max-age=60, max-age=60").max_age,
            Some(Delta::Seconds(60))
        );
    }

    #[test]
    fn s5_2_2_4_no_cache_with_and_without_field_names() {
        assert_eq!(response("no-cache").no_cache, Qualified::All);
        assert_eq!(
            response("no-cache=\"Set-Cookie, X-Token\"").no_cache,
            Qualified::Fields(vec![
                HeaderName::from_static("set-cookie"),
                HeaderName::from_static("x-token")
            ])
        );
        // Both forms together: the unqualified one is stricter.
        assert_eq!(
            response("no-cache=\"set-cookie\", no-cache").no_cache,
            Qualified::All
        );
        assert_eq!(response("no-cache=\"\"").no_cache, Qualified::All);
    }

    #[test]
    fn s5_2_2_7_private_with_field_names() {
        assert_eq!(
            response("private=\"x-user\"").private,
            Qualified::Fields(vec![HeaderName::from_static("x-user")])
        );
        assert_eq!(response("private").private, Qualified::All);
        assert_eq!(response("public").private, Qualified::Absent);
    }

    #[test]
    fn commas_inside_quoted_strings_do_not_split_directives() {
        let d = response("no-cache=\"a, b\", max-age=5, ,, public");
        assert_eq!(d.max_age, Some(Delta::Seconds(5)));
        assert!(d.public);
        assert!(d.no_cache.is_present());
    }

    #[test]
    fn rfc5861_stale_extensions_are_read() {
        let d = response("max-age=1, stale-while-revalidate=30, stale-if-error=600");
        assert_eq!(d.stale_while_revalidate, Some(Delta::Seconds(30)));
        assert_eq!(d.stale_if_error, Some(Delta::Seconds(600)));
    }

    #[test]
    fn s5_2_1_request_directives() {
        let h = headers(&[(
            "cache-control",
            "max-age=0, min-fresh=10, only-if-cached, no-store",
        )]);
        let d = RequestDirectives::parse(&h);
        assert_eq!(d.max_age, Some(Delta::Seconds(0)));
        assert_eq!(d.min_fresh, Some(Delta::Seconds(10)));
        assert!(d.only_if_cached && d.no_store && !d.no_cache);
        let any_stale = RequestDirectives::parse(&headers(&[("cache-control", "max-stale")]));
        assert_eq!(any_stale.max_stale, Some(None));
        let bounded = RequestDirectives::parse(&headers(&[("cache-control", "max-stale=5")]));
        assert_eq!(bounded.max_stale, Some(Some(Delta::Seconds(5))));
    }

    #[test]
    fn s5_4_pragma_no_cache_counts_only_without_cache_control() {
        let pragma_only = headers(&[("pragma", "no-cache")]);
        assert!(RequestDirectives::parse(&pragma_only).no_cache);
        let both = headers(&[("pragma", "no-cache"), ("cache-control", "max-age=60")]);
        assert!(!RequestDirectives::parse(&both).no_cache);
    }

    #[test]
    fn garbage_never_panics_and_unknown_directives_are_ignored() {
        for text in [
            "",
            ",",
            "=",
            "\"",
            "max-age=\"",
            "no-cache=\"unterminated",
            "x-ext=\"a\\\"b\", foo",
            "=5, ==, a=b=c",
        ] {
            let h = headers(&[("cache-control", text)]);
            let _ = ResponseDirectives::parse(&h);
            let _ = RequestDirectives::parse(&h);
        }
        let d = response("community=\"UCI\", max-age=10");
        assert_eq!(d.max_age, Some(Delta::Seconds(10)));
    }
}

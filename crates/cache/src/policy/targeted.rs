//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control`, and a site's own.
//!
//! A targeted field carries Cache-Control's directives, with Cache-Control's meaning, for the
//! caches it names (§2); `CDN-Cache-Control` names CDN caches (§3), which this edge is. Its
//! syntax is a structured field Dictionary (RFC 8941 §3.2), not Cache-Control's list: a value
//! that does not parse as one, or is empty, leaves the field ignored (§2.1).
//!
//! This cache's target list (§2.2) is the site's own field, when `targeted_field` names one
//! (e.g. `Palisade-Cache-Control`), then `CDN-Cache-Control`. The first of them present with a
//! valid, non-empty value decides how the response is stored and reused, and Cache-Control and
//! `Expires` are then ignored for that (they still reach the client as the origin wrote them,
//! for the caches after this one). Without one, Cache-Control decides, as before.

use super::directives::{ResponseDirectives, takes_delta_seconds};
use http::HeaderMap;
use http::header::HeaderName;
use std::borrow::Cow;

/// The targeted field for CDN caches (RFC 9213 §3), always on this cache's target list.
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// The directives this cache follows for a response: those of the first field in `targets`
/// (lowercase names, most specific first) with a valid, non-empty value, else Cache-Control's.
///
/// ```
/// use cache::policy::targeted::{CDN_CACHE_CONTROL, response_directives};
/// use cache::policy::Delta;
/// let mut h = http::HeaderMap::new();
/// h.insert("cache-control", "no-store".parse().unwrap());
/// h.insert("cdn-cache-control", "max-age=600".parse().unwrap());
/// let d = response_directives(&h, &[CDN_CACHE_CONTROL]);
/// assert_eq!((d.max_age, d.no_store), (Some(Delta::Seconds(600)), false));
/// ```
pub fn response_directives(headers: &HeaderMap, targets: &[&str]) -> ResponseDirectives {
    targets
        .iter()
        .find_map(|name| targeted(headers, name))
        .unwrap_or_else(|| ResponseDirectives::parse(headers))
}

/// The directives of the targeted field `name`, if it is present, valid and not empty.
fn targeted(headers: &HeaderMap, name: &str) -> Option<ResponseDirectives> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    // RFC 8941 §4.2: all lines are combined into one comma-separated value, then parsed.
    let mut value = Cow::Borrowed(first.as_bytes());
    for line in lines {
        let joined = value.to_mut();
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    let members = dictionary(&value)?;
    if members.is_empty() {
        return None;
    }
    let mut d = ResponseDirectives {
        targeted: Some(HeaderName::from_bytes(name.as_bytes()).ok()?),
        ..ResponseDirectives::default()
    };
    for (key, value) in &members {
        // §2.1: a directive without a value is Boolean true, a token or quoted-string argument
        // a Token, String or Integer; parameters are ignored. A value of the wrong type is
        // not consumed ("SHOULD NOT"): a lifetime that is not an Integer is invalid (so the
        // response is stale, as for Cache-Control, RFC 9111 §4.2.1), and any other directive
        // counts as present, the careful reading for no-store, no-cache and private.
        let text;
        let arg = match value {
            Value::Item(Bare::Boolean(true)) => None,
            Value::Item(Bare::Boolean(false)) => continue,
            Value::Item(Bare::Integer(n)) => {
                text = n.to_string();
                Some(text.as_str())
            }
            Value::Item(Bare::String(s)) if !takes_delta_seconds(key) => Some(s.as_ref()),
            Value::Item(Bare::Token(t)) if !takes_delta_seconds(key) => Some(*t),
            _ => Some(""),
        };
        d.apply(key, arg);
    }
    Some(d)
}

/// A Dictionary member's value (RFC 8941 §3.2): an Item or an Inner List.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    Item(Bare<'a>),
    InnerList,
}

/// A Bare Item (RFC 8941 §3.3), with what the directives need of it.
#[derive(Debug, PartialEq)]
enum Bare<'a> {
    Integer(i64),
    Decimal,
    String(Cow<'a, str>),
    Token(&'a str),
    ByteSequence,
    Boolean(bool),
}

/// Parses a Dictionary (RFC 8941 §4.2.2), keys in order of first appearance, a repeated key
/// taking the later value. `None` on any parsing error (the whole field is then ignored).
fn dictionary(input: &[u8]) -> Option<Vec<(&str, Value<'_>)>> {
    let mut p = Parser { input, at: 0 };
    p.skip_sp();
    let mut members: Vec<(&str, Value)> = Vec::new();
    while !p.done() {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            p.parameters()?;
            Value::Item(Bare::Boolean(true))
        };
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some(member) => member.1 = value,
            None => members.push((key, value)),
        }
        p.skip_ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip_ows();
        // A trailing comma.
        if p.done() {
            return None;
        }
    }
    Some(members)
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.at >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.at += 1;
        }
        found
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while self.eat(b' ') || self.eat(b'\t') {}
    }

    /// The bytes from `start` to here, which the callers have checked are ASCII.
    fn text_from(&self, start: usize) -> &'a str {
        std::str::from_utf8(&self.input[start..self.at]).unwrap_or("")
    }

    /// §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Option<&'a str> {
        let start = self.at;
        if !matches!(self.peek()?, b'a'..=b'z' | b'*') {
            return None;
        }
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = self.peek() {
            self.at += 1;
        }
        Some(self.text_from(start))
    }

    /// §4.2.1.1.
    fn item_or_inner_list(&mut self) -> Option<Value<'a>> {
        if self.peek() == Some(b'(') {
            self.inner_list()?;
            return Some(Value::InnerList);
        }
        let bare = self.bare_item()?;
        self.parameters()?;
        Some(Value::Item(bare))
    }

    /// §4.2.1.2.
    fn inner_list(&mut self) -> Option<()> {
        self.eat(b'(');
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek()?, b' ' | b')') {
                return None;
            }
        }
    }

    /// §4.2.3.2: parameters are read (they must parse) and ignored (RFC 9213 §2.1).
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// §4.2.3.1.
    fn bare_item(&mut self) -> Option<Bare<'a>> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'A'..=b'Z' | b'a'..=b'z' | b'*' => Some(self.token()),
            b':' => self.byte_sequence(),
            b'?' => self.boolean(),
            _ => None,
        }
    }

    /// §4.2.4: an Integer of at most 15 digits, or a Decimal of at most 12 integer and 3
    /// fractional digits.
    fn number(&mut self) -> Option<Bare<'a>> {
        let negative = self.eat(b'-');
        let start = self.at;
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        let mut dot = None;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' => {}
                b'.' if dot.is_none() => {
                    if self.at - start > 12 {
                        return None;
                    }
                    dot = Some(self.at);
                }
                _ => break,
            }
            self.at += 1;
            let len = self.at - start;
            if (dot.is_none() && len > 15) || (dot.is_some() && len > 16) {
                return None;
            }
        }
        match dot {
            None => {
                let n: i64 = self.text_from(start).parse().ok()?;
                Some(Bare::Integer(if negative { -n } else { n }))
            }
            Some(dot) => {
                let fraction = self.at - dot - 1;
                (1..=3).contains(&fraction).then_some(Bare::Decimal)
            }
        }
    }

    /// §4.2.5: printable ASCII between quotes, `\` escaping only `"` and `\`.
    fn string(&mut self) -> Option<Bare<'a>> {
        self.eat(b'"');
        let start = self.at;
        let mut unescaped: Option<String> = None;
        loop {
            let at = self.at;
            match self.next()? {
                b'\\' => {
                    let escaped = self.next()?;
                    if !matches!(escaped, b'"' | b'\\') {
                        return None;
                    }
                    let out = unescaped.get_or_insert_with(|| {
                        String::from_utf8_lossy(&self.input[start..at]).into_owned()
                    });
                    out.push(char::from(escaped));
                }
                b'"' => {
                    return Some(Bare::String(match unescaped {
                        Some(text) => Cow::Owned(text),
                        None => {
                            Cow::Borrowed(std::str::from_utf8(&self.input[start..at]).unwrap_or(""))
                        }
                    }));
                }
                c @ 0x20..=0x7e => {
                    if let Some(out) = &mut unescaped {
                        out.push(char::from(c));
                    }
                }
                _ => return None,
            }
        }
    }

    /// §4.2.6: `( ALPHA / "*" ) *( tchar / ":" / "/" )`; the caller checked the first byte.
    fn token(&mut self) -> Bare<'a> {
        let start = self.at;
        self.at += 1;
        while let Some(b) = self.peek() {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b);
            if !tchar {
                break;
            }
            self.at += 1;
        }
        Bare::Token(self.text_from(start))
    }

    /// §4.2.7: base64 between colons (not decoded: no directive takes one).
    fn byte_sequence(&mut self) -> Option<Bare<'a>> {
        self.eat(b':');
        loop {
            match self.next()? {
                b':' => return Some(Bare::ByteSequence),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => {}
                _ => return None,
            }
        }
    }

    /// §4.2.8: `?0` or `?1`.
    fn boolean(&mut self) -> Option<Bare<'a>> {
        self.eat(b'?');
        match self.next()? {
            b'1' => Some(Bare::Boolean(true)),
            b'0' => Some(Bare::Boolean(false)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::directives::{Delta, Qualified};
    use http::HeaderValue;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in lines {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    const OWN: &str = "palisade-cache-control";
    const TARGETS: [&str; 2] = [OWN, CDN_CACHE_CONTROL];

    fn decide(lines: &[(&'static str, &'static str)]) -> ResponseDirectives {
        response_directives(&headers(lines), &TARGETS)
    }

    #[test]
    fn rfc9213_2_2_a_targeted_field_replaces_cache_control() {
        let d = decide(&[
            ("cache-control", "no-store, max-age=5"),
            (
                "cdn-cache-control",
                "max-age=600, stale-while-revalidate=30",
            ),
        ]);
        assert_eq!(d.max_age, Some(Delta::Seconds(600)));
        assert_eq!(d.stale_while_revalidate, Some(Delta::Seconds(30)));
        assert!(!d.no_store, "nothing of Cache-Control is kept");
        assert_eq!(d.targeted, Some(HeaderName::from_static(CDN_CACHE_CONTROL)));
        let d = decide(&[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "no-store"),
        ]);
        assert!(d.no_store && d.max_age.is_none());
    }

    #[test]
    fn rfc9213_2_2_the_first_field_of_the_target_list_wins() {
        let d = decide(&[
            ("cdn-cache-control", "no-store"),
            ("palisade-cache-control", "max-age=60"),
        ]);
        assert_eq!(d.max_age, Some(Delta::Seconds(60)));
        assert!(!d.no_store);
        assert_eq!(d.targeted, Some(HeaderName::from_static(OWN)));
        // An invalid own field falls through to the next on the list, then to Cache-Control.
        let d = decide(&[
            ("cdn-cache-control", "max-age=30"),
            ("palisade-cache-control", "max-age=60,"),
        ]);
        assert_eq!(d.max_age, Some(Delta::Seconds(30)));
        let d = decide(&[
            ("cache-control", "max-age=10"),
            ("palisade-cache-control", "Max-Age=60"),
        ]);
        assert_eq!((d.max_age, d.targeted), (Some(Delta::Seconds(10)), None));
    }

    #[test]
    fn rfc9213_2_2_fields_not_on_the_target_list_change_nothing() {
        let h = headers(&[
            ("cache-control", "max-age=10"),
            ("palisade-cache-control", "no-store"),
        ]);
        let d = response_directives(&h, &[CDN_CACHE_CONTROL]);
        assert_eq!(d, ResponseDirectives::parse(&h));
    }

    #[test]
    fn rfc9213_2_1_an_empty_or_unparsable_field_is_ignored() {
        for bad in [
            "",
            "   ",
            "max-age=60,",
            "max-age=60,,public",
            "Max-Age=60",
            "max-age=60 public",
            "no-cache=\"unterminated",
            "no-cache=\"tab\there\"",
            "x=\"bad \\escape\"",
            "max-age=1234567890123456",
            "max-age=1.2345",
            "max-age=1.",
            "max-age=-",
            "x=?2",
            "x=:not base64!:",
            "x=(a b",
            "x=(a,b)",
            "x;=1",
            "x=@123",
            "7days",
            "max-age=60;",
        ] {
            let d = decide(&[("cache-control", "max-age=10"), ("cdn-cache-control", bad)]);
            assert_eq!(
                (d.max_age, d.targeted.is_some()),
                (Some(Delta::Seconds(10)), false),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc8941_dictionaries_parse_as_the_spec_says() {
        // Parameters, inner lists, byte sequences, decimals, booleans and OWS around commas
        // are all valid, and ignored where no directive takes them.
        let d = decide(&[(
            "cdn-cache-control",
            "max-age=60;a=1;b, public , x=(1 \"two\" three);p, y=:aGVsbG8=:,\tz=1.5, w=?1",
        )]);
        assert_eq!(d.max_age, Some(Delta::Seconds(60)));
        assert!(d.public);
        // Lines combine; a key repeated takes its later value (no conflict as in
        // Cache-Control, where repeated different values are invalid).
        let d = decide(&[
            ("cdn-cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=120"),
        ]);
        assert_eq!(d.max_age, Some(Delta::Seconds(120)));
    }

    #[test]
    fn rfc9213_2_1_values_of_the_wrong_type_are_not_consumed() {
        // A lifetime must be an Integer: a String, Decimal, Token, negative number or missing
        // value is an invalid lifetime (stale), not a guess.
        for bad in [
            "max-age=\"60\"",
            "max-age=60.0",
            "max-age=soon",
            "max-age=-1",
            "max-age",
        ] {
            let d = decide(&[("cdn-cache-control", bad)]);
            assert_eq!(d.max_age, Some(Delta::Invalid), "{bad:?}");
        }
        // no-cache and private take a String of field names, or a Token.
        let d = decide(&[(
            "cdn-cache-control",
            "no-cache=\"set-cookie, x-token\", private=x-user",
        )]);
        assert_eq!(
            d.no_cache,
            Qualified::Fields(vec![
                HeaderName::from_static("set-cookie"),
                HeaderName::from_static("x-token")
            ])
        );
        assert_eq!(
            d.private,
            Qualified::Fields(vec![HeaderName::from_static("x-user")])
        );
        // An explicit false is not the directive; any other odd value is (the careful side).
        let d = decide(&[(
            "cdn-cache-control",
            "no-store=?0, no-cache=1.5, private=(a)",
        )]);
        assert!(!d.no_store);
        assert_eq!((d.no_cache, d.private), (Qualified::All, Qualified::All));
    }

    #[test]
    fn rfc9213_3_1_examples() {
        // "CDN-Cache-Control: none" keeps CDNs' hands off Cache-Control: no-store.
        let d = decide(&[("cache-control", "no-store"), ("cdn-cache-control", "none")]);
        assert!(!d.no_store && d.targeted.is_some());
        let d = decide(&[
            ("cache-control", "max-age=60, s-maxage=120"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        assert_eq!((d.max_age, d.s_maxage), (Some(Delta::Seconds(600)), None));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "\"",
            "a=\"\\",
            "a=:",
            "a=(",
            "a=?",
            "a=-",
            "a=-.5",
            "a=1.2.3",
            "*",
            "a=*b:c/d",
            "a=\"\\\"\"",
        ] {
            let _ = decide(&[("cdn-cache-control", text)]);
        }
        let mut h = HeaderMap::new();
        h.insert(
            "cdn-cache-control",
            HeaderValue::from_bytes(b"max-age=\"\xff\"").unwrap(),
        );
        assert!(response_directives(&h, &TARGETS).targeted.is_none());
    }
}

//! The traits of one request that a signature may be made of, and how each is written as a
//! rule condition.
//!
//! A sampled request is read once into [`Traits`] (its values, for a rule's text) and reduced
//! to a [`Sample`] (one hash per trait, for counting): the windows keep only samples, so
//! their memory does not depend on what the requests carried.

use super::shape;
use crate::RequestFacts;
use http::Version;
use http::header::{ACCEPT, ACCEPT_LANGUAGE, USER_AGENT};
use std::fmt::Write as _;
use std::net::IpAddr;

/// One trait of a request. Declared from the most telling to the least: when two traits
/// single out the surge equally well, a signature takes the earlier one (a client's software
/// says more about who sends a request than the page it asks for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trait {
    /// The TLS ClientHello's JA4 fingerprint (`tls.ja4`).
    Ja4,
    /// The HTTP/2 client's opening SETTINGS (`http2.fingerprint`).
    H2,
    /// The User-Agent as sent, empty when absent (`http.user_agent`).
    UserAgent,
    /// The header names in order (`http.request.header_names`).
    HeaderNames,
    /// The query's shape (`http.request.uri.query_shape`).
    QueryShape,
    /// The path as sent (`http.request.uri.path`).
    Path,
    /// The path's shape (`http.request.uri.path_shape`).
    PathShape,
    /// The client's /24 (IPv4) or /48 (IPv6) (`ip.src in {…}`).
    Prefix,
    /// The method (`http.request.method`).
    Method,
    /// The HTTP version (`http.request.version`).
    Version,
}

/// How many traits there are.
pub const TRAITS: usize = 10;

impl Trait {
    /// Every trait, in declaration order.
    pub const ALL: [Trait; TRAITS] = [
        Trait::Ja4,
        Trait::H2,
        Trait::UserAgent,
        Trait::HeaderNames,
        Trait::QueryShape,
        Trait::Path,
        Trait::PathShape,
        Trait::Prefix,
        Trait::Method,
        Trait::Version,
    ];

    /// Its position in a [`Sample`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The trait's name in events and the API (`user_agent`, `query_shape`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Trait::Ja4 => "ja4",
            Trait::H2 => "h2",
            Trait::UserAgent => "user_agent",
            Trait::HeaderNames => "header_names",
            Trait::QueryShape => "query_shape",
            Trait::Path => "path",
            Trait::PathShape => "path_shape",
            Trait::Prefix => "prefix",
            Trait::Method => "method",
            Trait::Version => "version",
        }
    }

    /// Whether the trait tells about the client's software rather than what it asked for. A
    /// signature learned without a baseline to compare with must name one of these: "GET /"
    /// alone would be every visitor.
    pub fn is_client(self) -> bool {
        matches!(
            self,
            Trait::Ja4 | Trait::H2 | Trait::UserAgent | Trait::HeaderNames
        )
    }
}

/// A trait's hash when the request has no value for it (no TLS, no HTTP/2, a User-Agent that
/// is not text): such a trait cannot be part of a signature.
pub const ABSENT: u64 = 0;

/// One sampled request as the windows keep it: a hash per trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Indexed by [`Trait::index`]; [`ABSENT`] where the request had no usable value.
    pub hashes: [u64; TRAITS],
    /// The User-Agent names a browser, but the request lacks what every browser sends
    /// (`Accept` and `Accept-Language`): a tool in disguise.
    pub false_browser: bool,
}

/// One request's trait values, read once for a sample and kept only while it is looked at.
#[derive(Debug, Default)]
pub struct Traits {
    values: [Option<String>; TRAITS],
    false_browser: bool,
}

impl Traits {
    /// Reads `facts`'s traits (a few short strings; done only for sampled requests).
    pub fn read(facts: &RequestFacts<'_>) -> Traits {
        let mut values: [Option<String>; TRAITS] = Default::default();
        let mut set = |t: Trait, value: String| values[t.index()] = Some(value);
        if let Some(ja4) = &facts.connection.ja4 {
            set(Trait::Ja4, ja4.to_string());
        }
        if let Some(h2) = &facts.connection.h2 {
            set(Trait::H2, h2.to_string());
        }
        let user_agent = match facts.headers.get(USER_AGENT) {
            None => Some(""),
            Some(value) => value.to_str().ok(),
        };
        if let Some(user_agent) = user_agent {
            set(Trait::UserAgent, bounded(user_agent, 512));
        }
        let mut text = String::new();
        shape::header_names(facts.headers, &mut text);
        set(Trait::HeaderNames, std::mem::take(&mut text));
        shape::query_shape(facts.query, &mut text);
        set(Trait::QueryShape, std::mem::take(&mut text));
        set(Trait::Path, bounded(facts.path, shape::MAX_SHAPE_BYTES));
        shape::path_shape(facts.path, &mut text);
        set(Trait::PathShape, std::mem::take(&mut text));
        set(Trait::Prefix, prefix(facts.ip));
        set(Trait::Method, bounded(facts.method, 32));
        set(Trait::Version, version(facts.version).to_string());
        let false_browser = user_agent.is_some_and(claims_browser)
            && !(facts.headers.contains_key(ACCEPT) && facts.headers.contains_key(ACCEPT_LANGUAGE));
        Traits {
            values,
            false_browser,
        }
    }

    /// The value of trait `t`, if the request had one.
    pub fn value(&self, t: Trait) -> Option<&str> {
        self.values[t.index()].as_deref()
    }

    /// The sample the windows keep.
    pub fn sample(&self) -> Sample {
        let mut hashes = [ABSENT; TRAITS];
        for t in Trait::ALL {
            if let Some(value) = self.value(t) {
                hashes[t.index()] = hash(t, value);
            }
        }
        Sample {
            hashes,
            false_browser: self.false_browser,
        }
    }
}

/// The hash a sample keeps for `value` of trait `t`; never [`ABSENT`].
pub fn hash(t: Trait, value: &str) -> u64 {
    match xxhash_rust::xxh3::xxh3_64_with_seed(value.as_bytes(), t.index() as u64) {
        ABSENT => 1,
        h => h,
    }
}

/// The rule condition that holds for requests whose trait `t` is `value`.
pub fn condition(t: Trait, value: &str) -> String {
    let field = match t {
        Trait::Ja4 => "tls.ja4",
        Trait::H2 => "http2.fingerprint",
        Trait::UserAgent => "http.user_agent",
        Trait::HeaderNames => "http.request.header_names",
        Trait::QueryShape => "http.request.uri.query_shape",
        Trait::Path => "http.request.uri.path",
        Trait::PathShape => "http.request.uri.path_shape",
        Trait::Method => "http.request.method",
        Trait::Version => "http.request.version",
        Trait::Prefix => return format!("ip.src in {{{value}}}"),
    };
    let mut text = String::with_capacity(field.len() + value.len() + 8);
    let _ = write!(text, "{field} eq \"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
    text
}

/// The version as `http.request.version` reads it.
pub fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// The client's network: its /24 for IPv4, its /48 for IPv6, as CIDR text.
pub fn prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// Whether a User-Agent names one of the browsers (every current browser's starts with
/// `Mozilla/5.0` and names its engine).
fn claims_browser(user_agent: &str) -> bool {
    user_agent.starts_with("Mozilla/5.0")
        && ["Chrome/", "Firefox/", "Safari/", "Edg/"]
            .iter()
            .any(|engine| user_agent.contains(engine))
}

/// `text` cut to at most `max` bytes at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectionTraits, Expr};
    use http::HeaderMap;

    fn facts<'a>(headers: &'a HeaderMap, path: &'a str, query: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            ip: "203.0.113.77".parse().unwrap(),
            host: "example.com",
            method: "GET",
            path,
            query,
            headers,
            tls: false,
            version: Version::HTTP_11,
            connection: ConnectionTraits::none(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn every_condition_parses_and_matches_the_request_it_came_from() {
        let h = headers(&[("user-agent", "odd \"quoted\" \\ agent"), ("accept", "*/*")]);
        let f = facts(&h, "/search/12", "q=x8k2m9d1&lang=en");
        let traits = Traits::read(&f);
        for t in Trait::ALL {
            let Some(value) = traits.value(t) else {
                assert!(matches!(t, Trait::Ja4 | Trait::H2), "{t:?} missing");
                continue;
            };
            let text = condition(t, value);
            let expr = Expr::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(expr.eval(&f), "{text} does not match its own request");
            // And not another request that differs in that trait.
            let other_headers = headers(&[("user-agent", "other"), ("x-other", "1")]);
            let other = RequestFacts {
                ip: "198.51.100.1".parse().unwrap(),
                method: "POST",
                path: "/other",
                query: "z",
                headers: &other_headers,
                version: Version::HTTP_2,
                ..f
            };
            assert!(!expr.eval(&other), "{text} matches a request it should not");
        }
    }

    #[test]
    fn a_browser_name_without_browser_headers_is_a_false_browser() {
        let tool = headers(&[("user-agent", CHROME), ("accept", "*/*")]);
        assert!(Traits::read(&facts(&tool, "/", "")).sample().false_browser);
        let browser = headers(&[
            ("user-agent", CHROME),
            ("accept", "text/html"),
            ("accept-language", "en"),
        ]);
        assert!(
            !Traits::read(&facts(&browser, "/", ""))
                .sample()
                .false_browser
        );
        let honest_tool = headers(&[("user-agent", "curl/8.5.0")]);
        assert!(
            !Traits::read(&facts(&honest_tool, "/", ""))
                .sample()
                .false_browser
        );
    }

    #[test]
    fn samples_hash_values_per_trait_and_mark_absent_ones() {
        let h = headers(&[("user-agent", "a")]);
        let one = Traits::read(&facts(&h, "/item/1", "")).sample();
        let two = Traits::read(&facts(&h, "/item/2", "")).sample();
        assert_eq!(one.hashes[Trait::Ja4.index()], ABSENT);
        assert_eq!(
            one.hashes[Trait::UserAgent.index()],
            two.hashes[Trait::UserAgent.index()]
        );
        assert_ne!(
            one.hashes[Trait::Path.index()],
            two.hashes[Trait::Path.index()]
        );
        // The same shape for both.
        assert_eq!(
            one.hashes[Trait::PathShape.index()],
            two.hashes[Trait::PathShape.index()]
        );
        assert_eq!(
            prefix("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8:1::/48"
        );
    }
}

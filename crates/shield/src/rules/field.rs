//! The fields a rule may read: their names in the language and how each is read from a
//! request.

use crate::RequestFacts;
use crate::signature::{shape, traits};
use http::header::{COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderName};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone)]
pub(super) enum Field {
    /// `ip.src`
    ClientIp,
    /// `ssl`
    Tls,
    Text(TextField),
}

/// A field whose value is text. Read as bytes: header values need not be UTF-8, and every text
/// operator works on bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TextField {
    Host,
    Method,
    Path,
    Query,
    UserAgent,
    Cookie,
    /// `http.request.headers["name"]`, the name resolved once at parse time.
    Header(HeaderName),
    /// `http.request.uri.path_shape`: the path with identifiers replaced by their class.
    PathShape,
    /// `http.request.uri.query_shape`: the parameter names with their values' classes.
    QueryShape,
    /// `http.request.header_names`: the header names in the order sent.
    HeaderNames,
    /// `http.request.version`: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`.
    Version,
    /// `tls.ja4`: the TLS ClientHello's JA4 fingerprint; empty over plain HTTP.
    Ja4,
    /// `http2.fingerprint`: the HTTP/2 client's opening SETTINGS; empty on HTTP/1.x.
    H2Fingerprint,
}

/// What a name in an expression stands for.
pub(super) enum Named {
    Field(Field),
    /// `http.request.headers`, which needs `["name"]` after it.
    Headers,
}

pub(super) fn named(name: &str) -> Option<Named> {
    let text = |field| Some(Named::Field(Field::Text(field)));
    match name {
        "ip.src" => Some(Named::Field(Field::ClientIp)),
        "ssl" => Some(Named::Field(Field::Tls)),
        "http.host" => text(TextField::Host),
        "http.request.method" => text(TextField::Method),
        "http.request.uri.path" => text(TextField::Path),
        "http.request.uri.query" => text(TextField::Query),
        "http.user_agent" => text(TextField::UserAgent),
        "http.cookie" => text(TextField::Cookie),
        "http.request.headers" => Some(Named::Headers),
        "http.request.uri.path_shape" => text(TextField::PathShape),
        "http.request.uri.query_shape" => text(TextField::QueryShape),
        "http.request.header_names" => text(TextField::HeaderNames),
        "http.request.version" => text(TextField::Version),
        "tls.ja4" => text(TextField::Ja4),
        "http2.fingerprint" => text(TextField::H2Fingerprint),
        _ => None,
    }
}

impl TextField {
    /// The field's value in this request. Borrowed unless a header was sent several times.
    pub fn read<'a>(&self, facts: &RequestFacts<'a>) -> Cow<'a, [u8]> {
        match self {
            TextField::Host => Cow::Borrowed(facts.host.as_bytes()),
            TextField::Method => Cow::Borrowed(facts.method.as_bytes()),
            TextField::Path => Cow::Borrowed(facts.path.as_bytes()),
            TextField::Query => Cow::Borrowed(facts.query.as_bytes()),
            TextField::UserAgent => header(facts.headers, &USER_AGENT, b", "),
            // HTTP/2 and HTTP/3 may split the cookie header into one field per cookie; they
            // are put back together with "; " (RFC 9113 §8.2.3), not the ", " of a list.
            TextField::Cookie => header(facts.headers, &COOKIE, b"; "),
            TextField::Header(name) => header(facts.headers, name, b", "),
            TextField::PathShape => derived(|out| shape::path_shape(facts.path, out)),
            TextField::QueryShape => derived(|out| shape::query_shape(facts.query, out)),
            TextField::HeaderNames => derived(|out| shape::header_names(facts.headers, out)),
            TextField::Version => Cow::Borrowed(traits::version(facts.version).as_bytes()),
            TextField::Ja4 => connection(facts.connection.ja4.as_deref()),
            TextField::H2Fingerprint => connection(facts.connection.h2.as_deref()),
        }
    }
}

/// A field computed from the request (a shape): written afresh for each evaluation.
fn derived<'a>(write: impl FnOnce(&mut String)) -> Cow<'a, [u8]> {
    let mut out = String::new();
    write(&mut out);
    Cow::Owned(out.into_bytes())
}

/// A fingerprint of the connection, empty when there is none.
fn connection(value: Option<&str>) -> Cow<'_, [u8]> {
    Cow::Borrowed(value.unwrap_or("").as_bytes())
}

impl TextField {
    /// The name of the header the field reads (lowercase); `None` for a field that is not a
    /// header.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            TextField::UserAgent => Some(USER_AGENT.as_str()),
            TextField::Cookie => Some(COOKIE.as_str()),
            TextField::Header(name) => Some(name.as_str()),
            TextField::Host
            | TextField::Method
            | TextField::Path
            | TextField::Query
            | TextField::PathShape
            | TextField::QueryShape
            | TextField::HeaderNames
            | TextField::Version
            | TextField::Ja4
            | TextField::H2Fingerprint => None,
        }
    }
}

/// A header's values joined with `separator` (RFC 9110 §5.3: a list sent as several fields
/// means the same as one field joined with commas); empty when the header is absent.
fn header<'a>(headers: &'a HeaderMap, name: &HeaderName, separator: &[u8]) -> Cow<'a, [u8]> {
    let values = headers.get_all(name);
    let mut iter = values.iter();
    let Some(first) = iter.next() else {
        return Cow::Borrowed(b"");
    };
    if iter.next().is_none() {
        return Cow::Borrowed(first.as_bytes());
    }
    let length = values
        .iter()
        .map(|v| separator.len() + v.len())
        .sum::<usize>();
    let mut joined = Vec::with_capacity(length);
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            joined.extend_from_slice(separator);
        }
        joined.extend_from_slice(value.as_bytes());
    }
    Cow::Owned(joined)
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Field::ClientIp => "ip.src",
            Field::Tls => "ssl",
            Field::Text(TextField::Host) => "http.host",
            Field::Text(TextField::Method) => "http.request.method",
            Field::Text(TextField::Path) => "http.request.uri.path",
            Field::Text(TextField::Query) => "http.request.uri.query",
            Field::Text(TextField::UserAgent) => "http.user_agent",
            Field::Text(TextField::Cookie) => "http.cookie",
            Field::Text(TextField::PathShape) => "http.request.uri.path_shape",
            Field::Text(TextField::QueryShape) => "http.request.uri.query_shape",
            Field::Text(TextField::HeaderNames) => "http.request.header_names",
            Field::Text(TextField::Version) => "http.request.version",
            Field::Text(TextField::Ja4) => "tls.ja4",
            Field::Text(TextField::H2Fingerprint) => "http2.fingerprint",
            Field::Text(TextField::Header(name)) => {
                return write!(f, "http.request.headers[\"{name}\"]");
            }
        };
        f.write_str(name)
    }
}

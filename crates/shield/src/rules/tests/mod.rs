//! The rules language's tests, by what they check:
//!
//! | module | checks |
//! |---|---|
//! | `parse` | every field, operator, alias and literal; precedence; errors with their exact line and column |
//! | `semantics` | what fields read (absent and repeated headers, mapped addresses), integer and address comparisons |
//! | `allocation` | evaluation allocates nothing unless a header it reads was sent several times |
//! | `agreement` | property tests: evaluation agrees with a straightforward interpreter of a random expression; a rule set with each rule alone |
//! | `ruleset` | a rule set's answers for hand-written rules of the shapes it groups: text conditions per field, address conditions, absent headers, regexes with flags, more headers than slots, more rules than it triggers |
//! | `regexes` | property tests: regexes searched only when a value holds a literal they need match what each alone matches; the literals are needed |
//! | `fuzz` | seeded random and mutated text never panics, and errors point inside the text |

mod agreement;
mod allocation;
mod fuzz;
mod parse;
mod regexes;
mod ruleset;
mod semantics;

use super::{Expr, RuleError};
use crate::RequestFacts;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// An owned request that lends out [`RequestFacts`].
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub ip: IpAddr,
    pub host: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub tls: bool,
}

impl Request {
    /// A browser's GET of a page over TLS.
    pub fn typical() -> Request {
        Request {
            ip: "203.0.113.7".parse().expect("an address"),
            host: "shop.example.com".to_owned(),
            method: "GET".to_owned(),
            path: "/products/42".to_owned(),
            query: "color=red&size=m".to_owned(),
            headers: HeaderMap::new(),
            tls: true,
        }
        .with_header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        .with_header("accept", "text/html")
        .with_header("cookie", "session=abc123")
    }

    pub fn with_ip(mut self, ip: &str) -> Request {
        self.ip = ip.parse().expect("an address");
        self
    }

    /// Adds a value to the header, after any it has.
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        let value = HeaderValue::from_str(value).expect("a header value");
        self.headers.append(name, value);
        self
    }

    pub fn without_header(mut self, name: &str) -> Request {
        self.headers.remove(name);
        self
    }

    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            ip: self.ip,
            host: &self.host,
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            tls: self.tls,
            version: http::Version::HTTP_11,
            connection: crate::ConnectionTraits::none(),
        }
    }
}

/// Whether `text`, which must parse, matches `request`.
pub(super) fn matches(text: &str, request: &Request) -> bool {
    match Expr::parse(text) {
        Ok(expr) => expr.eval(&request.facts()),
        Err(error) => panic!("{text:?} should parse: {error}"),
    }
}

/// The error `text`, which must not parse, is refused with.
pub(super) fn refused(text: &str) -> RuleError {
    match Expr::parse(text) {
        Ok(expr) => panic!("{text:?} should be refused, parsed as {expr:?}"),
        Err(error) => error,
    }
}

/// Whether a line and column lie inside `text` or just past the end of one of its lines.
pub(super) fn lies_within(text: &str, line: usize, column: usize) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    line >= 1 && line <= lines.len() && column >= 1 && column <= lines[line - 1].chars().count() + 1
}

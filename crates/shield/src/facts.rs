//! What the shield may look at in a request.

use http::HeaderMap;
use std::net::IpAddr;

/// The request fields rules, lists and limits read. Borrowed from the request: building one
/// costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The client's address (the real client's, when the peer is a trusted proxy).
    pub ip: IpAddr,
    /// The routed host name: lowercase, without port.
    pub host: &'a str,
    /// The method as sent (`GET`, `POST`, ...).
    pub method: &'a str,
    /// The path as sent, without the query.
    pub path: &'a str,
    /// The query without its `?`; empty when there is none.
    pub query: &'a str,
    /// The request's header fields, as sent.
    pub headers: &'a HeaderMap,
    /// True when the request came over TLS.
    pub tls: bool,
    /// The request's HTTP version.
    pub version: http::Version,
    /// What the client's connection says about the software behind it.
    pub connection: &'a ConnectionTraits,
}

/// What a client's connection says about the software behind it, read once when the
/// connection opens: the same for every request on it. Attack signatures and rules read it
/// (`tls.ja4`); a tool that copies a browser's headers rarely copies its TLS and HTTP/2 stacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionTraits {
    /// The JA4 fingerprint of the TLS ClientHello; `None` over plain HTTP.
    pub ja4: Option<Box<str>>,
    /// The HTTP/2 client's opening SETTINGS and WINDOW_UPDATE, as text; `None` on HTTP/1.x.
    pub h2: Option<Box<str>>,
}

static NO_TRAITS: ConnectionTraits = ConnectionTraits {
    ja4: None,
    h2: None,
};

impl ConnectionTraits {
    /// A connection that said nothing: plain HTTP/1.x, or a request made up by a tool
    /// (`palisade explain`, tests).
    pub fn none() -> &'static ConnectionTraits {
        &NO_TRAITS
    }
}

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
}

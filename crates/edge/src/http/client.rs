//! What the edge knows about a client connection, and the client's address behind trusted
//! proxies.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use std::net::IpAddr;

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What is known about a client connection, computed once at accept so requests on it do not
/// format addresses again.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub peer: IpAddr,
    pub tls: bool,
    /// The peer is in `trusted_proxies`.
    pub trusted: bool,
    /// Fingerprints of the client's TLS and HTTP/2 stacks, for rules and attack signatures.
    pub traits: shield::ConnectionTraits,
    pub(crate) peer_text: HeaderValue,
    /// `for=...;proto=...` (host is added per request).
    pub(crate) forwarded_base: String,
}

impl ClientFacts {
    pub fn new(peer: IpAddr, tls: bool, trusted: bool) -> ClientFacts {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        let text = peer.to_string();
        let node = match peer {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        ClientFacts {
            peer,
            tls,
            trusted,
            traits: shield::ConnectionTraits::default(),
            peer_text: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_base: format!("for={node};proto={}", proto(tls)),
        }
    }
}

pub(crate) fn proto(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// The client's address for logs and limits: the peer, or when the peer is a trusted proxy, the
/// rightmost address in X-Forwarded-For that is not itself trusted.
pub fn real_client_ip(
    headers: &HeaderMap,
    client: &ClientFacts,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    if !client.trusted {
        return client.peer;
    }
    let mut found = client.peer;
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                found = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    found
}

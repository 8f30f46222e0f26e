//! What the edge knows about a client connection, and the client's address behind trusted
//! proxies.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use std::net::IpAddr;
use std::sync::OnceLock;

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What is known about a client connection, computed once at accept so requests on it do not
/// format addresses again.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub peer: IpAddr,
    pub tls: bool,
    /// The peer is in `trusted_proxies`.
    pub trusted: bool,
    /// Fingerprints of the client's TLS and HTTP/2 stacks, for rules and attack signatures;
    /// `&client.traits` reads as `&shield::ConnectionTraits`.
    pub traits: ClientTraits,
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
            traits: ClientTraits::default(),
            peer_text: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_base: format!("for={node};proto={}", proto(tls)),
        }
    }
}

/// A connection's fingerprints as they become known: JA4 when the TLS handshake ends (before
/// the connection is shared), the HTTP/2 fingerprint once the client's opening SETTINGS has
/// been read, which is before h2 is handed any request (`fingerprint::h2`), so every request
/// on the connection sees both. Reading them costs one atomic load.
#[derive(Debug, Clone, Default)]
pub struct ClientTraits {
    at_accept: shield::ConnectionTraits,
    /// Set once, with `at_accept`'s JA4 and the HTTP/2 fingerprint.
    with_h2: OnceLock<shield::ConnectionTraits>,
}

impl ClientTraits {
    /// The TLS fingerprint, known when the handshake ends.
    pub fn set_ja4(&mut self, ja4: Option<Box<str>>) {
        self.at_accept.ja4 = ja4;
    }

    /// The HTTP/2 fingerprint, once; a second call changes nothing.
    pub fn set_h2(&self, h2: Box<str>) {
        let _ = self.with_h2.set(shield::ConnectionTraits {
            ja4: self.at_accept.ja4.clone(),
            h2: Some(h2),
        });
    }
}

impl std::ops::Deref for ClientTraits {
    type Target = shield::ConnectionTraits;

    fn deref(&self) -> &shield::ConnectionTraits {
        self.with_h2.get().unwrap_or(&self.at_accept)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_h2_fingerprint_joins_the_ja4_and_is_set_once() {
        let mut client = ClientFacts::new("192.0.2.1".parse().unwrap(), true, false);
        assert_eq!(*client.traits, shield::ConnectionTraits::default());
        client
            .traits
            .set_ja4(Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()));
        let read = |client: &ClientFacts| -> shield::ConnectionTraits {
            let traits: &shield::ConnectionTraits = &client.traits;
            traits.clone()
        };
        assert_eq!(
            read(&client).ja4.as_deref(),
            Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
        );
        assert_eq!(read(&client).h2, None);
        client.traits.set_h2("1:65536|00".into());
        client.traits.set_h2("2:0|00".into());
        assert_eq!(
            read(&client),
            shield::ConnectionTraits {
                ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
                h2: Some("1:65536|00".into()),
            }
        );
    }
}

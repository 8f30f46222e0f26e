//! Addresses as they are written in the configuration: listeners (`"127.0.0.1:8080"`,
//! `"[::1]:8443"`) and networks (`"10.0.0.0/8"`), quoted back with the form expected when
//! they are not one (the standard library's and ipnet's messages name neither).

use ipnet::IpNet;
use std::net::SocketAddr;

/// Parses a listener address, saying what was written and what is expected when it is not
/// one (the standard library's "invalid socket address syntax" names neither).
pub(crate) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{} is not a listener address: write IP:PORT with a port from 0 to 65535, such as \
             \"127.0.0.1:8080\" or \"[::1]:8080\"",
            crate::shown(text)
        )
    })
}

/// A listener address in the file: deserialized one by one, so that a bad entry of a list is
/// refused with its own line and index (`server.listen[1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerAddress(pub SocketAddr);

impl<'de> serde::Deserialize<'de> for ListenerAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        parse_socket_addr(&text)
            .map(ListenerAddress)
            .map_err(serde::de::Error::custom)
    }
}

/// A network in the file (`trusted_proxies`, `metrics_open_to`): CIDR notation, as ipnet
/// reads it, one entry at a time so that a bad one is refused at its own index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network(pub IpNet);

impl<'de> serde::Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.trim().parse().map(Network).map_err(|_| {
            serde::de::Error::custom(format!(
                "{} is not a network: write a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\" \
                 (one address is \"192.0.2.1/32\")",
                crate::shown(&text)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_a_bad_one_is_quoted_with_the_expected_form() {
        assert_eq!(
            parse_socket_addr("127.0.0.1:8080"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        assert!(parse_socket_addr("[::1]:0").is_ok());
        let error = parse_socket_addr("127.0.0.1:99999").unwrap_err();
        assert!(
            error.starts_with("\"127.0.0.1:99999\" is not a listener address"),
            "{error}"
        );
        assert!(error.contains("IP:PORT"), "{error}");
    }
}

//! Origins: the servers a site's traffic is forwarded to.

use serde::Deserialize;
use std::fmt;

/// The scheme an origin is reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginScheme {
    /// Cleartext HTTP/1.1, the only scheme today.
    Http,
}

/// Where an origin listens: `http://host:port`. No path: the client's path is forwarded as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginUrl {
    /// How the origin is reached.
    pub scheme: OriginScheme,
    /// Host name or IP literal (IPv6 in brackets), lower-cased.
    pub host: String,
    /// TCP port; 80 when the URL names none.
    pub port: u16,
}

/// An origin URL the edge cannot forward to. Each message ends with how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginUrlError {
    /// `https://`: the edge speaks cleartext HTTP to origins only, for now.
    #[error(
        "origin {}: https origins are not supported yet; use http:// to an origin on a trusted network",
        crate::shown(.0)
    )]
    Https(String),
    /// No `http://` in front.
    #[error("origin {} has no http:// scheme; {HINT}", crate::shown(.0))]
    NoScheme(String),
    /// A path, user, query or fragment after the authority, or nothing at all.
    #[error(
        "origin {} must be scheme://host:port with no path, user or query; {HINT}",
        crate::shown(.0)
    )]
    NotJustAuthority(String),
    /// `[` without its `]`.
    #[error("origin {}: unclosed IPv6 bracket", crate::shown(.0))]
    UnclosedBracket(String),
    /// Brackets around something that is not an IPv6 address.
    #[error("origin {}: the brackets hold no IPv6 address", crate::shown(.0))]
    NotIpv6(String),
    /// A port that is not 1 to 65535.
    #[error("origin {}: invalid port; {HINT}", crate::shown(.0))]
    InvalidPort(String),
    /// A host no host name or IP literal can be.
    #[error("origin {}: invalid host; {HINT}", crate::shown(.0))]
    InvalidHost(String),
}

/// How an origin is written, closing most of [`OriginUrlError`]'s messages.
const HINT: &str = "write an origin like \"http://127.0.0.1:3000\"";

impl OriginUrl {
    /// Parses `http://host[:port][/]`.
    pub fn parse(text: &str) -> Result<OriginUrl, OriginUrlError> {
        let owned = || text.to_string();
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (OriginScheme::Http, rest)
        } else if text.starts_with("https://") {
            return Err(OriginUrlError::Https(owned()));
        } else {
            return Err(OriginUrlError::NoScheme(owned()));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(OriginUrlError::NotJustAuthority(owned()));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| OriginUrlError::UnclosedBracket(owned()))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(OriginUrlError::NotIpv6(owned()));
            }
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            None => 80,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| OriginUrlError::InvalidPort(owned()))?,
        };
        let host = crate::normalize_host(&host)
            .ok_or_else(|| OriginUrlError::InvalidHost(owned()))?
            .into_owned();
        Ok(OriginUrl { scheme, host, port })
    }

    /// `host:port`, as used in an absolute URI's authority.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// One origin of a site, with its share of traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Where the origin listens.
    pub url: OriginUrl,
    /// Relative share in weighted round robin; 1 to 100, default 1.
    pub weight: u32,
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Url(String),
            Table(Table),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            url: String,
            #[serde(default = "one")]
            weight: u32,
        }
        fn one() -> u32 {
            1
        }
        let (url, weight) = match Written::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "an origin is a URL string or a table { url = \"http://...\", weight = N }",
            )
        })? {
            Written::Url(url) => (url, 1),
            Written::Table(t) => (t.url, t.weight),
        };
        if !(1..=100).contains(&weight) {
            return Err(serde::de::Error::custom(format!(
                "origin weight {weight} is out of range 1..=100"
            )));
        }
        let url = OriginUrl::parse(&url).map_err(serde::de::Error::custom)?;
        Ok(Origin { url, weight })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_default_port() {
        let url = OriginUrl::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 3000));
        let url = OriginUrl::parse("http://Origin.Example/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("origin.example", 80));
        let url = OriginUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("[::1]", 8080));
    }

    #[test]
    fn refuses_paths_users_bad_ports_and_other_schemes() {
        for bad in [
            "127.0.0.1:3000",
            "http://",
            "http://a/b",
            "http://u@a",
            "http://a:0",
            "http://a:99999",
            "http://a:x",
            "ftp://a",
            "http://[zz]:1",
            "https://a",
        ] {
            assert!(OriginUrl::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Host names: the patterns a site claims and the normalisation applied to what clients send.

use std::borrow::Cow;
use std::fmt;

/// A name a site answers to.
///
/// - `Exact("blog.example")` matches that name only.
/// - `Wildcard(".blog.example")` (written `*.blog.example`) matches any name ending in
///   `.blog.example`, at any depth, like nginx's `*.` names; it does not match `blog.example`
///   itself. When several wildcards match, the longest suffix wins.
/// - `Any` (written `*`) is the catch-all: it matches every host no other site claims. It is
///   what `palisade serve --origin URL` uses, since one origin needs no host list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// The name itself, normalised (lower case, no trailing dot).
    Exact(String),
    /// The suffix including its leading dot.
    Wildcard(String),
    /// Every host no other site claims.
    Any,
}

/// A host pattern a site cannot claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// `blog.example:8080`: a site claims names, whatever port they arrive on.
    #[error("host {} must not carry a port", crate::shown(.0))]
    HasPort(String),
    /// Not a host name (bytes no name holds, empty, or a `*` other than a leading `*.`).
    #[error("{} is not a valid host name", crate::shown(.0))]
    Invalid(String),
}

impl HostPattern {
    /// Parses a pattern as written in the configuration.
    pub fn parse(text: &str) -> Result<HostPattern, HostError> {
        if text == "*" {
            return Ok(HostPattern::Any);
        }
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if name.contains(':') {
            return Err(HostError::HasPort(text.to_string()));
        }
        let normalized = normalize_host(name)
            .ok_or_else(|| HostError::Invalid(text.to_string()))?
            .into_owned();
        if normalized.is_empty() || normalized.contains('*') {
            return Err(HostError::Invalid(text.to_string()));
        }
        Ok(if wildcard {
            HostPattern::Wildcard(format!(".{normalized}"))
        } else {
            HostPattern::Exact(normalized)
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for HostPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HostPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Normalises a Host header or `:authority` value for routing: drops the port and one trailing
/// dot, lower-cases ASCII letters. Returns `None` when the value holds anything a host name
/// cannot (so hostile bytes never reach the router or the logs as a "host").
///
/// Borrows when the input is already in normal form, which is the common case.
pub fn normalize_host(raw: &str) -> Option<Cow<'_, str>> {
    let name = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: "[::1]" or "[::1]:8080".
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        let literal = &raw[..end + 2];
        if !literal[1..literal.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        literal
    } else {
        match raw.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return None,
            None => raw,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    if name.starts_with('[') {
        return Some(lowercase(name));
    }
    // One pass (every request is routed through here): allowed bytes, no empty label, and
    // whether anything needs lowercasing.
    let mut upper = false;
    let mut previous = b'.';
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            b'A'..=b'Z' => upper = true,
            b'.' if previous != b'.' => {}
            _ => return None,
        }
        previous = b;
    }
    // A dot still at the end is an empty last label ("a.." less the one root dot dropped above).
    if previous == b'.' {
        return None;
    }
    Some(if upper {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

fn lowercase(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_port_trailing_dot_and_case() {
        assert_eq!(
            normalize_host("Blog.Example:8080").as_deref(),
            Some("blog.example")
        );
        assert_eq!(
            normalize_host("blog.example.").as_deref(),
            Some("blog.example")
        );
        assert_eq!(normalize_host("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn normalize_borrows_when_already_normal() {
        assert!(matches!(
            normalize_host("blog.example"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn normalize_refuses_hostile_values() {
        for bad in [
            "",
            ":80",
            "a b",
            "evil.example/path",
            "a\0b",
            "host:port",
            "[::1",
            "[zz]",
            "..",
            ".a",
            "a..b",
            "a@b",
            "blog.example..",
            "BloleBl..:8080",
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn patterns_parse_exact_wildcard_and_any() {
        assert_eq!(
            HostPattern::parse("Blog.Example"),
            Ok(HostPattern::Exact("blog.example".into()))
        );
        assert_eq!(
            HostPattern::parse("*.blog.example"),
            Ok(HostPattern::Wildcard(".blog.example".into()))
        );
        assert_eq!(HostPattern::parse("*"), Ok(HostPattern::Any));
        assert!(HostPattern::parse("blog.example:80").is_err());
        assert!(HostPattern::parse("a.*.example").is_err());
        assert!(HostPattern::parse("**.example").is_err());
    }
}

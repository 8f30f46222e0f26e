//! Calculating cache keys with Vary (RFC 9111 §4.1).
//!
//! A stored response that carries `Vary` can only answer a request whose nominated fields match
//! those of the request that produced it. "Match" allows the normalisations §4.1 lists: adding or
//! removing whitespace, combining field lines, and normalising values with identical semantics.
//! Accept-Encoding gets the last one in full: a request's list is reduced to the set of codings
//! this edge knows (zstd, br, gzip) that it accepts, so the thousands of spellings browsers send
//! make a handful of variants, and that same reduced value is what the origin is asked for.

use crate::key::ObjectId;
use http::header::{ACCEPT_ENCODING, HeaderName, VARY};
use http::{HeaderMap, HeaderValue};
use xxhash_rust::xxh3::xxh3_128_with_seed;

/// The request fields a stored response varies on, in the order its `Vary` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarySpec {
    names: Box<[HeaderName]>,
}

impl VarySpec {
    /// Reads a response's `Vary`; `None` when it varies on nothing. (`Vary: *` is refused before
    /// storing, see `policy::storable`.)
    pub fn from_response(headers: &HeaderMap) -> Option<VarySpec> {
        let mut names: Vec<HeaderName> = Vec::new();
        for line in headers.get_all(VARY) {
            for member in line.as_bytes().split(|b| *b == b',') {
                let member = member.trim_ascii();
                if member.is_empty() || member == b"*" {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(member)
                    && !names.contains(&name)
                {
                    names.push(name);
                }
            }
        }
        (!names.is_empty()).then(|| VarySpec {
            names: names.into_boxed_slice(),
        })
    }

    /// The fields the response varies on (lowercase, each once, in the order received).
    pub fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// The id of the variant `request` selects under `primary`.
    pub fn variant_id(&self, primary: ObjectId, request: &HeaderMap) -> ObjectId {
        let mut text = Vec::with_capacity(64);
        for name in self.names.iter() {
            text.extend_from_slice(name.as_str().as_bytes());
            match normalized(name, request) {
                // An absent field only matches an absent field (§4.1).
                None => text.push(0),
                Some(value) => {
                    text.push(b':');
                    text.extend_from_slice(&value);
                }
            }
            text.push(b'\n');
        }
        // Seeded with the primary id so two URLs' variants never collide by construction.
        xxh3_128_with_seed(&text, (primary as u64) ^ ((primary >> 64) as u64))
    }
}

/// A field's value as compared for Vary: lines combined with "," and the whitespace around
/// members removed; Accept-Encoding reduced to [`accept_encoding`].
pub fn normalized(name: &HeaderName, request: &HeaderMap) -> Option<Vec<u8>> {
    if *name == ACCEPT_ENCODING {
        return request
            .contains_key(ACCEPT_ENCODING)
            .then(|| accept_encoding(request).as_bytes().to_vec());
    }
    let mut out = Vec::new();
    let mut any = false;
    for line in request.get_all(name) {
        any = true;
        for member in line.as_bytes().split(|b| *b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
        }
    }
    any.then_some(out)
}

/// A request's Accept-Encoding reduced to the known codings it accepts (q > 0), as one of eight
/// canonical values (`"zstd, br, gzip"`, ..., `""` for identity only). `*` accepts every coding
/// not listed with q=0 (RFC 9110 §12.5.3).
pub fn accept_encoding(request: &HeaderMap) -> &'static str {
    let mut accepted = [None::<bool>; 3];
    let mut star = None::<bool>;
    for line in request.get_all(ACCEPT_ENCODING) {
        for member in line.as_bytes().split(|b| *b == b',') {
            let mut parts = member.split(|b| *b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let ok = parts.all(|param| {
                let param = param.trim_ascii();
                match param
                    .strip_prefix(b"q=")
                    .or_else(|| param.strip_prefix(b"Q="))
                {
                    Some(q) => !is_zero_q(q.trim_ascii()),
                    None => true,
                }
            });
            if coding == b"*" {
                star = Some(ok);
                continue;
            }
            let known = match coding.to_ascii_lowercase().as_slice() {
                b"zstd" => 0,
                b"br" => 1,
                b"gzip" | b"x-gzip" => 2,
                _ => continue,
            };
            accepted[known] = Some(ok);
        }
    }
    let mut mask = 0usize;
    for (i, value) in accepted.iter().enumerate() {
        if value.or(star).unwrap_or(false) {
            mask |= 1 << i;
        }
    }
    CANONICAL[mask]
}

/// `CANONICAL[mask]`: bit 0 zstd, bit 1 br, bit 2 gzip.
const CANONICAL: [&str; 8] = [
    "",
    "zstd",
    "br",
    "zstd, br",
    "gzip",
    "zstd, gzip",
    "br, gzip",
    "zstd, br, gzip",
];

/// The Accept-Encoding to send to the origin for a request the cache may store: the same reduced
/// value the variant is keyed on, so what comes back is right for every request in the variant.
/// `None`: send no Accept-Encoding (identity only).
pub fn origin_accept_encoding(request: &HeaderMap) -> Option<HeaderValue> {
    let value = accept_encoding(request);
    (!value.is_empty()).then(|| HeaderValue::from_static(value))
}

fn is_zero_q(q: &[u8]) -> bool {
    // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    q.first() == Some(&b'0') && q[1..].iter().all(|b| *b == b'.' || *b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in lines {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn spec(vary: &'static str) -> VarySpec {
        VarySpec::from_response(&req(&[("vary", vary)])).unwrap()
    }

    #[test]
    fn s4_1_vary_names_are_read_once_each() {
        let s = spec("Accept-Language, accept-language ,Origin");
        assert_eq!(s.names().len(), 2);
        assert!(VarySpec::from_response(&req(&[])).is_none());
        assert!(VarySpec::from_response(&req(&[("vary", " , ")])).is_none());
    }

    #[test]
    fn s4_1_whitespace_and_line_splitting_do_not_matter() {
        let s = spec("accept-language");
        let a = req(&[("accept-language", "de, en;q=0.5")]);
        let b = req(&[("accept-language", "de"), ("accept-language", "en;q=0.5")]);
        let c = req(&[("accept-language", "de,en;q=0.5")]);
        assert_eq!(s.variant_id(1, &a), s.variant_id(1, &b));
        assert_eq!(s.variant_id(1, &a), s.variant_id(1, &c));
        let d = req(&[("accept-language", "fr")]);
        assert_ne!(s.variant_id(1, &a), s.variant_id(1, &d));
    }

    #[test]
    fn s4_1_an_absent_field_matches_only_an_absent_field() {
        let s = spec("origin");
        let absent = req(&[]);
        let empty = req(&[("origin", "")]);
        assert_ne!(s.variant_id(1, &absent), s.variant_id(1, &empty));
        assert_eq!(s.variant_id(1, &absent), s.variant_id(1, &req(&[])));
    }

    #[test]
    fn variants_of_different_urls_never_share_an_id() {
        let s = spec("origin");
        let r = req(&[("origin", "https://a.example")]);
        assert_ne!(s.variant_id(1, &r), s.variant_id(2, &r));
    }

    #[test]
    fn accept_encoding_reduces_to_known_codings() {
        let ae = |v: &'static str| accept_encoding(&req(&[("accept-encoding", v)]));
        assert_eq!(ae("gzip, deflate, br, zstd"), "zstd, br, gzip");
        assert_eq!(ae("gzip, deflate, br"), "br, gzip");
        assert_eq!(ae("br;q=1.0, gzip;q=0.8, *;q=0.1"), "zstd, br, gzip");
        assert_eq!(ae("gzip;q=0, br"), "br");
        assert_eq!(ae("identity"), "");
        assert_eq!(ae("*"), "zstd, br, gzip");
        assert_eq!(ae("*, gzip;q=0.000"), "zstd, br");
        assert_eq!(ae("GZIP"), "gzip");
        assert_eq!(accept_encoding(&req(&[])), "");
    }

    #[test]
    fn accept_encoding_spellings_share_a_variant() {
        let s = spec("Accept-Encoding");
        let chrome = req(&[("accept-encoding", "gzip, deflate, br, zstd")]);
        let firefox = req(&[("accept-encoding", "zstd, gzip, deflate, br")]);
        let curl = req(&[("accept-encoding", "gzip")]);
        assert_eq!(s.variant_id(7, &chrome), s.variant_id(7, &firefox));
        assert_ne!(s.variant_id(7, &chrome), s.variant_id(7, &curl));
        assert_eq!(origin_accept_encoding(&curl).unwrap(), "gzip");
        assert!(origin_accept_encoding(&req(&[])).is_none());
    }
}

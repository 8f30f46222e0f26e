//! What the disk tier stores as an object's metadata: a stored response without its body, or a
//! URL's Vary spec. A small binary format of our own (length-prefixed fields, a version byte);
//! the disk tier checksums it, so decoding only has to refuse what it does not understand.

use crate::object::StoredObject;
use crate::policy::{ResponseDirectives, Timing};
use crate::vary::VarySpec;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"PLSM";
/// 2 added, after the header fields, the targeted field the directives came from (RFC 9213;
/// empty for Cache-Control). Version 1 records are still read, as Cache-Control's.
const VERSION: u8 = 2;
const KIND_OBJECT: u8 = 0;
const KIND_VARY: u8 = 1;

/// A decoded metadata record.
pub enum Meta {
    /// A stored response, body not included. `run` is the process run that stored it (purge
    /// marks are only meaningful within one run).
    Object {
        /// The response, its body empty.
        object: Box<StoredObject>,
        /// The run that stored it.
        run: u64,
    },
    /// The Vary spec of a URL whose responses vary.
    Vary(VarySpec),
}

/// Encodes a stored response's metadata.
pub fn encode_object(object: &StoredObject, run: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + object.url.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(KIND_OBJECT);
    out.extend_from_slice(&object.status.as_u16().to_le_bytes());
    for n in [
        object.timing.initial_age,
        object.timing.response_time,
        object.timing.lifetime,
        object.purge_mark,
        run,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.push(u8::from(object.timing.heuristic) | (u8::from(object.soft_purged) << 1));
    put(&mut out, object.site.as_bytes());
    put(&mut out, object.url.as_bytes());
    out.extend_from_slice(&(object.tags.len() as u32).to_le_bytes());
    for tag in object.tags.iter() {
        put(&mut out, tag.as_bytes());
    }
    out.extend_from_slice(&(object.headers.len() as u32).to_le_bytes());
    for (name, value) in &object.headers {
        put(&mut out, name.as_str().as_bytes());
        put(&mut out, value.as_bytes());
    }
    let targeted = object.directives.targeted.as_ref();
    put(
        &mut out,
        targeted.map_or(&b""[..], |n| n.as_str().as_bytes()),
    );
    out
}

/// Encodes a URL's Vary spec.
pub fn encode_vary(spec: &VarySpec) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(KIND_VARY);
    out.extend_from_slice(&(spec.names().len() as u32).to_le_bytes());
    for name in spec.names() {
        put(&mut out, name.as_str().as_bytes());
    }
    out
}

/// Decodes a record; `None` for anything not written by this version.
pub fn decode(bytes: &[u8]) -> Option<Meta> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != MAGIC {
        return None;
    }
    let version = r.u8()?;
    if !(1..=VERSION).contains(&version) {
        return None;
    }
    match r.u8()? {
        KIND_VARY => {
            let n = r.u32()? as usize;
            let mut names = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                names.push(HeaderName::from_bytes(r.field()?).ok()?);
            }
            let mut headers = HeaderMap::new();
            let joined = names
                .iter()
                .map(HeaderName::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            headers.insert(http::header::VARY, HeaderValue::from_str(&joined).ok()?);
            Some(Meta::Vary(VarySpec::from_response(&headers)?))
        }
        KIND_OBJECT => {
            let status = StatusCode::from_u16(r.u16()?).ok()?;
            let (initial_age, response_time, lifetime, purge_mark, run) =
                (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            let flags = r.u8()?;
            let site: Arc<str> = std::str::from_utf8(r.field()?).ok()?.into();
            let url = std::str::from_utf8(r.field()?).ok()?.to_string();
            let n_tags = r.u32()? as usize;
            let mut tags = Vec::with_capacity(n_tags.min(256));
            for _ in 0..n_tags {
                tags.push(std::str::from_utf8(r.field()?).ok()?.to_string());
            }
            let n_headers = r.u32()? as usize;
            let mut headers = HeaderMap::with_capacity(n_headers.min(256));
            for _ in 0..n_headers {
                let name = HeaderName::from_bytes(r.field()?).ok()?;
                let value = HeaderValue::from_bytes(r.field()?).ok()?;
                headers.append(name, value);
            }
            let targeted = match version {
                1 => &b""[..],
                _ => r.field()?,
            };
            if r.at != bytes.len() {
                return None;
            }
            let targeted = std::str::from_utf8(targeted).ok()?;
            let directives = if targeted.is_empty() {
                ResponseDirectives::parse(&headers)
            } else {
                crate::policy::targeted::response_directives(&headers, &[targeted])
            };
            Some(Meta::Object {
                object: Box::new(StoredObject {
                    status,
                    headers,
                    body: Bytes::new(),
                    timing: Timing {
                        initial_age,
                        response_time,
                        lifetime,
                        heuristic: flags & 1 != 0,
                    },
                    directives,
                    url,
                    tags: tags.into_boxed_slice(),
                    purge_mark,
                    site,
                    soft_purged: flags & 2 != 0,
                }),
                run,
            })
        }
        _ => None,
    }
}

/// Length-prefixed bytes.
fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn field(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> StoredObject {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        headers.insert("cache-tag", HeaderValue::from_static("a, b"));
        let mut o = StoredObject::new(
            StatusCode::NOT_FOUND,
            headers,
            &[],
            Bytes::from_static(b"body is not in the metadata"),
            Timing {
                initial_age: 3,
                response_time: 1_700_000_000,
                lifetime: 60,
                heuristic: true,
            },
            "https://a.example/x?y".into(),
            42,
        );
        o.site = "blog".into();
        o.soft_purged = true;
        o
    }

    #[test]
    fn an_object_round_trips_without_its_body() {
        let o = object();
        let Some(Meta::Object { object: back, run }) = decode(&encode_object(&o, 7)) else {
            panic!("decodes")
        };
        assert_eq!(run, 7);
        assert_eq!(back.status, o.status);
        assert_eq!(back.headers, o.headers);
        assert_eq!(back.timing, o.timing);
        assert_eq!(
            (&*back.site, &back.url[..]),
            ("blog", "https://a.example/x?y")
        );
        assert_eq!(back.tags, o.tags);
        assert_eq!((back.purge_mark, back.soft_purged), (42, true));
        assert_eq!(back.directives, o.directives);
        assert!(back.body.is_empty());
    }

    #[test]
    fn directives_from_a_targeted_field_survive_a_round_trip() {
        let mut o = object();
        o.headers.insert(
            "palisade-cache-control",
            HeaderValue::from_static("no-cache"),
        );
        o.reparse(&["palisade-cache-control", "cdn-cache-control"]);
        assert!(o.directives.targeted.is_some() && o.directives.max_age.is_none());
        let Some(Meta::Object { object: back, .. }) = decode(&encode_object(&o, 7)) else {
            panic!("decodes")
        };
        assert_eq!(back.directives, o.directives);
    }

    #[test]
    fn a_version_1_record_is_read_as_cache_controls() {
        let mut bytes = encode_object(&object(), 7);
        // Version 1 had no targeted field name after the header fields (here empty: 4 bytes).
        bytes[4] = 1;
        bytes.truncate(bytes.len() - 4);
        let Some(Meta::Object { object: back, .. }) = decode(&bytes) else {
            panic!("decodes")
        };
        assert_eq!(back.directives, object().directives);
        assert_eq!(back.headers, object().headers);
    }

    #[test]
    fn a_vary_spec_round_trips() {
        let mut h = HeaderMap::new();
        h.insert(
            "vary",
            HeaderValue::from_static("accept-encoding, x-device"),
        );
        let spec = VarySpec::from_response(&h).unwrap();
        let Some(Meta::Vary(back)) = decode(&encode_vary(&spec)) else {
            panic!("decodes")
        };
        assert_eq!(back, spec);
    }

    #[test]
    fn truncated_or_foreign_records_are_refused_never_a_panic() {
        let bytes = encode_object(&object(), 1);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        assert!(decode(b"").is_none());
        assert!(decode(b"PLSM\x09\x00").is_none(), "another version");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none(), "trailing bytes");
    }
}

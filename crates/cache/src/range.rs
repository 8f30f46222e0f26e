//! Answering Range requests from a stored complete response (RFC 9110 §14).
//!
//! Only `bytes` ranges exist (§14.1). A Range the cache cannot read, or one asking for more
//! than [`MAX_RANGES`] pieces, is ignored and the whole response sent (§14.2: "a server MAY
//! ignore the Range header field"; many small or overlapping ranges are a known way to make a
//! server do a lot of work for little request, §17.15).

use crate::policy::date;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{ETAG, IF_RANGE, LAST_MODIFIED, RANGE};

/// More pieces than this in one request: the Range is ignored.
pub const MAX_RANGES: usize = 16;

/// What to send for a request's Range against a stored body of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No Range, an unreadable one, or If-Range did not match: the full 200.
    Full,
    /// 206 with these inclusive byte spans, in the order asked, overlapping ones merged.
    Partial(Vec<(u64, u64)>),
    /// 416: no span starts inside the body.
    Unsatisfiable,
}

/// Decides how to answer `request`'s Range for a stored response with `stored` fields and a
/// body of `len` bytes.
pub fn answer(request: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeAnswer {
    let Some(range) = request.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if !if_range_holds(request, stored) {
        return RangeAnswer::Full;
    }
    let Some(specs) = parse(range) else {
        return RangeAnswer::Full;
    };
    let mut spans: Vec<(u64, u64)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let span = match spec {
            Spec::From(first, last) => {
                if first >= len {
                    continue;
                }
                (first, last.unwrap_or(u64::MAX).min(len - 1))
            }
            Spec::Suffix(0) => continue,
            Spec::Suffix(n) => {
                if len == 0 {
                    continue;
                }
                (len.saturating_sub(n), len - 1)
            }
        };
        spans.push(span);
    }
    if spans.is_empty() {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial(merge(spans))
}

/// §13.1.5: If-Range with an entity tag needs a strong match; with a date, the stored
/// Last-Modified must be exactly that date (the same time, in whichever of the three HTTP-date
/// formats each is written, RFC 9110 §5.6.7). Absent: the Range applies.
fn if_range_holds(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(condition) = request.get(IF_RANGE) else {
        return true;
    };
    let condition = condition.as_bytes().trim_ascii();
    if condition.starts_with(b"\"") || condition.starts_with(b"W/") {
        return !condition.starts_with(b"W/")
            && stored
                .get(ETAG)
                .is_some_and(|etag| etag.as_bytes().trim_ascii() == condition);
    }
    let Some(last_modified) = stored.get(LAST_MODIFIED) else {
        return false;
    };
    let as_time = |bytes: &[u8]| std::str::from_utf8(bytes).ok().and_then(date::parse);
    match (as_time(condition), as_time(last_modified.as_bytes())) {
        (Some(asked), Some(modified)) => asked == modified,
        _ => last_modified.as_bytes().trim_ascii() == condition,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// `bytes=` followed by a list of specs; `None` if any spec is malformed or there are too many.
fn parse(value: &str) -> Option<Vec<Spec>> {
    let (unit, list) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for member in list.split(',') {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (first, last) = member.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let spec = if first.is_empty() {
            Spec::Suffix(number(last)?)
        } else {
            let first = number(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(number(last)?)
            };
            if last.is_some_and(|l| l < first) {
                return None;
            }
            Spec::From(first, last)
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A position beyond u64 is beyond any body: clamp rather than refuse.
    Some(text.parse().unwrap_or(u64::MAX))
}

/// Merges overlapping or adjacent spans (§14.3: a server MAY coalesce them), keeping the
/// order of first appearance otherwise.
fn merge(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    if spans.len() < 2 {
        return spans;
    }
    let mut sorted = spans.clone();
    sorted.sort_unstable();
    let overlapping = sorted
        .windows(2)
        .any(|w| w[1].0 <= w[0].1.saturating_add(1));
    if !overlapping {
        return spans;
    }
    spans.clear();
    for (first, last) in sorted {
        match spans.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => spans.push((first, last)),
        }
    }
    spans
}

/// A `multipart/byteranges` body (§14.6) for several spans of `body`.
pub fn multipart(
    body: &Bytes,
    spans: &[(u64, u64)],
    content_type: Option<&str>,
    boundary: &str,
) -> Bytes {
    let len = body.len() as u64;
    let mut out = BytesMut::new();
    for &(first, last) in spans {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(content_type) = content_type {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            format!("Content-Range: bytes {first}-{last}/{len}\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(&body[first as usize..=last as usize]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ask(range: &'static str, len: u64) -> RangeAnswer {
        let mut request = HeaderMap::new();
        request.insert(RANGE, HeaderValue::from_static(range));
        answer(&request, &HeaderMap::new(), len)
    }

    #[test]
    fn rfc9110_14_1_2_single_ranges() {
        assert_eq!(ask("bytes=0-9", 100), RangeAnswer::Partial(vec![(0, 9)]));
        assert_eq!(ask("bytes=90-", 100), RangeAnswer::Partial(vec![(90, 99)]));
        assert_eq!(ask("bytes=-10", 100), RangeAnswer::Partial(vec![(90, 99)]));
        assert_eq!(ask("bytes=-500", 100), RangeAnswer::Partial(vec![(0, 99)]));
        assert_eq!(
            ask("bytes=50-5000", 100),
            RangeAnswer::Partial(vec![(50, 99)])
        );
    }

    #[test]
    fn rfc9110_15_5_17_nothing_satisfiable_is_416() {
        assert_eq!(ask("bytes=100-", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(ask("bytes=0-", 0), RangeAnswer::Unsatisfiable);
    }

    #[test]
    fn rfc9110_14_2_unreadable_or_abusive_ranges_are_ignored() {
        for bad in [
            "bytes=5-1",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "0-10",
            "bytes=--1",
        ] {
            assert_eq!(ask(bad, 100), RangeAnswer::Full, "{bad}");
        }
        let many: &'static str = Box::leak(
            format!(
                "bytes={}",
                (0..17)
                    .map(|i| format!("{i}-{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into_boxed_str(),
        );
        assert_eq!(ask(many, 100), RangeAnswer::Full);
    }

    #[test]
    fn rfc9110_14_3_overlapping_ranges_are_merged() {
        assert_eq!(
            ask("bytes=0-9,5-19,40-49", 100),
            RangeAnswer::Partial(vec![(0, 19), (40, 49)])
        );
        assert_eq!(
            ask("bytes=40-49,0-9", 100),
            RangeAnswer::Partial(vec![(40, 49), (0, 9)]),
            "disjoint ranges keep the order asked"
        );
    }

    #[test]
    fn rfc9110_13_1_5_if_range_needs_a_strong_etag_or_the_exact_date() {
        let mut stored = HeaderMap::new();
        stored.insert(ETAG, HeaderValue::from_static("\"v1\""));
        stored.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Thu, 01 Jun 2023 00:00:00 GMT"),
        );
        let with = |if_range: &'static str| {
            let mut request = HeaderMap::new();
            request.insert(RANGE, HeaderValue::from_static("bytes=0-0"));
            request.insert(IF_RANGE, HeaderValue::from_static(if_range));
            answer(&request, &stored, 10)
        };
        assert_eq!(with("\"v1\""), RangeAnswer::Partial(vec![(0, 0)]));
        assert_eq!(with("\"v2\""), RangeAnswer::Full);
        assert_eq!(with("W/\"v1\""), RangeAnswer::Full);
        assert_eq!(
            with("Thu, 01 Jun 2023 00:00:00 GMT"),
            RangeAnswer::Partial(vec![(0, 0)])
        );
        assert_eq!(with("Fri, 02 Jun 2023 00:00:00 GMT"), RangeAnswer::Full);
        assert_eq!(
            with("Thu Jun  1 00:00:00 2023"),
            RangeAnswer::Partial(vec![(0, 0)]),
            "the same date in asctime format"
        );
    }

    #[test]
    fn rfc9110_14_6_multipart_byteranges_body() {
        let body = Bytes::from_static(b"0123456789");
        let out = multipart(&body, &[(0, 1), (8, 9)], Some("text/plain"), "XYZ");
        assert_eq!(
            &out[..],
            &b"--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n\
               --XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--XYZ--\r\n"[..]
        );
    }
}

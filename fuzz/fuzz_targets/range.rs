//! A client's Range against a stored body: never a panic; a partial answer has at most
//! `MAX_RANGES` spans, each inside the body.
//!
//! Input: 8 bytes of body length (little-endian, kept under 2^40), then the Range value.
#![no_main]

use cache::range::{MAX_RANGES, RangeAnswer, answer};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, range)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_le_bytes(*len) % (1 << 40);
    let Ok(range) = HeaderValue::from_bytes(range) else {
        return;
    };
    let mut request = HeaderMap::new();
    request.insert(header::RANGE, range);
    if let RangeAnswer::Partial(spans) = answer(&request, &HeaderMap::new(), len) {
        assert!(!spans.is_empty() && spans.len() <= MAX_RANGES, "{spans:?}");
        for (first, last) in spans {
            assert!(first <= last && last < len, "{first}-{last} of {len}");
        }
    }
});

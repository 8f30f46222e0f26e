//! Cache-Control (and Pragma), the targeted fields of RFC 9213 (structured-field
//! dictionaries), Age and the date fields as clients and origins send them: never a panic,
//! whatever the directives, quotes, commas, numbers and dates.
#![no_main]

use cache::policy::directives::{RequestDirectives, ResponseDirectives};
use cache::policy::{freshness, targeted};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Several fields, split where the input says: lists continue across repeated fields.
    for (i, part) in data.split(|&b| b == b'\n').enumerate() {
        let Ok(value) = HeaderValue::from_bytes(part) else {
            continue;
        };
        let name = match i % 8 {
            0 | 1 => header::CACHE_CONTROL,
            2 => header::PRAGMA,
            3 => header::HeaderName::from_static(targeted::CDN_CACHE_CONTROL),
            4 => header::HeaderName::from_static("palisade-cache-control"),
            5 => header::AGE,
            6 => header::EXPIRES,
            _ => header::LAST_MODIFIED,
        };
        headers.append(name, value);
    }
    let _ = ResponseDirectives::parse(&headers);
    let _ = RequestDirectives::parse(&headers);
    let directives = targeted::response_directives(
        &headers,
        &["palisade-cache-control", targeted::CDN_CACHE_CONTROL],
    );
    let now = 1_700_000_000;
    let timing = freshness::timing(StatusCode::OK, &headers, &directives, now, now, None);
    let _ = timing.is_fresh(now);
});

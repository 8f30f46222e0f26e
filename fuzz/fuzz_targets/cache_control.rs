//! Cache-Control (and Pragma, Expires) as clients and origins send them: never a panic,
//! whatever the directives, quotes, commas and numbers.
#![no_main]

use cache::policy::directives::{RequestDirectives, ResponseDirectives};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Several fields, split where the input says: lists continue across repeated fields.
    for (i, part) in data.split(|&b| b == b'\n').enumerate() {
        let Ok(value) = HeaderValue::from_bytes(part) else {
            continue;
        };
        let name = match i % 3 {
            0 | 1 => header::CACHE_CONTROL,
            _ => header::PRAGMA,
        };
        headers.append(name, value);
    }
    let _ = ResponseDirectives::parse(&headers);
    let _ = RequestDirectives::parse(&headers);
});

//! An origin's response bytes, read as the origin client reads them: never a panic, and the
//! same outcome (head, body, trailers, how it ended) however the bytes were cut into reads.
//!
//! Input: a flags byte (bit 0: the request was HEAD), a count byte (its low 3 bits: how many
//! cut sizes follow), the cut sizes, then the response.
#![no_main]

use edge::fuzzing::{OriginRead, ResponseFraming, read_origin_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, count, rest @ ..] = data else {
        return;
    };
    let cuts = usize::from(count & 7).min(rest.len());
    let (cuts, input) = rest.split_at(cuts);
    let head_request = flags & 1 == 1;
    let whole = read_origin_response(input, &[], head_request);
    let split = read_origin_response(input, cuts, head_request);
    assert_eq!(whole, split, "cuts {cuts:?}");
    check_body(&whole);
});

fn check_body(read: &OriginRead) {
    match (read.framing, read.end.as_str()) {
        (Some(ResponseFraming::Length(length)), "complete") => {
            assert_eq!(read.body.len() as u64, length);
        }
        (Some(ResponseFraming::Empty), end) => {
            assert_eq!(end, "complete");
            assert!(read.body.is_empty());
        }
        _ => {}
    }
}

//! A client's HTTP/1.1 request through the edge's request rewriting (the differential shape of
//! the request-smuggling test in `tests/tests/edge_smuggling_differential.rs`): whatever the
//! client sends, if the edge accepts it, the origin's bytes parse as exactly one request with
//! the method, target and body the edge accepted, with one Host and unambiguous framing, and
//! nothing after it.
//!
//! Input: the bytes as the client sent them (a head, then body bytes).
#![no_main]

use edge::fuzzing::forward_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = forward_request(data) {
        panic!("{e}");
    }
});

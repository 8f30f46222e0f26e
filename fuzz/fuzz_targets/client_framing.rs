//! A client's bytes through the connection's framing tracker (the request-smuggling check):
//! never a panic, and the same verdict (which request was ambiguous, how many heads, whether
//! it ends between messages) however the bytes were cut into reads.
//!
//! One exception: a head that outgrows the limit before its end arrives makes the tracker stop
//! looking (hyper refuses such a head with 431 and closes), while the same head arriving whole
//! in one read is still judged. Either way the connection is refused; the verdicts are compared
//! only when the tracker did not stop on a head's size.
//!
//! Input: a count byte (its low 3 bits: how many cut sizes follow), the cut sizes, then the
//! bytes as the client sent them.
#![no_main]

use edge::fuzzing::track_client_framing;
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer reaches the head-size limit.
const MAX_HEAD: usize = 512;

fuzz_target!(|data: &[u8]| {
    let [count, rest @ ..] = data else {
        return;
    };
    let cuts = usize::from(count & 7).min(rest.len());
    let (cuts, input) = rest.split_at(cuts);
    let whole = track_client_framing(input, &[], MAX_HEAD);
    let split = track_client_framing(input, cuts, MAX_HEAD);
    if !split.gave_up_on_head_size {
        assert_eq!(whole, split, "cuts {cuts:?}");
    }
});

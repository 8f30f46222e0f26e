//! An HTTP/2 client's first bytes (the preface, then frames) through the SETTINGS fingerprint
//! reader: never a panic, the same outcome however the bytes were cut into reads, and a
//! fingerprint never longer than `MAX_H2_FINGERPRINT_LEN`.
//!
//! Input: a count byte (its low 3 bits: how many cut sizes follow), the cut sizes, then the
//! bytes after the 24-byte client preface (which the target puts in front).
#![no_main]

use edge::fingerprint::MAX_H2_FINGERPRINT_LEN;
use edge::fuzzing::read_h2_opening;
use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let [count, rest @ ..] = data else {
        return;
    };
    let cuts = usize::from(count & 7).min(rest.len());
    let (cuts, frames) = rest.split_at(cuts);
    let input = [PREFACE, frames].concat();
    let whole = read_h2_opening(&input, &[]);
    let split = read_h2_opening(&input, cuts);
    assert_eq!(whole, split, "cuts {cuts:?}");
    if let Some(fingerprint) = &whole.fingerprint {
        assert!(fingerprint.len() <= MAX_H2_FINGERPRINT_LEN, "{fingerprint:?}");
    }
});

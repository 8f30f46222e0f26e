//! A TLS client's first bytes through the ClientHello capture and the JA4 parser: never a
//! panic, the same outcome (complete or abandoned, and the same JA4) however the bytes were cut
//! into reads, and a JA4 that is always 36 ASCII characters.
//!
//! Input: a count byte (its low 3 bits: how many cut sizes follow), the cut sizes, then the
//! bytes as the client sent them (TLS records).
#![no_main]

use edge::fingerprint::JA4_LEN;
use edge::fuzzing::read_client_hello;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [count, rest @ ..] = data else {
        return;
    };
    let cuts = usize::from(count & 7).min(rest.len());
    let (cuts, input) = rest.split_at(cuts);
    let whole = read_client_hello(input, &[]);
    let split = read_client_hello(input, cuts);
    assert_eq!(whole, split, "cuts {cuts:?}");
    if let Some(ja4) = &whole.fingerprint {
        assert!(ja4.len() == JA4_LEN && ja4.is_ascii(), "{ja4:?}");
    }
});

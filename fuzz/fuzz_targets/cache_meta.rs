//! An object's metadata as the disk tier reads it back (a file a crash, a full disk or another
//! program may have damaged): never a panic; what decodes encodes to bytes that decode to the
//! same record.
#![no_main]

use cache::meta::{Meta, decode, encode_object, encode_vary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(meta) = decode(data) else {
        return;
    };
    let encoded = encode(&meta);
    let again = decode(&encoded).expect("a record this version wrote decodes");
    assert_eq!(encode(&again), encoded);
});

fn encode(meta: &Meta) -> Vec<u8> {
    match meta {
        Meta::Object { object, run } => encode_object(object, *run),
        Meta::Vary(spec) => encode_vary(spec),
    }
}

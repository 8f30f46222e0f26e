//! A configuration file's text: a broken file is an error that names what is wrong, never a
//! panic (the edge keeps running on its previous config when a reload fails).
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_toml_str("fuzz.toml", text) {
        assert!(!e.to_string().is_empty());
    }
});

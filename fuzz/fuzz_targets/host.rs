//! Host values as clients send them (Host, `:authority`, SNI) and host patterns as operators
//! write them: never a panic; a normalised host is stable (normalising it again changes
//! nothing) and holds only what a host name can; a pattern that parses prints as it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::{HostPattern, normalize_host};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(host) = normalize_host(raw) {
        assert!(!host.is_empty() && host.len() <= 253, "{host:?}");
        assert!(
            host.bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
            "{host:?}"
        );
        assert_eq!(normalize_host(&host).as_deref(), Some(&*host), "{raw:?}");
    }
    // A pattern prints as the configuration would write it, and reads back the same.
    if let Ok(pattern) = HostPattern::parse(raw) {
        assert_eq!(
            HostPattern::parse(&pattern.to_string()),
            Ok(pattern),
            "{raw:?}"
        );
    }
});

//! Purging a site with a million stored objects, and the memory a small stored object costs.
//!
//! `cargo bench -p cache --bench purge` (release build). Prints: the time to store N small
//! objects, the resident memory they take per object, the time a purge takes to return (the
//! issue's target: under 100 ms for a million objects), a lookup right after it, and the
//! background pass that applies it to every object.
//!
//! Peers: Varnish's bans are the same design (a purge is O(1), a "ban lurker" applies it later);
//! nginx open source has no purge (the commercial `proxy_cache_purge` walks the cache files for
//! a wildcard purge).

use bytes::Bytes;
use cache::policy::Timing;
use cache::{Cache, CacheKey, Lookup, Purge, PurgeScope, StoredObject};
use http::{HeaderMap, HeaderValue, StatusCode};
use model::SiteCache;
use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("PURGE_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let settings = SiteCache::default();
    let cache = Cache::new(4 << 30);
    let none = HeaderMap::new();
    let key = |i: usize| {
        CacheKey::new(
            "big",
            &settings,
            "https",
            "big.example",
            &format!("/objects/{i}"),
            &none,
        )
    };
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    let body = Bytes::from_static(&[b'x'; 100]);

    let before = rss_kib();
    let started = Instant::now();
    for i in 0..n {
        let k = key(i);
        let mut object = StoredObject::new(
            StatusCode::OK,
            headers.clone(),
            &[],
            body.clone(),
            Timing {
                initial_age: 0,
                response_time: 0,
                lifetime: 3600,
                heuristic: false,
            },
            k.url.clone(),
            cache.purge_mark(),
        );
        object.site = "big".into();
        cache.store(&k, &none, object);
    }
    let stored = started.elapsed();
    let after = rss_kib();
    println!(
        "stored {n} objects (100-byte bodies, 2 fields) in {:.2} s; resident memory {:.0} bytes per object (body shared: the state, key and fields)",
        stored.as_secs_f64(),
        (after.saturating_sub(before) * 1024) as f64 / n as f64
    );
    assert_eq!(cache.memory().len(), n, "every object fits the memory tier");

    let started = Instant::now();
    cache.purge(Purge {
        site: "big".into(),
        scope: PurgeScope::Everything,
        soft: false,
    });
    let purge_took = started.elapsed();
    println!(
        "purge everything of a site with {n} objects returned in {:.3} ms (target: under 100 ms)",
        purge_took.as_secs_f64() * 1000.0
    );

    let started = Instant::now();
    let gone = matches!(cache.lookup(&key(12345), &none, 0), Lookup::Missing { .. });
    println!(
        "a lookup right after it: {} in {:.1} µs",
        if gone { "purged" } else { "STILL THERE" },
        started.elapsed().as_secs_f64() * 1e6
    );

    let started = Instant::now();
    let touched = cache.apply_purges();
    println!(
        "background pass: {touched} objects removed in {:.2} s (the purge already applied to every request)",
        started.elapsed().as_secs_f64()
    );
}

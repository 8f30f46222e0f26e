//! What the whole shield costs one request, as the edge calls it: `SiteGuard::check_cleared`
//! with a site's lists, rules and limits, for counting instructions under callgrind.
//!
//! `GUARD_BENCH_CONFIG=<palisade.toml> cargo bench -p shield --bench guard` (release build)
//! checks `GUARD_BENCH_ITERATIONS` (default 100,000) requests against the config's site
//! `GUARD_BENCH_SITE` (default `hit`): `bench/shield.sh`'s `GET /hit` with a Host header and
//! nothing else, from 127.0.0.1 over plain HTTP. The config to use is the shielded one
//! `BENCH_KEEP_TMP=1 bench/shield.sh` leaves in its temp dir (`on/palisade.toml`: 100 rules,
//! 100,000 denied prefixes, one rate limit). Under `valgrind --tool=callgrind`, the inclusive
//! count of `SiteGuard::check_cleared` over the iterations is one request's share, the same
//! figure the benchmark's callgrind pass reports, without building or running the server.

use http::{HeaderMap, HeaderValue};
use shield::RequestFacts;
use shield::guard::{SiteGuard, Verdict, build_lists};
use shield::ratelimit::LimiterRegistry;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let Some(config) = std::env::var_os("GUARD_BENCH_CONFIG").map(PathBuf::from) else {
        eprintln!("GUARD_BENCH_CONFIG: set it to a shielded palisade.toml (see the file's doc)");
        return;
    };
    let iterations: u32 = std::env::var("GUARD_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let site_name = std::env::var("GUARD_BENCH_SITE").unwrap_or_else(|_| "hit".into());
    let config = model::Config::load(&config).expect("the config loads");
    let global = Arc::new(build_lists(&config.shield.lists, "shield").expect("the lists build"));
    let (index, site) = config
        .sites
        .iter()
        .enumerate()
        .find(|(_, site)| site.name == site_name)
        .expect("the site is in the config");
    let guard = SiteGuard::build(index, site, global, &LimiterRegistry::default())
        .expect("the guard builds");
    let mut headers = HeaderMap::new();
    let host = format!("{site_name}.local");
    headers.insert("host", HeaderValue::from_str(&host).expect("a host"));
    let path = format!("/{site_name}");
    let facts = RequestFacts {
        ip: "127.0.0.1".parse().expect("an address"),
        host: &host,
        method: "GET",
        path: &path,
        query: "",
        headers: &headers,
        tls: false,
        version: http::Version::HTTP_11,
        connection: shield::ConnectionTraits::none(),
    };
    let start = Instant::now();
    let record = |_| {};
    let cleared = || false;
    for i in 0..iterations {
        // A clock that moves as a server's does: a request every 20 µs.
        let now = start + Duration::from_micros(20 * u64::from(i));
        let verdict = guard.check_cleared(black_box(&facts), now, &record, &cleared);
        assert_eq!(black_box(verdict), Verdict::Pass);
    }
    println!(
        "{iterations} requests in {:?}",
        Instant::now().saturating_duration_since(start)
    );
}

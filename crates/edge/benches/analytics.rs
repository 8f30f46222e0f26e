//! What per-site analytics cost a request: `Analytics::record` as `RequestLog::finish` calls
//! it (the minute from the instant already read, then the counters and the sketches).
//!
//! `cargo bench -p edge --bench analytics` (release build). Prints nanoseconds per recorded
//! request, best of several rounds, for:
//! - a hit: one site among ten, one of twenty popular paths and addresses (the sketch finds the
//!   key near its front);
//! - a flood of unique paths and addresses (every request takes the sketch's smallest counter);
//! - two threads recording for the same site at once (the sketch's lock is tried, not waited
//!   for; the counters' cache lines move between cores).
//!
//! `ANALYTICS_BENCH_ITERATIONS` (default 1,000,000) per round. `ANALYTICS_BENCH_HIT_ONLY=1`
//! records only the hit, `ANALYTICS_BENCH_ITERATIONS` times, for counting instructions under
//! callgrind: two runs with different counts, the difference over the difference in
//! iterations is one request, set-up excluded.

use edge::analytics::{Analytics, ServedRequest};
use edge::metrics::CacheOutcome;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

const SITES: [&str; 10] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

fn request(path: &str, client: IpAddr) -> ServedRequest<'_> {
    ServedRequest {
        status: 200,
        bytes_in: 0,
        bytes_out: 4_096,
        path,
        client,
        cache: Some(CacheOutcome::Hit),
    }
}

/// Nanoseconds per `record` of `requests[i % len]` for `site`, best of five rounds.
fn ns_per_record(
    analytics: &Analytics,
    site: &str,
    requests: &[ServedRequest<'_>],
    iterations: usize,
) -> f64 {
    let now = Instant::now();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..iterations {
            let request = &requests[i % requests.len()];
            analytics.record(
                black_box(site),
                analytics.minute_at(black_box(now)),
                request,
            );
        }
        best = best.min(start.elapsed().as_nanos() as f64 / iterations as f64);
    }
    best
}

fn main() {
    let iterations: usize = std::env::var("ANALYTICS_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let analytics = Analytics::new();
    let now = Instant::now();
    for site in SITES {
        analytics.record(
            site,
            analytics.minute_at(now),
            &request("/", Ipv4Addr::LOCALHOST.into()),
        );
    }

    let paths: Vec<String> = (0..20).map(|i| format!("/static/app-{i}.js")).collect();
    let popular: Vec<ServedRequest<'_>> = (0..20)
        .map(|i| request(&paths[i], IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8))))
        .collect();
    if std::env::var_os("ANALYTICS_BENCH_HIT_ONLY").is_some() {
        for i in 0..iterations {
            let request = &popular[i % popular.len()];
            analytics.record(
                black_box("echo"),
                analytics.minute_at(black_box(now)),
                request,
            );
        }
        return;
    }
    let hit = ns_per_record(&analytics, "echo", &popular, iterations);
    println!("hit (one of 20 paths and addresses, 10 sites): {hit:.1} ns per request");

    let unique_paths: Vec<String> = (0..100_000).map(|i| format!("/search/{i:08}")).collect();
    let flood: Vec<ServedRequest<'_>> = unique_paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let [_, a, b, c] = (i as u32).to_be_bytes();
            request(path, IpAddr::V4(Ipv4Addr::new(10, a, b, c)))
        })
        .collect();
    let flood_ns = ns_per_record(&analytics, "foxtrot", &flood, iterations);
    println!("flood (every path and address new): {flood_ns:.1} ns per request");

    let per_thread = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| ns_per_record(&analytics, "golf", &popular, iterations)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("the thread finishes"))
            .fold(0.0, f64::max)
    });
    println!("two threads, one site: {per_thread:.1} ns per request per thread");
}

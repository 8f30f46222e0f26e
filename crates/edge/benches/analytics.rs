//! What per-site analytics cost a request, as the edge pays it: the request carries its site's
//! `SiteAnalytics` (an `Arc` clone when routed, dropped at the end), and `RequestLog::finish`
//! turns the instant it already read into a minute and records the request.
//!
//! `cargo bench -p edge --bench analytics` (release build). Prints nanoseconds per request,
//! best of five rounds, for:
//! - a busy site (past `EXACT_REQUESTS` this minute, so one request in `SAMPLE_EVERY` enters
//!   the sketches), one of twenty popular paths and addresses;
//! - a quiet site, every request sketched (a new minute every 1,000 requests, whose close is
//!   counted too);
//! - a busy site under a flood of unique paths and addresses;
//! - two threads recording for the same busy site at once (the counters' cache lines move
//!   between the cores; the sketch's lock is tried, never waited for);
//! - for comparison, what the site's Prometheus counters (`SiteMetrics::record`, with the
//!   request's `Arc` of them) cost the same request, alone and on two threads.
//!
//! `ANALYTICS_BENCH_ITERATIONS` (default 1,000,000) per round. `ANALYTICS_BENCH_HIT_ONLY=1`
//! records only the busy site's requests, `ANALYTICS_BENCH_ITERATIONS` times, for counting
//! instructions under callgrind: two runs with different counts, the difference over the
//! difference in iterations is one request, set-up excluded.

use analytics::{Analytics, Minute, ServedRequest, SiteAnalytics};
use edge::metrics::{CacheOutcome, Metrics, SiteMetrics};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

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

/// One request's share: carry the site's handle, record at the minute of `now`.
#[inline(always)]
fn one(site: &Arc<SiteAnalytics>, minute: Minute, request: &ServedRequest<'_>) {
    let carried = Arc::clone(black_box(site));
    carried.record(minute, black_box(request));
    drop(carried);
}

/// Nanoseconds per request of `requests[i % len]` for `site`, best of five rounds. With
/// `minute_every`, the minute moves on every that many requests instead of staying `now`'s.
fn ns_per_request(
    site: &Arc<SiteAnalytics>,
    requests: &[ServedRequest<'_>],
    iterations: usize,
    minute_every: Option<usize>,
) -> f64 {
    let now = Instant::now();
    let mut best = f64::MAX;
    let mut moved = 0;
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..iterations {
            let minute = match minute_every {
                Some(every) => {
                    if i % every == 0 {
                        moved += 1;
                    }
                    Minute(moved)
                }
                None => Minute::at(black_box(now)),
            };
            one(site, minute, &requests[i % requests.len()]);
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
    let sites: Vec<Arc<SiteAnalytics>> = ["busy", "quiet", "flooded"]
        .iter()
        .map(|name| analytics.site(name))
        .collect();
    let paths: Vec<String> = (0..20).map(|i| format!("/static/app-{i}.js")).collect();
    let popular: Vec<ServedRequest<'_>> = (0..20)
        .map(|i| request(&paths[i], IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8))))
        .collect();
    // Past the exact part of the minute, as a busy site is within a second of each minute.
    let now = Minute::at(Instant::now());
    for i in 0..2_000 {
        sites[0].record(now, &popular[i % popular.len()]);
        sites[2].record(now, &popular[i % popular.len()]);
    }

    if std::env::var_os("ANALYTICS_BENCH_HIT_ONLY").is_some() {
        let instant = Instant::now();
        for i in 0..iterations {
            one(
                &sites[0],
                Minute::at(black_box(instant)),
                &popular[i % popular.len()],
            );
        }
        return;
    }

    let busy = ns_per_request(&sites[0], &popular, iterations, None);
    println!("busy site, one of 20 paths and addresses: {busy:.1} ns per request");

    let quiet = ns_per_request(&sites[1], &popular, iterations, Some(1_000));
    println!("quiet site, every request sketched: {quiet:.1} ns per request");

    let unique_paths: Vec<String> = (0..100_000).map(|i| format!("/search/{i:08}")).collect();
    let flood: Vec<ServedRequest<'_>> = unique_paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let [_, a, b, c] = (i as u32).to_be_bytes();
            request(path, IpAddr::V4(Ipv4Addr::new(10, a, b, c)))
        })
        .collect();
    let flooded = ns_per_request(&sites[2], &flood, iterations, None);
    println!("busy site, every path and address new: {flooded:.1} ns per request");

    let per_thread = on_two_threads(|| ns_per_request(&sites[0], &popular, iterations, None));
    println!("busy site, two threads at once: {per_thread:.1} ns per request per thread");
    // What the site's Prometheus counters already pay for the same request, for comparison.
    let metrics = Metrics::new().site("busy");
    let duration = Duration::from_micros(300);
    let metrics_alone = ns_per_metrics_record(&metrics, duration, iterations);
    let metrics_per_thread =
        on_two_threads(|| ns_per_metrics_record(&metrics, duration, iterations));
    println!(
        "for comparison, SiteMetrics::record: {metrics_alone:.1} ns alone, \
         {metrics_per_thread:.1} ns per thread on two threads"
    );
}

/// Runs `f` on two threads started together; the slower thread's figure.
fn on_two_threads(f: impl Fn() -> f64 + Sync) -> f64 {
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    f()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("the thread finishes"))
            .fold(0.0, f64::max)
    })
}

/// Nanoseconds per `SiteMetrics::record` of a 200, best of five rounds.
fn ns_per_metrics_record(metrics: &Arc<SiteMetrics>, duration: Duration, iterations: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iterations {
            let carried = Arc::clone(black_box(metrics));
            carried.record(200, black_box(duration), 0, 4_096);
            drop(carried);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / iterations as f64);
    }
    best
}

//! A rate limit's memory is fixed: it is made by the first request counted (the sketch) and
//! the first penalty (the penalty table), so a limit that sees no traffic costs next to
//! nothing; after that, counting a million distinct keys, and penalising a million, allocates
//! nothing and leaves [`RateLimiter::memory_bytes`] where it was.
//!
//! This test binary counts every heap allocation made while `RateLimiter::hit` runs (a global
//! allocator that counts when a thread-local flag is up), so "allocates nothing" is measured,
//! not read off the type's layout. The black-box counterpart, which watches a running server's
//! resident memory over a million keys, is `tests/tests/shield_attacks.rs`.

// The counting allocator is an `unsafe impl GlobalAlloc`; the library forbids unsafe code.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use model::{LimitAction, LimitKey, RateLimit};
use shield::RequestFacts;
use shield::ratelimit::{
    KEYS_PER_LIMIT, KeyBytes, LimiterRegistry, PENALTY_SLOTS, RateLimiter, SKETCH_WIDTH,
    SharedCounts, Sharing, TABLE_BYTES,
};
use std::sync::Arc;

struct CountingAllocator;

thread_local! {
    /// Up while the code under measurement runs on this thread.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Allocations (and their bytes) made on this thread while measuring: per thread, so tests
    /// running side by side do not count each other's.
    static ALLOCATIONS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Bytes allocated and not freed while measuring (what was freed was allocated while
    /// measuring too, in the tests that read this).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(size: usize) {
    if MEASURING.with(Cell::get) {
        ALLOCATIONS.with(|a| {
            let (n, bytes) = a.get();
            a.set((n + 1, bytes + size));
        });
        LIVE.with(|l| l.set(l.get() + size as isize));
    }
}

fn count_free(size: usize) {
    if MEASURING.with(Cell::get) {
        LIVE.with(|l| l.set(l.get() - size as isize));
    }
}

/// Allocations and bytes counted on this thread so far.
fn allocations() -> (usize, usize) {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is passed on to the system allocator unchanged; counting only touches
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        count_free(layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` with allocation counting on for this thread.
fn measured<T>(f: impl FnOnce() -> T) -> T {
    MEASURING.with(|m| m.set(true));
    let out = f();
    MEASURING.with(|m| m.set(false));
    out
}

const KEYS: u64 = 1_000_000;
/// Distinct keys per second of simulated time: about what a debug build of the server takes
/// in the black-box test, so a 10 s window holds about 100,000 keys.
const KEYS_PER_SECOND: u64 = 10_000;
/// The fixed size of one limit's sketch: 2 windows × 4 rows × 16,384 counters × 4 bytes.
const SKETCH_BYTES: usize = 2 * 4 * SKETCH_WIDTH * 4;
/// ...and with its 16,384 penalty slots × 8 bytes.
const LIMIT_BYTES: usize = SKETCH_BYTES + PENALTY_SLOTS * 8;
/// What a limit that has counted nothing may hold: its compiled definition, no counters.
const IDLE_LIMIT_BYTES: usize = 4 * 1024;

fn limit(requests: u32, penalty: Option<Duration>) -> RateLimit {
    RateLimit {
        id: "per-key".into(),
        expr: None,
        expr_at: None,
        key: LimitKey::Header("x-api-key".into()),
        requests,
        period: Duration::from_secs(10),
        action: LimitAction::Block,
        penalty,
        scope: model::LimitScope::Edge,
    }
}

fn facts(headers: &HeaderMap) -> RequestFacts<'_> {
    RequestFacts {
        ip: "192.0.2.1".parse().expect("address"),
        host: "api.example",
        method: "GET",
        path: "/v1/things",
        query: "",
        headers,
        tls: true,
        version: http::Version::HTTP_11,
        connection: shield::ConnectionTraits::none(),
    }
}

/// The simulated time of key number `n`.
fn time_of(start: Instant, n: u64) -> Instant {
    start + Duration::from_micros(n * 1_000_000 / KEYS_PER_SECOND)
}

#[test]
fn a_million_distinct_keys_are_counted_in_the_limits_fixed_memory() {
    assert_eq!(LIMIT_BYTES, 640 * 1024, "the documented 640 KiB per limit");
    let registry = LimiterRegistry::default();
    let before_build = allocations().1;
    let limiter =
        measured(|| RateLimiter::build("api", &limit(100, None), &registry)).expect("limit");
    let built = allocations().1 - before_build;
    assert!(
        built < IDLE_LIMIT_BYTES,
        "building a limit allocated {built} bytes: the counters must wait for traffic"
    );
    assert_eq!(limiter.memory_bytes(), LIMIT_BYTES);
    let name = HeaderName::from_static("x-api-key");
    let mut headers = HeaderMap::new();
    let start = Instant::now();
    // The first request counted makes the sketch, once.
    headers.insert(name.clone(), HeaderValue::from_static("first"));
    let before_first = allocations().1;
    measured(|| limiter.hit(&facts(&headers), start));
    let first = allocations().1 - before_first;
    assert!(
        (SKETCH_BYTES..SKETCH_BYTES + 1024).contains(&first),
        "the first request allocated {first} bytes, not the {SKETCH_BYTES}-byte sketch"
    );
    let (allocations_before, bytes_before) = allocations();
    let mut refused = 0u64;
    for n in 0..KEYS {
        headers.insert(name.clone(), HeaderValue::from(n));
        let now = time_of(start, n);
        // Every key sends once: none is anywhere near its 100 a window, and the
        // sketch's over-count (other keys sharing all four of a key's counters) stays far
        // below that.
        if measured(|| limiter.hit(&facts(&headers), now)).is_some() {
            refused += 1;
        }
    }
    let (allocations, bytes) = allocations();
    let (allocations, bytes) = (allocations - allocations_before, bytes - bytes_before);
    // How far a fresh key's count is off after all that (the window holds about 100,000 keys).
    headers.insert(name.clone(), HeaderValue::from_static("a fresh key"));
    let over_count = limiter
        .peek(&facts(&headers), time_of(start, KEYS))
        .unwrap_or(0.0);
    eprintln!(
        "{KEYS} distinct keys at {KEYS_PER_SECOND}/s (simulated): {refused} refused, \
         {allocations} allocations ({bytes} bytes) in hit(); memory_bytes {} before and {} after; \
         a fresh key then reads {over_count:.1}",
        LIMIT_BYTES,
        limiter.memory_bytes()
    );
    assert_eq!(refused, 0, "distinct keys sent once were refused");
    assert_eq!((allocations, bytes), (0, 0), "hit() allocated");
    assert_eq!(limiter.memory_bytes(), LIMIT_BYTES);
    assert!(
        over_count < 10.0,
        "a fresh key reads {over_count} after a million others"
    );
}

#[test]
fn a_million_keys_over_their_limit_are_penalised_in_the_limits_fixed_memory() {
    let registry = LimiterRegistry::default();
    let limiter = RateLimiter::build("api", &limit(1, Some(Duration::from_secs(60))), &registry)
        .expect("limit");
    let name = HeaderName::from_static("x-api-key");
    let mut headers = HeaderMap::new();
    let start = Instant::now();
    // The first key over its limit makes the sketch and the penalty table, once.
    headers.insert(name.clone(), HeaderValue::from_static("first"));
    let before_first = allocations().1;
    measured(|| {
        (
            limiter.hit(&facts(&headers), start),
            limiter.hit(&facts(&headers), start),
        )
    });
    let first = allocations().1 - before_first;
    assert!(
        (LIMIT_BYTES..LIMIT_BYTES + 1024).contains(&first),
        "the first penalty allocated {first} bytes in all, not the {LIMIT_BYTES}-byte limit"
    );
    let (allocations_before, _) = allocations();
    let mut let_through = 0u64;
    for n in 0..KEYS {
        headers.insert(name.clone(), HeaderValue::from(n));
        let now = time_of(start, n);
        measured(|| {
            limiter.hit(&facts(&headers), now);
            // The second request of every key is over its limit of one: it is refused and the
            // key put in the penalty table, which holds 16,384 and so keeps only the newest.
            if limiter.hit(&facts(&headers), now).is_none() {
                let_through += 1;
            }
        });
    }
    let allocations = allocations().0 - allocations_before;
    eprintln!(
        "{KEYS} keys over a limit of 1: {let_through} second requests let through, \
         {allocations} allocations in hit(); memory_bytes {}",
        limiter.memory_bytes()
    );
    assert_eq!(let_through, 0, "a key over its limit was let through");
    assert_eq!(allocations, 0, "hit() allocated");
    assert_eq!(limiter.memory_bytes(), LIMIT_BYTES);
    // The newest penalty is still served, 30 s on, though its key has stopped counting.
    let later = time_of(start, KEYS) + Duration::from_secs(30);
    let over = limiter.hit(&facts(&headers), later);
    assert!(
        over.is_some_and(|o| o.retry_after > Duration::from_secs(25)),
        "the newest key's penalty: {over:?}"
    );
}

#[test]
fn a_cluster_limits_table_stays_within_its_bound_over_a_million_keys() {
    let sharing = Arc::new(Sharing::default());
    sharing.activate();
    let shared = SharedCounts::new("api:per-key:0".into(), 10_000, Arc::clone(&sharing));
    let start_ms = 1_800_000_000_000u64;
    let live_before = LIVE.with(Cell::get);
    let mut peak = 0isize;
    for n in 0..KEYS {
        let unix_ms = start_ms + n * 1_000 / KEYS_PER_SECOND;
        let hash = xxhash_rust::xxh3::xxh3_64(&n.to_be_bytes());
        // Every key on its second request, so each may enter the table: the most it can hold.
        measured(|| shared.hit(hash, KeyBytes::Value(&n.to_be_bytes()), 2.0, unix_ms));
        peak = peak.max(LIVE.with(Cell::get) - live_before);
    }
    eprintln!(
        "{KEYS} keys in a cluster limit's table: {} held at the end, {} untracked, {peak} bytes at most (bound {TABLE_BYTES})",
        shared.keys(),
        sharing.untracked()
    );
    assert!(shared.keys() <= KEYS_PER_LIMIT);
    assert!(
        (peak as usize) <= TABLE_BYTES,
        "the table took {peak} bytes, over its {TABLE_BYTES}"
    );
    // Windows of 10 s at 10,000 new keys a second: each window's keys leave for the next's,
    // but each window brings more than the table holds.
    assert!(sharing.untracked() > 0);
}

#[test]
fn the_allocation_counter_sees_allocations() {
    // Without this, a counter that never counts would pass the tests above.
    let (before, _) = allocations();
    let kept = measured(|| std::hint::black_box(vec![7u8; 100]));
    assert_eq!(allocations().0, before + 1, "{kept:?}");
}

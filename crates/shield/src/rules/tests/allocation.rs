//! Evaluation runs for every rule on every request: it must not allocate, except to join a
//! header sent several times. Counted by a global allocator that counts per thread, so tests
//! running in parallel do not disturb each other.

// A `GlobalAlloc` is an `unsafe impl`; the library itself forbids unsafe code (lib.rs).
#![allow(unsafe_code)]

use super::Request;
use crate::rules::{Expr, RuleSet};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::ControlFlow;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only a
// const-initialised thread-local, which itself never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

fn allocations_during(run: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    run();
    ALLOCATIONS.with(Cell::get) - before
}

/// One rule of every kind evaluation runs.
const EVERY_KIND: &[&str] = &[
    "ssl and not ip.src eq 10.0.0.1",
    "ip.src lt 2001:db8::1 or ip.src ge 192.0.2.0",
    "ip.src in {10.0.0.0/8 192.168.0.0/16 2001:db8::/32 ::ffff:1.2.3.4}",
    r#"http.host eq "shop.example.com" and http.request.method in {"GET" "HEAD"}"#,
    r#"http.request.uri.path starts_with "/admin" or http.request.uri.path ends_with ".php""#,
    r#"http.request.uri.query contains "union select""#,
    r#"http.user_agent matches "(?i)(sqlmap|nikto|curl)""#,
    r#"http.cookie contains "session=" and http.request.headers["accept"] ne """#,
    r#"http.request.headers["content-length"] gt 1000000"#,
    r#"http.request.headers["x-port"] in {80 443 8080}"#,
    r#"http.request.method lt "POST" and http.request.uri.path ge "/a""#,
];

fn every_kind() -> Vec<Expr> {
    EVERY_KIND
        .iter()
        .map(|text| Expr::parse(text).expect("parses"))
        .collect()
}

#[test]
fn evaluation_allocates_nothing_when_headers_are_sent_once() {
    let rules = every_kind();
    let request = Request::typical()
        .with_header("content-length", "12")
        .with_header("x-port", "443");
    let facts = request.facts();
    // The first regex search on a thread sets up that thread's search cache.
    let warm: usize = rules.iter().filter(|rule| rule.eval(&facts)).count();
    let count = allocations_during(|| {
        for _ in 0..100 {
            let matched = rules.iter().filter(|rule| rule.eval(&facts)).count();
            assert_eq!(matched, warm);
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn a_header_sent_twice_costs_one_allocation_per_read() {
    let rule = Expr::parse(r#"http.request.headers["x-port"] in {80 443}"#).expect("parses");
    let request = Request::typical()
        .with_header("x-port", "443")
        .with_header("x-port", "80");
    let facts = request.facts();
    assert_eq!(allocations_during(|| assert!(!rule.eval(&facts))), 1);
}

#[test]
fn a_rule_set_allocates_nothing_when_headers_are_sent_once() {
    let mut rules = every_kind();
    // Literal rules on one field, which the set matches together.
    for text in [
        r#"http.user_agent contains "sqlmap" or http.user_agent contains "nikto""#,
        r#"http.user_agent starts_with "curl/""#,
        r#"http.user_agent ends_with "bot" or http.user_agent in {"-" "x"}"#,
    ] {
        rules.push(Expr::parse(text).expect("parses"));
    }
    let set = RuleSet::new(&rules);
    let request = Request::typical()
        .with_header("content-length", "12")
        .with_header("x-port", "443");
    let facts = request.facts();
    let walk = || {
        let mut matched = 0;
        set.walk(&facts, |_| {
            matched += 1;
            ControlFlow::<()>::Continue(())
        });
        matched
    };
    let warm = walk();
    let count = allocations_during(|| {
        for _ in 0..100 {
            assert_eq!(walk(), warm);
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn a_rule_set_joins_a_header_sent_twice_once_per_request() {
    // Five rules read the header, grouped, evaluated after a trigger, and on every request.
    let rules: Vec<Expr> = [
        r#"http.request.headers["x-port"] in {80 443}"#,
        r#"http.request.headers["x-port"] contains "8080""#,
        r#"http.request.headers["x-port"] ne "1""#,
        r#"http.user_agent contains "Firefox" and http.request.headers["x-port"] ne "1""#,
        r#"not http.request.headers["x-port"] eq "1""#,
    ]
    .iter()
    .map(|text| Expr::parse(text).expect("parses"))
    .collect();
    let set = RuleSet::new(&rules);
    let request = Request::typical()
        .with_header("x-port", "443")
        .with_header("x-port", "80");
    let facts = request.facts();
    let walk = || set.matched(&facts).iter().filter(|&&m| m).count();
    let warm = walk();
    assert_eq!(warm, 3);
    // One for the joined value, one for the list that keeps it for the rest of the request;
    // `matched`'s own answer is the third.
    assert_eq!(allocations_during(|| assert_eq!(walk(), warm)), 3);
}

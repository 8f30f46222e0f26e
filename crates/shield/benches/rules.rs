//! What rule expressions cost per request: 100 typical rules evaluated against a typical
//! proxied request.
//!
//! `cargo bench -p shield --bench rules` (release build). Prints nanoseconds per evaluation:
//! of the whole set and per rule, each rule alone (`Expr::eval`) and together as a `RuleSet`
//! (as `SiteGuard::check` runs them), for each kind of rule in it, and for single operations (what
//! a header lookup, a substring search or a regex costs). The budget: 100 rules plus the
//! shield's other checks under 5% of a ~20 µs proxied request, about 1 µs.
//!
//! The rules are what sites write: method and path checks, scanner user agents, an address
//! blocklist, a few regexes. Most do not match, so `and` chains stop early and `or` chains run
//! to the end, as on real traffic.

use http::{HeaderMap, HeaderValue};
use shield::RequestFacts;
use shield::rules::{Expr, RuleSet};
use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Instant;

/// Ten kinds of rule; each appears ten times with its values varied, for 100 rules.
fn rule(kind: usize, variant: usize) -> String {
    let n = variant;
    match kind {
        0 => format!(
            r#"http.request.uri.path starts_with "/admin{n}" and not ip.src in {{10.0.0.0/8 192.168.{n}.0/24}}"#
        ),
        1 => format!(
            r#"http.user_agent contains "sqlmap{n}" or http.user_agent contains "nikto{n}""#
        ),
        2 => format!(
            r#"http.request.method in {{"PUT" "DELETE" "PATCH{n}"}} and http.request.uri.path starts_with "/api/v{n}/""#
        ),
        3 => format!(
            r#"ip.src in {{198.51.{n}.0/24 203.0.114.0/24 2001:db8:{n}::/48 100.64.0.0/10}}"#
        ),
        4 => format!(r#"http.host eq "admin{n}.example.com" and not ssl"#),
        5 => format!(
            r#"http.request.uri.query contains "union{n} select" or http.request.uri.query contains "<script{n}""#
        ),
        6 => format!(
            r#"http.request.headers["content-length"] gt {}"#,
            10_000_000 + n
        ),
        7 => format!(r#"http.request.uri.path matches "\\.(php|asp|jsp){n}$""#),
        8 => format!(
            r#"http.cookie contains "debug{n}=1" and http.request.headers["x-forwarded-for"] ne """#
        ),
        _ => format!(
            r#"http.request.uri.path ends_with ".env{n}" or http.request.uri.path contains "/.git{n}/""#
        ),
    }
}

const KINDS: [&str; 10] = [
    "path prefix + address set",
    "user agent contains (x2)",
    "method set + path prefix",
    "address set (4 CIDRs)",
    "host eq + not ssl",
    "query contains (x2)",
    "header as integer",
    "path regex",
    "cookie contains + header",
    "path suffix / contains",
];

fn typical_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cookie", "session=5f2b8c0e4a; theme=dark; consent=yes"),
        ("referer", "https://shop.example.com/"),
        ("sec-fetch-mode", "navigate"),
        ("content-length", "0"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
}

/// One rule per operation, to see what each costs on its own.
const OPERATIONS: &[&str] = &[
    "ssl",
    r#"http.host eq "admin.example.com""#,
    r#"http.request.uri.path starts_with "/admin""#,
    r#"http.request.uri.path ends_with ".env""#,
    r#"http.request.method in {"PUT" "DELETE" "PATCH"}"#,
    r#"http.request.uri.query contains "union select""#,
    r#"http.user_agent eq "curl""#,
    r#"http.user_agent contains "sqlmap""#,
    r#"http.request.headers["x-forwarded-for"] eq "10.0.0.1""#,
    r#"http.request.headers["content-length"] gt 100"#,
    r#"http.request.uri.path matches "\\.(php|asp|jsp)$""#,
    "ip.src in {10.0.0.0/8 192.168.0.0/16 2001:db8::/32}",
];

/// Nanoseconds per evaluation of all of `rules`, best of several rounds.
fn ns_per_set(rules: &[Expr], facts: &RequestFacts<'_>, iterations: u32) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut matched = 0usize;
        for _ in 0..iterations {
            for rule in rules {
                matched += usize::from(black_box(rule).eval(black_box(facts)));
            }
        }
        black_box(matched);
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(iterations));
    }
    best
}

/// Nanoseconds per evaluation of a rule set, walked to the end as `SiteGuard::check` walks
/// it when nothing decides, best of several rounds.
fn ns_per_rule_set(set: &RuleSet, facts: &RequestFacts<'_>, iterations: u32) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut matched = 0usize;
        for _ in 0..iterations {
            black_box(set).walk(black_box(facts), |_| {
                matched += 1;
                ControlFlow::<()>::Continue(())
            });
        }
        black_box(matched);
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(iterations));
    }
    best
}

fn main() {
    let iterations: u32 = std::env::var("RULES_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let by_kind: Vec<Vec<Expr>> = (0..KINDS.len())
        .map(|kind| {
            (0..10)
                .map(|variant| Expr::parse(&rule(kind, variant)).expect("the rule parses"))
                .collect()
        })
        .collect();
    let all: Vec<Expr> = by_kind.iter().flatten().cloned().collect();

    let headers = typical_headers();
    let facts = RequestFacts {
        ip: "203.0.113.7".parse().expect("an address"),
        host: "shop.example.com",
        method: "GET",
        path: "/products/category/shoes/item-12345",
        query: "color=red&size=42&ref=newsletter",
        headers: &headers,
        tls: true,
    };
    let matched = all.iter().filter(|rule| rule.eval(&facts)).count();

    let total = ns_per_set(&all, &facts, iterations);
    println!(
        "{} rules ({matched} match): {total:.0} ns per request, {:.1} ns per rule",
        all.len(),
        total / all.len() as f64
    );
    let set = RuleSet::new(&all);
    let total = ns_per_rule_set(&set, &facts, iterations);
    println!(
        "{} rules as a RuleSet: {total:.0} ns per request, {:.1} ns per rule",
        all.len(),
        total / all.len() as f64
    );
    println!("by kind, one by one / as a RuleSet of the ten:");
    for (name, rules) in KINDS.iter().zip(&by_kind) {
        let ns = ns_per_set(rules, &facts, iterations);
        let set_ns = ns_per_rule_set(&RuleSet::new(rules), &facts, iterations);
        println!(
            "  {name:<28} {:6.1} / {:6.1} ns per rule",
            ns / rules.len() as f64,
            set_ns / rules.len() as f64
        );
    }
    println!("single operations:");
    for text in OPERATIONS {
        let rule = [Expr::parse(text).expect("the rule parses")];
        println!(
            "  {:6.1} ns  {text}",
            ns_per_set(&rule, &facts, iterations * 10)
        );
    }
}

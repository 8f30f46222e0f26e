//! What rule expressions cost per request: 100 typical rules evaluated against a typical
//! proxied request.
//!
//! `cargo bench -p shield --bench rules` (release build). Prints nanoseconds per evaluation:
//! of the whole set and per rule, each rule alone (`Expr::eval`) and together as a `RuleSet`
//! (as `SiteGuard::check` runs them), for each kind of rule in it, and for single operations (what
//! a header lookup, a substring search or a regex costs). The budget: 100 rules plus the
//! shield's other checks under 5% of a ~20 µs proxied request, about 1 µs.
//!
//! `RULES_BENCH_WALK_ONLY=1` walks only `bench/shield.sh`'s rule set, `RULES_BENCH_ITERATIONS`
//! times, for counting instructions under callgrind.
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

/// The 100 rules `bench/shield.sh` gives each site, as its generator writes them (the same
/// text, in the same order), and its request: wrk's `GET /hit` with a Host header and nothing
/// else, from 127.0.0.1 over plain HTTP. None matches, so the walk runs to the end.
const SHIELD_SH_RULES: &[&str] = &[
    r#"http.request.uri.path starts_with "/wp-admin""#,
    r#"http.request.uri.path starts_with "/wp-login.php""#,
    r#"http.request.uri.path starts_with "/xmlrpc.php""#,
    r#"http.request.uri.path starts_with "/phpmyadmin""#,
    r#"http.request.uri.path starts_with "/pma""#,
    r#"http.request.uri.path starts_with "/.env""#,
    r#"http.request.uri.path starts_with "/.git""#,
    r#"http.request.uri.path starts_with "/.svn""#,
    r#"http.request.uri.path starts_with "/.aws""#,
    r#"http.request.uri.path starts_with "/cgi-bin""#,
    r#"http.request.uri.path starts_with "/admin""#,
    r#"http.request.uri.path starts_with "/administrator""#,
    r#"http.request.uri.path starts_with "/manager/html""#,
    r#"http.request.uri.path starts_with "/solr""#,
    r#"http.request.uri.path starts_with "/actuator""#,
    r#"http.request.uri.path starts_with "/console""#,
    r#"http.request.uri.path starts_with "/debug""#,
    r#"http.request.uri.path starts_with "/server-status""#,
    r#"http.request.uri.path starts_with "/vendor/phpunit""#,
    r#"http.request.uri.path starts_with "/boaform""#,
    r#"http.request.uri.path starts_with "/HNAP1""#,
    r#"http.request.uri.path starts_with "/owa""#,
    r#"http.request.uri.path starts_with "/autodiscover""#,
    r#"http.request.uri.path starts_with "/remote/login""#,
    r#"http.request.uri.path starts_with "/api/v0""#,
    r#"http.request.uri.path starts_with "/backup""#,
    r#"http.request.uri.path starts_with "/old""#,
    r#"http.request.uri.path starts_with "/test""#,
    r#"http.request.uri.path starts_with "/tmp""#,
    r#"http.request.uri.path starts_with "/config""#,
    r#"http.user_agent contains "sqlmap""#,
    r#"http.user_agent contains "nikto""#,
    r#"http.user_agent contains "masscan""#,
    r#"http.user_agent contains "zgrab""#,
    r#"http.user_agent contains "nmap""#,
    r#"http.user_agent contains "dirbuster""#,
    r#"http.user_agent contains "gobuster""#,
    r#"http.user_agent contains "wpscan""#,
    r#"http.user_agent contains "acunetix""#,
    r#"http.user_agent contains "nessus""#,
    r#"http.user_agent contains "openvas""#,
    r#"http.user_agent contains "hydra""#,
    r#"http.user_agent contains "python-requests/2.""#,
    r#"http.user_agent contains "Go-http-client/1.1""#,
    r#"http.user_agent contains "curl/7.""#,
    r#"http.user_agent contains "libwww-perl""#,
    r#"http.user_agent contains "Java/1.""#,
    r#"http.user_agent contains "okhttp/""#,
    r#"http.user_agent contains "HeadlessChrome""#,
    r#"http.user_agent contains "PhantomJS""#,
    r#"http.request.headers["x-forwarded-host"] contains "evil""#,
    r#"http.request.headers["x-original-url"] ne """#,
    r#"http.request.headers["x-rewrite-url"] ne """#,
    r#"http.request.headers["x-api-version"] eq "0""#,
    r#"http.request.headers["content-type"] contains "multipart/form-data; boundary=----WebKitFormBoundaryEvil""#,
    r#"http.request.headers["referer"] contains "casino-""#,
    r#"http.request.headers["origin"] eq "null""#,
    r#"http.request.headers["x-requested-with"] eq "XMLHttpRequest-legacy""#,
    r#"http.request.headers["accept-language"] eq "xx""#,
    r#"http.request.headers["cookie"] contains "wordpress_logged_in_0""#,
    r#"http.request.headers["x-debug"] eq "1""#,
    r#"http.request.headers["x-http-method-override"] in {"DELETE" "PUT" "PATCH"}"#,
    r#"http.request.headers["transfer-encoding"] contains "identity""#,
    r#"http.request.headers["via"] contains "loop""#,
    r#"http.request.headers["x-scanner"] ne """#,
    r#"http.request.uri.query matches "(?i)union\\s+select""#,
    r#"http.request.uri.query matches "(?i)<script""#,
    r#"http.request.uri.path matches "\\.(php|asp|aspx|jsp|cgi)$""#,
    r#"http.request.uri.path matches "(?i)/(etc/passwd|win\\.ini|boot\\.ini)""#,
    r#"http.request.uri.query matches "\\.\\./\\.\\./""#,
    r#"http.user_agent matches "(?i)(bot|crawl|spider)[-_ ]?[0-9]{3,}""#,
    r#"http.request.uri.path matches "^/[a-f0-9]{32}\\.(zip|tar|gz|sql)$""#,
    r#"http.request.uri.query matches "(?i)(cmd|exec|system)=[a-z]""#,
    r#"http.cookie matches "(?i)session=[^;]{512,}""#,
    r#"http.request.uri.path matches "(?i)/(shell|c99|r57|wso)\\.php""#,
    r#"http.request.method eq "TRACE""#,
    r#"http.request.method in {"TRACK" "DEBUG" "PROPFIND"}"#,
    r#"ip.src in {192.0.2.0/24 198.51.100.0/24 203.0.113.0/24}"#,
    r#"http.host eq "admin.bench.local""#,
    r#"not ssl and http.request.uri.path starts_with "/secure""#,
    r#"http.request.uri.path starts_with "/api/" and http.request.method in {"DELETE" "PUT"} and not ip.src in {10.0.0.0/8}"#,
    r#"http.request.uri.path eq "/login" and http.request.method eq "POST""#,
    r#"http.request.uri.query contains "debug=true" or http.request.uri.query contains "XDEBUG_SESSION""#,
    r#"http.request.headers["content-length"] gt 10000000"#,
    r#"http.user_agent eq "" and http.request.uri.path starts_with "/checkout""#,
    r#"http.request.uri.path starts_with "/wp-admin/" and http.user_agent contains "sqlmap""#,
    r#"http.request.uri.path starts_with "/wp-login.php/" and http.user_agent contains "nikto""#,
    r#"http.request.uri.path starts_with "/xmlrpc.php/" and http.user_agent contains "masscan""#,
    r#"http.request.uri.path starts_with "/phpmyadmin/" and http.user_agent contains "zgrab""#,
    r#"http.request.uri.path starts_with "/pma/" and http.user_agent contains "nmap""#,
    r#"http.request.uri.path starts_with "/.env/" and http.user_agent contains "dirbuster""#,
    r#"http.request.uri.path starts_with "/.git/" and http.user_agent contains "gobuster""#,
    r#"http.request.uri.path starts_with "/.svn/" and http.user_agent contains "wpscan""#,
    r#"http.request.uri.path starts_with "/.aws/" and http.user_agent contains "acunetix""#,
    r#"http.request.uri.path starts_with "/cgi-bin/" and http.user_agent contains "nessus""#,
    r#"http.request.uri.path starts_with "/admin/" and http.user_agent contains "openvas""#,
    r#"http.request.uri.path starts_with "/administrator/" and http.user_agent contains "hydra""#,
    r#"http.request.uri.path starts_with "/manager/html/" and http.user_agent contains "python-requests/2.""#,
    r#"http.request.uri.path starts_with "/solr/" and http.user_agent contains "Go-http-client/1.1""#,
    r#"http.request.uri.path starts_with "/actuator/" and http.user_agent contains "curl/7.""#,
];

fn shield_sh_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("hit.local"));
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
    let shield_sh: Vec<Expr> = SHIELD_SH_RULES
        .iter()
        .map(|text| Expr::parse(text).expect("the rule parses"))
        .collect();
    let shield_sh_set = RuleSet::new(&shield_sh);
    let shield_sh_headers = shield_sh_headers();
    let shield_sh_request = RequestFacts {
        ip: "127.0.0.1".parse().expect("an address"),
        host: "hit.local",
        method: "GET",
        path: "/hit",
        query: "",
        headers: &shield_sh_headers,
        tls: false,
        version: http::Version::HTTP_11,
        connection: shield::ConnectionTraits::none(),
    };
    // For an instruction count: `valgrind --tool=callgrind` of this with two iteration
    // counts; the difference over the difference in iterations is one walk, set-up excluded.
    if std::env::var_os("RULES_BENCH_WALK_ONLY").is_some() {
        let mut matched = 0usize;
        for _ in 0..iterations {
            black_box(&shield_sh_set).walk(black_box(&shield_sh_request), |_| {
                matched += 1;
                ControlFlow::<()>::Continue(())
            });
        }
        assert_eq!(
            black_box(matched),
            0,
            "no rule of bench/shield.sh matches its request"
        );
        return;
    }
    let total = ns_per_rule_set(&shield_sh_set, &shield_sh_request, iterations);
    println!(
        "bench/shield.sh's {} rules as a RuleSet on its GET /hit: {total:.0} ns per request",
        shield_sh.len()
    );
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
        version: http::Version::HTTP_11,
        connection: shield::ConnectionTraits::none(),
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

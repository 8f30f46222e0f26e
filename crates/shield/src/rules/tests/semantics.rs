//! What fields read and what comparisons mean, at their edges.

use super::{Request, matches};
use crate::rules::Expr;
use http::HeaderValue;
use std::time::{Duration, Instant};

#[test]
fn an_absent_header_reads_as_the_empty_string() {
    let request = Request::typical()
        .without_header("user-agent")
        .without_header("cookie");
    assert!(matches(
        r#"http.request.headers["x-missing"] eq """#,
        &request
    ));
    assert!(matches(r#"http.user_agent eq """#, &request));
    assert!(matches(r#"http.cookie eq """#, &request));
    assert!(!matches(
        r#"http.request.headers["x-missing"] contains "a""#,
        &request
    ));
}

#[test]
fn a_repeated_header_reads_as_its_values_joined_with_comma_space() {
    let request = Request::typical()
        .with_header("x-forwarded-for", "10.0.0.1")
        .with_header("x-forwarded-for", "10.0.0.2")
        .with_header("user-agent", "second");
    assert!(matches(
        r#"http.request.headers["x-forwarded-for"] eq "10.0.0.1, 10.0.0.2""#,
        &request
    ));
    assert!(matches(
        r#"http.user_agent ends_with "Firefox/128.0, second""#,
        &request
    ));
}

#[test]
fn cookie_headers_are_joined_with_semicolon_space() {
    let request = Request::typical().with_header("cookie", "theme=dark");
    assert!(matches(
        r#"http.cookie eq "session=abc123; theme=dark""#,
        &request
    ));
    assert!(matches(
        r#"http.request.headers["cookie"] eq "session=abc123, theme=dark""#,
        &request
    ));
}

#[test]
fn a_field_compared_with_an_integer_is_read_as_one() {
    let request = |length: &str| Request::typical().with_header("content-length", length);
    let big = r#"http.request.headers["content-length"] gt 1000"#;
    assert!(matches(big, &request("1001")));
    assert!(!matches(big, &request("999")));
    // Numerically, not as text: "999" sorts after "1000" but is smaller.
    assert!(matches(
        r#"http.request.headers["content-length"] lt 1000"#,
        &request("999")
    ));
    assert!(matches(
        r#"http.request.headers["content-length"] eq 7"#,
        &request("+7")
    ));
}

#[test]
fn a_field_that_is_not_a_number_makes_every_integer_comparison_false() {
    for value in ["abc", "", "1.5", "10, 10", "99999999999999999999"] {
        let request = Request::typical().with_header("x-n", value);
        for op in ["eq", "ne", "lt", "le", "gt", "ge"] {
            assert!(!matches(
                &format!(r#"http.request.headers["x-n"] {op} 5"#),
                &request
            ));
        }
        assert!(!matches(
            r#"http.request.headers["x-n"] in {5 10}"#,
            &request
        ));
    }
    let absent = Request::typical();
    assert!(!matches(r#"http.request.headers["x-n"] ne 5"#, &absent));
}

#[test]
fn an_ipv4_mapped_client_compares_as_its_ipv4_address() {
    let request = Request::typical().with_ip("::ffff:10.1.2.3");
    assert!(matches("ip.src eq 10.1.2.3", &request));
    assert!(matches("ip.src in {10.0.0.0/8}", &request));
    assert!(matches("ip.src gt 10.1.2.2", &request));
    assert!(!matches("ip.src in {::/0}", &request));
    // Mapped literals are their IPv4 address too.
    assert!(matches("ip.src eq ::ffff:10.1.2.3", &request));
    assert!(matches("ip.src in {::ffff:10.0.0.0/104}", &request));
    let v4 = Request::typical().with_ip("10.1.2.3");
    assert!(matches("ip.src in {::ffff:10.0.0.0/104}", &v4));
    assert!(matches("ip.src eq ::ffff:10.1.2.3", &v4));
}

#[test]
fn addresses_order_within_a_family_and_not_across() {
    let v4 = Request::typical().with_ip("10.0.0.5");
    assert!(matches("ip.src gt 10.0.0.4 and ip.src lt 10.0.0.6", &v4));
    assert!(matches("ip.src ge 10.0.0.5 and ip.src le 10.0.0.5", &v4));
    assert!(matches("ip.src gt 9.255.255.255", &v4));
    for op in ["eq", "lt", "le", "gt", "ge"] {
        assert!(!matches(&format!("ip.src {op} ::1"), &v4), "{op}");
    }
    assert!(matches("ip.src ne ::1", &v4));
    let v6 = Request::typical().with_ip("2001:db8::10");
    assert!(matches(
        "ip.src gt 2001:db8::f and ip.src lt 2001:db8::11",
        &v6
    ));
}

#[test]
fn address_sets_hold_overlapping_and_single_addresses() {
    let set = "ip.src in {10.0.0.0/8 10.5.0.0/16 192.0.2.1 0.0.0.0/32 2001:db8::/48 2001:db8::1}";
    for (ip, expected) in [
        ("10.200.0.1", true),
        ("10.5.3.3", true),
        ("11.0.0.0", false),
        ("192.0.2.1", true),
        ("192.0.2.2", false),
        ("0.0.0.0", true),
        ("2001:db8:0:ffff::1", true),
        ("2001:db8:1::", false),
        ("::", false),
    ] {
        assert_eq!(
            matches(set, &Request::typical().with_ip(ip)),
            expected,
            "{ip}"
        );
    }
    // Host bits after the prefix are ignored, as in most CIDR lists.
    assert!(matches(
        "ip.src in {10.9.9.9/8}",
        &Request::typical().with_ip("10.0.0.1")
    ));
}

#[test]
fn comparisons_are_case_sensitive() {
    let request = Request::typical();
    assert!(!matches(r#"http.request.method eq "get""#, &request));
    assert!(!matches(r#"http.user_agent contains "mozilla""#, &request));
    assert!(matches(r#"http.host eq "shop.example.com""#, &request));
    assert!(!matches(r#"http.host eq "SHOP.example.com""#, &request));
}

#[test]
fn header_bytes_that_are_not_utf8_are_still_searched() {
    let mut request = Request::typical();
    let value = HeaderValue::from_bytes(b"\xffsqlmap\xfe").expect("obs-text is a valid value");
    request.headers.insert("x-raw", value);
    assert!(matches(
        r#"http.request.headers["x-raw"] contains "sqlmap""#,
        &request
    ));
    assert!(matches(
        r#"http.request.headers["x-raw"] matches "sqlmap""#,
        &request
    ));
    assert!(!matches(
        r#"http.request.headers["x-raw"] eq "sqlmap""#,
        &request
    ));
}

#[test]
fn a_backtracking_bomb_regex_runs_in_linear_time() {
    let expr = Expr::parse(r#"http.request.uri.query matches "^(a+)+$""#).expect("parses");
    let mut request = Request::typical();
    request.query = format!("{}!", "a".repeat(50_000));
    let start = Instant::now();
    assert!(!expr.eval(&request.facts()));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn expr_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    shareable::<Expr>();
}

//! A rule set's answers for hand-written rules of the shapes it matches together per field.

use super::Request;
use crate::rules::{Expr, RuleSet};
use std::ops::ControlFlow;

fn set(texts: &[&str]) -> (Vec<Expr>, RuleSet) {
    let exprs: Vec<Expr> = texts
        .iter()
        .map(|text| Expr::parse(text).expect("parses"))
        .collect();
    let set = RuleSet::new(&exprs);
    (exprs, set)
}

/// What each rule of the set says, checked against each rule alone.
fn matched(exprs: &[Expr], set: &RuleSet, request: &Request) -> Vec<bool> {
    let alone: Vec<bool> = exprs
        .iter()
        .map(|expr| expr.eval(&request.facts()))
        .collect();
    let together = set.matched(&request.facts());
    assert_eq!(together, alone, "on {request:?}");
    together
}

#[test]
fn grouped_literals_answer_per_rule_as_each_rule_alone() {
    let (exprs, set) = set(&[
        r#"http.user_agent contains "sqlmap" or http.user_agent contains "nikto""#,
        // Needles inside one another, all found by the one pass.
        r#"http.user_agent contains "map""#,
        r#"http.user_agent contains "sqlmap/1""#,
        r#"http.user_agent contains """#,
        r#"http.user_agent starts_with "sql""#,
        r#"http.user_agent starts_with "sqlmap/1.7" or http.user_agent ends_with "1.7""#,
        r#"http.user_agent ends_with "" or http.user_agent eq "x""#,
        r#"http.user_agent in {"curl" "sqlmap/1.7"}"#,
        r#"http.user_agent eq "sqlmap/1.7""#,
        r#"http.user_agent ne "sqlmap/1.7""#,
        r#"http.request.uri.path starts_with "/admin" or http.request.uri.path eq "/""#,
        r#"http.request.uri.path starts_with "/admin/users/42""#,
        r#"http.request.uri.path ends_with "/42" and http.user_agent contains "map""#,
        r#"http.user_agent matches "^sqlmap/[0-9.]+$""#,
        r#"http.user_agent matches "(?i)FIREFOX" or http.user_agent eq "curl""#,
    ]);
    let sqlmap = Request::typical()
        .without_header("user-agent")
        .with_header("user-agent", "sqlmap/1.7");
    assert_eq!(
        matched(&exprs, &set, &sqlmap),
        [
            true, true, true, true, true, true, true, true, true, false, false, false, true, true,
            false
        ]
    );
    let mut admin = sqlmap.clone();
    admin.path = "/admin/users/42".to_owned();
    assert_eq!(
        matched(&exprs, &set, &admin),
        [
            true, true, true, true, true, true, true, true, true, false, true, true, true, true,
            false
        ]
    );
    // Sent twice, the user agent reads as "sqlmap/1.7, curl": the literals see the joined value.
    let twice = sqlmap.with_header("user-agent", "curl");
    assert_eq!(
        matched(&exprs, &set, &twice),
        [
            true, true, true, true, true, true, true, false, false, true, false, false, true,
            false, false
        ]
    );
    let browser = Request::typical();
    assert_eq!(
        matched(&exprs, &set, &browser),
        [
            false, false, false, true, false, false, true, false, false, true, false, false, false,
            false, true
        ]
    );
}

#[test]
fn a_walk_visits_matching_rules_in_order_and_stops_at_the_break() {
    let (_, set) = set(&[
        r#"http.request.uri.path starts_with "/products""#,
        r#"http.request.uri.path contains "nothing""#,
        r#"http.user_agent contains "Firefox""#,
        r#"http.request.uri.path ends_with "42" or http.request.uri.path eq "/""#,
        "ssl",
    ]);
    let request = Request::typical();
    let mut visited = Vec::new();
    let decided = set.walk(&request.facts(), |index| {
        visited.push(index);
        if index == 3 {
            ControlFlow::Break("third match")
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(decided, Some("third match"));
    assert_eq!(visited, [0, 2, 3]);
}

#[test]
fn address_conditions_of_many_rules_answer_per_rule_as_each_rule_alone() {
    let (exprs, set) = set(&[
        "ip.src in {10.0.0.0/8 192.168.0.0/16}",
        // Overlapping the first rule's ranges, and inside one another.
        "ip.src in {10.1.0.0/16 10.1.2.3}",
        "ip.src eq 10.1.2.3 or ip.src eq 2001:db8::1",
        "ip.src in {::ffff:192.168.7.0/120}",
        "ip.src ne 10.1.2.3",
        "ip.src lt 10.0.0.0 or ip.src ge 2001:db8::",
        "ip.src le 0.0.0.0 or ip.src gt 255.255.255.254",
        "ip.src in {::/0}",
        r#"ip.src in {10.0.0.0/8} and http.request.uri.path starts_with "/admin""#,
        r#"http.request.uri.path starts_with "/admin" and not ip.src in {10.0.0.0/8}"#,
        "not ip.src in {10.0.0.0/8}",
    ]);
    let at = |ip: &str| Request::typical().with_ip(ip);
    assert_eq!(
        matched(&exprs, &set, &at("10.1.2.3")),
        [
            true, true, true, false, false, false, false, false, false, false, false
        ]
    );
    assert_eq!(
        matched(&exprs, &set, &at("::ffff:192.168.7.9")),
        [
            true, false, false, true, true, false, false, false, false, false, true
        ]
    );
    assert_eq!(
        matched(&exprs, &set, &at("2001:db8::1")),
        [
            false, false, true, false, true, true, false, true, false, false, true
        ]
    );
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "9.255.255.255",
        "11.0.0.0",
        "::",
        "ffff::",
    ] {
        matched(&exprs, &set, &at(ip));
    }
    let mut admin = at("10.9.9.9");
    admin.path = "/admin/users".to_owned();
    assert_eq!(
        matched(&exprs, &set, &admin),
        [
            true, false, false, false, true, false, false, false, true, false, false
        ]
    );
}

#[test]
fn conditions_on_an_absent_header_hold_as_on_an_empty_one() {
    let (exprs, set) = set(&[
        r#"http.request.headers["x-a"] ne "x""#,
        r#"http.request.headers["x-a"] eq """#,
        r#"http.request.headers["x-a"] ne """#,
        r#"http.request.headers["x-a"] lt "b""#,
        r#"not http.request.headers["x-a"] contains "y""#,
        r#"http.request.headers["x-a"] contains "" and ssl"#,
        r#"http.request.headers["x-a"] gt 10 or http.request.headers["x-a"] in {3 4}"#,
        r#"http.request.headers["x-a"] starts_with "" or http.request.headers["x-b"] eq "1""#,
    ]);
    assert_eq!(
        matched(&exprs, &set, &Request::typical()),
        [true, true, false, true, true, true, false, true]
    );
    let sent = |value: &str| Request::typical().with_header("x-a", value);
    assert_eq!(
        matched(&exprs, &set, &sent("")),
        [true, true, false, true, true, true, false, true]
    );
    assert_eq!(
        matched(&exprs, &set, &sent("11")),
        [true, false, true, true, true, true, true, true]
    );
    assert_eq!(
        matched(&exprs, &set, &sent("y")),
        [true, false, true, false, false, true, false, true]
    );
    // Sent twice, the header reads as "3, 4": not an integer.
    assert_eq!(
        matched(&exprs, &set, &sent("3").with_header("x-a", "4")),
        [true, false, true, true, true, true, false, true]
    );
}

#[test]
fn regexes_on_one_field_keep_their_own_flags() {
    let (exprs, flags) = set(&[
        r#"http.request.uri.path matches "(?i)/ADMIN""#,
        r#"http.request.uri.path matches "/Login""#,
        r#"http.request.uri.path matches "^/x""#,
        r#"http.request.uri.path matches "\\.php$""#,
    ]);
    let at = |path: &str| {
        let mut request = Request::typical();
        request.path = path.to_owned();
        request
    };
    assert_eq!(
        matched(&exprs, &flags, &at("/admin/login")),
        [true, false, false, false]
    );
    assert_eq!(
        matched(&exprs, &flags, &at("/x/Login.php")),
        [false, true, true, true]
    );
    assert_eq!(
        matched(&exprs, &flags, &at("/y/x.php/")),
        [false, false, false, false]
    );
    // A `(?x)` comment would swallow what follows it in an alternation of the patterns.
    let (exprs, commented) = set(&[
        r#"http.request.uri.path matches "(?x) /a # an admin page""#,
        r#"http.request.uri.path matches "/b""#,
    ]);
    assert_eq!(matched(&exprs, &commented, &at("/b")), [false, true]);
    assert_eq!(matched(&exprs, &commented, &at("/a")), [true, false]);
}

#[test]
fn more_named_headers_than_slots_still_read_as_each_rule_alone() {
    // Forty headers: past the slots, and enough names to share buckets of the name table.
    let texts: Vec<String> = (0..40)
        .map(|n| {
            format!(r#"http.request.headers["x-h{n}"] eq "v{n}" or http.user_agent eq "u{n}""#)
        })
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (exprs, set) = set(&texts);
    let mut request = Request::typical();
    for n in (0..40).step_by(3) {
        request = request.with_header(&format!("x-h{n}"), &format!("v{n}"));
    }
    // Sent twice: read joined, and so matches nothing.
    request = request.with_header("x-h3", "v3");
    let together = matched(&exprs, &set, &request);
    assert_eq!(
        together.iter().filter(|&&m| m).count(),
        (0..40).step_by(3).count() - 1
    );
}

#[test]
fn rules_past_the_triggered_ones_are_evaluated_in_order() {
    let texts: Vec<String> = (0..600)
        .map(|n| match n % 3 {
            0 => format!(r#"http.request.uri.path eq "/p{n}""#),
            1 => "ssl".to_owned(),
            _ => format!("ip.src eq 203.0.113.{}", n % 256),
        })
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (exprs, set) = set(&texts);
    let mut request = Request::typical();
    request.path = "/p555".to_owned();
    let together = matched(&exprs, &set, &request);
    assert!(together[555] && together[7] && !together[3]);
    let mut visited = Vec::new();
    set.walk(&request.facts(), |index| {
        visited.push(index);
        ControlFlow::<()>::Continue(())
    });
    assert!(visited.is_sorted());
}

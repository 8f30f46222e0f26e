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

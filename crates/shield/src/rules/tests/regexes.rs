//! Property test: a rule set's regexes, searched only when a value holds one of the literals
//! they need (`literals::RegexGate`), match exactly what each regex alone matches.
//!
//! Patterns are random concatenations and alternations of pieces with and without literals
//! (classes too wide to expand, repetitions, anchors, word boundaries, case-insensitive groups
//! whose literals have non-ASCII case variants); values are random text over the same pieces,
//! short (looked at pair by pair first) and long (straight to the automaton).

use super::Request;
use crate::rules::literals::required_literals;
use crate::rules::{Expr, RuleSet};
use proptest::prelude::*;

const PATTERN_PIECES: &[&str] = &[
    "a",
    "ab",
    "php",
    "/",
    r"\.",
    "[ab]",
    "[a-f0-9]",
    r"\d",
    ".",
    "x?",
    "(?:a|bc)",
    "(?i)php",
    "(?i:sk)",
    "(?i)k",
    "^",
    "$",
    r"\b",
    "é",
    "[^a]",
    "a*",
    "(?:ab)+",
    "b{2,3}",
    r"\s+",
    "[a-z]{3,}",
    "(?i)union",
    "=",
];

const VALUE_PIECES: &[&str] = &[
    "a", "b", "ab", "bc", "php", "PHP", "pHp", "/", ".", "x", "0", "7", "k", "K", "\u{212a}", "s",
    "\u{17f}", "é", "É", " ", "union", "UNION", "=", "q", "zz", "bbb",
];

fn pattern() -> impl Strategy<Value = String> {
    let concat = || {
        proptest::collection::vec(proptest::sample::select(PATTERN_PIECES), 1..5)
            .prop_map(|pieces| pieces.concat())
    };
    prop_oneof![
        3 => concat(),
        1 => (concat(), concat()).prop_map(|(a, b)| format!("{a}|{b}")),
    ]
}

fn value() -> impl Strategy<Value = String> {
    let pieces = |n| {
        proptest::collection::vec(proptest::sample::select(VALUE_PIECES), n)
            .prop_map(|pieces| pieces.concat())
    };
    prop_oneof![3 => pieces(0..8), 1 => pieces(20..60)]
}

/// A pattern as a string literal of the rule language, whose only escapes are `\"` and `\\`.
fn quoted(pattern: &str) -> String {
    format!("\"{}\"", pattern.replace('\\', "\\\\").replace('"', "\\\""))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn regexes_behind_their_literals_match_what_each_regex_alone_matches(
        patterns in proptest::collection::vec(pattern(), 1..5),
        values in proptest::collection::vec(value(), 1..10),
    ) {
        let rules: Vec<Expr> = patterns
            .iter()
            .map(|p| Expr::parse(&format!("http.request.uri.query matches {}", quoted(p))))
            .collect::<Result<_, _>>()
            .expect("generated patterns compile");
        let set = RuleSet::new(&rules);
        for value in &values {
            let mut request = Request::typical();
            request.query = value.clone();
            let expected: Vec<bool> = patterns
                .iter()
                .map(|p| regex::bytes::Regex::new(p).expect("compiles").is_match(value.as_bytes()))
                .collect();
            prop_assert_eq!(set.matched(&request.facts()), expected, "value {:?}", value);
        }
    }

    #[test]
    fn a_value_a_regex_matches_holds_one_of_its_required_literals(
        pattern in pattern(),
        values in proptest::collection::vec(value(), 1..10),
    ) {
        let Some(literals) = required_literals(&pattern) else {
            return Ok(());
        };
        prop_assert!(literals.iter().all(|literal| !literal.is_empty()));
        let regex = regex::bytes::Regex::new(&pattern).expect("compiles");
        for value in &values {
            let value = value.as_bytes();
            if regex.is_match(value) {
                let holds = literals
                    .iter()
                    .any(|literal| value.windows(literal.len()).any(|w| w == &literal[..]));
                prop_assert!(holds, "{:?} matches {:?} but holds none of {:?}", pattern, value, literals);
            }
        }
    }
}

#[test]
fn the_benchmark_regexes_all_have_required_literals() {
    // bench/shield.sh's regexes: with literals for each, a path, query or user agent holding
    // none of them costs no regex search at all.
    for pattern in [
        r"(?i)union\s+select",
        r"(?i)<script",
        r"\.(php|asp|aspx|jsp|cgi)$",
        r"(?i)/(etc/passwd|win\.ini|boot\.ini)",
        r"\.\./\.\./",
        r"(?i)(bot|crawl|spider)[-_ ]?[0-9]{3,}",
        r"^/[a-f0-9]{32}\.(zip|tar|gz|sql)$",
        r"(?i)(cmd|exec|system)=[a-z]",
        r"(?i)session=[^;]{512,}",
        r"(?i)/(shell|c99|r57|wso)\.php",
    ] {
        assert!(required_literals(pattern).is_some(), "{pattern}");
    }
    // A match may start and end with anything: nothing to gate on.
    for pattern in ["", "^.{3}$", r"\w+", "a*", "^$"] {
        assert_eq!(required_literals(pattern), None, "{pattern}");
    }
}

//! The syntax: every field, operator, alias and literal; precedence and parentheses; and the
//! errors, each with the exact line and column it names.

use super::{Request, lies_within, matches, refused};
use crate::rules::{Expr, MAX_EXPRESSION_BYTES, MAX_NESTING};

#[test]
fn every_field_reads_its_part_of_the_request() {
    let request = Request::typical()
        .with_header("x-api-key", "k1")
        .with_ip("198.51.100.9");
    assert!(matches("ip.src eq 198.51.100.9", &request));
    assert!(matches("ssl", &request));
    assert!(matches(r#"http.host eq "shop.example.com""#, &request));
    assert!(matches(r#"http.request.method eq "GET""#, &request));
    assert!(matches(
        r#"http.request.uri.path eq "/products/42""#,
        &request
    ));
    assert!(matches(
        r#"http.request.uri.query eq "color=red&size=m""#,
        &request
    ));
    assert!(matches(
        r#"http.user_agent starts_with "Mozilla/5.0""#,
        &request
    ));
    assert!(matches(r#"http.cookie eq "session=abc123""#, &request));
    assert!(matches(
        r#"http.request.headers["x-api-key"] eq "k1""#,
        &request
    ));
}

#[test]
fn header_names_are_case_insensitive() {
    let request = Request::typical().with_header("x-api-key", "k1");
    assert!(matches(
        r#"http.request.headers["X-API-Key"] eq "k1""#,
        &request
    ));
    assert!(matches(
        r#"http.request.headers["ACCEPT"] eq "text/html""#,
        &request
    ));
}

#[test]
fn ssl_stands_alone_or_negated() {
    let mut plain = Request::typical();
    plain.tls = false;
    assert!(matches("ssl", &Request::typical()));
    assert!(!matches("ssl", &plain));
    assert!(matches("not ssl", &plain));
    assert!(matches("!ssl", &plain));
}

#[test]
fn comparison_operators_order_text_byte_by_byte() {
    let request = Request::typical(); // method GET
    let cases = [
        (r#"http.request.method eq "GET""#, true),
        (r#"http.request.method ne "GET""#, false),
        (r#"http.request.method lt "GEU""#, true),
        (r#"http.request.method lt "GET""#, false),
        (r#"http.request.method le "GET""#, true),
        (r#"http.request.method gt "GES""#, true),
        (r#"http.request.method gt "GET""#, false),
        (r#"http.request.method ge "GET""#, true),
        (r#"http.request.method ge "GETS""#, false),
    ];
    for (text, expected) in cases {
        assert_eq!(matches(text, &request), expected, "{text}");
    }
}

#[test]
fn substring_operators_find_their_needles() {
    let request = Request::typical(); // path /products/42
    let cases = [
        (r#"http.request.uri.path contains "ducts""#, true),
        (r#"http.request.uri.path contains "admin""#, false),
        (r#"http.request.uri.path contains """#, true),
        (r#"http.request.uri.path starts_with "/products/""#, true),
        (r#"http.request.uri.path starts_with "products""#, false),
        (r#"http.request.uri.path ends_with "/42""#, true),
        (r#"http.request.uri.path ends_with "/4""#, false),
    ];
    for (text, expected) in cases {
        assert_eq!(matches(text, &request), expected, "{text}");
    }
}

#[test]
fn matches_takes_a_regex_and_its_alias_is_tilde() {
    let request = Request::typical();
    assert!(matches(
        r#"http.request.uri.path matches "^/products/\\d+$""#,
        &request
    ));
    assert!(matches(
        r#"http.request.uri.path ~ "^/products/[0-9]+$""#,
        &request
    ));
    assert!(!matches(
        r#"http.request.uri.path matches "^/admin""#,
        &request
    ));
    assert!(matches(
        r#"http.request.method matches "(?i)^get$""#,
        &request
    ));
}

#[test]
fn in_takes_sets_of_strings_integers_or_addresses() {
    let request = Request::typical().with_header("content-length", "42");
    assert!(matches(
        r#"http.request.method in {"GET" "HEAD"}"#,
        &request
    ));
    assert!(!matches(
        r#"http.request.method in {"POST", "PUT"}"#,
        &request
    ));
    assert!(matches(
        r#"http.request.headers["content-length"] in {1 42 100}"#,
        &request
    ));
    assert!(matches("ip.src in {10.0.0.0/8 203.0.113.0/24}", &request));
    assert!(matches("ip.src in {203.0.113.7}", &request));
    assert!(!matches("ip.src in {2001:db8::/32, 10.0.0.1}", &request));
}

#[test]
fn aliases_mean_what_their_keywords_mean() {
    let pairs = [
        ("==", "eq"),
        ("!=", "ne"),
        ("<", "lt"),
        ("<=", "le"),
        (">", "gt"),
        (">=", "ge"),
        ("~", "matches"),
    ];
    let requests = [
        Request::typical(),
        Request::typical().with_ip("10.1.2.3"),
        Request::typical().with_ip("2001:db8::5"),
    ];
    for (alias, keyword) in pairs {
        for (field, value) in [("http.request.method", r#""GET""#), ("ip.src", "10.1.2.3")] {
            if keyword == "matches" && field == "ip.src" {
                continue;
            }
            for request in &requests {
                let symbolic = format!("{field} {alias} {value}");
                let spelled = format!("{field} {keyword} {value}");
                let tight = format!("{field}{alias}{value}");
                let expected = matches(&spelled, request);
                assert_eq!(matches(&symbolic, request), expected, "{symbolic}");
                assert_eq!(matches(&tight, request), expected, "{tight}");
            }
        }
    }
    let mut plain = Request::typical();
    plain.tls = false;
    for request in [Request::typical(), plain] {
        for (symbolic, spelled) in [
            ("!ssl", "not ssl"),
            ("ssl && !ssl", "ssl and not ssl"),
            ("ssl || !ssl", "ssl or not ssl"),
            ("!ssl&&ssl||ssl", "not ssl and ssl or ssl"),
        ] {
            assert_eq!(matches(symbolic, &request), matches(spelled, &request));
        }
    }
}

#[test]
fn strings_unescape_quote_and_backslash() {
    let request = Request::typical().with_header("x-quote", r#"say "hi" \o/"#);
    assert!(matches(
        r#"http.request.headers["x-quote"] eq "say \"hi\" \\o/""#,
        &request
    ));
    let multiline = Request::typical().with_header("x-long", "tab\there");
    assert!(matches(
        "http.request.headers[\"x-long\"] eq \"tab\there\"",
        &multiline
    ));
}

#[test]
fn integers_compare_with_header_numbers() {
    let request = Request::typical().with_header("content-length", "1500");
    assert!(matches(
        r#"http.request.headers["content-length"] gt 1000"#,
        &request
    ));
    assert!(!matches(
        r#"http.request.headers["content-length"] le 1000"#,
        &request
    ));
    assert!(matches(
        r#"http.request.headers["content-length"] eq 1500"#,
        &request
    ));
}

#[test]
fn addresses_and_cidrs_are_written_bare() {
    let v4 = Request::typical().with_ip("10.0.0.1");
    let v6 = Request::typical().with_ip("2001:db8::1");
    assert!(matches("ip.src eq 10.0.0.1", &v4));
    assert!(matches("ip.src ne 10.0.0.2", &v4));
    assert!(matches("ip.src eq 2001:db8::1", &v6));
    assert!(matches("ip.src eq 2001:0db8:0:0:0:0:0:1", &v6));
    assert!(matches("ip.src in {10.0.0.0/8 2001:db8::/32}", &v4));
    assert!(matches("ip.src in {10.0.0.0/8 2001:db8::/32}", &v6));
    assert!(matches("ip.src in {::/0}", &v6));
    assert!(matches("ip.src eq ::ffff:10.0.0.1", &v4));
}

#[test]
fn sets_take_commas_or_whitespace_and_may_span_lines() {
    let request = Request::typical();
    for text in [
        r#"http.request.method in {"POST" "GET"}"#,
        r#"http.request.method in {"POST","GET"}"#,
        r#"http.request.method in { "POST", "GET", }"#,
        "http.request.method in {\n  \"POST\"\n  \"GET\"\n}",
    ] {
        assert!(matches(text, &request), "{text}");
    }
}

#[test]
fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
    let request = Request::typical(); // ssl is true
    let f = r#"http.host eq "nope""#; // false
    // `ssl or F and F` is `ssl or (F and F)`: true; `(ssl or F) and F` would be false.
    assert!(matches(&format!("ssl or {f} and {f}"), &request));
    assert!(!matches(&format!("(ssl or {f}) and {f}"), &request));
    // `F and F or ssl` is `(F and F) or ssl`.
    assert!(matches(&format!("{f} and {f} or ssl"), &request));
    // `not F and F` is `(not F) and F`: false; `not (F and F)` is true.
    assert!(!matches(&format!("not {f} and {f}"), &request));
    assert!(matches(&format!("not ({f} and {f})"), &request));
    // `not ssl or ssl` is `(not ssl) or ssl`.
    assert!(matches("not ssl or ssl", &request));
    assert!(!matches("not (ssl or ssl)", &request));
}

#[test]
fn not_applies_to_the_whole_condition_and_repeats() {
    let request = Request::typical();
    assert!(matches(r#"not http.request.method eq "POST""#, &request));
    assert!(matches("not not ssl", &request));
    assert!(!matches("not not not ssl", &request));
    assert!(matches("!!ssl", &request));
}

#[test]
fn parentheses_group_and_nest() {
    let request = Request::typical();
    assert!(matches("((ssl))", &request));
    assert!(matches("(ssl and (ssl or not ssl)) and ssl", &request));
    let deepest = format!("{}ssl{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    assert!(matches(&deepest, &request));
}

#[test]
fn source_returns_the_text_as_given() {
    let text = "  ssl and\n not ssl ";
    assert_eq!(
        Expr::parse(text).map(|e| e.source().to_owned()),
        Ok(text.to_owned())
    );
}

#[test]
fn a_long_chain_of_and_parses_and_evaluates() {
    let text = format!("{}ssl", "ssl and ".repeat(2000));
    assert!(text.len() <= MAX_EXPRESSION_BYTES);
    assert!(matches(&text, &Request::typical()));
    let text = format!("{}not ssl", "not ssl || ".repeat(1400));
    assert!(!matches(&text, &Request::typical()));
}

#[test]
fn nesting_past_the_limit_is_refused_at_the_parenthesis() {
    let text = format!(
        "{}ssl{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    let error = refused(&text);
    assert_eq!((error.line, error.column), (1, MAX_NESTING + 1));
    assert!(error.message.contains("nested deeper than 64"), "{error}");
    // Many more than the limit still stops at the same place, without recursing further.
    let error = refused(&"(".repeat(10_000));
    assert_eq!((error.line, error.column), (1, MAX_NESTING + 1));
}

#[test]
fn text_past_the_length_limit_is_refused() {
    let text = "ssl or ".repeat(MAX_EXPRESSION_BYTES / 7 + 1);
    let error = refused(&text);
    assert_eq!((error.line, error.column), (1, MAX_EXPRESSION_BYTES + 1));
    assert!(error.message.contains("longer than 16384 bytes"), "{error}");
    // The column counts characters: two-byte characters halve it.
    let text = format!("http.host eq \"{}\"", "é".repeat(MAX_EXPRESSION_BYTES));
    let error = refused(&text);
    assert!(lies_within(&text, error.line, error.column));
    assert_eq!(error.column, 15 + (MAX_EXPRESSION_BYTES - 14) / 2);
}

#[test]
fn a_huge_regex_is_a_clear_error() {
    let error = refused(r#"http.user_agent matches "\\w{1000}{1000}""#);
    assert_eq!((error.line, error.column), (1, 25));
    assert!(error.message.contains("regex too big"), "{error}");
}

/// (text, line, column, part of the message)
const SYNTAX_ERRORS: &[(&str, usize, usize, &str)] = &[
    ("", 1, 1, "empty expression"),
    ("  \n  ", 2, 3, "empty expression"),
    (r#"http.hots eq "a""#, 1, 1, "unknown field `http.hots`"),
    (r#"HTTP.HOST eq "a""#, 1, 1, "lowercase (`http.host`)"),
    (r#"ssl AND ssl"#, 1, 5, "expected `and`, `or` or the end"),
    ("http.host eq", 1, 13, "expected a value"),
    (
        r#"http.host "a""#,
        1,
        11,
        "expected an operator after `http.host`",
    ),
    ("http.host", 1, 10, "expected an operator"),
    (
        "(ssl",
        1,
        5,
        "expected `)` to close the `(` at line 1, column 1",
    ),
    ("ssl)", 1, 4, "unmatched `)`"),
    ("(ssl))", 1, 6, "unmatched `)`"),
    ("ssl and \u{1a}", 1, 9, "unexpected character `\\u{1a}`"),
    ("ssl and", 1, 8, "expected a field, `not` or `(`"),
    ("not", 1, 4, "expected a field"),
    ("ssl and or ssl", 1, 9, "expected a field"),
    ("()", 1, 2, "expected a field"),
    (r#"http.host eq "abc"#, 1, 14, "unterminated string"),
    (r#"http.host eq "a\d""#, 1, 16, "unknown escape `\\d`"),
    (
        "ip.src eq 10.0.0.256",
        1,
        11,
        "not a number or an IP address",
    ),
    (
        "ip.src eq 010.0.0.1",
        1,
        11,
        "not a number or an IP address",
    ),
    ("ip.src in {10.0.0.0/33}", 1, 12, "not a CIDR"),
    ("http.host eq 99999999999999999999", 1, 14, "too large"),
    (r#"http.host = "a""#, 1, 11, "equality is `eq` or `==`"),
    ("ssl & ssl", 1, 5, "`and` or `&&`"),
    ("ssl | ssl", 1, 5, "`or` or `||`"),
    ("ssl @", 1, 5, "unexpected character `@`"),
    (
        "http.request.uri.path eq /admin",
        1,
        26,
        "strings are quoted",
    ),
    (r#"http.request.headers eq "a""#, 1, 22, "expected `[`"),
    (
        "http.request.headers[x] eq \"a\"",
        1,
        22,
        "expected a quoted header name",
    ),
    (
        r#"http.request.headers["bad name"] eq "a""#,
        1,
        22,
        "not a valid header name",
    ),
    (r#"http.request.headers["a" eq "a""#, 1, 26, "expected `]`"),
    (
        r#"http.host in {"a""#,
        1,
        18,
        "unclosed set: no `}` for the `{` at line 1, column 14",
    ),
    (r#"http.host in {, "a"}"#, 1, 15, "expected a value"),
    (
        r#"http.request.uri.path matches "(""#,
        1,
        31,
        "invalid regex: unclosed group",
    ),
    // An error on a later line names that line, and columns restart at 1 after a newline.
    (
        "ssl and\n  http.host eq \"a\" and\n  ip.src eq \"x\"",
        3,
        13,
        "takes one IP address",
    ),
    (
        "http.host eq \"a\nb\" and foo eq 1",
        2,
        8,
        "unknown field `foo`",
    ),
    // Columns count characters, not bytes.
    (
        r#"http.host eq "été" and foo eq 1"#,
        1,
        24,
        "unknown field `foo`",
    ),
    ("ssl\r\nand @", 2, 5, "unexpected character `@`"),
];

#[test]
fn syntax_errors_name_the_offending_token() {
    for &(text, line, column, message) in SYNTAX_ERRORS {
        let error = refused(text);
        assert_eq!(
            (error.line, error.column),
            (line, column),
            "{text:?}: {error}"
        );
        assert!(error.message.contains(message), "{text:?}: {error}");
        assert!(lies_within(text, error.line, error.column), "{text:?}");
    }
}

/// (text, line, column, part of the message)
const TYPE_ERRORS: &[(&str, usize, usize, &str)] = &[
    (
        r#"ip.src eq "1.2.3.4""#,
        1,
        11,
        "takes one IP address, not a string",
    ),
    ("ip.src eq 1", 1, 11, "takes one IP address, not an integer"),
    (
        "ip.src eq 10.0.0.0/8",
        1,
        11,
        "for a network write `ip.src in {10.0.0.0/8}`",
    ),
    (
        "ip.src lt 10.0.0.0/8",
        1,
        11,
        "takes one IP address, not a CIDR",
    ),
    (
        r#"ip.src contains "1""#,
        1,
        8,
        "`contains` applies to text fields",
    ),
    (
        r#"ip.src matches "1""#,
        1,
        8,
        "`matches` applies to text fields",
    ),
    ("ip.src in 10.0.0.0/8", 1, 11, "`in` takes a set"),
    (
        r#"ip.src in {10.0.0.1 "a"}"#,
        1,
        21,
        "holds IP addresses and CIDRs, not a string",
    ),
    (
        "ip.src eq {10.0.0.1}",
        1,
        11,
        "a set goes with `in`, not with `eq`",
    ),
    ("ip.src in {}", 1, 11, "an empty set"),
    ("ssl eq 1", 1, 5, "write `ssl` or `not ssl`"),
    ("not ssl contains \"a\"", 1, 9, "write `ssl` or `not ssl`"),
    (
        "ip.src and ssl",
        1,
        8,
        "expected an operator after `ip.src`",
    ),
    ("http.host eq 10.0.0.1", 1, 14, "`http.host` is text"),
    (
        r#"http.host in {"a" 1}"#,
        1,
        19,
        "this is an integer, the first is a string",
    ),
    (
        r#"http.host in {1 "a"}"#,
        1,
        17,
        "this is a string, the first is an integer",
    ),
    ("http.host in {10.0.0.1}", 1, 14, "not addresses"),
    (r#"http.host in {}"#, 1, 14, "an empty set"),
    (r#"http.host in "a""#, 1, 14, "`in` takes a set"),
    (
        r#"http.host eq {"a"}"#,
        1,
        14,
        "a set goes with `in`, not with `eq`",
    ),
    (
        "http.host contains 1",
        1,
        20,
        "`contains` takes a string, not an integer",
    ),
    ("http.host matches 1", 1, 19, "`matches` takes a string"),
    (
        "http.host starts_with 1",
        1,
        23,
        "`starts_with` takes a string",
    ),
    ("http.host ends_with 1", 1, 21, "`ends_with` takes a string"),
    (
        r#"http.request.headers["x-n"] lt 10.0.0.0/8"#,
        1,
        32,
        r#"`http.request.headers["x-n"]` is text"#,
    ),
];

#[test]
fn type_errors_are_parse_errors() {
    for &(text, line, column, message) in TYPE_ERRORS {
        let error = refused(text);
        assert_eq!(
            (error.line, error.column),
            (line, column),
            "{text:?}: {error}"
        );
        assert!(error.message.contains(message), "{text:?}: {error}");
    }
}

#[test]
fn errors_display_line_and_column_first() {
    let error = refused("ssl and\n @");
    assert_eq!(
        error.to_string(),
        "line 2, column 2: unexpected character `@`"
    );
    let _: &dyn std::error::Error = &error;
}

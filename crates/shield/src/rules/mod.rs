//! The firewall's rule expressions: a small language, modelled on Cloudflare's rules language,
//! in which a site says which requests a rule applies to.
//!
//! ```text
//! http.request.uri.path starts_with "/admin" and not ip.src in {10.0.0.0/8 2001:db8::/32}
//! ```
//!
//! An expression is parsed, type-checked and compiled once per config snapshot into an [`Expr`];
//! every mistake is reported then, with its line and column, so evaluating never fails.
//! Evaluation runs for every rule on every request, so it reads the request in place and
//! allocates only when a header it reads was sent several times; `benches/rules.rs` measures
//! what a typical rule costs. A site's rules are evaluated together as a [`RuleSet`], which
//! reads the headers its rules name in one pass over the request's, tests the conditions of
//! many rules together (the text ones per field, the address ones all at once) and evaluates
//! only the rules that one of these found could match; an [`Expr`] alone (a rate limit's
//! filter) reads the request itself.
//!
//! | module | job |
//! |---|---|
//! | `lexer` | text to tokens, each with its line and column; literals (strings, integers, IPs, CIDRs) decoded |
//! | `parser` | tokens to a tree: precedence, parentheses, sets, the nesting limit |
//! | `field` | the fields a rule may read, by name, and how each is read from a request |
//! | `compile` | one condition (`field operator value`) type-checked into what evaluation runs |
//! | `sets` | sets of strings, integers and IP ranges that answer `in` without hashing |
//! | `eval` | the compiled tree and its evaluation |
//! | `headers` | the headers a rule set reads, taken from the request in one pass over its fields |
//! | `literals` | the text conditions of many rules on one field, tested on one read of it |
//! | `addresses` | the address conditions of many rules, answered by one lookup |
//! | `ruleset` | a site's rules evaluated together: each rule only when a condition that can decide it holds |
//! | `tests` | the tests, by what they check (see its table) |
//!
//! ## The language
//! - **Fields**: `ip.src` (an IP), `ssl` (a boolean), and the text fields `http.host`,
//!   `http.request.method`, `http.request.uri.path`, `http.request.uri.query`,
//!   `http.user_agent`, `http.cookie`, `http.request.headers["name"]`. A header sent several
//!   times reads as its values joined with `", "` (the Cookie header with `"; "`); an absent
//!   header reads as the empty string.
//! - **Operators**: `eq ne lt le gt ge contains matches starts_with ends_with in`, the aliases
//!   `== != < <= > >= ~`, and `not and or` (aliases `! && ||`) with parentheses. `not` binds
//!   tighter than `and`, which binds tighter than `or`.
//! - **Literals**: strings in double quotes (escapes `\"` and `\\` only), non-negative
//!   integers, bare IPv4/IPv6 addresses and CIDRs, and sets `{ ... }` of one kind of these,
//!   separated by whitespace or commas. An empty set is refused: it could only be a mistake.
//!
//! ## Types, checked when parsing
//! - `ip.src` compares with addresses: `eq ne` with one address, `lt le gt ge` by address order
//!   within a family (false across families), `in` with a set of addresses and CIDRs.
//!   IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), the client's and the literals', count as
//!   their IPv4 address, so `::/0` does not match IPv4 clients.
//! - `ssl` stands alone or negated.
//! - Text fields compare with strings, byte by byte and case-sensitively (`contains`,
//!   `starts_with`, `ends_with`, `matches` take a string; `in` a set of strings). Compared with
//!   an integer or a set of integers, the field is read as a decimal integer; a field that is
//!   not one makes the comparison false, `ne` included. An address compared with a text field
//!   is refused: quoted, it is a string like any other.
//! - `matches` takes a regular expression of the `regex` crate: linear time whatever the input,
//!   and limited in compiled size.
//!
//! ## Invariants
//! 1. **Hostile text never panics and never exhausts the stack**: text is limited to
//!    [`MAX_EXPRESSION_BYTES`], parentheses to [`MAX_NESTING`] levels, regexes to
//!    [`MAX_REGEX_BYTES`] compiled. `tests::fuzz::random_and_mutated_text_never_panics`,
//!    `tests::parse::nesting_past_the_limit_is_refused_at_the_parenthesis`,
//!    `tests::parse::text_past_the_length_limit_is_refused`,
//!    `tests::parse::a_long_chain_of_and_parses_and_evaluates`.
//! 2. **Every error names a line and column inside the text**, those of the first offending
//!    token. `tests::fuzz::random_and_mutated_text_never_panics`,
//!    `tests::parse::syntax_errors_name_the_offending_token`,
//!    `tests::parse::type_errors_are_parse_errors`.
//! 3. **Evaluation agrees with a straightforward interpreter** of the same expression.
//!    `tests::agreement::evaluation_agrees_with_a_straightforward_interpreter`.
//! 4. **Evaluation never fails, and allocates only to join a header sent several times**:
//!    every type error is a parse error. `tests::parse::type_errors_are_parse_errors`,
//!    `tests::allocation::evaluation_allocates_nothing_when_headers_are_sent_once`,
//!    `tests::allocation::a_rule_set_allocates_nothing_when_headers_are_sent_once`.
//! 5. **A rule set says of each rule what the rule says alone**, whether it answered the rule
//!    from its grouped conditions, evaluated it because one of them held, skipped it because
//!    none did, or evaluated it on every request.
//!    `tests::agreement::a_rule_set_agrees_with_each_rule_alone`,
//!    `tests::ruleset::grouped_literals_answer_per_rule_as_each_rule_alone`,
//!    `tests::ruleset::address_conditions_of_many_rules_answer_per_rule_as_each_rule_alone`,
//!    `tests::ruleset::conditions_on_an_absent_header_hold_as_on_an_empty_one`,
//!    `tests::ruleset::more_named_headers_than_slots_still_read_as_each_rule_alone`.

mod addresses;
mod compile;
mod eval;
mod field;
mod headers;
mod lexer;
mod literals;
mod parser;
mod ruleset;
mod sets;
#[cfg(test)]
mod tests;

use crate::RequestFacts;

pub use ruleset::RuleSet;

/// The longest expression accepted, in bytes. Generous for a hand-written rule; it bounds the
/// work and memory a config can ask of the parser.
pub const MAX_EXPRESSION_BYTES: usize = 16 * 1024;

/// How deeply parentheses may nest. The parser recurses once per level; this keeps that far
/// from any stack's limit.
pub const MAX_NESTING: usize = 64;

/// The largest a `matches` regex may be once compiled, in bytes (the `regex` crate's
/// `size_limit`). Counted repetitions such as `\w{1000}{1000}` blow up when compiled; this
/// turns them into a parse error instead of a config that eats memory.
pub const MAX_REGEX_BYTES: usize = 1 << 20;

/// A compiled rule expression: parsed once, then evaluated against any number of requests.
///
/// ```
/// use http::HeaderMap;
/// use shield::RequestFacts;
/// use shield::rules::Expr;
///
/// let rule = Expr::parse(r#"http.request.uri.path starts_with "/admin" and not ip.src in {10.0.0.0/8}"#)?;
/// let headers = HeaderMap::new();
/// let request = RequestFacts {
///     ip: "203.0.113.7".parse().unwrap(),
///     host: "example.com",
///     method: "GET",
///     path: "/admin/users",
///     query: "",
///     headers: &headers,
///     tls: true,
///     version: http::Version::HTTP_11,
///     connection: shield::ConnectionTraits::none(),
/// };
/// assert!(rule.eval(&request));
/// # Ok::<(), shield::rules::RuleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Expr {
    source: Box<str>,
    root: eval::Node,
}

impl Expr {
    /// Parses and type-checks `text`. Every error names the line and column of the offending
    /// token.
    pub fn parse(text: &str) -> Result<Expr, RuleError> {
        let root = parser::parse(text)?;
        Ok(Expr {
            source: text.into(),
            root,
        })
    }

    /// Whether the request matches. Never fails: anything that could go wrong was refused by
    /// [`Expr::parse`].
    pub fn eval(&self, facts: &RequestFacts<'_>) -> bool {
        self.root.eval(&mut eval::Direct(facts))
    }

    /// The text this expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Why an expression was refused, and where: `line` and `column` are 1-based, the column
/// counted in characters, and point at the offending token (or just past the text's end when
/// the text stopped too early).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct RuleError {
    /// 1-based line within the expression.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

//! One condition, `field operator value`, type-checked into the test evaluation runs.
//!
//! This is where the language's types live: which operators a field takes and with which
//! values. Every combination that makes no sense is refused here, with the position of the
//! operator or value at fault, so that evaluation has no error to report.

use super::MAX_REGEX_BYTES;
use super::RuleError;
use super::eval::{Comparison, IpTest, Node, Read, TextTest};
use super::field::Field;
use super::lexer::{Operator, Pos};
use super::sets::{IntegerSet, IpRanges, TextSet};
use ipnet::IpNet;
use memchr::memmem::Finder;
use std::net::IpAddr;

/// A single value as written.
#[derive(Debug, Clone)]
pub(super) enum Literal {
    Str(String),
    Int(i64),
    Ip(IpAddr),
    Cidr(IpNet),
}

/// What stands right of an operator: a literal, or a set of them with their positions.
#[derive(Debug, Clone)]
pub(super) enum Value {
    One(Literal),
    Set(Vec<(Literal, Pos)>),
}

/// Where each part of a condition starts, for error messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Positions {
    pub operator: Pos,
    pub value: Pos,
}

pub(super) fn condition(
    field: Field,
    operator: Operator,
    value: Value,
    at: Positions,
) -> Result<Node, RuleError> {
    let name = field.to_string();
    match field {
        Field::ClientIp => ip_test(operator, value, at).map(Node::ClientIp),
        Field::Tls => Err(at.operator.error(SSL_STANDS_ALONE)),
        Field::Text(text) => Ok(Node::Text(
            Read::uncached(text),
            text_test(&name, operator, value, at)?,
        )),
    }
}

pub(super) const SSL_STANDS_ALONE: &str =
    "`ssl` is true or false by itself: write `ssl` or `not ssl`";

fn ip_test(operator: Operator, value: Value, at: Positions) -> Result<IpTest, RuleError> {
    let keyword = operator.keyword();
    match (operator, value) {
        (Operator::In, Value::Set(items)) => {
            if items.is_empty() {
                return Err(at.value.error(EMPTY_SET));
            }
            let mut nets = Vec::with_capacity(items.len());
            for (item, item_at) in items {
                nets.push(match item {
                    Literal::Ip(ip) => IpNet::from(ip),
                    Literal::Cidr(net) => net,
                    other => {
                        return Err(item_at.error(format!(
                            "a set for `ip.src` holds IP addresses and CIDRs, not {}",
                            other.kind()
                        )));
                    }
                });
            }
            Ok(IpTest::In(IpRanges::new(nets)))
        }
        (Operator::In, Value::One(_)) => Err(at.value.error(IN_TAKES_A_SET)),
        (_, Value::Set(_)) => Err(at
            .value
            .error(format!("a set goes with `in`, not with `{keyword}`"))),
        (Operator::Compare(comparison), Value::One(Literal::Ip(ip))) => {
            Ok(IpTest::Compare(comparison, ip.to_canonical()))
        }
        (Operator::Compare(Comparison::Eq | Comparison::Ne), Value::One(Literal::Cidr(net))) => {
            Err(at.value.error(format!(
                "`ip.src {keyword}` takes one address; for a network write `ip.src in {{{net}}}`"
            )))
        }
        (Operator::Compare(_), Value::One(other)) => Err(at.value.error(format!(
            "`ip.src {keyword}` takes one IP address, not {}",
            other.kind()
        ))),
        (_, Value::One(_)) => Err(at.operator.error(format!(
            "`{keyword}` applies to text fields, not to `ip.src`"
        ))),
    }
}

fn text_test(
    name: &str,
    operator: Operator,
    value: Value,
    at: Positions,
) -> Result<TextTest, RuleError> {
    let keyword = operator.keyword();
    match (operator, value) {
        (Operator::In, Value::Set(items)) => text_set(name, items, at.value),
        (Operator::In, Value::One(_)) => Err(at.value.error(IN_TAKES_A_SET)),
        (_, Value::Set(_)) => Err(at
            .value
            .error(format!("a set goes with `in`, not with `{keyword}`"))),
        (Operator::Compare(comparison), Value::One(Literal::Str(literal))) => {
            Ok(TextTest::Compare(comparison, literal.into_bytes().into()))
        }
        (Operator::Compare(comparison), Value::One(Literal::Int(literal))) => {
            Ok(TextTest::CompareInteger(comparison, literal))
        }
        (Operator::Contains, Value::One(Literal::Str(needle))) => Ok(TextTest::Contains(Box::new(
            Finder::new(needle.as_bytes()).into_owned(),
        ))),
        (Operator::StartsWith, Value::One(Literal::Str(prefix))) => {
            Ok(TextTest::StartsWith(prefix.into_bytes().into()))
        }
        (Operator::EndsWith, Value::One(Literal::Str(suffix))) => {
            Ok(TextTest::EndsWith(suffix.into_bytes().into()))
        }
        (Operator::Matches, Value::One(Literal::Str(pattern))) => {
            regex(&pattern, at.value).map(TextTest::Matches)
        }
        (_, Value::One(Literal::Ip(_) | Literal::Cidr(_))) => Err(at.value.error(format!(
            "`{name}` is text: an address compared with it is quoted, as a string"
        ))),
        (_, Value::One(other)) => Err(at
            .value
            .error(format!("`{keyword}` takes a string, not {}", other.kind()))),
    }
}

/// A set of strings or a set of integers, whichever its first item is.
fn text_set(name: &str, items: Vec<(Literal, Pos)>, at: Pos) -> Result<TextTest, RuleError> {
    let Some((first, _)) = items.first() else {
        return Err(at.error(EMPTY_SET));
    };
    let first_kind = first.kind();
    let mismatch = |item: &Literal, item_at: Pos| {
        item_at.error(format!(
            "a set holds one kind of value: this is {}, the first is {first_kind}",
            item.kind()
        ))
    };
    match first {
        Literal::Str(_) => {
            let mut strings = Vec::with_capacity(items.len());
            for (item, item_at) in items {
                match item {
                    Literal::Str(s) => strings.push(s.into_bytes().into()),
                    other => return Err(mismatch(&other, item_at)),
                }
            }
            Ok(TextTest::In(TextSet::new(strings)))
        }
        Literal::Int(_) => {
            let mut integers = Vec::with_capacity(items.len());
            for (item, item_at) in items {
                match item {
                    Literal::Int(n) => integers.push(n),
                    other => return Err(mismatch(&other, item_at)),
                }
            }
            Ok(TextTest::InIntegers(IntegerSet::new(integers)))
        }
        Literal::Ip(_) | Literal::Cidr(_) => Err(at.error(format!(
            "`{name}` is text: a set for it holds strings or integers, not addresses"
        ))),
    }
}

/// A `matches` pattern, compiled once. The `regex` crate runs in time linear in the input
/// whatever the pattern (no backtracking, so no ReDoS); the size limit refuses patterns whose
/// compiled form would be huge.
fn regex(pattern: &str, at: Pos) -> Result<regex::bytes::Regex, RuleError> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|error| {
            at.error(match error {
                regex::Error::CompiledTooBig(limit) => format!(
                    "regex too big once compiled (over {limit} bytes): simplify it or split it \
                     across rules"
                ),
                regex::Error::Syntax(text) => format!("invalid regex: {}", regex_complaint(&text)),
                other => format!("invalid regex: {other}"),
            })
        })
}

/// The one line of a `regex` syntax error that says what is wrong; the rest repeats the
/// pattern with a caret under it, which a one-line error cannot show.
fn regex_complaint(text: &str) -> &str {
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(text)
        .trim()
}

const EMPTY_SET: &str = "an empty set matches nothing: give it at least one value";
const IN_TAKES_A_SET: &str = "`in` takes a set: `{ ... }`";

impl Literal {
    fn kind(&self) -> &'static str {
        match self {
            Literal::Str(_) => "a string",
            Literal::Int(_) => "an integer",
            Literal::Ip(_) => "an IP address",
            Literal::Cidr(_) => "a CIDR",
        }
    }
}

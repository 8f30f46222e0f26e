//! What a compiled expression is, and its evaluation against a request.
//!
//! Everything evaluation needs was prepared at parse time: header names resolved, substring
//! finders and regexes built, sets sorted. `and` and `or` chains are flat lists, so the tree is
//! only as deep as the expression's parentheses.

use super::field::TextField;
use super::sets::{IntegerSet, IpRanges, TextSet};
use crate::RequestFacts;
use memchr::memmem::Finder;
use std::cmp::Ordering;
use std::net::IpAddr;

/// `eq ne lt le gt ge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    /// Whether the comparison holds for a field that orders `ordering` against the literal.
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Eq => ordering.is_eq(),
            Comparison::Ne => ordering.is_ne(),
            Comparison::Lt => ordering.is_lt(),
            Comparison::Le => ordering.is_le(),
            Comparison::Gt => ordering.is_gt(),
            Comparison::Ge => ordering.is_ge(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Tls,
    ClientIp(IpTest),
    Text(TextField, TextTest),
}

#[derive(Debug, Clone)]
pub(super) enum IpTest {
    /// The literal is canonical: an IPv4-mapped address was turned into its IPv4 address.
    Compare(Comparison, IpAddr),
    In(IpRanges),
}

#[derive(Debug, Clone)]
pub(super) enum TextTest {
    Compare(Comparison, Box<[u8]>),
    /// Boxed: a finder is nearly 300 bytes, and every node is as large as the largest.
    Contains(Box<Finder<'static>>),
    StartsWith(Box<[u8]>),
    EndsWith(Box<[u8]>),
    Matches(regex::bytes::Regex),
    In(TextSet),
    /// The field read as a decimal integer; false when it is not one.
    CompareInteger(Comparison, i64),
    /// The field read as a decimal integer; false when it is not one.
    InIntegers(IntegerSet),
}

impl Node {
    pub fn eval(&self, facts: &RequestFacts<'_>) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|node| node.eval(facts)),
            Node::Any(nodes) => nodes.iter().any(|node| node.eval(facts)),
            Node::Not(node) => !node.eval(facts),
            Node::Tls => facts.tls,
            Node::ClientIp(test) => test.holds(facts.ip.to_canonical()),
            Node::Text(field, test) => test.holds(&field.read(facts)),
        }
    }
}

impl IpTest {
    fn holds(&self, ip: IpAddr) -> bool {
        match self {
            IpTest::Compare(comparison, literal) => match (ip, literal) {
                (IpAddr::V4(ip), IpAddr::V4(literal)) => comparison.holds(ip.cmp(literal)),
                (IpAddr::V6(ip), IpAddr::V6(literal)) => comparison.holds(ip.cmp(literal)),
                // Addresses of two families are never equal, and have no order between them.
                _ => *comparison == Comparison::Ne,
            },
            IpTest::In(ranges) => ranges.contains(ip),
        }
    }
}

impl TextTest {
    fn holds(&self, value: &[u8]) -> bool {
        match self {
            TextTest::Compare(Comparison::Eq, literal) => same_bytes(value, literal),
            TextTest::Compare(Comparison::Ne, literal) => !same_bytes(value, literal),
            TextTest::Compare(comparison, literal) => comparison.holds(value.cmp(literal)),
            TextTest::Contains(finder) => finder.find(value).is_some(),
            TextTest::StartsWith(prefix) => value
                .get(..prefix.len())
                .is_some_and(|start| same_bytes(start, prefix)),
            TextTest::EndsWith(suffix) => value
                .len()
                .checked_sub(suffix.len())
                .is_some_and(|at| same_bytes(&value[at..], suffix)),
            TextTest::Matches(regex) => regex.is_match(value),
            TextTest::In(set) => set.contains(value),
            TextTest::CompareInteger(comparison, literal) => {
                as_integer(value).is_some_and(|n| comparison.holds(n.cmp(literal)))
            }
            TextTest::InIntegers(set) => as_integer(value).is_some_and(|n| set.contains(n)),
        }
    }
}

/// A field as a decimal integer, as `str::parse` reads one (an optional sign, then digits).
fn as_integer(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `a == b`, without a call to `memcmp` for the short strings rules mostly compare (methods,
/// path prefixes, host names), where the call costs about as much as the comparison (measured
/// in `benches/rules.rs`: `ends_with ".env"` 8 ns with `==`, 6 ns with this).
#[inline]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        // Two overlapping words cover every byte.
        8..=16 => {
            a.first_chunk::<8>() == b.first_chunk::<8>()
                && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        4..8 => {
            a.first_chunk::<4>() == b.first_chunk::<4>()
                && a.last_chunk::<4>() == b.last_chunk::<4>()
        }
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

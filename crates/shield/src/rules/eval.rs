//! What a compiled expression is, and its evaluation against a request.
//!
//! Everything evaluation needs was prepared at parse time: header names resolved, substring
//! finders and regexes built, sets sorted. `and` and `or` chains are flat lists, so the tree is
//! only as deep as the expression's parentheses.

use super::field::TextField;
use super::sets::{IntegerSet, IpRanges, TextSet};
use crate::RequestFacts;
use memchr::memmem::Finder;
use std::borrow::Cow;
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
    Text(Read, TextTest),
}

/// A text field a condition reads, and for a header field, the slot a
/// [`RuleSet`](super::RuleSet) reads it into in its one pass over the request's headers.
#[derive(Debug, Clone)]
pub(super) struct Read {
    pub field: TextField,
    /// [`Read::UNCACHED`] until a rule set assigns one.
    pub slot: u8,
}

impl Read {
    /// Read from the request every time: a field that is not a header (and so costs nothing
    /// to read), or one past a rule set's slots.
    pub const UNCACHED: u8 = u8::MAX;

    pub fn uncached(field: TextField) -> Read {
        Read {
            field,
            slot: Read::UNCACHED,
        }
    }
}

/// Where evaluation gets the request from: straight from it ([`Direct`]), or through a rule
/// set's per-request cache of the text fields it reads.
pub(super) trait Fields<'a> {
    fn facts(&self) -> &RequestFacts<'a>;
    /// Runs `then` on the field's value.
    fn text<R>(&mut self, read: &Read, then: impl FnOnce(&[u8]) -> R) -> R;
}

/// Reads each field from the request when a condition asks: one expression alone reads each
/// field about once anyway.
pub(super) struct Direct<'r, 'a>(pub &'r RequestFacts<'a>);

impl<'a> Fields<'a> for Direct<'_, 'a> {
    fn facts(&self) -> &RequestFacts<'a> {
        self.0
    }

    #[inline]
    fn text<R>(&mut self, read: &Read, then: impl FnOnce(&[u8]) -> R) -> R {
        let value: Cow<'a, [u8]> = read.field.read(self.0);
        then(&value)
    }
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
    pub fn eval<'a>(&self, fields: &mut impl Fields<'a>) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|node| node.eval(fields)),
            Node::Any(nodes) => nodes.iter().any(|node| node.eval(fields)),
            Node::Not(node) => !node.eval(fields),
            Node::Tls => fields.facts().tls,
            Node::ClientIp(test) => test.holds(fields.facts().ip.to_canonical()),
            Node::Text(read, test) => fields.text(read, |value| test.holds(value)),
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
    #[inline]
    pub fn holds(&self, value: &[u8]) -> bool {
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
            TextTest::CompareInteger(..) | TextTest::InIntegers(_) => {
                as_integer(value).is_some_and(|n| self.holds_for_integer(n))
            }
        }
    }

    /// For the tests on a field read as an integer, whether the test holds for a field that
    /// reads as `n`; false for every other test.
    #[inline]
    pub fn holds_for_integer(&self, n: i64) -> bool {
        match self {
            TextTest::CompareInteger(comparison, literal) => comparison.holds(n.cmp(literal)),
            TextTest::InIntegers(set) => set.contains(n),
            _ => false,
        }
    }
}

/// A field as a decimal integer, as `str::parse` reads one (an optional sign, then digits).
pub(super) fn as_integer(value: &[u8]) -> Option<i64> {
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

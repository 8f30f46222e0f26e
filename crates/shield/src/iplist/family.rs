//! One address family's half of an [`IpTable`](super::IpTable): its prefixes with their values,
//! and the intervals that find the innermost one for an address.

use super::intervals::{Address, Intervals, Span};
use ipnet::{Ipv4Net, Ipv6Net};

/// A network of one family, seen as a span of integer addresses.
pub(super) trait Prefix: Copy {
    type Address: Address;
    /// The addresses the network covers, host bits of the written address ignored.
    fn span(&self) -> Span<Self::Address>;
}

impl Prefix for Ipv4Net {
    type Address = u32;
    fn span(&self) -> Span<u32> {
        Span {
            first: self.network().to_bits(),
            last: self.broadcast().to_bits(),
        }
    }
}

impl Prefix for Ipv6Net {
    type Address = u128;
    fn span(&self) -> Span<u128> {
        Span {
            first: self.network().to_bits(),
            last: self.broadcast().to_bits(),
        }
    }
}

/// The prefixes of one family as intervals. An interval carries what a lookup needs at once,
/// the innermost prefix's value, and that prefix's position in `prefixes`, which only
/// [`IpTable::lookup_prefix`](super::IpTable::lookup_prefix) reads: keeping the network out of
/// the interval keeps the intervals small, so more of them fit in a cache line.
#[derive(Debug, Clone)]
pub(super) struct FamilyTable<P: Prefix, V> {
    intervals: Intervals<P::Address, (V, u32)>,
    /// Distinct prefixes, in containment order.
    prefixes: Vec<P>,
}

impl<P: Prefix, V> Default for FamilyTable<P, V> {
    fn default() -> Self {
        Self {
            intervals: Intervals::default(),
            prefixes: Vec::new(),
        }
    }
}

impl<P: Prefix, V> FamilyTable<P, V> {
    /// Distinct prefixes held.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }
}

impl<P: Prefix, V: Copy> FamilyTable<P, V> {
    /// Builds from prefixes in insertion order; of a prefix inserted twice, the later value
    /// stays.
    pub fn build(mut entries: Vec<(P, V)>) -> Self {
        // Containment order (see `Intervals::build`). The sort is stable, so a prefix inserted
        // more than once has its insertions side by side, in insertion order.
        entries.sort_by_key(|(prefix, _)| {
            let span = prefix.span();
            (span.first, std::cmp::Reverse(span.last))
        });
        // `dedup_by` hands each element with the one kept before it, and drops it when told
        // to: move its value onto the kept one first, so the later insertion wins.
        entries.dedup_by(|later, kept| {
            let same = later.0.span() == kept.0.span();
            if same {
                kept.1 = later.1;
            }
            same
        });
        let spans: Vec<_> = entries.iter().map(|(prefix, _)| prefix.span()).collect();
        let intervals = Intervals::build(&spans, |index| {
            let position = u32::try_from(index)
                .expect("an IP table holds fewer than 2^32 prefixes of one family");
            (entries[index].1, position)
        });
        Self {
            intervals,
            prefixes: entries.into_iter().map(|(prefix, _)| prefix).collect(),
        }
    }

    /// The value of the innermost prefix covering `address`.
    #[inline]
    pub fn lookup(&self, address: P::Address) -> Option<V> {
        self.intervals.find(address).map(|&(value, _)| value)
    }

    /// The innermost prefix covering `address`, with its value.
    #[inline]
    pub fn lookup_prefix(&self, address: P::Address) -> Option<(P, V)> {
        self.intervals
            .find(address)
            .map(|&(value, position)| (self.prefixes[position as usize], value))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.intervals.heap_bytes() + self.prefixes.capacity() * size_of::<P>()
    }
}

//! IP allow and deny lists: a table of IPv4 and IPv6 prefixes, each with a value, where a
//! lookup returns the value of the longest prefix that holds the address.
//!
//! With a deny of `10.0.0.0/8` and an allow of `10.1.0.0/16`, `10.1.2.3` is allowed and
//! `10.2.0.1` denied. What the values mean (allow, deny, which list) is the caller's business;
//! this module only finds the most specific entry.
//!
//! ```
//! use shield::iplist::{IpTableBuilder, parse_net};
//!
//! #[derive(Debug, Clone, Copy, PartialEq)]
//! enum Access { Allow, Deny }
//!
//! let mut builder = IpTableBuilder::new();
//! builder.insert(parse_net("10.0.0.0/8").unwrap(), Access::Deny);
//! builder.insert(parse_net("10.1.0.0/16").unwrap(), Access::Allow);
//! let table = builder.build();
//!
//! assert_eq!(table.lookup("10.1.2.3".parse().unwrap()), Some(Access::Allow));
//! assert_eq!(table.lookup("10.2.0.1".parse().unwrap()), Some(Access::Deny));
//! assert_eq!(table.lookup("192.0.2.1".parse().unwrap()), None);
//! ```
//!
//! # Design
//!
//! A table is built once per config snapshot and then read, with no lock, by every request, so
//! the build does the work: it flattens each family's prefixes into sorted, non-overlapping
//! intervals of integer addresses (`u32`, `u128`), each carrying the most specific prefix that
//! covers it. Prefixes are nested or disjoint, never partly overlapping, so one sweep over them
//! sorted (wider first at a shared start) with a stack of the prefixes still open yields the
//! intervals; at most two per prefix, plus one. A lookup is then a binary search for the last
//! interval starting at or below the address.
//!
//! A plain binary search over a million intervals touches ~20 cache lines; the table narrows it
//! first with an array of bucket offsets indexed by the address's top bits, sized for about
//! eight intervals per bucket, so a lookup reads one offset and one or two cache lines of
//! starts. A trie (a Patricia tree or a multibit trie) would also be fast, but costs more
//! memory per prefix and many more pointers to chase; the intervals are three flat arrays.
//!
//! Buckets split the address space evenly. IPv4 lists spread well; real IPv6 lists crowd into
//! `2000::/3`, where buckets hold more intervals and the search within one takes a few more
//! steps (still a binary search over the bucket, never a scan). The benchmark measures both.
//!
//! Cost (`cargo bench -p shield --bench iplist` prints the current numbers): building sorts the
//! prefixes, O(n log n); memory per prefix is the prefix and its value, two interval starts
//! with two 4-byte owners, and half a byte of bucket offsets.
//!
//! # Invariants
//!
//! 1. The longest matching prefix wins, whatever the insertion order:
//!    `longer_prefix_inside_a_shorter_one_wins`, and the property test
//!    `lookup_matches_a_linear_longest_prefix_search`.
//! 2. A prefix inserted twice keeps the later value: `the_later_insert_of_a_prefix_wins`.
//! 3. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, how IPv4 clients arrive on a dual-stack
//!    socket) are looked up as IPv4, and prefixes written in that form are stored as IPv4:
//!    `mapped_addresses_are_looked_up_as_ipv4`, `mapped_prefixes_are_stored_as_ipv4`.
//! 4. A lookup never allocates and never panics: it indexes arrays whose bounds the build
//!    guarantees (`Intervals` always starts at address 0, buckets cover the whole space).

mod family;
mod intervals;
mod parse;

pub use parse::{ListError, parse_list, parse_net};

use family::FamilyTable;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::IpAddr;

/// Prefixes of both families with a value each, searched by longest match. Built by
/// [`IpTableBuilder`]; read-only afterwards, so it is shared across threads as it is.
#[derive(Clone)]
pub struct IpTable<V> {
    v4: FamilyTable<Ipv4Net, V>,
    v6: FamilyTable<Ipv6Net, V>,
}

impl<V> Default for IpTable<V> {
    /// An empty table: every lookup misses.
    fn default() -> Self {
        Self {
            v4: FamilyTable::default(),
            v6: FamilyTable::default(),
        }
    }
}

/// Sizes, not contents: a table may hold a million prefixes.
impl<V> fmt::Debug for IpTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpTable")
            .field("v4_prefixes", &self.v4.len())
            .field("v6_prefixes", &self.v6.len())
            .finish_non_exhaustive()
    }
}

impl<V: Copy> IpTable<V> {
    /// The value of the longest prefix holding `ip`, or `None` when no prefix does.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<V> {
        match as_ipv4_if_mapped(ip) {
            IpAddr::V4(ip) => self.v4.lookup(ip.to_bits()),
            IpAddr::V6(ip) => self.v6.lookup(ip.to_bits()),
        }
    }

    /// The longest prefix holding `ip` and its value: which entry decided, for
    /// `palisade explain`. An IPv4-mapped address matches IPv4 prefixes.
    #[inline]
    pub fn lookup_prefix(&self, ip: IpAddr) -> Option<(IpNet, V)> {
        match as_ipv4_if_mapped(ip) {
            IpAddr::V4(ip) => self
                .v4
                .lookup_prefix(ip.to_bits())
                .map(|(net, value)| (IpNet::V4(net), value)),
            IpAddr::V6(ip) => self
                .v6
                .lookup_prefix(ip.to_bits())
                .map(|(net, value)| (IpNet::V6(net), value)),
        }
    }

    /// Distinct prefixes held: a prefix inserted twice counts once.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the table holds, for metrics and the benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

/// Collects prefixes and values, then builds an [`IpTable`].
#[derive(Debug, Clone)]
pub struct IpTableBuilder<V> {
    v4: Vec<(Ipv4Net, V)>,
    v6: Vec<(Ipv6Net, V)>,
}

impl<V> Default for IpTableBuilder<V> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

impl<V: Copy> IpTableBuilder<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `net` with `value`. Inserting the same prefix again replaces its value. Host bits
    /// in `net` are ignored (`10.1.2.3/8` is `10.0.0.0/8`; [`parse_net`] refuses them before
    /// they get here). A prefix inside `::ffff:0:0/96` is stored as the IPv4 prefix it maps,
    /// since mapped addresses are looked up as IPv4.
    pub fn insert(&mut self, net: IpNet, value: V) {
        match as_ipv4_if_mapped_net(net.trunc()) {
            IpNet::V4(net) => self.v4.push((net, value)),
            IpNet::V6(net) => self.v6.push((net, value)),
        }
    }

    /// Builds the table: O(n log n) in the prefixes inserted.
    pub fn build(self) -> IpTable<V> {
        IpTable {
            v4: FamilyTable::build(self.v4),
            v6: FamilyTable::build(self.v6),
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; other addresses as they are.
#[inline]
fn as_ipv4_if_mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `::ffff:a.b.c.d/(96 + n)` as `a.b.c.d/n`. A shorter IPv6 prefix that merely contains the
/// mapped range (`::/0`, `::/64`) stays IPv6: it speaks of IPv6 clients, not of IPv4 ones.
fn as_ipv4_if_mapped_net(net: IpNet) -> IpNet {
    const MAPPED_BITS: u8 = 96;
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= MAPPED_BITS => v6
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, v6.prefix_len() - MAPPED_BITS).ok())
            .map_or(net, IpNet::V4),
        _ => net,
    }
}

#[cfg(test)]
mod tests;

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
//! the build does the work. It flattens each family's prefixes into sorted, non-overlapping
//! intervals of integer addresses (`u32`, `u128`), each carrying the value of the most
//! specific prefix that covers it. Prefixes are nested or disjoint, never partly overlapping,
//! so one sweep over them in order (wider first at a shared start) with a stack of the prefixes
//! still open yields the intervals: at most two per prefix, plus one. A lookup finds the last
//! interval starting at or below the address.
//!
//! At a million prefixes the intervals are far bigger than the CPU's caches, so what a lookup
//! costs is the cache misses it waits on one after another; a binary search over all of them
//! waits on ~20. Here a lookup waits on about one:
//!
//! - an array of bucket offsets, indexed by the address's top bits and small enough to stay in
//!   the L2 or L3 cache (a megabyte per million intervals), points at the few intervals (four
//!   to sixteen on average) in the address's bucket;
//! - those are counted (how many start at or below the address) rather than binary searched,
//!   so their one or two cache lines are fetched together;
//! - each interval holds its value beside its start, so finding the interval is reading it.
//!
//! The interval keeps an index to its prefix rather than the prefix itself, read only by
//! [`IpTable::lookup_prefix`], which keeps intervals small (16 bytes for IPv4 and 32 for IPv6
//! with a 4-byte value). Buckets split the range from the lowest prefix to the highest rather
//! than the whole space, since real IPv6 lists crowd into `2000::/3`; a bucket that still ends
//! up crowded is halved by binary search before the count.
//!
//! A trie (Patricia or multibit) would also be fast, but waits on a miss per level and costs
//! more memory per prefix in nodes and pointers; the intervals and their bucket offsets are
//! flat arrays, built with one sort (O(n log n)) and one sweep. A lookup allocates nothing.
//!
//! | file           | job                                                               |
//! |----------------|-------------------------------------------------------------------|
//! | `mod.rs`       | [`IpTable`], [`IpTableBuilder`], the IPv4-mapped rule             |
//! | `family.rs`    | one family: sort, drop repeated prefixes, prefixes for `explain`  |
//! | `intervals.rs` | the sweep into intervals, the bucket offsets, the search          |
//! | `parse.rs`     | [`parse_net`] for config values, [`parse_list`] for list files    |
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
//! 4. A lookup never panics, whatever the prefixes and the address: it indexes arrays whose
//!    bounds the build guarantees (the first interval starts at address 0, the buckets cover
//!    the whole space). Pinned by the property tests, which include `/0`, host prefixes and
//!    the top of each space, and `addresses_outside_the_bucketed_range_fall_in_the_end_buckets`.

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

    /// True when no prefix is held.
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
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `net` with `value`. Inserting the same prefix again replaces its value. Host bits
    /// in `net` are ignored (`10.1.2.3/8` is `10.0.0.0/8`; [`parse_net`] refuses them where
    /// users write them). A prefix inside `::ffff:0:0/96` is stored as the IPv4 prefix it maps,
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

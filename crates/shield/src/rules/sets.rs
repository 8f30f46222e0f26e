//! The sets `in` looks values up in: sorted once at parse time, searched by bisection when
//! evaluating, so a lookup neither hashes nor allocates.

use super::eval::same_bytes;
use ipnet::{IpNet, Ipv4Net};
use std::net::IpAddr;

/// Sets up to this size are scanned rather than bisected.
const SCANNED: usize = 8;

/// Strings, sorted and without duplicates.
#[derive(Debug, Clone)]
pub(super) struct TextSet(Box<[Box<[u8]>]>);

impl TextSet {
    pub fn new(items: Vec<Box<[u8]>>) -> TextSet {
        let mut items = items;
        items.sort_unstable();
        items.dedup();
        TextSet(items.into())
    }

    /// The strings, sorted.
    pub fn items(&self) -> &[Box<[u8]>] {
        &self.0
    }

    pub fn contains(&self, value: &[u8]) -> bool {
        // A short set is faster scanned: most items differ in length, which is checked
        // before any byte.
        if self.0.len() <= SCANNED {
            return self.0.iter().any(|item| same_bytes(item, value));
        }
        self.0.binary_search_by(|item| (**item).cmp(value)).is_ok()
    }
}

/// Integers, sorted and without duplicates.
#[derive(Debug, Clone)]
pub(super) struct IntegerSet(Box<[i64]>);

impl IntegerSet {
    pub fn new(items: Vec<i64>) -> IntegerSet {
        let mut items = items;
        items.sort_unstable();
        items.dedup();
        IntegerSet(items.into())
    }

    pub fn contains(&self, value: i64) -> bool {
        self.0.binary_search(&value).is_ok()
    }
}

/// Addresses and networks as sorted, non-overlapping ranges of each family. A set of ten
/// thousand CIDRs costs fourteen comparisons per lookup.
#[derive(Debug, Clone)]
pub(super) struct IpRanges {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl IpRanges {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> IpRanges {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match canonical(net) {
                IpNet::V4(net) => v4.push((net.network().into(), net.broadcast().into())),
                IpNet::V6(net) => v6.push((net.network().into(), net.broadcast().into())),
            }
        }
        IpRanges {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    /// The IPv4 ranges, first and last address of each, sorted and disjoint.
    pub fn v4(&self) -> &[(u32, u32)] {
        &self.v4
    }

    /// The IPv6 ranges, first and last address of each, sorted and disjoint.
    pub fn v6(&self) -> &[(u128, u128)] {
        &self.v6
    }

    /// Whether `ip`, already canonical (see [`IpAddr::to_canonical`]), is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => in_ranges(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => in_ranges(&self.v6, u128::from(ip)),
        }
    }
}

/// A network inside `::ffff:0:0/96` as the IPv4 network it maps, so that it matches the IPv4
/// clients it names: client addresses are compared as IPv4 when they are mapped ones.
pub(super) fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(v4) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4);
    }
    net
}

/// Sorted by start, overlaps merged: then the only range that can hold an address is the last
/// one starting at or before it.
fn merged<T: Ord + Copy>(mut ranges: Vec<(T, T)>) -> Box<[(T, T)]> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.into()
}

fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], value: T) -> bool {
    let after = ranges.partition_point(|&(start, _)| start <= value);
    after > 0 && value <= ranges[after - 1].1
}

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Allow,
    Deny,
}
use Access::{Allow, Deny};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn table<V: Copy>(entries: &[(&str, V)]) -> IpTable<V> {
    let mut builder = IpTableBuilder::new();
    for &(prefix, value) in entries {
        builder.insert(net(prefix), value);
    }
    builder.build()
}

#[test]
fn longer_prefix_inside_a_shorter_one_wins() {
    for entries in [
        [("10.0.0.0/8", Deny), ("10.1.0.0/16", Allow)],
        [("10.1.0.0/16", Allow), ("10.0.0.0/8", Deny)],
    ] {
        let table = table(&entries);
        assert_eq!(table.lookup(ip("10.1.2.3")), Some(Allow));
        assert_eq!(table.lookup(ip("10.2.0.1")), Some(Deny));
        assert_eq!(table.lookup(ip("11.0.0.0")), None);
    }
}

#[test]
fn deeply_nested_prefixes_each_keep_the_addresses_no_deeper_one_claims() {
    let table = table(&[
        ("10.0.0.0/8", 8),
        ("10.1.0.0/16", 16),
        ("10.1.2.0/24", 24),
        ("10.1.2.3/32", 32),
        ("10.1.3.0/24", 124), // a sibling of 10.1.2.0/24 inside the same /16
    ]);
    for (address, expected) in [
        ("10.0.255.255", 8),
        ("10.1.0.0", 16),
        ("10.1.1.255", 16),
        ("10.1.2.0", 24),
        ("10.1.2.2", 24),
        ("10.1.2.3", 32),
        ("10.1.2.4", 24),
        ("10.1.3.7", 124),
        ("10.1.4.0", 16),
        ("10.2.0.0", 8),
        ("10.255.255.255", 8),
    ] {
        assert_eq!(table.lookup(ip(address)), Some(expected), "{address}");
    }
}

#[test]
fn the_later_insert_of_a_prefix_wins() {
    let table = table(&[
        ("192.0.2.0/24", Allow),
        ("2001:db8::/32", Deny),
        ("192.0.2.0/24", Deny),
        ("2001:db8::/32", Allow),
    ]);
    assert_eq!(table.lookup(ip("192.0.2.1")), Some(Deny));
    assert_eq!(table.lookup(ip("2001:db8::1")), Some(Allow));
    assert_eq!(table.len(), 2, "a prefix inserted twice counts once");
}

#[test]
fn a_prefix_written_with_host_bits_counts_as_its_network() {
    let mut builder = IpTableBuilder::new();
    builder.insert(IpNet::new(ip("10.1.2.3"), 8).unwrap(), Deny);
    builder.insert(net("10.0.0.0/8"), Allow);
    let table = builder.build();
    assert_eq!(table.len(), 1);
    assert_eq!(
        table.lookup_prefix(ip("10.200.0.1")),
        Some((net("10.0.0.0/8"), Allow))
    );
}

#[test]
fn zero_length_prefixes_match_every_address_of_their_family_only() {
    let v4_only = table(&[("0.0.0.0/0", Deny)]);
    assert_eq!(v4_only.lookup(ip("0.0.0.0")), Some(Deny));
    assert_eq!(v4_only.lookup(ip("255.255.255.255")), Some(Deny));
    assert_eq!(v4_only.lookup(ip("::")), None);
    assert_eq!(v4_only.lookup(ip("2001:db8::1")), None);

    let v6_only = table(&[("::/0", Deny)]);
    assert_eq!(v6_only.lookup(ip("::")), Some(Deny));
    assert_eq!(
        v6_only.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
        Some(Deny)
    );
    assert_eq!(v6_only.lookup(ip("192.0.2.1")), None);
    assert_eq!(
        v6_only.lookup(ip("::ffff:192.0.2.1")),
        None,
        "a mapped address is an IPv4 client"
    );
}

#[test]
fn host_prefixes_match_only_their_own_address() {
    let table = table(&[
        ("0.0.0.0/0", Allow),
        ("192.0.2.7/32", Deny),
        ("255.255.255.255/32", Deny),
        ("::/0", Allow),
        ("2001:db8::7/128", Deny),
        ("::/128", Deny),
    ]);
    assert_eq!(table.lookup(ip("192.0.2.6")), Some(Allow));
    assert_eq!(table.lookup(ip("192.0.2.7")), Some(Deny));
    assert_eq!(table.lookup(ip("192.0.2.8")), Some(Allow));
    assert_eq!(table.lookup(ip("255.255.255.254")), Some(Allow));
    assert_eq!(table.lookup(ip("255.255.255.255")), Some(Deny));
    assert_eq!(table.lookup(ip("2001:db8::6")), Some(Allow));
    assert_eq!(table.lookup(ip("2001:db8::7")), Some(Deny));
    assert_eq!(table.lookup(ip("2001:db8::8")), Some(Allow));
    assert_eq!(table.lookup(ip("::")), Some(Deny));
    assert_eq!(table.lookup(ip("::1")), Some(Allow));
}

#[test]
fn families_do_not_match_each_other() {
    // 10.0.0.0/8 and ::a00:0/104 share their bits; neither may answer for the other.
    let table = table(&[("10.0.0.0/8", Deny), ("::a00:0/104", Allow)]);
    assert_eq!(table.lookup(ip("10.1.2.3")), Some(Deny));
    assert_eq!(table.lookup(ip("::a01:203")), Some(Allow));
}

#[test]
fn adjacent_prefixes_do_not_leak_into_each_other() {
    let table = table(&[
        ("10.0.0.0/24", 1),
        ("10.0.1.0/24", 2),
        ("10.0.2.0/23", 3),
        ("2001:db8::/64", 4),
        ("2001:db8:0:1::/64", 5),
    ]);
    for (address, expected) in [
        ("9.255.255.255", None),
        ("10.0.0.255", Some(1)),
        ("10.0.1.0", Some(2)),
        ("10.0.1.255", Some(2)),
        ("10.0.2.0", Some(3)),
        ("10.0.3.255", Some(3)),
        ("10.0.4.0", None),
        ("2001:db8::ffff:ffff:ffff:ffff", Some(4)),
        ("2001:db8:0:1::", Some(5)),
        ("2001:db8:0:2::", None),
    ] {
        assert_eq!(table.lookup(ip(address)), expected, "{address}");
    }
}

#[test]
fn mapped_addresses_are_looked_up_as_ipv4() {
    let table = table(&[("10.0.0.0/8", Deny), ("10.1.0.0/16", Allow)]);
    assert_eq!(table.lookup(ip("::ffff:10.1.2.3")), Some(Allow));
    assert_eq!(
        table.lookup_prefix(ip("::ffff:10.2.0.1")),
        Some((net("10.0.0.0/8"), Deny))
    );
    assert_eq!(table.lookup(ip("::ffff:11.0.0.1")), None);
}

#[test]
fn mapped_prefixes_are_stored_as_ipv4() {
    let table = table(&[
        ("::ffff:10.0.0.0/104", Deny),
        ("::ffff:10.1.2.3/128", Allow),
    ]);
    assert_eq!(table.lookup(ip("10.9.9.9")), Some(Deny));
    assert_eq!(
        table.lookup_prefix(ip("::ffff:10.1.2.3")),
        Some((net("10.1.2.3/32"), Allow))
    );
    // A wider IPv6 prefix that merely contains the mapped range stays IPv6.
    let table = self::table(&[("::/64", Deny)]);
    assert_eq!(table.lookup(ip("::1")), Some(Deny));
    assert_eq!(table.lookup(ip("::ffff:10.0.0.1")), None);
}

#[test]
fn lookup_prefix_names_the_prefix_that_decided() {
    let table = table(&[("2001:db8::/32", Deny), ("2001:db8:abcd::/48", Allow)]);
    assert_eq!(
        table.lookup_prefix(ip("2001:db8:abcd::1")),
        Some((net("2001:db8:abcd::/48"), Allow))
    );
    assert_eq!(
        table.lookup_prefix(ip("2001:db8:1::1")),
        Some((net("2001:db8::/32"), Deny))
    );
    assert_eq!(table.lookup_prefix(ip("2001:db9::")), None);
}

#[test]
fn empty_table_matches_nothing() {
    let table = IpTable::<Access>::default();
    assert!(table.is_empty());
    assert_eq!(table.len(), 0);
    assert_eq!(table.lookup(ip("0.0.0.0")), None);
    assert_eq!(table.lookup(ip("::")), None);
    assert!(IpTableBuilder::<Access>::new().build().is_empty());
}

#[test]
fn debug_shows_sizes_not_contents() {
    let table = table(&[("10.0.0.0/8", Deny), ("::1/128", Deny)]);
    assert_eq!(
        format!("{table:?}"),
        "IpTable { v4_prefixes: 1, v6_prefixes: 1, .. }"
    );
}

#[test]
fn table_is_shared_across_threads_without_a_lock() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<IpTable<Access>>();

    let table = std::sync::Arc::new(table(&[("10.0.0.0/8", Deny)]));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let table = table.clone();
            std::thread::spawn(move || table.lookup(ip("10.9.8.7")))
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), Some(Deny));
    }
}

// The property test: a table answers exactly as a linear scan for the longest matching prefix.

/// The reference: of the inserted prefixes holding `ip`, the longest; of equal ones (the same
/// prefix inserted again), the last inserted.
fn linear_longest_match(entries: &[(IpNet, u8)], ip: IpAddr) -> Option<(IpNet, u8)> {
    let mut best: Option<(IpNet, u8)> = None;
    for &(net, value) in entries {
        let net = net.trunc();
        if net.contains(&ip) && best.is_none_or(|(held, _)| net.prefix_len() >= held.prefix_len()) {
            best = Some((net, value));
        }
    }
    best
}

/// Addresses near a few bases, so random prefixes nest, share edges and sit side by side
/// instead of being scattered over the space; plus some anywhere at all. No base lies in
/// `::ffff:0:0/96`: mapped addresses have their own tests.
fn address() -> impl Strategy<Value = IpAddr> {
    const V4_BASES: [u32; 5] = [0, 0x0a00_0000, 0x0a01_0000, 0xc0a8_0000, 0xffff_ff00];
    const V6_BASES: [u128; 4] = [
        0,
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        0x2001_0db8_0001_0000_0000_0000_0000_0000,
        u128::MAX - 0xff,
    ];
    prop_oneof![
        (prop::sample::select(&V4_BASES[..]), 0u32..600)
            .prop_map(|(base, offset)| IpAddr::V4(Ipv4Addr::from_bits(base.wrapping_add(offset)))),
        (prop::sample::select(&V6_BASES[..]), 0u128..600)
            .prop_map(|(base, offset)| IpAddr::V6(Ipv6Addr::from_bits(base.wrapping_add(offset)))),
        any::<u32>().prop_map(|bits| IpAddr::V4(Ipv4Addr::from_bits(bits))),
        any::<u128>()
            .prop_map(|bits| IpAddr::V6(Ipv6Addr::from_bits(bits)))
            .prop_filter("not IPv4-mapped", |ip| as_ipv4_if_mapped(*ip) == *ip),
    ]
}

fn prefix() -> impl Strategy<Value = IpNet> {
    (address(), any::<u8>()).prop_map(|(address, length)| {
        let max_length = match address {
            IpAddr::V4(_) => 33,
            IpAddr::V6(_) => 129,
        };
        IpNet::new(address, length % max_length).unwrap()
    })
}

/// Every inserted prefix's first and last address and their outer neighbours: where an
/// interval boundary is wrong, one of these shows it.
fn edges(entries: &[(IpNet, u8)]) -> Vec<IpAddr> {
    let mut edges = Vec::new();
    for (net, _) in entries {
        match net.trunc() {
            IpNet::V4(net) => {
                let (first, last) = (net.network().to_bits(), net.broadcast().to_bits());
                edges.extend(
                    [
                        first.checked_sub(1),
                        Some(first),
                        Some(last),
                        last.checked_add(1),
                    ]
                    .into_iter()
                    .flatten()
                    .map(|bits| IpAddr::V4(Ipv4Addr::from_bits(bits))),
                );
            }
            IpNet::V6(net) => {
                let (first, last) = (net.network().to_bits(), net.broadcast().to_bits());
                edges.extend(
                    [
                        first.checked_sub(1),
                        Some(first),
                        Some(last),
                        last.checked_add(1),
                    ]
                    .into_iter()
                    .flatten()
                    .map(|bits| IpAddr::V6(Ipv6Addr::from_bits(bits)))
                    .filter(|ip| as_ipv4_if_mapped(*ip) == *ip),
                );
            }
        }
    }
    edges
}

fn assert_matches_linear_search(entries: &[(IpNet, u8)], probes: &[IpAddr]) {
    let mut builder = IpTableBuilder::new();
    for &(net, value) in entries {
        builder.insert(net, value);
    }
    let table = builder.build();
    for &probe in probes {
        let expected = linear_longest_match(entries, probe);
        assert_eq!(table.lookup_prefix(probe), expected, "address {probe}");
        assert_eq!(table.lookup(probe), expected.map(|(_, value)| value));
    }
}

proptest! {
    #[test]
    fn lookup_matches_a_linear_longest_prefix_search(
        entries in prop::collection::vec((prefix(), any::<u8>()), 0..60),
        probes in prop::collection::vec(address(), 0..60),
    ) {
        let probes: Vec<_> = probes.into_iter().chain(edges(&entries)).collect();
        assert_matches_linear_search(&entries, &probes);
    }
}

proptest! {
    // Big enough tables that lookups go through many buckets; fewer cases, as the linear
    // reference is slow.
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn lookup_matches_a_linear_longest_prefix_search_in_large_tables(
        entries in prop::collection::vec((prefix(), any::<u8>()), 1000..3000),
        probes in prop::collection::vec(address(), 500),
    ) {
        let probes: Vec<_> = probes.into_iter().chain(edges(&entries[..300])).collect();
        assert_matches_linear_search(&entries, &probes);
    }
}

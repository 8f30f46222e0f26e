//! IP table build time, lookup time and memory at 1k, 100k and 1M random prefixes.
//!
//! `cargo bench -p shield --bench iplist`. Plain timing with `Instant`: each lookup figure is
//! the mean over a million lookups of random addresses drawn beforehand, best of three rounds
//! (other work on the machine only ever slows a round down). Random addresses make nearly
//! every lookup in a large table a cache miss, as on real traffic from many clients; the first
//! line prints what one such miss costs on this machine, to read the rest against.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use shield::iplist::{IpTable, IpTableBuilder};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

const LOOKUPS: usize = 1_000_000;
const ROUNDS: usize = 3;

fn main() {
    println!(
        "one random read from 64 MiB, waiting for each before the next: {:.0} ns\n",
        memory_latency_ns()
    );
    println!(
        "{:>9}  {:<22} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "prefixes", "mix", "build ms", "v4 hit ns", "v4 miss", "v6 hit ns", "v6 miss", "bytes/pfx"
    );
    for count in [1_000, 100_000, 1_000_000] {
        run(count, "half v4, half v6 /0", Layout::Spread);
    }
    run(1_000_000, "half v4, v6 in 2a00::/12", Layout::ClusteredV6);
}

/// Where the IPv6 prefixes fall: anywhere (as random data would), or crowded into one
/// registry block (as real IPv6 lists are), where the table's buckets have to adapt.
#[derive(Clone, Copy)]
enum Layout {
    Spread,
    ClusteredV6,
}

fn run(count: usize, label: &str, layout: Layout) {
    let mut random = SplitMix64(count as u64);
    let prefixes: Vec<IpNet> = (0..count)
        .map(|i| {
            if i % 2 == 0 {
                random_v4_prefix(&mut random)
            } else {
                random_v6_prefix(&mut random, layout)
            }
        })
        .collect();

    let started = Instant::now();
    let mut builder = IpTableBuilder::new();
    for (i, &net) in prefixes.iter().enumerate() {
        builder.insert(net, i as u32);
    }
    let table = builder.build();
    let build = started.elapsed(); // one round: a build is not repeated per request

    let v4_prefixes: Vec<_> = prefixes.iter().step_by(2).copied().collect();
    let v6_prefixes: Vec<_> = prefixes.iter().skip(1).step_by(2).copied().collect();
    let v4_hits = addresses_inside(&v4_prefixes, &mut random);
    let v6_hits = addresses_inside(&v6_prefixes, &mut random);
    let v4_misses = misses(&table, &mut random, |r| {
        IpAddr::V4(Ipv4Addr::from_bits(r.next() as u32))
    });
    let v6_misses = misses(&table, &mut random, |r| match layout {
        Layout::Spread => IpAddr::V6(Ipv6Addr::from_bits(r.next_u128())),
        Layout::ClusteredV6 => IpAddr::V6(Ipv6Addr::from_bits(clustered(r.next_u128()))),
    });

    println!(
        "{:>9}  {:<22} {:>10.1} {:>10} {:>10} {:>10} {:>10} {:>10.1}",
        count,
        label,
        build.as_secs_f64() * 1e3,
        ns_per_lookup(&table, &v4_hits),
        ns_per_lookup(&table, &v4_misses),
        ns_per_lookup(&table, &v6_hits),
        ns_per_lookup(&table, &v6_misses),
        table.heap_bytes() as f64 / table.len() as f64,
    );
}

/// Lengths weighted the way block lists are: mostly /24s and single hosts, some wider.
fn random_v4_prefix(random: &mut SplitMix64) -> IpNet {
    let length = match random.next() % 100 {
        0 => 8 + (random.next() % 8) as u8,
        1..=15 => 16 + (random.next() % 8) as u8,
        16..=45 => 24,
        _ => 32,
    };
    let address = Ipv4Addr::from_bits(random.next() as u32);
    IpNet::V4(Ipv4Net::new(address, length).unwrap().trunc())
}

/// Mostly /32 to /64 networks and single hosts.
fn random_v6_prefix(random: &mut SplitMix64, layout: Layout) -> IpNet {
    let length = match random.next() % 10 {
        0 => 32,
        1..=3 => 48,
        4..=7 => 64,
        _ => 128,
    };
    let bits = match layout {
        Layout::Spread => random.next_u128(),
        Layout::ClusteredV6 => clustered(random.next_u128()),
    };
    IpNet::V6(
        Ipv6Net::new(Ipv6Addr::from_bits(bits), length)
            .unwrap()
            .trunc(),
    )
}

/// Puts random bits inside 2a00::/12.
fn clustered(bits: u128) -> u128 {
    (0x2a00_u128 << 112) | (bits >> 12)
}

fn addresses_inside(prefixes: &[IpNet], random: &mut SplitMix64) -> Vec<IpAddr> {
    (0..LOOKUPS)
        .map(|_| {
            let net = prefixes[random.next() as usize % prefixes.len()];
            let host_bits = random.next_u128();
            match net {
                IpNet::V4(net) => {
                    let host = (host_bits as u32) & !u32::from(net.netmask());
                    IpAddr::V4(Ipv4Addr::from_bits(net.network().to_bits() | host))
                }
                IpNet::V6(net) => {
                    let host = host_bits & !u128::from(net.netmask());
                    IpAddr::V6(Ipv6Addr::from_bits(net.network().to_bits() | host))
                }
            }
        })
        .collect()
}

/// Random addresses no prefix holds; fewer than asked for when the table covers nearly all.
fn misses(
    table: &IpTable<u32>,
    random: &mut SplitMix64,
    mut address: impl FnMut(&mut SplitMix64) -> IpAddr,
) -> Vec<IpAddr> {
    (0..LOOKUPS * 4)
        .map(|_| address(random))
        .filter(|&ip| table.lookup(ip).is_none())
        .take(LOOKUPS)
        .collect()
}

fn ns_per_lookup(table: &IpTable<u32>, addresses: &[IpAddr]) -> String {
    if addresses.is_empty() {
        return "-".into();
    }
    let best = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut found = 0u64;
            for &ip in addresses {
                if let Some(value) = table.lookup(black_box(ip)) {
                    found = found.wrapping_add(u64::from(value));
                }
            }
            black_box(found);
            started.elapsed()
        })
        .min()
        .unwrap_or_default();
    format!("{:.1}", best.as_nanos() as f64 / addresses.len() as f64)
}

/// A pointer chase through 64 MiB: each read's address comes from the one before, so none
/// overlap and each pays a full cache and TLB miss.
fn memory_latency_ns() -> f64 {
    const SLOTS: usize = 64 << 20 >> 3;
    const READS: usize = 2_000_000;
    // One random cycle through every slot (Sattolo's shuffle), so the chase never settles
    // into a part small enough to cache.
    let mut next: Vec<usize> = (0..SLOTS).collect();
    let mut random = SplitMix64(7);
    for i in (1..SLOTS).rev() {
        let j = random.next() as usize % i;
        next.swap(i, j);
    }
    let started = Instant::now();
    let mut slot = 0;
    for _ in 0..READS {
        slot = next[slot];
    }
    black_box(slot);
    started.elapsed().as_nanos() as f64 / READS as f64
}

/// A small, seeded generator, so runs compare like with like without a `rand` dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

//! Connection caps: in total and per client address, checked at accept before any byte is read.
//!
//! IPv6 clients are counted per /64, since one host usually holds a whole /64 and could
//! otherwise open the per-address cap on every address in it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

/// Counts open connections; hands out a [`ConnPermit`] per accepted connection.
#[derive(Debug)]
pub struct ConnGuard {
    total: AtomicU32,
    per_client: Vec<Mutex<HashMap<IpAddr, u32>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TotalCap,
    ClientCap,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TotalCap => "max_connections",
            Refusal::ClientCap => "max_connections_per_ip",
        }
    }
}

/// Held for the life of a connection; releases its slots on drop.
#[derive(Debug)]
pub struct ConnPermit {
    guard: Arc<ConnGuard>,
    client: IpAddr,
}

impl ConnGuard {
    pub fn new() -> Arc<ConnGuard> {
        Arc::new(ConnGuard {
            total: AtomicU32::new(0),
            per_client: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        })
    }

    /// Open connections right now.
    pub fn open(&self) -> u32 {
        self.total.load(Ordering::Relaxed)
    }

    /// Takes a slot for `ip` if both caps allow it.
    pub fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: u32,
        max_per_client: u32,
    ) -> Result<ConnPermit, Refusal> {
        let before = self.total.fetch_add(1, Ordering::AcqRel);
        if before >= max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TotalCap);
        }
        let client = client_key(ip);
        let mut shard = self.shard(&client);
        let count = shard.entry(client).or_insert(0);
        if *count >= max_per_client {
            drop(shard);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::ClientCap);
        }
        *count += 1;
        Ok(ConnPermit {
            guard: Arc::clone(self),
            client,
        })
    }

    fn shard(&self, client: &IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        let index = (self.hasher.hash_one(client) as usize) % SHARDS;
        // A poisoned shard only means another thread panicked mid-update of a counter; the
        // counts are still usable, and refusing all connections would be worse.
        self.per_client[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut shard = self.guard.shard(&self.client);
        if let Some(count) = shard.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&self.client);
            }
        }
        drop(shard);
        self.guard.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The address a client is counted under: itself for IPv4, its /64 for IPv6.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_cap_refuses_the_extra_connection_and_frees_on_drop() {
        let guard = ConnGuard::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = guard.try_acquire(ip, 10, 2).unwrap();
        let _b = guard.try_acquire(ip, 10, 2).unwrap();
        assert_eq!(
            guard.try_acquire(ip, 10, 2).unwrap_err(),
            Refusal::ClientCap
        );
        let _other = guard
            .try_acquire("192.0.2.2".parse().unwrap(), 10, 2)
            .unwrap();
        drop(a);
        let _again = guard.try_acquire(ip, 10, 2).unwrap();
        assert_eq!(guard.open(), 3);
    }

    #[test]
    fn total_cap_refuses_beyond_the_limit() {
        let guard = ConnGuard::new();
        let _a = guard
            .try_acquire("192.0.2.1".parse().unwrap(), 1, 5)
            .unwrap();
        let refused = guard.try_acquire("192.0.2.2".parse().unwrap(), 1, 5);
        assert_eq!(refused.unwrap_err(), Refusal::TotalCap);
        assert_eq!(guard.open(), 1);
    }

    #[test]
    fn ipv6_clients_are_counted_per_slash_64() {
        let guard = ConnGuard::new();
        let _a = guard
            .try_acquire("2001:db8::1".parse().unwrap(), 10, 1)
            .unwrap();
        let same_64 = guard.try_acquire("2001:db8::ffff:1".parse().unwrap(), 10, 1);
        assert_eq!(same_64.unwrap_err(), Refusal::ClientCap);
        assert!(
            guard
                .try_acquire("2001:db8:0:1::1".parse().unwrap(), 10, 1)
                .is_ok()
        );
    }
}

//! Connection caps: in total and per client address, and a per-client rate of new
//! connections, all checked at accept before any byte is read.
//!
//! IPv6 clients are counted per /64, since one host usually holds a whole /64 and could
//! otherwise open the per-address cap on every address in it.

use crate::clock;
use model::ServerLimits;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SHARDS: usize = 64;

/// Counts open connections; hands out a [`ConnPermit`] per accepted connection.
#[derive(Debug)]
pub struct ConnGuard {
    total: AtomicU32,
    per_client: Vec<Mutex<HashMap<IpAddr, u32>>>,
    hasher: std::collections::hash_map::RandomState,
    accept_rate: AcceptRate,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TotalCap,
    ClientCap,
    AcceptRate,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TotalCap => "max_connections",
            Refusal::ClientCap => "max_connections_per_ip",
            Refusal::AcceptRate => "max_new_connections_per_ip",
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
            accept_rate: AcceptRate::new(),
        })
    }

    /// The accept phase: the client's rate of new connections first, then both caps.
    /// A connection the rate admits counts against the rate even if a cap then refuses it:
    /// a client hammering at its cap spends its allowance.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &ServerLimits,
    ) -> Result<ConnPermit, Refusal> {
        if !self.accept_rate.admit(
            ip,
            limits.max_new_connections_per_ip,
            limits.new_connections_period,
            clock::now_ms(),
        ) {
            return Err(Refusal::AcceptRate);
        }
        self.try_acquire(ip, limits.max_connections, limits.max_connections_per_ip)
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

/// Rows of the accept-rate sketch: a client is refused only when all of its cells are over the
/// limit, so a false refusal needs four unrelated collisions.
const RATE_ROWS: usize = 4;
/// Cells per row. 4 rows × 16,384 cells × 4 bytes × 2 windows = 512 KiB, whatever the number
/// of clients.
const RATE_COLUMNS: usize = 16_384;

/// New connections per client over a sliding window, in fixed memory: a count-min sketch with
/// conservative update (a cell only grows to one above the client's current minimum, which
/// keeps the overestimate from collisions small), kept for the current and the previous
/// window. The estimate is the current count plus the previous window's count weighted by how
/// much of it the sliding window still covers (the approximation nginx's and Cloudflare's
/// rate limiters use).
///
/// One uncontended lock per accepted connection; never touched per request.
#[derive(Debug)]
struct AcceptRate {
    sketch: Mutex<RateSketch>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug)]
struct RateSketch {
    period_ms: u64,
    /// When the current window started (clock ms); 0 before the first connection.
    window_start: u64,
    current: Box<[u32]>,
    previous: Box<[u32]>,
}

impl AcceptRate {
    fn new() -> AcceptRate {
        AcceptRate {
            sketch: Mutex::new(RateSketch {
                period_ms: 0,
                window_start: 0,
                current: vec![0; RATE_ROWS * RATE_COLUMNS].into_boxed_slice(),
                previous: vec![0; RATE_ROWS * RATE_COLUMNS].into_boxed_slice(),
            }),
            hasher: Default::default(),
        }
    }

    /// Counts a new connection from `ip` at `now_ms` unless `limit` connections were already
    /// admitted from it over the last `period`; returns whether it is admitted.
    fn admit(&self, ip: IpAddr, limit: u32, period: Duration, now_ms: u64) -> bool {
        let hash = self.hasher.hash_one(client_key(ip));
        // Double hashing: row i uses h1 + i·h2 (h2 odd, so the rows' cells differ).
        let (h1, h2) = (hash as u32 as usize, ((hash >> 32) as usize) | 1);
        let cells: [usize; RATE_ROWS] = std::array::from_fn(|row| {
            row * RATE_COLUMNS + h1.wrapping_add(row.wrapping_mul(h2)) % RATE_COLUMNS
        });
        // A poisoned lock only means another thread panicked mid-count; the counts stand.
        let mut sketch = self
            .sketch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let period_ms = (period.as_millis() as u64).max(1);
        sketch.roll(now_ms, period_ms);
        let current = cells.iter().map(|&c| sketch.current[c]).min().unwrap_or(0);
        let previous = cells.iter().map(|&c| sketch.previous[c]).min().unwrap_or(0);
        let into_window = now_ms.saturating_sub(sketch.window_start).min(period_ms);
        let carried = u64::from(previous) * (period_ms - into_window) / period_ms;
        if u64::from(current) + carried >= u64::from(limit) {
            return false;
        }
        let counted = current.saturating_add(1);
        for &c in &cells {
            let cell = &mut sketch.current[c];
            *cell = (*cell).max(counted);
        }
        true
    }
}

impl RateSketch {
    /// Moves the windows on to the one holding `now_ms`; a new period (after a reload) starts
    /// counting afresh.
    fn roll(&mut self, now_ms: u64, period_ms: u64) {
        if period_ms != self.period_ms || self.window_start == 0 {
            self.period_ms = period_ms;
            self.window_start = now_ms;
            self.current.fill(0);
            self.previous.fill(0);
            return;
        }
        let elapsed = now_ms.saturating_sub(self.window_start);
        if elapsed < period_ms {
            return;
        }
        if elapsed < 2 * period_ms {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.window_start += period_ms;
        } else {
            self.previous.fill(0);
            self.window_start = now_ms;
        }
        self.current.fill(0);
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

    const SECOND: Duration = Duration::from_secs(1);

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn accept_rate_refuses_past_the_limit_and_only_that_client() {
        let rate = AcceptRate::new();
        for _ in 0..5 {
            assert!(rate.admit(v4(1), 5, SECOND, 1000));
        }
        assert!(!rate.admit(v4(1), 5, SECOND, 1500));
        assert!(rate.admit(v4(2), 5, SECOND, 1500));
    }

    #[test]
    fn accept_rate_window_slides_and_forgets_after_two_periods() {
        let rate = AcceptRate::new();
        for _ in 0..10 {
            assert!(rate.admit(v4(1), 10, SECOND, 1000));
        }
        assert!(!rate.admit(v4(1), 10, SECOND, 1999));
        // Half-way into the next window, half of the previous window's 10 still count.
        for _ in 0..5 {
            assert!(rate.admit(v4(1), 10, SECOND, 2500));
        }
        assert!(!rate.admit(v4(1), 10, SECOND, 2500));
        // Two periods of quiet and the client starts afresh.
        for _ in 0..10 {
            assert!(rate.admit(v4(1), 10, SECOND, 4600));
        }
    }

    #[test]
    fn accept_rate_ipv6_counts_per_slash_64() {
        let rate = AcceptRate::new();
        assert!(rate.admit("2001:db8::1".parse().unwrap(), 1, SECOND, 1000));
        assert!(!rate.admit("2001:db8::2:1".parse().unwrap(), 1, SECOND, 1000));
        assert!(rate.admit("2001:db8:0:1::1".parse().unwrap(), 1, SECOND, 1000));
    }

    #[test]
    fn accept_rate_stays_exact_enough_with_many_clients() {
        // 200,000 clients at 5 connections each in one window: ten times the cells. A client
        // that has made none must not be refused at a limit of 100 for others' collisions.
        let rate = AcceptRate::new();
        for i in 0..200_000u32 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            for _ in 0..5 {
                rate.admit(ip, 100, SECOND, 1000);
            }
        }
        let fresh = (0..100u8)
            .filter(|&n| rate.admit(v4(n), 100, SECOND, 1000))
            .count();
        assert_eq!(fresh, 100);
    }

    #[test]
    fn accept_rate_restarts_when_the_period_changes() {
        let rate = AcceptRate::new();
        assert!(rate.admit(v4(1), 1, SECOND, 1000));
        assert!(!rate.admit(v4(1), 1, SECOND, 1000));
        assert!(rate.admit(v4(1), 1, 2 * SECOND, 1000));
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

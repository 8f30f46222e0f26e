//! Remembers which challenges were answered, so each is accepted once, in fixed memory.
//!
//! Two Bloom filters take turns: answers go into the current one; every `window` (a
//! challenge's lifetime) the older is cleared and becomes current. An answer is remembered for
//! at least one window after it arrived, so for longer than its token stays valid, and a flood
//! of answers cannot grow memory. A false positive refuses a genuine answer (the page then
//! fetches a fresh challenge); with the default size that is under one in a thousand up to
//! about 500,000 answers per window (each of which cost its sender the proof of work).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Bits per filter by default: 8 Mi (1 MiB), two filters.
pub const DEFAULT_BITS: usize = 1 << 23;
const PROBES: u64 = 10;

/// Answered challenges of the last one or two windows, in two Bloom filters of fixed size.
#[derive(Debug)]
pub struct ReplayFilter {
    window: Duration,
    inner: Mutex<Filters>,
}

#[derive(Debug)]
struct Filters {
    current: Vec<u64>,
    older: Vec<u64>,
    /// When `current` started taking answers.
    since: SystemTime,
    seed: u64,
}

impl ReplayFilter {
    /// Two filters of `bits` bits each (rounded up to a power of two, at least 64).
    pub fn new(window: Duration, bits: usize) -> ReplayFilter {
        let words = bits.next_power_of_two().max(64) / 64;
        ReplayFilter {
            window,
            inner: Mutex::new(Filters {
                current: vec![0; words],
                older: vec![0; words],
                since: SystemTime::now(),
                seed: crate::ratelimit::random_seed(),
            }),
        }
    }

    /// Memory held, in bytes.
    pub fn memory(&self) -> usize {
        let f = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (f.current.len() + f.older.len()) * 8
    }

    /// True the first time `nonce` is seen (and remembers it); false when it was seen before.
    pub fn first_use(&self, nonce: &[u8; 16], now: SystemTime) -> bool {
        let mut f = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let age = now.duration_since(f.since).unwrap_or_default();
        if age >= self.window {
            // One window passed: the older filter's answers have all expired.
            let f = &mut *f;
            std::mem::swap(&mut f.current, &mut f.older);
            f.current.fill(0);
            f.since = now;
            if age >= self.window * 2 {
                // Two: so have the current one's.
                f.older.fill(0);
            }
        }
        let positions = probes(nonce, f.seed, f.current.len() * 64);
        let seen = |filter: &[u64]| {
            positions
                .iter()
                .all(|&p| filter[p / 64] & (1 << (p % 64)) != 0)
        };
        if seen(&f.current) || seen(&f.older) {
            return false;
        }
        for p in positions {
            f.current[p / 64] |= 1 << (p % 64);
        }
        true
    }
}

/// Bit positions by double hashing: `h1 + i * h2`.
fn probes(nonce: &[u8; 16], seed: u64, bits: usize) -> [usize; PROBES as usize] {
    let hash = xxhash_rust::xxh3::xxh3_128_with_seed(nonce, seed);
    let (h1, h2) = (hash as u64, (hash >> 64) as u64 | 1);
    let mask = bits as u64 - 1;
    std::array::from_fn(|i| (h1.wrapping_add((i as u64).wrapping_mul(h2)) & mask) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(i: u64) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&i.to_le_bytes());
        n
    }

    #[test]
    fn each_nonce_is_accepted_once_within_its_lifetime() {
        let window = Duration::from_secs(300);
        let filter = ReplayFilter::new(window, 1 << 16);
        let t0 = SystemTime::now();
        assert!(filter.first_use(&nonce(1), t0));
        assert!(!filter.first_use(&nonce(1), t0));
        // Still refused just before two windows have passed (it sits in the older filter).
        assert!(filter.first_use(&nonce(2), t0 + window));
        assert!(!filter.first_use(&nonce(1), t0 + window + Duration::from_secs(299)));
        assert!(!filter.first_use(&nonce(2), t0 + window + Duration::from_secs(299)));
        // Long after, the memory is recycled.
        assert!(filter.first_use(&nonce(1), t0 + window * 5));
    }

    #[test]
    fn memory_is_fixed_and_false_positives_are_rare_at_the_design_load() {
        let filter = ReplayFilter::new(Duration::from_secs(300), 1 << 20);
        assert_eq!(filter.memory(), 2 * (1 << 20) / 8);
        let now = SystemTime::now();
        // 1 Mi bits hold 60k answers at 1 in 1,000 false positives (the default is 8x that).
        let load = 60_000;
        let refused = (0..load)
            .filter(|&i| !filter.first_use(&nonce(i), now))
            .count();
        assert!(refused < load as usize / 500, "{refused} of {load} refused");
        assert_eq!(filter.memory(), 2 * (1 << 20) / 8);
        assert!((0..load).all(|i| !filter.first_use(&nonce(i), now)));
    }
}

//! Keys serving a penalty after going over a limit, in a fixed-size table.
//!
//! Each slot packs a key's 32-bit fingerprint and the second its penalty ends into one atomic
//! word. A key may sit in either of two slots; a new penalty takes the slot whose penalty ends
//! first. When the table is full of live penalties the earliest-ending one is dropped: the key
//! it belonged to is still over its limit in the counter, so it goes on being refused while it
//! keeps sending, it just loses the extra penalty time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keys serving a penalty, each until a whole second, in a fixed number of 8-byte slots.
pub struct PenaltyBox {
    /// Made at the first penalty: most limits never hand one out, and an edge of 100,000
    /// sites should not carry 128 KiB for each of their limits up front.
    slots: OnceLock<Box<[AtomicU64]>>,
    /// How many slots, once made (a power of two).
    size: usize,
    /// Whether any key was ever punished: until one is, asking costs one load rather than a
    /// clock sum and two slots (most limits never hand out a penalty, or have none to give).
    punished: AtomicBool,
    start: Instant,
}

impl std::fmt::Debug for PenaltyBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PenaltyBox")
            .field("slots", &self.size)
            .finish()
    }
}

fn pack(fingerprint: u32, until_s: u32) -> u64 {
    (u64::from(fingerprint) << 32) | u64::from(until_s)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

impl PenaltyBox {
    /// `size` slots (rounded up to a power of two), 8 bytes each.
    pub fn new(size: usize) -> PenaltyBox {
        let size = size.max(2).next_power_of_two();
        PenaltyBox {
            slots: OnceLock::new(),
            size,
            punished: AtomicBool::new(false),
            start: Instant::now(),
        }
    }

    /// Heap bytes of the slots, once the first penalty has made them.
    pub fn memory_bytes(&self) -> usize {
        self.size * 8
    }

    fn slots(&self) -> &[AtomicU64] {
        self.slots
            // Zeroed by the allocator: pages no penalty lands on stay unmapped.
            .get_or_init(|| bytemuck::zeroed_slice_box(self.size))
    }

    /// Seconds since the box was made, rounded up so a penalty never ends early; 0 is "no
    /// penalty", so the clock starts at 1.
    fn seconds(&self, at: Instant) -> u32 {
        let elapsed = at.saturating_duration_since(self.start);
        (elapsed.as_secs() + 1).min(u64::from(u32::MAX)) as u32
    }

    fn candidates(&self, key_hash: u64) -> [usize; 2] {
        let mask = self.size - 1;
        let first = key_hash as usize & mask;
        let second = (key_hash >> 20) as usize & mask;
        [first, if second == first { first ^ 1 } else { second }]
    }

    fn fingerprint(key_hash: u64) -> u32 {
        // Never 0, so an empty slot matches nothing.
        ((key_hash >> 32) as u32) | 1
    }

    /// Puts `key_hash` in the box until `now + penalty` (at least a second), or up to a second
    /// later: never earlier.
    pub fn punish(&self, key_hash: u64, now: Instant, penalty: Duration) {
        // A key is refused while `until` is past `seconds(at)`, the second `at` falls in plus
        // one; so `until` is the second the penalty ends in, rounded up, plus one.
        let end = now.saturating_duration_since(self.start) + penalty.max(Duration::from_secs(1));
        let until =
            (end.as_secs() + u64::from(end.subsec_nanos() > 0) + 1).min(u64::from(u32::MAX)) as u32;
        let fingerprint = Self::fingerprint(key_hash);
        let [a, b] = self.candidates(key_hash);
        let slots = self.slots();
        let (word_a, word_b) = (
            slots[a].load(Ordering::Relaxed),
            slots[b].load(Ordering::Relaxed),
        );
        let target = match (unpack(word_a), unpack(word_b)) {
            ((f, _), _) if f == fingerprint => a,
            (_, (f, _)) if f == fingerprint => b,
            ((_, until_a), (_, until_b)) => {
                if until_a <= until_b {
                    a
                } else {
                    b
                }
            }
        };
        slots[target].store(pack(fingerprint, until), Ordering::Relaxed);
        // Release, after the slot: a request that sees the flag sees the penalty.
        self.punished.store(true, Ordering::Release);
    }

    /// When `key_hash` is serving a penalty at `now`, the time left.
    pub fn remaining(&self, key_hash: u64, now: Instant) -> Option<Duration> {
        if !self.punished.load(Ordering::Acquire) {
            return None;
        }
        // Made before `punished` was raised.
        let slots = self.slots.get()?;
        let fingerprint = Self::fingerprint(key_hash);
        let now_s = self.seconds(now);
        self.candidates(key_hash).iter().find_map(|&i| {
            let (f, until) = unpack(slots[i].load(Ordering::Relaxed));
            (f == fingerprint && until > now_s)
                .then(|| Duration::from_secs(u64::from(until - now_s)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_penalty_lasts_its_time_and_no_longer() {
        let boxed = PenaltyBox::new(64);
        let t = boxed.start;
        boxed.punish(99, t, Duration::from_secs(60));
        assert_eq!(
            boxed.remaining(99, t + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(boxed.remaining(99, t + Duration::from_secs(61)), None);
        assert_eq!(boxed.remaining(100, t), None);
    }

    #[test]
    fn a_penalty_never_ends_early_whatever_the_fraction_of_a_second_it_starts_at() {
        let boxed = PenaltyBox::new(64);
        for start_ms in [0, 1, 500, 990, 999] {
            let t = boxed.start + Duration::from_millis(start_ms);
            boxed.punish(7, t, Duration::from_secs(60));
            for held_ms in [0, 30_000, 59_000, 59_999] {
                let left = boxed.remaining(7, t + Duration::from_millis(held_ms));
                assert!(
                    left.is_some(),
                    "ended {held_ms} ms into a 60 s penalty from {start_ms}"
                );
            }
            assert_eq!(boxed.remaining(7, t + Duration::from_millis(61_000)), None);
        }
    }

    #[test]
    fn a_full_box_keeps_the_newest_penalties() {
        let boxed = PenaltyBox::new(4);
        let t = boxed.start;
        for key in 0..1000u64 {
            let hash = xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes());
            boxed.punish(hash, t, Duration::from_secs(10 + key));
        }
        let last = xxhash_rust::xxh3::xxh3_64(&999u64.to_le_bytes());
        assert!(boxed.remaining(last, t).is_some());
        assert_eq!(boxed.memory_bytes(), 32);
    }
}

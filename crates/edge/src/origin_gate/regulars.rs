//! Who has been here before: the client addresses a site's origin served in calm times, for
//! the waiting line to rank them above strangers when the origin is at its cap.
//!
//! A client is a *regular* when its address (IPv4, or IPv6 /64) was first seen at least
//! [`SEASONING_MINUTES`] before the current congestion began, and seen again within the last
//! [`MEMORY_MINUTES`]. Visits are noted only while the site is calm (nothing has had to wait
//! for a while, and no attack is detected), so a flood can earn no history during the flood,
//! and one that only began moments before it cannot have been here long enough.
//!
//! Fixed memory, allocated when a site first notes a visit: [`SLOTS`] slots of 8 bytes (32
//! KiB). An address hashes (with the gate's secret seed) to two slots; each slot holds a
//! 16-bit fingerprint and the minutes the address was first and last seen. A newcomer takes an
//! empty or forgotten slot of its two, else the one whose owner was first seen latest: older
//! regulars are the last to go. A collision can only make a stranger a regular if it matches
//! the fingerprint too (1 in 65,536).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per site.
pub const SLOTS: usize = 4096;
/// How long before the congestion an address must have been first seen to count.
pub const SEASONING_MINUTES: u32 = 2;
/// An address not seen for this long is forgotten.
pub const MEMORY_MINUTES: u32 = 60;

const STAMP_BITS: u32 = 24;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;

/// The addresses seen in calm times, by hash.
#[derive(Debug, Default)]
pub struct Regulars {
    slots: OnceLock<Box<[AtomicU64]>>,
}

/// One slot's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    fingerprint: u16,
    first: u32,
    last: u32,
}

impl Seen {
    fn unpack(value: u64) -> Option<Seen> {
        let fingerprint = (value >> (2 * STAMP_BITS)) as u16;
        (fingerprint != 0).then_some(Seen {
            fingerprint,
            first: ((value >> STAMP_BITS) & STAMP_MASK) as u32,
            last: (value & STAMP_MASK) as u32,
        })
    }

    fn pack(self) -> u64 {
        (u64::from(self.fingerprint) << (2 * STAMP_BITS))
            | ((u64::from(self.first) & STAMP_MASK) << STAMP_BITS)
            | (u64::from(self.last) & STAMP_MASK)
    }

    fn forgotten(self, now: u32) -> bool {
        self.last.saturating_add(MEMORY_MINUTES) < now
    }
}

/// The two slots an address may live in, and its fingerprint (never 0: 0 is an empty slot).
fn places(key: u64) -> ([usize; 2], u16) {
    let a = (key as usize) % SLOTS;
    let b = ((key >> 24) as usize) % SLOTS;
    let fingerprint = ((key >> 48) as u16).max(1);
    ([a, b], fingerprint)
}

impl Regulars {
    /// Notes that the address `key` was served at minute `now` (the caller has checked the
    /// site is calm).
    pub fn note(&self, key: u64, now: u32) {
        let slots = self
            .slots
            .get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect());
        let (places, fingerprint) = places(key);
        let mut seen = [None; 2];
        for (i, place) in places.iter().enumerate() {
            seen[i] = Seen::unpack(slots[*place].load(Ordering::Relaxed));
            if let Some(old) = seen[i]
                && old.fingerprint == fingerprint
            {
                let first = if old.forgotten(now) { now } else { old.first };
                if (first, now) != (old.first, old.last) {
                    let updated = Seen {
                        fingerprint,
                        first,
                        last: now,
                    };
                    slots[*place].store(updated.pack(), Ordering::Relaxed);
                }
                return;
            }
        }
        // New here: an empty or forgotten slot, else the one whose owner came latest.
        let free = |s: Option<Seen>| s.is_none_or(|s| s.forgotten(now));
        let place = match seen {
            [a, _] if free(a) => places[0],
            [_, b] if free(b) => places[1],
            [Some(a), Some(b)] if b.first > a.first => places[1],
            _ => places[0],
        };
        let new = Seen {
            fingerprint,
            first: now,
            last: now,
        };
        // Racing notes may lose one; the address is noted again on its next connection.
        slots[place].store(new.pack(), Ordering::Relaxed);
    }

    /// Whether the address `key` is a regular for a congestion that began at minute
    /// `began`, asked at minute `now`.
    pub fn is_regular(&self, key: u64, began: u32, now: u32) -> bool {
        let Some(slots) = self.slots.get() else {
            return false;
        };
        let (places, fingerprint) = places(key);
        places.iter().any(|place| {
            Seen::unpack(slots[*place].load(Ordering::Relaxed)).is_some_and(|seen| {
                seen.fingerprint == fingerprint
                    && !seen.forgotten(now)
                    && seen.first.saturating_add(SEASONING_MINUTES) <= began
            })
        })
    }

    /// Heap bytes held (0 until the first visit is noted).
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.slots.get().map_or(0, |s| s.len() * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_seen_two_minutes_before_the_congestion_is_a_regular() {
        let regulars = Regulars::default();
        assert_eq!(regulars.memory_bytes(), 0, "nothing until a visit");
        regulars.note(42, 100);
        assert_eq!(regulars.memory_bytes(), 32 * 1024);
        // Congestion at minute 101: seen only a minute before, not yet a regular.
        assert!(!regulars.is_regular(42, 101, 101));
        // At 102, and for as long as the congestion lasts within its memory.
        assert!(regulars.is_regular(42, 102, 102));
        assert!(regulars.is_regular(42, 102, 150));
        // Strangers are not.
        assert!(!regulars.is_regular(43, 102, 102));
    }

    #[test]
    fn an_address_not_seen_for_an_hour_is_forgotten_and_starts_over() {
        let regulars = Regulars::default();
        regulars.note(7, 10);
        regulars.note(7, 20);
        assert!(regulars.is_regular(7, 30, 30));
        assert!(regulars.is_regular(7, 30, 80));
        assert!(
            !regulars.is_regular(7, 30, 81),
            "last seen at 20, asked at 81"
        );
        // Back after a long absence: a newcomer again.
        regulars.note(7, 100);
        assert!(!regulars.is_regular(7, 101, 101));
        assert!(regulars.is_regular(7, 102, 102));
    }

    #[test]
    fn a_newcomer_never_pushes_out_an_older_regular_while_a_younger_slot_will_do() {
        let regulars = Regulars::default();
        // Find two newcomers that share both slots with an old regular (brute force over keys
        // with the same two places and different fingerprints).
        let old = 0x0001_0000_0000_0005_u64;
        let ([a, b], _) = places(old);
        let same_places = |k: u64| places(k).0 == [a, b] && places(k).1 != places(old).1;
        let mut others = (1u64..)
            .map(|f| old ^ (f << 48))
            .filter(|k| same_places(*k));
        let (young, newest) = (others.next().unwrap(), others.next().unwrap());
        regulars.note(old, 10);
        regulars.note(young, 50);
        // Both slots are taken; the newest comer replaces the younger of the two.
        regulars.note(newest, 55);
        assert!(regulars.is_regular(old, 60, 60));
        assert!(!regulars.is_regular(young, 60, 60));
        assert!(regulars.is_regular(newest, 60, 60));
    }
}

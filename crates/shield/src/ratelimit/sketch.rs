//! Counting requests per key over a sliding window, in memory that does not grow with the number
//! of keys.
//!
//! A count-min sketch (rows of counters; a key adds to one counter per row; its count is the
//! smallest of them) for the current window and one for the previous window. The count over the
//! last `period` is the sliding-window estimate `previous × (1 − elapsed fraction) + current`,
//! as nginx's and Cloudflare's limiters use. Updates are conservative (only counters at the
//! minimum are raised), which keeps the over-count from colliding keys small.
//!
//! Errors only ever over-count, and only when many other keys share all of a key's counters: with
//! `W` counters per row and `N` requests in a window, a key's expected over-count per row is
//! `N / W`, and it must hit that in every row. A flood from few keys adds to few counters, so it
//! does not push bystanders over their limits.
//!
//! Windows are numbered from a fixed start, so rotating is one compare-and-swap by whichever
//! request first sees the new window; it clears one sketch (`ROWS × width` counters), once per
//! period. Counts racing with a rotation may be lost, which only ever under-counts by a few.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rows of the sketch: each is an independent chance for a key to avoid collisions.
pub const ROWS: usize = 4;

/// One window's counters, with the window number they belong to.
struct Window {
    number: AtomicU64,
    counters: Box<[AtomicU32]>,
}

impl Window {
    fn new(size: usize, number: u64) -> Window {
        Window {
            number: AtomicU64::new(number),
            // Zeroed by the allocator, not written: the pages of a fresh allocation stay
            // unmapped until a key lands on them, so a site with a few clients keeps a few
            // pages of its 256 KiB resident, not all of them.
            counters: bytemuck::zeroed_slice_box(size),
        }
    }

    /// Zeroes the counters that are not zero already: reading an untouched page maps no
    /// memory, writing it would.
    fn clear(&self) {
        for c in self.counters.iter() {
            if c.load(Ordering::Relaxed) != 0 {
                c.store(0, Ordering::Relaxed);
            }
        }
    }

    fn estimate(&self, slots: &[usize; ROWS]) -> u32 {
        smallest(&self.load(slots))
    }

    fn load(&self, slots: &[usize; ROWS]) -> [u32; ROWS] {
        let mut counts = [0; ROWS];
        for row in 0..ROWS {
            counts[row] = self.counters[slots[row]].load(Ordering::Relaxed);
        }
        counts
    }
}

/// The least of a key's counters: its count.
#[inline]
fn smallest(counts: &[u32; ROWS]) -> u32 {
    let mut least = counts[0];
    for &count in &counts[1..] {
        least = least.min(count);
    }
    least
}

/// A sliding-window counter for any number of keys, identified by 64-bit hashes.
pub struct WindowCounter {
    /// Made at the first count: a limit or a site that sees no traffic carries no counters
    /// (an edge of 100,000 sites would otherwise hold 256 KiB per site up front).
    windows: OnceLock<Box<[Window; 2]>>,
    width: usize,
    period_ms: u64,
    start: Instant,
}

impl std::fmt::Debug for WindowCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowCounter")
            .field("width", &self.width)
            .field("period_ms", &self.period_ms)
            .finish()
    }
}

impl WindowCounter {
    /// `width` counters per row (rounded up to a power of two); memory is
    /// `2 × ROWS × width × 4` bytes.
    pub fn new(period: Duration, width: usize) -> WindowCounter {
        let width = width.max(64).next_power_of_two();
        let period_ms = (period.as_millis() as u64).max(1);
        WindowCounter {
            windows: OnceLock::new(),
            width,
            period_ms,
            start: Instant::now(),
        }
    }

    /// Heap bytes of both windows' counters once the first count has made them; fixed from
    /// then on.
    pub fn memory_bytes(&self) -> usize {
        2 * ROWS * self.width * 4
    }

    /// Adds one request for `key_hash` at `now` and returns the key's count over the last period,
    /// this request included.
    pub fn hit(&self, key_hash: u64, now: Instant) -> f64 {
        let (number, fraction) = self.window_at(now);
        let slots = self.slots(key_hash);
        let windows = self.windows.get_or_init(|| {
            let size = ROWS * self.width;
            Box::new([Window::new(size, 0), Window::new(size, 1)])
        });
        let current = Self::current(windows, number);
        // Conservative update: raise only the counters at the minimum. A counter read at or
        // above the new count is left alone (counters only grow within a window), which spares
        // a read-modify-write for every row the key does not share its minimum with.
        let counts = current.load(&slots);
        let new = smallest(&counts).saturating_add(1);
        for row in 0..ROWS {
            let (counter, count) = (&current.counters[slots[row]], counts[row]);
            // Raised from what was read in one step; when it has moved since, as `fetch_max`.
            if count < new
                && let Err(moved) =
                    counter.compare_exchange(count, new, Ordering::Relaxed, Ordering::Relaxed)
                && moved < new
            {
                counter.fetch_max(new, Ordering::Relaxed);
            }
        }
        new as f64 + Self::previous_share(windows, number, fraction, &slots)
    }

    /// The key's count over the last period, without counting anything.
    pub fn count(&self, key_hash: u64, now: Instant) -> f64 {
        let Some(windows) = self.windows.get() else {
            return 0.0;
        };
        let (number, fraction) = self.window_at(now);
        let slots = self.slots(key_hash);
        let current = &windows[(number % 2) as usize];
        let now_count = if current.number.load(Ordering::Acquire) == number {
            current.estimate(&slots)
        } else {
            0
        };
        now_count as f64 + Self::previous_share(windows, number, fraction, &slots)
    }

    /// The window `now` falls in, and how far into it (0..1).
    fn window_at(&self, now: Instant) -> (u64, f64) {
        let elapsed = now.saturating_duration_since(self.start);
        // `as_millis` in 64 bits: the same number for half a billion years, without the
        // 128-bit arithmetic.
        let ms = (elapsed.as_secs().saturating_mul(1000))
            .saturating_add(u64::from(elapsed.subsec_millis()));
        // Window 0 and 1 are the two the counter starts with; numbering from 2 keeps "the one
        // before" of the first window a real, empty window.
        let number = ms / self.period_ms + 2;
        let fraction = (ms % self.period_ms) as f64 / self.period_ms as f64;
        (number, fraction)
    }

    /// The window numbered `number`, cleared and claimed if it is new.
    fn current(windows: &[Window; 2], number: u64) -> &Window {
        let window = &windows[(number % 2) as usize];
        let held = window.number.load(Ordering::Acquire);
        if held != number
            && held < number
            && window
                .number
                .compare_exchange(held, number, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            window.clear();
        }
        window
    }

    /// The previous window's count, weighted by how much of it the sliding window still covers.
    fn previous_share(
        windows: &[Window; 2],
        number: u64,
        fraction: f64,
        slots: &[usize; ROWS],
    ) -> f64 {
        let previous = &windows[((number - 1) % 2) as usize];
        if previous.number.load(Ordering::Acquire) != number - 1 {
            return 0.0;
        }
        previous.estimate(slots) as f64 * (1.0 - fraction)
    }

    /// One counter per row, from two halves of the hash (Kirsch–Mitzenmacher double hashing).
    fn slots(&self, key_hash: u64) -> [usize; ROWS] {
        let mask = self.width as u64 - 1;
        let h1 = key_hash;
        let h2 = (key_hash >> 32) | 1;
        std::array::from_fn(|row| {
            let column = h1.wrapping_add((row as u64).wrapping_mul(h2)) & mask;
            row * self.width + column as usize
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn counts_one_key_exactly() {
        let counter = WindowCounter::new(SECOND * 10, 1024);
        let t = Instant::now();
        for n in 1..=50 {
            assert_eq!(counter.hit(42, t), n as f64);
        }
        assert_eq!(counter.count(42, t), 50.0);
        assert_eq!(counter.count(43, t), 0.0);
    }

    #[test]
    fn the_previous_window_fades_out_as_the_window_slides() {
        let counter = WindowCounter::new(SECOND * 10, 1024);
        let t = counter.start;
        for _ in 0..100 {
            counter.hit(7, t);
        }
        // A quarter into the next window, three quarters of the previous one still count.
        let later = t + SECOND * 10 + Duration::from_millis(2500);
        assert_eq!(counter.count(7, later), 75.0);
        assert_eq!(counter.hit(7, later), 76.0);
        // Two windows on, nothing is left.
        assert_eq!(counter.count(7, t + SECOND * 30), 0.0);
    }

    #[test]
    fn a_window_is_cleared_when_it_comes_round_again() {
        let counter = WindowCounter::new(SECOND, 1024);
        let t = counter.start;
        for _ in 0..10 {
            counter.hit(1, t);
        }
        assert_eq!(counter.hit(1, t + SECOND * 2), 1.0);
    }

    #[test]
    fn a_flood_from_one_key_leaves_others_alone() {
        let counter = WindowCounter::new(SECOND * 10, 4096);
        let t = counter.start;
        for _ in 0..1_000_000 {
            counter.hit(0xdead_beef, t);
        }
        for key in 0..1000u64 {
            let hash = xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes());
            assert_eq!(counter.hit(hash, t), 1.0, "key {key}");
        }
    }

    #[test]
    fn many_keys_over_count_little() {
        // 200,000 keys with one request each in 4096-wide rows: about 49 per counter, but a key
        // needs all four of its counters that high to be over-counted, and conservative update
        // keeps them lower.
        let counter = WindowCounter::new(SECOND * 10, 4096);
        let t = counter.start;
        for key in 0..200_000u64 {
            counter.hit(xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes()), t);
        }
        let probe = xxhash_rust::xxh3::xxh3_64(b"a fresh key");
        let over = counter.count(probe, t);
        assert!(over < 60.0, "over-count {over}");
        assert_eq!(counter.memory_bytes(), 2 * 4 * 4096 * 4);
    }
}

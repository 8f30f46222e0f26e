//! Space-Saving (Metwally, Agrawal, El Abbadi, "Efficient Computation of Frequent and Top-k
//! Elements in Data Streams", ICDT 2005): the heavy hitters of a stream in a fixed number of
//! counters.
//!
//! Each of the [`CAPACITY`] counters holds a key, its estimated count and the error that
//! estimate may carry. A key already held gets +w (its weight: 1, or the sampling rate when
//! the stream is sampled); a new key takes the counter with the smallest count `min` and
//! starts at `min + w` with error `min`. So, over a stream of total weight `N`:
//! - every estimate is at least the key's true count, and at most `N / CAPACITY` above it;
//! - every key seen more than `N / CAPACITY` times holds a counter.
//!
//! Memory is the counters and nothing else, whatever the stream: a flood of unique keys only
//! rotates through the smallest counter.
//!
//! The counters are kept sorted by count, largest first. A heavy key is found after a few
//! comparisons (it sits at the front), the smallest counter is always the last one, and an
//! increment moves a key ahead of the counters it passed (for a weight of 1, one swap).

use std::borrow::Borrow;

/// Counters per sketch. 64 keeps a sketch's lookup within a few cache lines and finds every
/// key above 1/64 (1.6%) of a minute's traffic, with counts within 1.6% of the minute's
/// requests; the half handed over ([`super::TOP_REPORTED`]) is what a dashboard shows.
pub const CAPACITY: usize = 64;

/// A top-k summary of a stream of `K`s in [`CAPACITY`] counters.
#[derive(Debug, Clone)]
pub struct SpaceSaving<K> {
    /// Counters in use: indexes `0..len`, sorted by `counts` descending.
    len: usize,
    hashes: [u64; CAPACITY],
    counts: [u64; CAPACITY],
    /// How much of each count may be inherited from the key it replaced.
    errors: [u64; CAPACITY],
    /// The keys of `0..len`; those after `len` are kept after a [`clear`](Self::clear) so that
    /// their buffers are reused rather than allocated again. Never longer than [`CAPACITY`].
    keys: Vec<K>,
    /// The weight offered since the last clear.
    offered: u64,
}

impl<K> Default for SpaceSaving<K> {
    fn default() -> Self {
        SpaceSaving {
            len: 0,
            hashes: [0; CAPACITY],
            counts: [0; CAPACITY],
            errors: [0; CAPACITY],
            keys: Vec::new(),
            offered: 0,
        }
    }
}

impl<K> SpaceSaving<K> {
    /// Counts `weight` occurrences of `key`, whose hash is `hash` (the caller's: it knows its
    /// keys). Copies the key only when it takes a counter, into a buffer kept from earlier
    /// keys.
    pub fn offer<Q>(&mut self, hash: u64, key: &Q, weight: u64)
    where
        K: Borrow<Q>,
        Q: ?Sized + PartialEq + ToOwned<Owned = K>,
    {
        self.offered += weight;
        let len = self.len;
        // Hashes first (a tight loop over one array), the key only to confirm.
        let mut found = self.hashes[..len].iter().position(|h| *h == hash);
        if let Some(i) = found
            && self.keys[i].borrow() != key
        {
            // Another key with the same hash: look at every key.
            found = self.keys[..len].iter().position(|k| k.borrow() == key);
        }
        if let Some(i) = found {
            self.add(i, weight);
            return;
        }
        if len < CAPACITY {
            self.assign(len, hash, key);
            self.len += 1;
            self.counts[len] = 0;
            self.errors[len] = 0;
            self.add(len, weight);
            return;
        }
        // Full: the new key takes the smallest counter (the last) and inherits its count.
        let last = CAPACITY - 1;
        let min = self.counts[last];
        self.assign(last, hash, key);
        self.errors[last] = min;
        self.add(last, weight);
    }

    /// The counters in use, never more than [`CAPACITY`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is counted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The weight offered since the last clear.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Key buffers held, in use or kept for reuse: the sketch's memory in keys, never more
    /// than [`CAPACITY`].
    pub fn buffers(&self) -> usize {
        self.keys.len()
    }

    /// The `n` largest counters as `(key, estimated count, error)`, largest first.
    pub fn top(&self, n: usize) -> impl Iterator<Item = (&K, u64, u64)> {
        let n = n.min(self.len);
        self.keys[..n]
            .iter()
            .zip(&self.counts[..n])
            .zip(&self.errors[..n])
            .map(|((k, c), e)| (k, *c, *e))
    }

    /// Forgets every count, keeping the key buffers for the next keys.
    pub fn clear(&mut self) {
        self.len = 0;
        self.offered = 0;
    }

    fn assign<Q>(&mut self, i: usize, hash: u64, key: &Q)
    where
        Q: ?Sized + ToOwned<Owned = K>,
    {
        self.hashes[i] = hash;
        match self.keys.get_mut(i) {
            Some(buffer) => key.clone_into(buffer),
            None => self.keys.push(key.to_owned()),
        }
    }

    /// Adds `weight` to counter `i` and restores the order: the counter moves ahead of every
    /// counter now smaller than it.
    fn add(&mut self, i: usize, weight: u64) {
        let count = self.counts[i] + weight;
        self.counts[i] = count;
        if i == 0 || self.counts[i - 1] >= count {
            return;
        }
        let to = self.counts[..i].partition_point(|&c| c >= count);
        if weight == 1 {
            // Everything passed had the old count: one swap keeps the order.
            self.hashes.swap(to, i);
            self.counts.swap(to, i);
            self.errors.swap(to, i);
            self.keys.swap(to, i);
        } else {
            self.hashes[to..=i].rotate_right(1);
            self.counts[to..=i].rotate_right(1);
            self.errors[to..=i].rotate_right(1);
            self.keys[to..=i].rotate_right(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_64;

    fn offer(sketch: &mut SpaceSaving<String>, key: &str) {
        sketch.offer(xxh3_64(key.as_bytes()), key, 1);
    }

    fn sorted(sketch: &SpaceSaving<String>) -> bool {
        sketch.counts[..sketch.len].windows(2).all(|w| w[0] >= w[1])
    }

    #[test]
    fn counts_are_exact_while_keys_fit() {
        let mut sketch = SpaceSaving::default();
        for (key, times) in [("/a", 3), ("/b", 5), ("/c", 1)] {
            for _ in 0..times {
                offer(&mut sketch, key);
            }
        }
        let top: Vec<_> = sketch.top(10).map(|(k, c, e)| (k.as_str(), c, e)).collect();
        assert_eq!(top, [("/b", 5, 0), ("/a", 3, 0), ("/c", 1, 0)]);
        assert_eq!(sketch.offered(), 9);
    }

    #[test]
    fn a_new_key_in_a_full_sketch_inherits_the_smallest_count_as_error() {
        let mut sketch = SpaceSaving::default();
        for i in 0..CAPACITY {
            offer(&mut sketch, &format!("/{i}"));
            offer(&mut sketch, &format!("/{i}"));
        }
        offer(&mut sketch, "/new");
        assert_eq!(sketch.len(), CAPACITY);
        let (key, count, error) = sketch.top(1).next().expect("a counter");
        assert_eq!((key.as_str(), count, error), ("/new", 3, 2));
        assert!(sorted(&sketch));
    }

    #[test]
    fn unique_keys_never_grow_the_sketch_beyond_its_capacity() {
        let mut sketch = SpaceSaving::default();
        for i in 0..100_000 {
            offer(&mut sketch, &format!("/unique/{i}"));
            assert!(sketch.len() <= CAPACITY && sketch.buffers() <= CAPACITY);
        }
        assert_eq!(sketch.len(), CAPACITY);
        assert!(sorted(&sketch));
    }

    #[test]
    fn weighted_offers_keep_the_counters_in_order() {
        let mut sketch = SpaceSaving::default();
        for (key, weight) in [
            ("/a", 1),
            ("/b", 1),
            ("/c", 1),
            ("/c", 8),
            ("/a", 3),
            ("/b", 1),
        ] {
            sketch.offer(xxh3_64(key.as_bytes()), key, weight);
        }
        let top: Vec<_> = sketch.top(10).map(|(k, c, _)| (k.as_str(), c)).collect();
        assert_eq!(top, [("/c", 9), ("/a", 4), ("/b", 2)]);
        assert_eq!(sketch.offered(), 15);
    }

    #[test]
    fn clear_forgets_counts_and_keeps_buffers() {
        let mut sketch = SpaceSaving::default();
        offer(&mut sketch, "/a");
        sketch.clear();
        assert!(sketch.is_empty());
        assert_eq!(sketch.buffers(), 1);
        offer(&mut sketch, "/b");
        let top: Vec<_> = sketch.top(10).map(|(k, c, _)| (k.as_str(), c)).collect();
        assert_eq!(top, [("/b", 1)]);
    }
}

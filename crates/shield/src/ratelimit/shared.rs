//! What a `scope = "cluster"` limit shares with the other edges of a cluster.
//!
//! The local sketch counts what this edge sees, at once, as for any limit. Beside it, this
//! table keeps, for each key this edge saw in the current or the previous window, and for each
//! of those two windows: what this edge counted and has not sent yet, what it sent, and the
//! cluster's total as Redis last told it. The cluster's sync task (crates/cluster, `limits`)
//! takes what is unsent ([`SharedCounts::collect`]) at least every 250 ms, adds it to the
//! window's total in Redis and hands the totals back ([`SharedCounts::settle`]).
//!
//! A request's count is then the sketch's plus the other edges' share: `total − sent` for the
//! current window, plus the previous window's `total − sent` weighted by the part of it still
//! inside the sliding period, as the sketch weighs its own previous window.
//!
//! Windows are numbered from the Unix epoch (milliseconds / period), so every edge gives a
//! window the same number; clocks must agree to well within a period (NTP does).
//!
//! Edges know a key by a digest of what it is made of (the address, the path, the header or
//! cookie value: 128 bits of its SHA-256), taken once when the key enters the table. The sync task turns that into a
//! digest keyed by the cluster's secret before it goes to Redis, so Redis holds no address,
//! path or API key.
//!
//! Memory is bounded: at most [`KEYS_PER_LIMIT`] keys per limit, in at most
//! [`TABLE_BYTES`]. Once a table is half full, a key enters it only from its second request
//! (a spray of one-off addresses cannot crowd out the clients that come back); a key that finds
//! it full is counted by this edge alone, as with `scope = "edge"`, and counted in
//! [`Sharing::untracked`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Keys one limit shares at once; more are counted by this edge alone.
pub const KEYS_PER_LIMIT: usize = 16_384;
/// The most one limit's table takes: its shards' hash tables hold at most a quarter of their
/// buckets (a table at its cap that had many keys leave grows once, to four times its keys,
/// before it rehashes in place), at 72 bytes a bucket.
pub const TABLE_BYTES: usize = KEYS_PER_LIMIT * 4 * 72;
/// Independently locked parts of a limit's table, so that requests on both cores rarely wait
/// for each other.
const SHARDS: usize = 16;

/// Whether this process shares its counts (it is a cluster node), and what did not fit.
/// One per registry, handed to every shared limit it builds.
#[derive(Debug, Default)]
pub struct Sharing {
    active: AtomicBool,
    untracked: AtomicU64,
}

impl Sharing {
    /// From now on, `scope = "cluster"` limits keep their tables for the sync task. Until then
    /// (and for good on a node without `[cluster]`) they count as `scope = "edge"` limits do.
    pub fn activate(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// Whether counts are shared.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests whose key did not fit in its limit's table, so were counted locally only.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }
}

/// Bytes of the digest edges know a key by: a collision takes 2^64 tries even to its maker.
pub const DIGEST_BYTES: usize = 16;

/// What a key is made of, for the digest other edges know it by.
#[derive(Debug, Clone, Copy)]
pub enum KeyBytes<'a> {
    /// The client's address (an IPv6 client's /64).
    Ip(&'a [u8; 16]),
    /// The client's address and the request's path.
    IpPath(&'a [u8; 16], &'a str),
    /// A header's or a cookie's value.
    Value(&'a [u8]),
}

impl KeyBytes<'_> {
    /// 128 bits of the SHA-256 of the key, framed so that no two kinds of key can share a
    /// digest.
    pub fn digest(&self) -> [u8; DIGEST_BYTES] {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        match self {
            KeyBytes::Ip(ip) => {
                context.update(b"i");
                context.update(&ip[..]);
            }
            KeyBytes::IpPath(ip, path) => {
                context.update(b"p");
                context.update(&ip[..]);
                context.update(path.as_bytes());
            }
            KeyBytes::Value(value) => {
                context.update(b"v");
                context.update(value);
            }
        }
        let mut out = [0u8; DIGEST_BYTES];
        out.copy_from_slice(&context.finish().as_ref()[..DIGEST_BYTES]);
        out
    }
}

/// One window's counts of one key.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Side {
    /// Counted here, not sent yet.
    unsent: u32,
    /// Counted here and added to Redis's total.
    sent: u32,
    /// The cluster's total as Redis last answered (this edge's sent counts included).
    total: u32,
}

impl Side {
    /// What the other edges counted, as far as this edge knows.
    fn others(&self) -> u32 {
        self.total.saturating_sub(self.sent)
    }
}

#[derive(Debug)]
struct Entry {
    digest: [u8; DIGEST_BYTES],
    /// The window `current` is for; `previous` is the one before it.
    window: u64,
    current: Side,
    previous: Side,
    /// Whether `previous.total` was read after its window ended (so it holds all of it).
    previous_read: bool,
}

impl Entry {
    /// Moves the entry to `window`: the current window becomes the previous one, or both are
    /// gone when more than one window passed. A clock that stepped back moves nothing.
    fn roll(&mut self, window: u64) {
        if window <= self.window {
            return;
        }
        self.previous = if window == self.window + 1 {
            self.current
        } else {
            Side::default()
        };
        self.current = Side::default();
        self.window = window;
        self.previous_read = false;
    }

    fn others(&self, fraction: f64) -> f64 {
        f64::from(self.current.others()) + f64::from(self.previous.others()) * (1.0 - fraction)
    }

    /// Which side holds `window`'s counts, if the entry still keeps them.
    fn side(&mut self, window: u64) -> Option<&mut Side> {
        if window == self.window {
            Some(&mut self.current)
        } else if window + 1 == self.window {
            Some(&mut self.previous)
        } else {
            None
        }
    }

    fn is_empty(&self) -> bool {
        self.current == Side::default() && self.previous == Side::default()
    }
}

/// What the sync task asks Redis for one window of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Add this many to the total and answer the new total (`HINCRBY`).
    Add(u32),
    /// Answer the total (`HGET`).
    Read,
    /// Nothing.
    Skip,
}

/// One key's part of a sync: what to send for its current and its previous window.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The key as this edge's table knows it.
    pub hash: u64,
    /// The key as every edge knows it.
    pub digest: [u8; DIGEST_BYTES],
    /// The current window's number; the previous one is `window - 1`.
    pub window: u64,
    /// For the current window.
    pub current: Ask,
    /// For the previous window.
    pub previous: Ask,
}

/// Redis's answers for one [`Outgoing`]: the totals it asked for (`None` for a skip, or for a
/// command Redis refused: an add refused is given back, to be sent again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// The current window's total.
    pub current: Option<u32>,
    /// The previous window's total.
    pub previous: Option<u32>,
}

/// Hashes a key's hash no further: it is the limit's seeded hash already (unknown outside the
/// process, so nobody can aim keys at one bucket), and hashing it again would be the most
/// expensive step of a request's count.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else is folded in, to stay correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        // The shard is picked by the top bits, which are then the same for all of a shard's
        // keys: the table's buckets and tags should come from the others.
        self.0.rotate_left(32)
    }
}

type Entries = HashMap<u64, Entry, std::hash::BuildHasherDefault<Prehashed>>;

/// One independently locked part of a limit's table.
#[derive(Debug, Default)]
struct Shard {
    entries: Entries,
    /// The window of the last sweep for room: keys leave only as windows pass, so a full
    /// shard is swept once a window, not at every new key (a spray of new keys would
    /// otherwise cost a sweep each).
    swept: u64,
}

/// The shared side of one `scope = "cluster"` limit.
#[derive(Debug)]
pub struct SharedCounts {
    name: String,
    period_ms: u64,
    shards: Box<[Mutex<Shard>]>,
    /// Where the next [`collect`](Self::collect) starts, so a sync cut short by its budget
    /// does not always leave the same keys behind.
    next_shard: AtomicUsize,
    sharing: std::sync::Arc<Sharing>,
}

impl SharedCounts {
    /// The table of the limit that `name` names cluster-wide (its site, id and a digest of its
    /// definition), counting over windows of `period_ms`.
    pub fn new(name: String, period_ms: u64, sharing: std::sync::Arc<Sharing>) -> SharedCounts {
        SharedCounts {
            name,
            period_ms: period_ms.max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next_shard: AtomicUsize::new(0),
            sharing,
        }
    }

    /// The limit's name among the cluster's limits: `SITE:ID:DIGEST`, the same on every edge
    /// that runs the same definition.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The window the counts cover, in milliseconds.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// The window `unix_ms` falls in, and how far into it (0 to 1).
    pub fn window_at(&self, unix_ms: u64) -> (u64, f64) {
        let window = unix_ms / self.period_ms;
        let into = (unix_ms % self.period_ms) as f64 / self.period_ms as f64;
        (window, into)
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        // The low bits pick the sketch's counters; the high ones pick the shard.
        let i = (hash >> 60) as usize % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request of the key `hash` (made of `key`; `local` requests over the
    /// sliding period on this edge, this one included) at `unix_ms`, and answers what the
    /// other edges counted for it over the sliding period, as far as this edge knows.
    pub fn hit(&self, hash: u64, key: KeyBytes<'_>, local: f64, unix_ms: u64) -> f64 {
        if !self.sharing.is_active() {
            return 0.0;
        }
        let (window, fraction) = self.window_at(unix_ms);
        let mut guard = self.shard(hash);
        let shard = &mut *guard;
        let cap = KEYS_PER_LIMIT / SHARDS;
        if !shard.entries.contains_key(&hash) {
            if shard.entries.len() >= cap / 2 && local < 2.0 {
                // A first request, with the table half full: it enters if it comes again.
                return 0.0;
            }
            if shard.entries.len() >= cap && shard.swept != window {
                shard.swept = window;
                shard.entries.retain(|_, entry| {
                    entry.roll(window);
                    !entry.is_empty()
                });
            }
            if shard.entries.len() >= cap {
                self.sharing.untracked.fetch_add(1, Ordering::Relaxed);
                return 0.0;
            }
        }
        let entry = shard.entries.entry(hash).or_insert_with(|| Entry {
            digest: key.digest(),
            window,
            current: Side::default(),
            previous: Side::default(),
            previous_read: false,
        });
        entry.roll(window);
        entry.current.unsent = entry.current.unsent.saturating_add(1);
        entry.others(fraction)
    }

    /// What the other edges counted for the key `hash` over the sliding period at `unix_ms`,
    /// without counting a request.
    pub fn others(&self, hash: u64, unix_ms: u64) -> f64 {
        if !self.sharing.is_active() {
            return 0.0;
        }
        let (window, fraction) = self.window_at(unix_ms);
        let mut shard = self.shard(hash);
        shard.entries.get_mut(&hash).map_or(0.0, |entry| {
            entry.roll(window);
            entry.others(fraction)
        })
    }

    /// Takes what is to be sent at `unix_ms`, for at most `budget` keys: every key with counts
    /// not yet sent (its current total is read back with them; its previous window's once
    /// after that window ended). Keys with nothing left in either window leave the table.
    /// What is taken is either [`settle`](Self::settle)d or given back by a failed one.
    pub fn collect(&self, unix_ms: u64, budget: usize) -> Vec<Outgoing> {
        let (window, _) = self.window_at(unix_ms);
        let mut out = Vec::new();
        let first = self.next_shard.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.shards.len() {
            let mut shard = self.shards[(first + i) % self.shards.len()]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            shard.entries.retain(|hash, entry| {
                entry.roll(window);
                if entry.is_empty() {
                    return false;
                }
                if out.len() >= budget || (entry.current.unsent == 0 && entry.previous.unsent == 0)
                {
                    return true;
                }
                let previous = match std::mem::take(&mut entry.previous.unsent) {
                    0 if entry.previous_read => Ask::Skip,
                    0 => Ask::Read,
                    n => Ask::Add(n),
                };
                let current = match std::mem::take(&mut entry.current.unsent) {
                    0 => Ask::Read,
                    n => Ask::Add(n),
                };
                out.push(Outgoing {
                    hash: *hash,
                    digest: entry.digest,
                    window: entry.window,
                    current,
                    previous,
                });
                true
            });
        }
        out
    }

    /// Records Redis's answers to what [`collect`](Self::collect) took: `Ok` with one
    /// [`Totals`] per [`Outgoing`], in order; `Err` when the sync failed, which gives the counts
    /// back to be sent next time (as a refused add's are) (an add that reached Redis before the failure is then counted
    /// twice: the error is on the strict side).
    pub fn settle(&self, sent: &[Outgoing], answers: Result<&[Totals], ()>) {
        for (i, outgoing) in sent.iter().enumerate() {
            let mut shard = self.shard(outgoing.hash);
            let Some(entry) = shard.entries.get_mut(&outgoing.hash) else {
                continue;
            };
            if entry.digest != outgoing.digest {
                continue;
            }
            let totals = match answers {
                Ok(all) => Some(all.get(i).copied().unwrap_or_default()),
                Err(()) => None,
            };
            let windows = [
                (
                    outgoing.window,
                    outgoing.current,
                    totals.and_then(|t| t.current),
                ),
                (
                    outgoing.window.wrapping_sub(1),
                    outgoing.previous,
                    totals.and_then(|t| t.previous),
                ),
            ];
            for (asked_as_previous, (window, ask, total)) in [false, true].into_iter().zip(windows)
            {
                let Some(side) = entry.side(window) else {
                    continue;
                };
                match (ask, total) {
                    (Ask::Add(n), None) => side.unsent = side.unsent.saturating_add(n),
                    (Ask::Add(n), Some(total)) => {
                        side.sent = side.sent.saturating_add(n);
                        side.total = total;
                    }
                    (Ask::Read, Some(total)) => side.total = total,
                    (Ask::Read | Ask::Skip, None) | (Ask::Skip, Some(_)) => continue,
                }
                // A total read after its window ended holds all of that window, for good.
                if asked_as_previous {
                    entry.previous_read = true;
                }
            }
        }
    }

    /// Keys the table holds now.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MINUTE: u64 = 60_000;

    fn counts() -> SharedCounts {
        let sharing = Arc::new(Sharing::default());
        sharing.activate();
        SharedCounts::new("s:l:0".into(), MINUTE, sharing)
    }

    const IP: [u8; 16] = [1; 16];

    /// Plays Redis for a set of edges: a total per window and digest.
    #[derive(Default)]
    struct Totaller(HashMap<(u64, [u8; DIGEST_BYTES]), u32>);

    impl Totaller {
        fn answer(&mut self, sent: &[Outgoing]) -> Vec<Totals> {
            let mut ask = |window: u64, digest: [u8; DIGEST_BYTES], ask: Ask| {
                let total = self.0.entry((window, digest)).or_default();
                match ask {
                    Ask::Add(n) => {
                        *total += n;
                        Some(*total)
                    }
                    Ask::Read => Some(*total),
                    Ask::Skip => None,
                }
            };
            sent.iter()
                .map(|o| Totals {
                    current: ask(o.window, o.digest, o.current),
                    previous: ask(o.window - 1, o.digest, o.previous),
                })
                .collect()
        }

        fn sync(&mut self, edge: &SharedCounts, now: u64) {
            let sent = edge.collect(now, usize::MAX);
            let answers = self.answer(&sent);
            edge.settle(&sent, Ok(&answers));
        }
    }

    #[test]
    fn an_edge_learns_what_the_others_counted_and_not_its_own() {
        let (a, b) = (counts(), counts());
        let mut redis = Totaller::default();
        let t = 10 * MINUTE;
        for _ in 0..5 {
            assert_eq!(a.hit(7, KeyBytes::Ip(&IP), 1.0, t), 0.0);
        }
        // B's table knows the key by its own hash: the digest is what they share.
        b.hit(99, KeyBytes::Ip(&IP), 1.0, t);
        redis.sync(&a, t);
        redis.sync(&b, t);
        // B learns A's five; A learns nothing yet, having synced before B sent.
        assert_eq!(b.others(99, t), 5.0);
        assert_eq!(a.others(7, t), 0.0);
        a.hit(7, KeyBytes::Ip(&IP), 1.0, t);
        redis.sync(&a, t);
        assert_eq!(a.others(7, t), 1.0);
        // Another key is another count.
        assert_eq!(a.hit(8, KeyBytes::Ip(&[2; 16]), 1.0, t), 0.0);
    }

    #[test]
    fn the_previous_window_fades_as_the_sketch_weighs_it() {
        let (a, b) = (counts(), counts());
        let mut redis = Totaller::default();
        let t = 10 * MINUTE;
        for _ in 0..40 {
            b.hit(1, KeyBytes::Ip(&IP), 1.0, t);
        }
        redis.sync(&b, t);
        a.hit(1, KeyBytes::Ip(&IP), 1.0, t);
        redis.sync(&a, t);
        assert_eq!(a.others(1, t), 40.0);
        // A quarter into the next window: three quarters of the previous one still count.
        let later = 11 * MINUTE + MINUTE / 4;
        assert_eq!(a.hit(1, KeyBytes::Ip(&IP), 1.0, later), 30.0);
        // The previous window's total is read once it is over, then no more.
        let sent = a.collect(later, usize::MAX);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].current, Ask::Add(1));
        assert_eq!(sent[0].previous, Ask::Read);
        let answers = redis.answer(&sent);
        a.settle(&sent, Ok(&answers));
        a.hit(1, KeyBytes::Ip(&IP), 1.0, later);
        assert_eq!(a.collect(later, usize::MAX)[0].previous, Ask::Skip);
        // Two windows on, nothing is left and the key leaves the table.
        assert_eq!(a.others(1, 13 * MINUTE), 0.0);
        assert!(a.collect(13 * MINUTE, usize::MAX).is_empty());
        assert_eq!(a.keys(), 0);
    }

    #[test]
    fn a_failed_sync_gives_the_counts_back_and_a_late_one_lands_in_its_window() {
        let (a, b) = (counts(), counts());
        let mut redis = Totaller::default();
        let t = 10 * MINUTE;
        for _ in 0..3 {
            a.hit(1, KeyBytes::Ip(&IP), 1.0, t);
        }
        let sent = a.collect(t, usize::MAX);
        a.settle(&sent, Err(()));
        // Counted again later, after the window turned: the three go to their own window.
        let later = 11 * MINUTE;
        a.hit(1, KeyBytes::Ip(&IP), 1.0, later);
        let sent = a.collect(later, usize::MAX);
        assert_eq!(sent[0].current, Ask::Add(1));
        assert_eq!(sent[0].previous, Ask::Add(3));
        let answers = redis.answer(&sent);
        a.settle(&sent, Ok(&answers));
        b.hit(5, KeyBytes::Ip(&IP), 1.0, later);
        redis.sync(&b, later);
        // B sees A's 1 now and its 3 before, at full weight at the window's start.
        assert_eq!(b.others(5, later), 4.0);
    }

    #[test]
    fn an_add_redis_refused_is_sent_again_and_the_others_are_taken() {
        let a = counts();
        let t = 10 * MINUTE;
        a.hit(1, KeyBytes::Ip(&IP), 1.0, t);
        a.hit(2, KeyBytes::Ip(&[2; 16]), 1.0, t);
        let mut sent = a.collect(t, usize::MAX);
        sent.sort_by_key(|o| o.hash);
        // Key 1's add refused (its hash is not a hash in Redis, say); key 2's taken.
        let answers = [
            Totals {
                current: None,
                previous: Some(0),
            },
            Totals {
                current: Some(3),
                previous: Some(0),
            },
        ];
        a.settle(&sent, Ok(&answers));
        assert_eq!(a.others(2, t), 2.0);
        let again = a.collect(t, usize::MAX);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].hash, again[0].current), (1, Ask::Add(1)));
    }

    #[test]
    fn a_budget_leaves_the_rest_for_the_next_sync() {
        let a = counts();
        let t = 10 * MINUTE;
        for hash in 0..100u64 {
            a.hit(hash << 56, KeyBytes::Value(&hash.to_be_bytes()), 1.0, t);
        }
        let first = a.collect(t, 30);
        assert_eq!(first.len(), 30);
        let rest = a.collect(t, usize::MAX);
        assert_eq!(rest.len(), 70);
        let mut all: Vec<u64> = first.iter().chain(&rest).map(|o| o.hash).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 100);
    }

    #[test]
    fn the_table_is_bounded_and_what_does_not_fit_is_counted() {
        let a = counts();
        let t = 10 * MINUTE;
        // Keys on their second request each (the first did not need to enter).
        for i in 0..(2 * KEYS_PER_LIMIT) as u64 {
            let hash = xxhash_rust::xxh3::xxh3_64(&i.to_be_bytes());
            a.hit(hash, KeyBytes::Value(&i.to_be_bytes()), 2.0, t);
        }
        assert!(a.keys() <= KEYS_PER_LIMIT, "{}", a.keys());
        assert!(a.sharing.untracked() >= KEYS_PER_LIMIT as u64 / 2);
        // Once their windows are over, old keys make room for new ones.
        let later = 12 * MINUTE;
        a.hit(1, KeyBytes::Value(b"new"), 2.0, later);
        assert!(a.keys() < KEYS_PER_LIMIT);
    }

    #[test]
    fn once_half_full_a_key_enters_at_its_second_request() {
        let a = counts();
        let t = 10 * MINUTE;
        // A spray of one-off keys fills half the table and no more, and is not "untracked":
        // those keys are not kept from anything they need.
        for i in 0..(2 * KEYS_PER_LIMIT) as u64 {
            let hash = xxhash_rust::xxh3::xxh3_64(&i.to_be_bytes());
            a.hit(hash, KeyBytes::Value(&i.to_be_bytes()), 1.0, t);
        }
        assert!(a.keys() <= KEYS_PER_LIMIT / 2, "{}", a.keys());
        assert!(a.keys() > KEYS_PER_LIMIT / 4, "{}", a.keys());
        assert_eq!(a.sharing.untracked(), 0);
        // A client that comes back gets in.
        let before = a.keys();
        a.hit(u64::MAX, KeyBytes::Value(b"returning"), 2.0, t);
        assert_eq!(a.keys(), before + 1);
    }

    #[test]
    fn a_limit_outside_a_cluster_keeps_nothing() {
        let a = SharedCounts::new("s:l:0".into(), MINUTE, Arc::new(Sharing::default()));
        assert_eq!(a.hit(1, KeyBytes::Ip(&IP), 1.0, MINUTE), 0.0);
        assert_eq!(a.keys(), 0);
        assert!(a.collect(MINUTE, usize::MAX).is_empty());
    }

    #[test]
    fn digests_of_different_kinds_of_key_differ() {
        let ip = [0u8; 16];
        let digests = [
            KeyBytes::Ip(&ip).digest(),
            KeyBytes::IpPath(&ip, "").digest(),
            KeyBytes::Value(&ip).digest(),
        ];
        assert_ne!(digests[0], digests[1]);
        assert_ne!(digests[0], digests[2]);
        assert_ne!(digests[1], digests[2]);
    }
}

//! Per-site, per-minute analytics: what each site's traffic was, minute by minute, for the
//! control plane to store and chart.
//!
//! The edge's `log` phase records every routed request in its site's [`SiteAnalytics`] when the
//! response ends (requests that matched no site are not counted per site); the shield records
//! what it blocked and challenged as it decides. The control plane calls
//! [`Analytics::take_finished`] (at least once a minute) and gets each site's completed
//! minutes as plain [`SiteMinute`]s; the minute under way stays open.
//!
//! Per site and minute: requests, bytes in and out, cache outcomes, status classes, blocked and
//! challenged requests by reason, and the top paths and client addresses, estimated by a
//! [`SpaceSaving`] sketch of [`sketch::CAPACITY`] counters. See `docs/analytics.md`.
//!
//! ## Invariants (each pinned by a named test)
//! 1. Memory is bounded whatever the traffic: a sketch never holds more than
//!    [`sketch::CAPACITY`] keys, a stored path at most [`MAX_PATH_BYTES`], and a site keeps at
//!    most [`PENDING_MINUTES`] minutes nobody took.
//!    (`top_paths_find_the_heavy_hitters_among_100k_unique_paths_in_fixed_memory`,
//!    `long_paths_are_cut_to_max_path_bytes_on_a_char_boundary`,
//!    `minutes_nobody_takes_are_capped_dropping_the_oldest`.)
//! 2. A minute is handed over once, and only once it is over.
//!    (`a_minute_is_handed_over_once_and_only_once`,
//!    `the_current_minute_is_not_handed_over`,
//!    `a_request_recorded_after_its_minute_was_taken_counts_in_the_next_one`; a look at the
//!    minute under way takes nothing: `a_peek_shows_the_minute_under_way_without_taking_it`.)
//!
//! ## How the hot path stays cheap
//! The snapshot hands each request its site's [`SiteAnalytics`] (as it hands it its
//! `SiteMetrics`), so nothing is looked up by name. A minute's counters are atomics in one of
//! two slots (minute `m` uses slot `m % 2`). Only the first request of a new minute takes the
//! site's lock, to close the minute the slot held (allocating the [`SiteMinute`] when no take
//! came first) and open its own: once a minute, not once a request. Other requests take no
//! lock and allocate nothing.
//!
//! The top lists cost more (a hash and a scan of the counters for each of the two sketches), so
//! two things bound that cost:
//! - **sampling when busy**: a site's first [`EXACT_REQUESTS`] requests of a minute all enter
//!   the sketches; after that, one in [`SAMPLE_EVERY`] does, counting for `SAMPLE_EVERY`. Quiet
//!   sites keep exact top lists; a busy site pays for an eighth of its requests, and its
//!   heavy hitters carry a sampling error of `2 × √(8 × count)` at two standard deviations
//!   (±10% at 3,000 requests, ±3% at 30,000). Sampling throughout would cost small sites
//!   their lists (at 100 requests a minute, 12 samples).
//! - **never waiting**: the sketches sit behind a mutex the hot path only *tries*; a request
//!   that finds it busy is left out. The counts are scaled by requests ÷ sketched weight when
//!   the minute is handed over, so a skipped sample costs precision, not a bias.
//!
//! The cost is measured by `benches/analytics.rs`.

pub mod sketch;

pub use sketch::SpaceSaving;

use cache::CacheOutcome;
use serde::{Deserialize, Serialize};
use shield::events::{EventAction, EventReason};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::xxh3_64;

/// A stored path is cut to this many bytes: bounded memory per counter, and a path longer than
/// this is an attack or a bug, which its first 256 bytes identify as well as the whole.
pub const MAX_PATH_BYTES: usize = 256;

/// Entries of a top list handed over per minute: the upper half of the sketch, where the
/// Space-Saving guarantee holds (the lower half is mostly keys that just arrived with the
/// smallest count as their error).
pub const TOP_REPORTED: usize = 32;

/// Finished minutes a site keeps for the control plane; past this the oldest go, so an absent
/// control plane costs a fixed amount of memory.
pub const PENDING_MINUTES: usize = 10;

/// A site's requests per minute that all enter the sketches (about 17 a second).
pub const EXACT_REQUESTS: u64 = 1024;

/// Past [`EXACT_REQUESTS`] in a minute, one request in this many enters the sketches.
pub const SAMPLE_EVERY: u64 = 8;

/// Minute `m` is counted in slot `m % SLOTS`. Two: the minute under way and the one before,
/// which requests that started in it may still be finishing.
const SLOTS: usize = 2;

/// A slot's minute when it holds none (closed, or never opened).
const CLOSED: i64 = i64::MIN;

/// The shield's reasons, in the order counted ([`reason_index`]).
const REASONS: [EventReason; 18] = [
    EventReason::DenyList,
    EventReason::Rule,
    EventReason::RateLimit,
    EventReason::CacheMisses,
    EventReason::OriginConcurrency,
    EventReason::UnderAttack,
    EventReason::RequestSpike,
    EventReason::ErrorSpike,
    EventReason::Settled,
    EventReason::ProofOfWork,
    EventReason::InvalidAnswer,
    EventReason::ExpiredAnswer,
    EventReason::WrongAnswer,
    EventReason::ReplayedAnswer,
    EventReason::Signature,
    EventReason::Dismissed,
    EventReason::NoSignature,
    EventReason::Solver,
];

/// Unix milliseconds minus `clock::now_ms()`: turns the edge's monotonic clock into wall-clock
/// minutes without a second clock read per request. Set on first use and again at every take,
/// so a stepped system clock is followed within a take.
static WALL_OFFSET_MS: AtomicI64 = AtomicI64::new(CLOSED);

/// A wall-clock minute: minutes since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minute(pub i64);

impl Minute {
    /// The minute `time` falls in.
    pub fn of(time: SystemTime) -> Minute {
        Minute(unix_ms(time).div_euclid(60_000))
    }

    /// The wall-clock minute of `now`, an instant already read (the `log` phase's).
    pub fn at(now: Instant) -> Minute {
        let mut offset = WALL_OFFSET_MS.load(Ordering::Relaxed);
        if offset == CLOSED {
            offset = sync_wall_clock();
        }
        Minute((monotonic_ms(now) + offset).div_euclid(60_000))
    }

    /// Unix seconds at the minute's start.
    pub fn start_secs(self) -> i64 {
        self.0 * 60
    }
}

/// One site's finished minute, as handed to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SiteMinute {
    /// The site's name.
    pub site: String,
    /// Unix seconds at the minute's start.
    pub minute: i64,
    /// Responses finished in the minute.
    pub requests: u64,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response bytes sent.
    pub bytes_out: u64,
    /// Cache outcomes, as in [`CacheOutcome`] (GET and HEAD on sites with the cache on).
    pub cache_hit: u64,
    /// Fetched from the origin to be stored.
    pub cache_miss: u64,
    /// Served stale (stale-while-revalidate, stale-if-error).
    pub cache_stale: u64,
    /// Refreshed by the origin's 304.
    pub cache_revalidated: u64,
    /// Passed to the origin without storing.
    pub cache_pass: u64,
    /// Responses with a 1xx status (101 for WebSocket upgrades).
    pub status_1xx: u64,
    /// Responses with a 2xx status.
    pub status_2xx: u64,
    /// Responses with a 3xx status.
    pub status_3xx: u64,
    /// Responses with a 4xx status, the shield's refusals included.
    pub status_4xx: u64,
    /// Responses with a 5xx status.
    pub status_5xx: u64,
    /// Requests refused (`block` and `rate_limit` actions) by the shield's reason
    /// (`EventReason` labels: `deny_list`, `rule`, `rate_limit`, `cache_misses`, ...).
    pub blocked: BTreeMap<String, u64>,
    /// Requests sent the challenge, by reason.
    pub challenged: BTreeMap<String, u64>,
    /// Estimated requests per path (no query), largest first, at most [`TOP_REPORTED`].
    pub top_paths: Vec<(String, u64)>,
    /// Estimated requests per client address, largest first, at most [`TOP_REPORTED`].
    pub top_clients: Vec<(String, u64)>,
}

impl SiteMinute {
    /// Adds `other`'s counts to these (another minute, or another edge's same minute); the top
    /// lists merge, keeping [`TOP_REPORTED`].
    pub fn absorb(&mut self, other: &SiteMinute) {
        self.requests += other.requests;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.cache_hit += other.cache_hit;
        self.cache_miss += other.cache_miss;
        self.cache_stale += other.cache_stale;
        self.cache_revalidated += other.cache_revalidated;
        self.cache_pass += other.cache_pass;
        self.status_1xx += other.status_1xx;
        self.status_2xx += other.status_2xx;
        self.status_3xx += other.status_3xx;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        for (reason, n) in &other.blocked {
            *self.blocked.entry(reason.clone()).or_default() += n;
        }
        for (reason, n) in &other.challenged {
            *self.challenged.entry(reason.clone()).or_default() += n;
        }
        self.top_paths = merge_top(
            [self.top_paths.as_slice(), other.top_paths.as_slice()],
            TOP_REPORTED,
        );
        self.top_clients = merge_top(
            [self.top_clients.as_slice(), other.top_clients.as_slice()],
            TOP_REPORTED,
        );
    }
}

/// One finished request, as the `log` phase hands it over.
#[derive(Debug, Clone, Copy)]
pub struct ServedRequest<'a> {
    /// The status sent to the client.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// The request's path, without the query.
    pub path: &'a str,
    /// The client's address (the real client's, behind a trusted proxy).
    pub client: IpAddr,
    /// What the cache did, when it was asked.
    pub cache: Option<CacheOutcome>,
}

/// Every site's minutes.
///
/// ```
/// use analytics::{Analytics, Minute, ServedRequest};
/// use std::time::{Duration, SystemTime};
///
/// let analytics = Analytics::new();
/// let site = analytics.site("example"); // what a snapshot holds
/// let now = SystemTime::now();
/// let request = ServedRequest {
///     status: 200,
///     bytes_in: 0,
///     bytes_out: 512,
///     path: "/",
///     client: "192.0.2.1".parse().unwrap(),
///     cache: None,
/// };
/// site.record(Minute::of(now), &request);
/// assert!(analytics.take_finished(now).is_empty()); // the minute is still open
/// let minutes = analytics.take_finished(now + Duration::from_secs(60));
/// assert_eq!(minutes[0].requests, 1);
/// ```
#[derive(Debug, Default)]
pub struct Analytics {
    /// By name. Read and changed only by snapshot builds and takes, never by a request.
    sites: Mutex<BTreeMap<String, Arc<SiteAnalytics>>>,
    /// Minutes dropped because nobody took them in time, shared with every site.
    dropped: Arc<AtomicU64>,
}

impl Analytics {
    /// No sites yet; [`site`](Self::site) adds them.
    pub fn new() -> Analytics {
        Analytics::default()
    }

    /// `site`'s counters, created on first use and kept across reloads while a snapshot holds
    /// them (a snapshot build calls this once per site).
    pub fn site(&self, site: &str) -> Arc<SiteAnalytics> {
        let mut sites = lock(&self.sites);
        if let Some(existing) = sites.get(site) {
            return Arc::clone(existing);
        }
        let added = Arc::new(SiteAnalytics::new(site, &self.dropped));
        sites.insert(site.to_string(), Arc::clone(&added));
        added
    }

    /// Every site's minutes before `now`'s that were not taken yet, by site then minute. The
    /// minute `now` falls in stays open. Sites no snapshot holds any more are forgotten once
    /// their minutes are taken.
    pub fn take_finished(&self, now: SystemTime) -> Vec<SiteMinute> {
        sync_wall_clock();
        let current = Minute::of(now).0;
        let mut taken = Vec::new();
        let mut sites = lock(&self.sites);
        sites.retain(|_, site| {
            let mut state = lock(&site.state);
            let mut open = false;
            for slot in site.made_slots() {
                let minute = slot.minute.load(Ordering::Acquire);
                if minute != CLOSED && minute < current {
                    site.close(slot, &mut state);
                } else {
                    open |= minute != CLOSED;
                }
            }
            taken.extend(state.pending.drain(..));
            // Kept while a minute is open or a snapshot or a request holds it. Held by this
            // list alone, nothing can count in it any more: a new holder would come through
            // `site`, which waits for this lock.
            open || Arc::strong_count(site) > 1
        });
        drop(sites);
        taken.sort_by(|a, b| a.site.cmp(&b.site).then(a.minute.cmp(&b.minute)));
        taken
    }

    /// `site`'s minutes that were not taken yet, read without taking them, oldest first: the
    /// finished ones waiting for the next take, and the minute `now` falls in as counted so
    /// far (`true`: under way). For a reader who must not wait for the next take, as an
    /// operator looking right after traffic.
    pub fn peek(&self, site: &str, now: SystemTime) -> Vec<(SiteMinute, bool)> {
        let current = Minute::of(now).0;
        let Some(site) = lock(&self.sites).get(site).cloned() else {
            return Vec::new();
        };
        // Under the site's lock no slot opens or closes (both take it): each read below sees
        // one minute, while requests may still add to it.
        let state = lock(&site.state);
        let mut minutes: Vec<(SiteMinute, bool)> =
            state.pending.iter().map(|m| (m.clone(), false)).collect();
        for slot in site.made_slots() {
            let minute = slot.minute.load(Ordering::Acquire);
            if minute != CLOSED {
                minutes.push((site.read(slot, minute, Read::Keep), minute >= current));
            }
        }
        drop(state);
        minutes.sort_by_key(|(m, _)| m.minute);
        minutes
    }

    /// Minutes dropped since the start because nobody took them within [`PENDING_MINUTES`].
    pub fn dropped_minutes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Whether reading a slot takes its counts (closing its minute) or only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Take,
    Keep,
}

/// One site's open minutes and the closed ones waiting to be taken.
#[derive(Debug)]
pub struct SiteAnalytics {
    name: String,
    /// Made by the site's first request: a provider's edge holds thousands of sites that see
    /// no traffic, and their 6 KiB of counters and top lists would be most of its memory.
    slots: OnceLock<Box<[Slot; SLOTS]>>,
    state: Mutex<SiteState>,
    /// [`Analytics`]'s count of dropped minutes.
    dropped: Arc<AtomicU64>,
}

#[derive(Debug)]
struct SiteState {
    /// The latest minute closed: a request for it or an earlier one counts in the next.
    closed_through: i64,
    /// Closed minutes, oldest first, at most [`PENDING_MINUTES`].
    pending: VecDeque<SiteMinute>,
}

/// One minute's counters.
#[derive(Debug)]
struct Slot {
    /// The minute counted here, or [`CLOSED`].
    minute: AtomicI64,
    counters: Counters,
    /// Only ever tried on the hot path (see the module's doc).
    tops: Mutex<Tops>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Indexed by `CacheOutcome as usize`.
    cache: [AtomicU64; 5],
    /// 1xx ... 5xx.
    status: [AtomicU64; 5],
    /// Indexed like [`REASONS`].
    blocked: [AtomicU64; REASONS.len()],
    challenged: [AtomicU64; REASONS.len()],
}

#[derive(Debug, Default)]
struct Tops {
    paths: SpaceSaving<String>,
    clients: SpaceSaving<IpAddr>,
}

impl SiteAnalytics {
    fn new(name: &str, dropped: &Arc<AtomicU64>) -> SiteAnalytics {
        SiteAnalytics {
            name: name.to_string(),
            slots: OnceLock::new(),
            state: Mutex::new(SiteState {
                closed_through: CLOSED,
                pending: VecDeque::new(),
            }),
            dropped: Arc::clone(dropped),
        }
    }

    /// The slots that exist: none until the site's first request.
    fn made_slots(&self) -> &[Slot] {
        self.slots.get().map_or(&[], |slots| &slots[..])
    }

    /// The slots, made now if the site has not counted anything yet.
    fn slots(&self) -> &[Slot; SLOTS] {
        self.slots.get_or_init(|| {
            Box::new(std::array::from_fn(|_| Slot {
                minute: AtomicI64::new(CLOSED),
                counters: Counters::default(),
                tops: Mutex::default(),
            }))
        })
    }

    /// Counts one finished request in `minute`.
    pub fn record(&self, minute: Minute, request: &ServedRequest<'_>) {
        let slot = self.open(minute.0);
        let counters = &slot.counters;
        let earlier = counters.requests.fetch_add(1, Ordering::Relaxed);
        if request.bytes_in > 0 {
            counters
                .bytes_in
                .fetch_add(request.bytes_in, Ordering::Relaxed);
        }
        counters
            .bytes_out
            .fetch_add(request.bytes_out, Ordering::Relaxed);
        let class = (request.status / 100).clamp(1, 5) as usize - 1;
        counters.status[class].fetch_add(1, Ordering::Relaxed);
        if let Some(outcome) = request.cache {
            counters.cache[outcome as usize].fetch_add(1, Ordering::Relaxed);
        }
        let weight = if earlier < EXACT_REQUESTS {
            1
        } else if earlier.is_multiple_of(SAMPLE_EVERY) {
            SAMPLE_EVERY
        } else {
            return;
        };
        let mut tops = match slot.tops.try_lock() {
            Ok(tops) => tops,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let path = truncate(request.path, MAX_PATH_BYTES);
        tops.paths.offer(xxh3_64(path.as_bytes()), path, weight);
        let client = request.client;
        tops.clients.offer(ip_hash(client), &client, weight);
    }

    /// Counts what the shield did to a request in `minute`: `block` and `rate_limit` as
    /// blocked, `challenge` as challenged, by `reason`; other actions are not counted.
    pub fn shield(&self, minute: Minute, action: EventAction, reason: EventReason) {
        let blocked = match action {
            EventAction::Block | EventAction::RateLimit => true,
            EventAction::Challenge => false,
            _ => return,
        };
        let reason = reason_index(reason);
        let counters = &self.open(minute.0).counters;
        let by_reason = if blocked {
            &counters.blocked
        } else {
            &counters.challenged
        };
        by_reason[reason].fetch_add(1, Ordering::Relaxed);
    }

    /// The slot counting `minute`: on the hot path, the one that already does.
    fn open(&self, minute: i64) -> &Slot {
        let slot = &self.slots()[minute.rem_euclid(SLOTS as i64) as usize];
        if slot.minute.load(Ordering::Acquire) == minute {
            return slot;
        }
        self.open_slow(minute)
    }

    /// Opens `minute`'s slot, closing the earlier minute it held; a minute already closed
    /// (a request that finished as its minute was taken) counts in the next one instead.
    #[cold]
    fn open_slow(&self, minute: i64) -> &Slot {
        let mut state = lock(&self.state);
        let minute = minute.max(state.closed_through.saturating_add(1));
        let slot = &self.slots()[minute.rem_euclid(SLOTS as i64) as usize];
        let held = slot.minute.load(Ordering::Acquire);
        // `held > minute`: the clock went back; count in the later minute rather than reopen.
        if held != CLOSED && held >= minute {
            return slot;
        }
        if held != CLOSED {
            // Nobody took it: it waits with the others.
            self.close(slot, &mut state);
        }
        slot.minute.store(minute, Ordering::Release);
        slot
    }

    /// Moves `slot`'s minute to the pending list and marks the slot closed. A request racing
    /// this adds to the slot's next minute: counted once, never lost, never handed over twice.
    fn close(&self, slot: &Slot, state: &mut SiteState) {
        let minute = slot.minute.swap(CLOSED, Ordering::AcqRel);
        if minute == CLOSED {
            return;
        }
        state.closed_through = state.closed_through.max(minute);
        let finished = self.read(slot, minute, Read::Take);
        if state.pending.len() >= PENDING_MINUTES {
            state.pending.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        state.pending.push_back(finished);
    }

    /// `slot`'s counters for `minute` as a [`SiteMinute`]: taken (the slot starts again from
    /// zero) or kept (a look at the minute under way).
    fn read(&self, slot: &Slot, minute: i64, how: Read) -> SiteMinute {
        let c = &slot.counters;
        let take = |counter: &AtomicU64| match how {
            Read::Take => counter.swap(0, Ordering::Relaxed),
            Read::Keep => counter.load(Ordering::Relaxed),
        };
        let by_reason = |counters: &[AtomicU64; REASONS.len()]| {
            REASONS
                .iter()
                .zip(counters)
                .filter_map(|(reason, n)| {
                    let n = take(n);
                    (n > 0).then(|| (reason.as_str().to_string(), n))
                })
                .collect()
        };
        let requests = take(&c.requests);
        let mut tops = lock(&slot.tops);
        // Requests left out of a busy sketch: scale the sketched counts back to the whole.
        let sketched = tops.paths.offered();
        let scale = |count: u64| {
            if sketched == 0 || sketched == requests {
                count
            } else {
                (count as f64 * requests as f64 / sketched as f64).round() as u64
            }
        };
        let top_paths = tops
            .paths
            .top(TOP_REPORTED)
            .map(|(path, count, _)| (path.clone(), scale(count)))
            .collect();
        let top_clients = tops
            .clients
            .top(TOP_REPORTED)
            .map(|(ip, count, _)| (ip.to_string(), scale(count)))
            .collect();
        if how == Read::Take {
            tops.paths.clear();
            tops.clients.clear();
        }
        drop(tops);
        SiteMinute {
            site: self.name.clone(),
            minute: Minute(minute).start_secs(),
            requests,
            bytes_in: take(&c.bytes_in),
            bytes_out: take(&c.bytes_out),
            cache_hit: take(&c.cache[CacheOutcome::Hit as usize]),
            cache_miss: take(&c.cache[CacheOutcome::Miss as usize]),
            cache_stale: take(&c.cache[CacheOutcome::Stale as usize]),
            cache_revalidated: take(&c.cache[CacheOutcome::Revalidated as usize]),
            cache_pass: take(&c.cache[CacheOutcome::Pass as usize]),
            status_1xx: take(&c.status[0]),
            status_2xx: take(&c.status[1]),
            status_3xx: take(&c.status[2]),
            status_4xx: take(&c.status[3]),
            status_5xx: take(&c.status[4]),
            blocked: by_reason(&c.blocked),
            challenged: by_reason(&c.challenged),
            top_paths,
            top_clients,
        }
    }
}

/// Merges the top lists of several minutes (or sites) into one: counts of the same key add
/// up; the `limit` largest come back, largest first (ties by key).
///
/// Each minute's list is a sketch's estimate, cut at [`TOP_REPORTED`]: a key counts in the
/// merge only the minutes it made its minute's list, so a key that is steady but never near
/// the top is under-counted, and a key at the top is over-counted by at most its minutes'
/// sketch errors (each at most the minute's requests ÷ [`sketch::CAPACITY`]).
///
/// ```
/// use analytics::merge_top;
/// let a = vec![("/".to_string(), 5), ("/a".to_string(), 2)];
/// let b = vec![("/a".to_string(), 4)];
/// let merged = merge_top([a.as_slice(), b.as_slice()], 10);
/// assert_eq!(merged, [("/a".to_string(), 6), ("/".to_string(), 5)]);
/// ```
pub fn merge_top<'a>(
    lists: impl IntoIterator<Item = &'a [(String, u64)]>,
    limit: usize,
) -> Vec<(String, u64)> {
    let mut sums: HashMap<&str, u64> = HashMap::new();
    for list in lists {
        for (key, count) in list {
            *sums.entry(key.as_str()).or_default() += count;
        }
    }
    let mut merged: Vec<(String, u64)> = sums
        .into_iter()
        .map(|(key, count)| (key.to_string(), count))
        .collect();
    merged.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    merged.truncate(limit);
    merged
}

/// Where `reason` is counted. A match rather than a search of [`REASONS`]: a reason added to
/// the shield does not build until it is given a place here.
fn reason_index(reason: EventReason) -> usize {
    match reason {
        EventReason::DenyList => 0,
        EventReason::Rule => 1,
        EventReason::RateLimit => 2,
        EventReason::CacheMisses => 3,
        EventReason::OriginConcurrency => 4,
        EventReason::UnderAttack => 5,
        EventReason::RequestSpike => 6,
        EventReason::ErrorSpike => 7,
        EventReason::Settled => 8,
        EventReason::ProofOfWork => 9,
        EventReason::InvalidAnswer => 10,
        EventReason::ExpiredAnswer => 11,
        EventReason::WrongAnswer => 12,
        EventReason::ReplayedAnswer => 13,
        EventReason::Signature => 14,
        EventReason::Dismissed => 15,
        EventReason::NoSignature => 16,
        EventReason::Solver => 17,
    }
}

/// `path` cut to at most `max` bytes, on a character boundary.
fn truncate(path: &str, max: usize) -> &str {
    if path.len() <= max {
        return path;
    }
    let mut end = max;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// An address's hash for the sketch: a multiply, since a match is confirmed on the address.
fn ip_hash(ip: IpAddr) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    match ip {
        IpAddr::V4(v4) => u64::from(v4.to_bits()).wrapping_mul(K),
        IpAddr::V6(v6) => {
            let bits = v6.to_bits();
            ((bits >> 64) as u64 ^ (bits as u64).wrapping_mul(K))
                .wrapping_add(1)
                .wrapping_mul(K)
        }
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Reads the wall clock and the monotonic clock together and keeps their difference.
fn sync_wall_clock() -> i64 {
    let offset = unix_ms(SystemTime::now()) - monotonic_ms(Instant::now());
    WALL_OFFSET_MS.store(offset, Ordering::Relaxed);
    offset
}

/// Milliseconds of `instant` on a monotonic clock that starts at the first call: what the
/// wall-clock offset is kept against, so a minute is found without reading the wall clock.
fn monotonic_ms(instant: Instant) -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    instant.saturating_duration_since(start).as_millis() as i64
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    /// A minute well after the epoch.
    const M: i64 = 29_000_000;

    fn at(minute: i64, second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(minute as u64 * 60 + second)
    }

    fn served(path: &str, client: IpAddr, status: u16) -> ServedRequest<'_> {
        ServedRequest {
            status,
            bytes_in: 10,
            bytes_out: 100,
            path,
            client,
            cache: None,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn tops(site: &SiteAnalytics, minute: i64) -> MutexGuard<'_, Tops> {
        lock(&site.slots()[minute.rem_euclid(SLOTS as i64) as usize].tops)
    }

    #[test]
    fn a_site_without_traffic_holds_no_counters_until_its_first_request() {
        let analytics = Analytics::new();
        let site = analytics.site("idle");
        assert!(site.slots.get().is_none());
        assert!(analytics.peek("idle", SystemTime::now()).is_empty());
        assert!(analytics.take_finished(SystemTime::now()).is_empty());
        assert!(site.slots.get().is_none(), "reading made the counters");
        let now = SystemTime::now();
        site.record(Minute::of(now), &served("/", ip(1), 200));
        assert!(site.slots.get().is_some());
        assert_eq!(analytics.peek("idle", now)[0].0.requests, 1);
    }

    #[test]
    fn counters_add_up_per_site_and_per_minute() {
        let analytics = Analytics::new();
        let (a, b) = (analytics.site("a"), analytics.site("b"));
        let hit = ServedRequest {
            cache: Some(CacheOutcome::Hit),
            ..served("/", ip(1), 200)
        };
        let miss = ServedRequest {
            cache: Some(CacheOutcome::Miss),
            ..served("/", ip(1), 200)
        };
        for _ in 0..3 {
            a.record(Minute(M), &hit);
        }
        a.record(Minute(M), &miss);
        a.record(Minute(M), &served("/x", ip(2), 404));
        a.record(Minute(M + 1), &served("/", ip(1), 503));
        b.record(Minute(M), &served("/", ip(1), 301));

        let taken = analytics.take_finished(at(M + 2, 0));
        let summary: Vec<_> = taken
            .iter()
            .map(|m| (m.site.as_str(), m.minute, m.requests))
            .collect();
        assert_eq!(
            summary,
            [("a", M * 60, 5), ("a", (M + 1) * 60, 1), ("b", M * 60, 1)]
        );
        let first = &taken[0];
        assert_eq!((first.bytes_in, first.bytes_out), (50, 500));
        assert_eq!(
            (first.cache_hit, first.cache_miss, first.cache_stale),
            (3, 1, 0)
        );
        assert_eq!(
            (first.status_2xx, first.status_4xx, first.status_5xx),
            (4, 1, 0)
        );
        assert_eq!(
            first.top_paths,
            [("/".to_string(), 4), ("/x".to_string(), 1)]
        );
        assert_eq!(
            first.top_clients,
            [("192.0.2.1".to_string(), 4), ("192.0.2.2".to_string(), 1)]
        );
        assert_eq!(taken[1].status_5xx, 1);
        assert_eq!(taken[2].status_3xx, 1);
    }

    #[test]
    fn shield_outcomes_are_counted_by_reason() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        let minute = Minute(M);
        site.shield(minute, EventAction::Block, EventReason::DenyList);
        site.shield(minute, EventAction::Block, EventReason::Rule);
        site.shield(minute, EventAction::RateLimit, EventReason::RateLimit);
        site.shield(minute, EventAction::RateLimit, EventReason::RateLimit);
        site.shield(minute, EventAction::Challenge, EventReason::UnderAttack);
        // Not refusals: the request went on, or got the origin's 503.
        site.shield(minute, EventAction::Log, EventReason::Rule);
        site.shield(minute, EventAction::Shed, EventReason::OriginConcurrency);

        let taken = analytics.take_finished(at(M + 1, 0));
        assert_eq!(taken.len(), 1);
        let labels = |map: &BTreeMap<String, u64>| {
            map.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
        };
        let blocked = labels(&taken[0].blocked);
        let expected = [("deny_list", 1), ("rate_limit", 2), ("rule", 1)];
        assert_eq!(blocked, expected.map(|(k, v)| (k.to_string(), v)));
        let challenged = labels(&taken[0].challenged);
        assert_eq!(challenged, [("under_attack".to_string(), 1)]);
    }

    #[test]
    fn every_reason_has_its_own_counter() {
        for (i, reason) in REASONS.iter().enumerate() {
            assert_eq!(reason_index(*reason), i, "{}", reason.as_str());
        }
    }

    #[test]
    fn a_minute_is_handed_over_once_and_only_once() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        site.record(Minute(M), &served("/", ip(1), 200));
        assert_eq!(analytics.take_finished(at(M + 1, 1)).len(), 1);
        assert!(analytics.take_finished(at(M + 1, 2)).is_empty());
        assert!(analytics.take_finished(at(M + 5, 0)).is_empty());
    }

    #[test]
    fn the_current_minute_is_not_handed_over() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        site.record(Minute(M), &served("/", ip(1), 200));
        assert!(analytics.take_finished(at(M, 59)).is_empty());
        site.record(Minute(M), &served("/", ip(1), 200));
        let taken = analytics.take_finished(at(M + 1, 0));
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].requests, 2);
    }

    #[test]
    fn a_peek_shows_the_minute_under_way_without_taking_it() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        assert!(analytics.peek("a", at(M, 0)).is_empty());
        site.record(Minute(M), &served("/x", ip(1), 200));
        site.record(Minute(M + 1), &served("/y", ip(2), 404));
        // M finished (waiting for a take), M + 1 under way.
        let peeked = analytics.peek("a", at(M + 1, 30));
        let seen: Vec<_> = peeked
            .iter()
            .map(|(m, under_way)| (m.minute, m.requests, m.status_4xx, *under_way))
            .collect();
        assert_eq!(seen, [(M * 60, 1, 0, false), ((M + 1) * 60, 1, 1, true)]);
        assert_eq!(peeked[1].0.top_paths, [("/y".to_string(), 1)]);
        assert!(analytics.peek("b", at(M + 1, 30)).is_empty());
        // Nothing was taken: the next take hands both minutes over, each once, in full.
        site.record(Minute(M + 1), &served("/y", ip(2), 200));
        let taken = analytics.take_finished(at(M + 2, 0));
        let minutes: Vec<_> = taken.iter().map(|m| (m.minute, m.requests)).collect();
        assert_eq!(minutes, [(M * 60, 1), ((M + 1) * 60, 2)]);
        assert_eq!(taken[1].top_paths, [("/y".to_string(), 2)]);
    }

    #[test]
    fn a_request_recorded_after_its_minute_was_taken_counts_in_the_next_one() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        site.record(Minute(M), &served("/", ip(1), 200));
        assert_eq!(analytics.take_finished(at(M + 1, 0))[0].requests, 1);
        // Started in minute M, finished just after the take.
        site.record(Minute(M), &served("/", ip(1), 200));
        assert!(analytics.take_finished(at(M + 1, 30)).is_empty());
        let taken = analytics.take_finished(at(M + 2, 0));
        let minutes: Vec<_> = taken.iter().map(|m| (m.minute, m.requests)).collect();
        assert_eq!(minutes, [((M + 1) * 60, 1)]);
    }

    #[test]
    fn minutes_nobody_takes_are_capped_dropping_the_oldest() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        for minute in M..M + 16 {
            site.record(Minute(minute), &served("/", ip(1), 200));
            assert!(lock(&site.state).pending.len() <= PENDING_MINUTES);
        }
        let taken = analytics.take_finished(at(M + 16, 0));
        let minutes: Vec<_> = taken.iter().map(|m| m.minute / 60 - M).collect();
        assert_eq!(minutes, (6..16).collect::<Vec<_>>());
        assert_eq!(analytics.dropped_minutes(), 6);
    }

    #[test]
    fn top_paths_find_the_heavy_hitters_among_100k_unique_paths_in_fixed_memory() {
        // Ten heavy paths (12,000 down to 3,000 requests, each from its own address) shuffled
        // into 100,000 requests for paths and from addresses seen once each.
        let heavy: Vec<u64> = (0..10).map(|i| 12_000 - i * 1_000).collect();
        let mut stream: Vec<u32> = Vec::new();
        for (i, &n) in heavy.iter().enumerate() {
            stream.extend(std::iter::repeat_n(i as u32, n as usize));
        }
        stream.extend(10..100_010);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..stream.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            stream.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let total = stream.len() as u64;
        let analytics = Analytics::new();
        let site = analytics.site("a");
        for (n, &item) in stream.iter().enumerate() {
            let (path, client) = if item < 10 {
                (format!("/heavy/{item}"), ip(item as u8))
            } else {
                let [_, a, b, c] = item.to_be_bytes();
                let client = IpAddr::V4(Ipv4Addr::new(10, a, b, c));
                (format!("/unique/{item}"), client)
            };
            site.record(Minute(M), &served(&path, client, 200));
            if n % 1_000 == 0 {
                let tops = tops(&site, M);
                assert!(tops.paths.len() <= sketch::CAPACITY);
                assert!(tops.paths.buffers() <= sketch::CAPACITY);
                assert!(tops.clients.buffers() <= sketch::CAPACITY);
            }
        }
        let taken = analytics.take_finished(at(M + 1, 0));
        let minute = &taken[0];
        assert_eq!(minute.requests, total);
        // The sketch's bound, plus four standard deviations of sampling one in SAMPLE_EVERY.
        let sketch_error = total / sketch::CAPACITY as u64;
        let mut found: Vec<_> = minute.top_paths[..10].to_vec();
        found.sort();
        for (i, (path, estimate)) in found.iter().enumerate() {
            assert_eq!(path, &format!("/heavy/{i}"));
            let truth = heavy[i];
            let sampling = 4 * (SAMPLE_EVERY as f64 * truth as f64).sqrt() as u64;
            let plausible = truth - sampling..=truth + sketch_error + sampling;
            assert!(
                plausible.contains(estimate),
                "{path}: {estimate} for {truth}"
            );
        }
        let mut clients: Vec<_> = minute.top_clients[..10].iter().map(|(c, _)| c).collect();
        clients.sort();
        let mut expected: Vec<_> = (0..10).map(|i| ip(i).to_string()).collect();
        expected.sort();
        assert_eq!(clients, expected.iter().collect::<Vec<_>>());
        assert!(minute.top_paths.len() <= TOP_REPORTED);
    }

    #[test]
    fn a_quiet_minute_has_exact_top_counts() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        for i in 0..EXACT_REQUESTS {
            let path = if i % 4 == 0 { "/a" } else { "/b" };
            site.record(Minute(M), &served(path, ip(1), 200));
        }
        let taken = analytics.take_finished(at(M + 1, 0));
        let quarter = EXACT_REQUESTS / 4;
        let expected = [("/b", 3 * quarter), ("/a", quarter)];
        assert_eq!(
            taken[0].top_paths,
            expected.map(|(p, n)| (p.to_string(), n))
        );
    }

    #[test]
    fn long_paths_are_cut_to_max_path_bytes_on_a_char_boundary() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        let long = format!("/{}", "a".repeat(1_000));
        // 'é' is two bytes; one straddles byte 256.
        let accented = format!("/{}{}", "b".repeat(254), "é".repeat(10));
        site.record(Minute(M), &served(&long, ip(1), 200));
        site.record(Minute(M), &served(&accented, ip(1), 200));
        let taken = analytics.take_finished(at(M + 1, 0));
        let mut lengths: Vec<_> = taken[0].top_paths.iter().map(|(p, _)| p.len()).collect();
        lengths.sort();
        assert_eq!(lengths, [255, MAX_PATH_BYTES]);
        assert!(taken[0].top_paths.iter().any(|(p, _)| long.starts_with(p)));
    }

    #[test]
    fn requests_left_out_of_a_busy_sketch_scale_its_counts() {
        let analytics = Analytics::new();
        let site = analytics.site("a");
        site.record(Minute(M), &served("/a", ip(1), 200));
        {
            let _busy = tops(&site, M);
            for _ in 0..3 {
                site.record(Minute(M), &served("/a", ip(1), 200));
            }
        }
        let taken = analytics.take_finished(at(M + 1, 0));
        assert_eq!(taken[0].requests, 4);
        assert_eq!(taken[0].top_paths, [("/a".to_string(), 4)]);
    }

    #[test]
    fn a_site_no_snapshot_holds_is_forgotten_once_its_minutes_are_taken() {
        let analytics = Analytics::new();
        let gone = analytics.site("gone");
        let kept = analytics.site("kept");
        gone.record(Minute(M), &served("/", ip(1), 200));
        drop(gone);
        assert_eq!(analytics.take_finished(at(M, 30)).len(), 0);
        assert_eq!(lock(&analytics.sites).len(), 2, "its minute is still open");
        assert_eq!(analytics.take_finished(at(M + 1, 0)).len(), 1);
        let names: Vec<_> = lock(&analytics.sites).keys().cloned().collect();
        assert_eq!(names, ["kept"]);
        drop(kept);
    }

    #[test]
    fn a_site_keeps_its_counters_across_snapshots() {
        let analytics = Analytics::new();
        let before = analytics.site("a");
        before.record(Minute(M), &served("/", ip(1), 200));
        let after = analytics.site("a");
        after.record(Minute(M), &served("/", ip(1), 200));
        assert_eq!(analytics.take_finished(at(M + 1, 0))[0].requests, 2);
    }

    #[test]
    fn minute_at_reads_the_wall_clock_minute_from_the_monotonic_clock() {
        let before = Minute::of(SystemTime::now());
        let minute = Minute::at(Instant::now());
        let after = Minute::of(SystemTime::now());
        assert!((before.0 - 1..=after.0 + 1).contains(&minute.0));
    }

    #[test]
    fn merge_top_adds_counts_across_minutes_and_keeps_the_largest() {
        let entry = |k: &str, n: u64| (k.to_string(), n);
        let minutes = [
            SiteMinute {
                top_paths: vec![entry("/", 50), entry("/a", 20), entry("/b", 5)],
                ..SiteMinute::default()
            },
            SiteMinute {
                top_paths: vec![entry("/a", 40), entry("/c", 30)],
                ..SiteMinute::default()
            },
            SiteMinute::default(),
        ];
        let merged = merge_top(minutes.iter().map(|m| m.top_paths.as_slice()), 3);
        assert_eq!(merged, [entry("/a", 60), entry("/", 50), entry("/c", 30)]);
        let ties = merge_top([[entry("/y", 1), entry("/x", 1)].as_slice()], 10);
        assert_eq!(ties, [entry("/x", 1), entry("/y", 1)]);
    }

    #[test]
    fn a_site_minute_round_trips_through_json() {
        let minute = SiteMinute {
            site: "a".into(),
            minute: M * 60,
            requests: 3,
            blocked: BTreeMap::from([("rule".to_string(), 2)]),
            top_paths: vec![("/".into(), 3)],
            ..SiteMinute::default()
        };
        let json = serde_json::to_string(&minute).expect("serializes");
        let back: SiteMinute = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, minute);
    }
}

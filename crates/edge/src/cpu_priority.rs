//! When the edge is short of CPU, the sites that are not under attack are served first.
//!
//! `cpu_watch` asks the runtime for a short sleep again and again and measures how late it
//! wakes: the scheduling lag, how long a ready request waits for a worker thread. From
//! `server.overload_lag` of lag on, the edge is short of CPU. While it is, and other sites are
//! being served too, a request of a site that is under attack, or that sends over one and a
//! half times an average active site's share of the edge's requests, waits its turn in
//! [`CpuPriority`]'s line after routing (at most `server.overload_wait`), and every other
//! site's request goes straight on.
//!
//! A shortage starts with [`LATE_TICKS`] late ticks in a row. The line lets its requests go
//! in arrival order, a few each probe tick: a few more after each calm tick, half as many
//! after a late one ([`Pacing`], TCP's additive increase and multiplicative decrease); once the
//! line is empty and [`CALM_TICKS`] ticks in a row were calm, the shortage is over. (Letting
//! the whole line go at once would bring the shortage straight back: a burst of the flood's
//! requests, five times a second.) A flood in a closed loop (the next request once the last is
//! answered) thus slows to the pace the edge has CPU to spare for it, as
//! HAProxy's backend queue slows one to its backend's `maxconn`; a flood that does not wait
//! for answers piles up in the line, bounded by the connection caps, its requests costing a
//! parked task each rather than their shield, cache and origin work.
//!
//! Why a share of requests and not of CPU time: the edge cannot charge CPU time to a site
//! without timing every phase; a site's request rate is what an attack raises, and it is
//! known before detection has seen a second of it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the probe measures the lag: the sleep it asks for.
pub const PROBE_EVERY: Duration = Duration::from_millis(5);
/// How late tokio's timer wakes a sleep on an idle runtime (it counts whole milliseconds):
/// not counted as lag.
pub const TIMER_RESOLUTION: Duration = Duration::from_millis(1);
/// Late ticks in a row that start a shortage: one late wake-up is a hiccup (a burst of
/// handshakes, a page fault), two in a row are work queueing.
pub const LATE_TICKS: u32 = 2;
/// Calm ticks in a row (lag under the limit) that end a shortage, with nobody waiting: 100 ms.
pub const CALM_TICKS: u32 = 20;
/// How often each site's share of the edge's requests is judged.
pub const SHARE_EVERY: Duration = Duration::from_millis(100);
/// Requests a site must send in a [`SHARE_EVERY`] window (100 a second) before its share
/// can count as more than its part: a site with a trickle of visitors never waits.
pub const MIN_HEAVY_ARRIVALS: u64 = 10;
/// Windows a site stays marked heavy after it last was: 1 s. Its requests waiting their turn
/// slow a closed-loop flood down, which lowers its share; without this it would be let go,
/// flood again and be caught again, five times a second.
pub const HEAVY_HOLD_WINDOWS: u32 = 10;

/// Requests let go on the first tick of a shortage, and how many more each calm tick lets go
/// (halved by each late one).
const FIRST_BUDGET: u32 = 8;
/// The most requests let go in one tick while short (a million a second at [`PROBE_EVERY`]).
const MAX_BUDGET: u32 = 5_000;

/// The line that requests of deprioritised sites wait in while the edge is short of CPU,
/// and what the probe last measured. One per edge, in `EdgeState`.
#[derive(Debug, Default)]
pub struct CpuPriority {
    short: AtomicBool,
    /// The last lag measured, in microseconds (for the metrics).
    lag_micros: AtomicU64,
    /// Requests waiting their turn now.
    waiting: AtomicU64,
    turns: Notify,
}

impl CpuPriority {
    /// True while the edge is short of CPU: deprioritised sites' requests wait their turn.
    pub fn short(&self) -> bool {
        self.short.load(Ordering::Relaxed)
    }

    /// The scheduling lag the probe measured last.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_micros.load(Ordering::Relaxed))
    }

    /// Requests waiting their turn now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits in the line until the probe lets this request go, or `limit` passes (then it goes
    /// anyway: a deprioritised site is served later, never starved). True when it was let go.
    pub async fn wait_turn(&self, limit: Duration) -> bool {
        /// Counts the request out of the line however the wait ends (the client may leave).
        struct InLine<'a>(&'a AtomicU64);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _in_line = InLine(&self.waiting);
        tokio::time::timeout(limit, self.turns.notified())
            .await
            .is_ok()
    }

    /// Takes the probe's measurement: whether the edge is short, and lets go who
    /// [`Pacing::tick`] says.
    pub fn apply(&self, lag: Duration, short: bool, let_go: LetGo) {
        self.lag_micros
            .store(lag.as_micros() as u64, Ordering::Relaxed);
        self.short.store(short, Ordering::Relaxed);
        match let_go {
            LetGo::Some(n) => {
                // Wakes the longest waiting first. No more than wait: a wake-up with nobody
                // waiting is kept for the next request to come.
                let n = u64::from(n).min(self.waiting());
                for _ in 0..n {
                    self.turns.notify_one();
                }
            }
            LetGo::All => self.turns.notify_waiters(),
        }
    }
}

/// Whom the line lets go after a probe tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetGo {
    /// This many, longest waiting first.
    Some(u32),
    /// Everyone: the shortage is over (or the limit is off).
    All,
}

/// The probe's judgement from tick to tick: whether the edge is short of CPU, and how many
/// waiting requests each tick lets go.
#[derive(Debug)]
pub struct Pacing {
    short: bool,
    late_ticks: u32,
    calm_ticks: u32,
    budget: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            short: false,
            late_ticks: 0,
            calm_ticks: 0,
            budget: FIRST_BUDGET,
        }
    }
}

impl Pacing {
    /// True while the edge is short of CPU.
    pub fn short(&self) -> bool {
        self.short
    }

    /// One probe tick that woke `lag` late, against `server.overload_lag` (`limit`; zero turns
    /// deprioritising off), with `waiting` requests in the line.
    pub fn tick(&mut self, lag: Duration, limit: Duration, waiting: u64) -> LetGo {
        if limit.is_zero() {
            *self = Pacing::default();
            return LetGo::All;
        }
        if lag >= limit {
            self.late_ticks += 1;
            if !self.short && self.late_ticks < LATE_TICKS {
                return LetGo::All;
            }
            self.short = true;
            self.calm_ticks = 0;
            self.budget = (self.budget / 2).max(1);
            return LetGo::Some(self.budget);
        }
        self.late_ticks = 0;
        if !self.short {
            return LetGo::All;
        }
        self.calm_ticks += 1;
        if self.calm_ticks >= CALM_TICKS && waiting == 0 {
            *self = Pacing::default();
            return LetGo::All;
        }
        self.budget = (self.budget + FIRST_BUDGET).min(MAX_BUDGET);
        LetGo::Some(self.budget)
    }
}

/// A site's share of the edge's requests, counted as they arrive, and whether its requests
/// wait their turn when the edge is short. Kept with the site's protection (across reloads).
#[derive(Debug, Default)]
pub struct SiteShare {
    arrivals: AtomicU64,
    /// The arrivals of the window being judged (so the judgement needs no allocation).
    judged: AtomicU64,
    /// Windows left for which the site counts as heavy (see [`HEAVY_HOLD_WINDOWS`]).
    heavy_windows: AtomicU32,
    deprioritised: AtomicBool,
}

impl SiteShare {
    /// Counts a request of the site; true when it should wait its turn should the edge be
    /// short of CPU.
    pub fn arrive(&self) -> bool {
        self.arrivals.fetch_add(1, Ordering::Relaxed);
        self.deprioritised.load(Ordering::Relaxed)
    }

    /// Whether the site's requests wait their turn when the edge is short (as of the last
    /// judgement).
    pub fn deprioritised(&self) -> bool {
        self.deprioritised.load(Ordering::Relaxed)
    }
}

/// One [`SHARE_EVERY`] judgement over every site: `(share, under_attack)`. While two or more
/// sites are being served, a site under attack is deprioritised; so is one that sent over one and a half times an average active
/// site's share of the window's requests (at least [`MIN_HEAVY_ARRIVALS`], and only when two or more sites
/// are active: a lone site is nobody's rival), for [`HEAVY_HOLD_WINDOWS`] windows after.
pub fn judge_shares<'a>(sites: impl Iterator<Item = (&'a SiteShare, bool)> + Clone) {
    let (mut total, mut active) = (0u64, 0u64);
    for (share, _) in sites.clone() {
        let count = share.arrivals.swap(0, Ordering::Relaxed);
        share.judged.store(count, Ordering::Relaxed);
        total += count;
        active += u64::from(count > 0);
    }
    for (share, under_attack) in sites {
        let count = share.judged.load(Ordering::Relaxed);
        // Over one and a half times the average: two sites browsed alike trade places by
        // chance from window to window, and neither is the other's rival.
        let heavy_now =
            active >= 2 && count >= MIN_HEAVY_ARRIVALS && 2 * count * active > 3 * total;
        let windows = if heavy_now {
            HEAVY_HOLD_WINDOWS
        } else {
            share
                .heavy_windows
                .load(Ordering::Relaxed)
                .saturating_sub(1)
        };
        share.heavy_windows.store(windows, Ordering::Relaxed);
        // With no other site being served, waiting would only slow the site's own visitors.
        share.deprioritised.store(
            active >= 2 && (under_attack || windows > 0),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(5);
    const LATE: Duration = Duration::from_millis(8);
    const ON_TIME: Duration = Duration::from_millis(1);

    #[test]
    fn late_ticks_in_a_row_start_a_shortage_that_lets_half_as_many_go_and_calm_ones_a_few_more() {
        let mut pacing = Pacing::default();
        assert_eq!(pacing.tick(ON_TIME, LIMIT, 0), LetGo::All);
        assert_eq!(
            pacing.tick(LATE, LIMIT, 0),
            LetGo::All,
            "one late tick: a hiccup"
        );
        assert_eq!(pacing.tick(ON_TIME, LIMIT, 0), LetGo::All);
        assert!(!pacing.short());
        pacing.tick(LATE, LIMIT, 0);
        assert_eq!(pacing.tick(LATE, LIMIT, 0), LetGo::Some(FIRST_BUDGET / 2));
        assert!(pacing.short());
        assert_eq!(pacing.tick(LATE, LIMIT, 5), LetGo::Some(FIRST_BUDGET / 4));
        assert_eq!(
            pacing.tick(ON_TIME, LIMIT, 5),
            LetGo::Some(FIRST_BUDGET / 4 + FIRST_BUDGET)
        );
        assert_eq!(
            pacing.tick(LATE, LIMIT, 5),
            LetGo::Some((FIRST_BUDGET / 4 + FIRST_BUDGET) / 2),
            "while short, one late tick is enough"
        );
        for _ in 0..10 {
            pacing.tick(LATE, LIMIT, 5);
        }
        assert_eq!(
            pacing.tick(LATE, LIMIT, 5),
            LetGo::Some(1),
            "never fewer than one"
        );
        assert_eq!(
            pacing.tick(ON_TIME, LIMIT, 5),
            LetGo::Some(1 + FIRST_BUDGET)
        );
        assert!(pacing.short(), "one calm tick does not end it");
    }

    #[test]
    fn a_shortage_ends_after_calm_ticks_in_a_row_with_the_line_empty() {
        let mut pacing = Pacing::default();
        pacing.tick(LATE, LIMIT, 0);
        pacing.tick(LATE, LIMIT, 0);
        for _ in 0..CALM_TICKS - 1 {
            assert!(matches!(pacing.tick(ON_TIME, LIMIT, 0), LetGo::Some(_)));
        }
        pacing.tick(LATE, LIMIT, 0);
        for _ in 0..CALM_TICKS - 1 {
            pacing.tick(ON_TIME, LIMIT, 0);
        }
        assert!(pacing.short(), "a late tick started the count again");
        for _ in 0..CALM_TICKS {
            assert!(matches!(pacing.tick(ON_TIME, LIMIT, 3), LetGo::Some(_)));
        }
        assert!(
            pacing.short(),
            "requests still wait: letting them all go would bring it back"
        );
        assert_eq!(pacing.tick(ON_TIME, LIMIT, 0), LetGo::All);
        assert!(!pacing.short());
        pacing.tick(LATE, LIMIT, 0);
        assert_eq!(
            pacing.tick(LATE, LIMIT, 0),
            LetGo::Some(FIRST_BUDGET / 2),
            "the next shortage starts afresh"
        );
    }

    #[test]
    fn calm_ticks_let_go_at_most_the_budget_cap() {
        let mut pacing = Pacing::default();
        pacing.tick(LATE, LIMIT, 0);
        pacing.tick(LATE, LIMIT, 0);
        let mut last = LetGo::All;
        for _ in 0..MAX_BUDGET {
            last = pacing.tick(ON_TIME, LIMIT, 1);
        }
        assert_eq!(last, LetGo::Some(MAX_BUDGET));
    }

    #[test]
    fn a_zero_limit_turns_deprioritising_off() {
        let mut pacing = Pacing::default();
        assert_eq!(
            pacing.tick(Duration::from_secs(1), Duration::ZERO, 1),
            LetGo::All
        );
        assert!(!pacing.short());
    }

    fn arrive(share: &SiteShare, n: u64) {
        for _ in 0..n {
            share.arrive();
        }
    }

    #[test]
    fn a_site_over_an_average_share_is_deprioritised_and_stays_so_for_the_hold() {
        let (flooded, browsed) = (SiteShare::default(), SiteShare::default());
        arrive(&flooded, 100);
        arrive(&browsed, 10);
        judge_shares([(&flooded, false), (&browsed, false)].into_iter());
        assert!(flooded.deprioritised());
        assert!(!browsed.deprioritised());
        // Slowed down, it sends no more than the other: still deprioritised for the hold.
        for _ in 0..HEAVY_HOLD_WINDOWS - 1 {
            arrive(&flooded, 10);
            arrive(&browsed, 10);
            judge_shares([(&flooded, false), (&browsed, false)].into_iter());
            assert!(flooded.deprioritised());
        }
        arrive(&flooded, 10);
        arrive(&browsed, 10);
        judge_shares([(&flooded, false), (&browsed, false)].into_iter());
        assert!(!flooded.deprioritised(), "the hold ran out");
        assert!(!browsed.deprioritised());
    }

    #[test]
    fn a_lone_site_or_a_trickle_or_equal_shares_are_nobodys_rival() {
        let lone = SiteShare::default();
        arrive(&lone, 1000);
        judge_shares([(&lone, false)].into_iter());
        assert!(!lone.deprioritised(), "a lone site");

        let (a, b) = (SiteShare::default(), SiteShare::default());
        arrive(&a, MIN_HEAVY_ARRIVALS - 1);
        arrive(&b, 1);
        judge_shares([(&a, false), (&b, false)].into_iter());
        assert!(!a.deprioritised(), "a trickle");

        arrive(&a, 570);
        arrive(&b, 430);
        judge_shares([(&a, false), (&b, false)].into_iter());
        assert!(
            !a.deprioritised() && !b.deprioritised(),
            "near-equal shares"
        );
    }

    #[test]
    fn a_site_under_attack_is_deprioritised_whatever_its_share_unless_it_is_alone() {
        let (attacked, other) = (SiteShare::default(), SiteShare::default());
        arrive(&attacked, 50);
        arrive(&other, 50);
        judge_shares([(&attacked, true), (&other, false)].into_iter());
        assert!(attacked.deprioritised());
        assert!(!other.deprioritised());
        assert!(attacked.arrive(), "its next request would wait when short");
        // A window where only the attacked site is served (its one request above).
        judge_shares([(&attacked, true), (&other, false)].into_iter());
        assert!(
            !attacked.deprioritised(),
            "alone, it would only slow its own visitors"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_lets_go_the_longest_waiting_first_and_no_one_waits_past_the_limit() {
        let priority = std::sync::Arc::new(CpuPriority::default());
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let p = priority.clone();
            waiters.push(tokio::spawn(async move {
                p.wait_turn(Duration::from_secs(1)).await
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(priority.waiting(), 3);
        priority.apply(LATE, true, LetGo::Some(1));
        let first = waiters.remove(0).await.expect("waiter");
        assert!(first, "the first in line was let go");
        tokio::task::yield_now().await;
        assert_eq!(priority.waiting(), 2);
        assert!(priority.short());
        assert_eq!(priority.lag(), LATE);
        // Nobody lets the others go: they go when the limit passes.
        tokio::time::advance(Duration::from_secs(1)).await;
        for waiter in waiters {
            assert!(!waiter.await.expect("waiter"), "waited out");
        }
        assert_eq!(priority.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_a_shortage_lets_the_whole_line_go() {
        let priority = std::sync::Arc::new(CpuPriority::default());
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let p = priority.clone();
                tokio::spawn(async move { p.wait_turn(Duration::from_secs(1)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        priority.apply(ON_TIME, false, LetGo::All);
        for waiter in waiters {
            assert!(waiter.await.expect("waiter"));
        }
    }
}

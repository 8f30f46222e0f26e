//! When the edge is short of CPU, the sites that are not under attack are served first.
//!
//! `cpu_watch` measures the scheduling lag every few milliseconds: how long a task that becomes
//! ready waits for a worker thread. From `server.overload_lag` of lag on, twice in a row, the
//! edge is short of CPU. While it is, and other sites are being served too, a request of a site
//! that is under attack, or that sends over one and a half times an average active site's share
//! of the edge's requests, waits its turn in [`CpuPriority`]'s line after routing (at most
//! `server.overload_wait`), and every other site's request goes straight on.
//!
//! The line lets one request go each time [`CpuPriority::let_go_in_turn`] comes round the
//! worker's queue of ready tasks, so a waiting request runs only after the work that was ready
//! before it: the deprioritised site gets the CPU the others leave. Once the line is empty and
//! [`CALM_TICKS`] probes in a row were calm, the shortage is over. A flood in a closed loop
//! (the next request once the last is answered) thus slows to the pace the edge has CPU to
//! spare for it, as HAProxy's backend queue slows one to its backend's `maxconn`; a flood that
//! does not wait for answers piles up in the line, bounded by the connection caps, its requests
//! costing a parked task each rather than their shield, cache and origin work.
//!
//! Why a share of requests and not of CPU time: the edge cannot charge CPU time to a site
//! without timing every phase; a site's request rate is what an attack raises, and it is
//! known before detection has seen a second of it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the probe measures the lag.
pub const PROBE_EVERY: Duration = Duration::from_millis(5);
/// Late probes in a row that start a shortage: one late probe is a hiccup (a burst of
/// handshakes, a page fault), two in a row are work queueing.
pub const LATE_TICKS: u32 = 2;
/// Calm probes in a row (lag under the limit) that end a shortage, with nobody waiting: 100 ms.
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

/// The line that requests of deprioritised sites wait in while the edge is short of CPU,
/// and what the probe last measured. One per edge, in `EdgeState`.
#[derive(Debug, Default)]
pub struct CpuPriority {
    short: AtomicBool,
    /// The last lag measured, in microseconds (for the metrics).
    lag_micros: AtomicU64,
    /// Requests waiting their turn now.
    waiting: AtomicU64,
    /// Wakes the longest waiting request: one turn.
    turns: Notify,
    /// Wakes [`CpuPriority::let_go_in_turn`] when a request joins an empty line.
    joined: Notify,
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

    /// Waits in the line until [`CpuPriority::let_go_in_turn`] lets this request go, or
    /// `limit` passes (then it goes anyway: a deprioritised site is served later, never
    /// starved). True when it was let go.
    pub async fn wait_turn(&self, limit: Duration) -> bool {
        /// Counts the request out of the line however the wait ends (the client may leave).
        struct InLine<'a>(&'a AtomicU64);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) == 0 {
            self.joined.notify_one();
        }
        let _in_line = InLine(&self.waiting);
        tokio::time::timeout(limit, self.turns.notified())
            .await
            .is_ok()
    }

    /// Lets the line go one request at a time, each time this task comes round its worker's
    /// queue of ready tasks: a waiting request goes only once the work that was ready before
    /// it has run. Runs for the edge's life (`cpu_watch` spawns it); parks while the line is
    /// empty.
    pub async fn let_go_in_turn(&self) {
        loop {
            if self.waiting() == 0 {
                self.joined.notified().await;
                continue;
            }
            tokio::task::yield_now().await;
            // Wakes the longest waiting. A wake-up with nobody registered yet (a request
            // between joining and waiting) is kept for it.
            self.turns.notify_one();
        }
    }

    /// Takes the probe's measurement: the lag, and whether the edge is short. When a shortage
    /// ends, the whole line goes.
    pub fn apply(&self, lag: Duration, short: bool) {
        self.lag_micros
            .store(lag.as_micros() as u64, Ordering::Relaxed);
        let was_short = self.short.swap(short, Ordering::Relaxed);
        if was_short && !short {
            self.turns.notify_waiters();
        }
    }
}

/// The probe's judgement from tick to tick: whether the edge is short of CPU.
#[derive(Debug, Default)]
pub struct Shortage {
    short: bool,
    late_ticks: u32,
    calm_ticks: u32,
}

impl Shortage {
    /// True while the edge is short of CPU.
    pub fn short(&self) -> bool {
        self.short
    }

    /// One probe that measured `lag`, against `server.overload_lag` (`limit`; zero turns
    /// deprioritising off), with `waiting` requests in the line. [`LATE_TICKS`] late probes in
    /// a row start a shortage; [`CALM_TICKS`] calm ones in a row with nobody waiting end it (a
    /// flood still coming keeps its requests in the line, and the shortage on).
    pub fn tick(&mut self, lag: Duration, limit: Duration, waiting: u64) -> bool {
        if limit.is_zero() {
            *self = Shortage::default();
        } else if lag >= limit {
            self.late_ticks += 1;
            self.calm_ticks = 0;
            self.short |= self.late_ticks >= LATE_TICKS;
        } else {
            self.late_ticks = 0;
            self.calm_ticks += 1;
            if self.calm_ticks >= CALM_TICKS && waiting == 0 {
                self.short = false;
            }
        }
        self.short
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
/// sites are being served, a site under attack is deprioritised; so is one that sent over one
/// and a half times an average active site's share of the window's requests (at least
/// [`MIN_HEAVY_ARRIVALS`]), for [`HEAVY_HOLD_WINDOWS`] windows after. A site alone is nobody's
/// rival.
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

    const LIMIT: Duration = Duration::from_millis(1);
    const LATE: Duration = Duration::from_millis(3);
    const ON_TIME: Duration = Duration::from_micros(20);

    #[test]
    fn late_probes_in_a_row_start_a_shortage_and_calm_ones_with_nobody_waiting_end_it() {
        let mut shortage = Shortage::default();
        assert!(!shortage.tick(ON_TIME, LIMIT, 0));
        assert!(!shortage.tick(LATE, LIMIT, 0), "one late probe: a hiccup");
        assert!(!shortage.tick(ON_TIME, LIMIT, 0));
        shortage.tick(LATE, LIMIT, 0);
        assert!(shortage.tick(LATE, LIMIT, 0), "two in a row");
        for _ in 0..CALM_TICKS - 1 {
            assert!(shortage.tick(ON_TIME, LIMIT, 0));
        }
        assert!(
            shortage.tick(LATE, LIMIT, 0),
            "a late probe starts the count again"
        );
        for _ in 0..CALM_TICKS {
            assert!(
                shortage.tick(ON_TIME, LIMIT, 3),
                "requests still wait: a flood still coming"
            );
        }
        assert!(
            !shortage.tick(ON_TIME, LIMIT, 0),
            "calm, and the line empty"
        );
    }

    #[test]
    fn a_zero_limit_turns_deprioritising_off() {
        let mut shortage = Shortage::default();
        shortage.tick(LATE, LIMIT, 0);
        assert!(shortage.tick(LATE, LIMIT, 0));
        assert!(!shortage.tick(Duration::from_secs(1), Duration::ZERO, 5));
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
    async fn the_line_lets_go_in_arrival_order_one_per_pass_and_no_one_waits_past_the_limit() {
        let priority = std::sync::Arc::new(CpuPriority::default());
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..3 {
            let (p, order) = (priority.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let let_go = p.wait_turn(Duration::from_secs(1)).await;
                order.lock().unwrap().push(n);
                let_go
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(priority.waiting(), 3);
        let releaser = {
            let p = priority.clone();
            tokio::spawn(async move { p.let_go_in_turn().await })
        };
        for waiter in waiters {
            assert!(waiter.await.expect("waiter"), "let go by the line");
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(priority.waiting(), 0);
        releaser.abort();

        // Nobody lets this one go: it goes when the limit passes.
        let p = priority.clone();
        let alone = tokio::spawn(async move { p.wait_turn(Duration::from_secs(1)).await });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!alone.await.expect("waiter"), "waited out");
        assert_eq!(priority.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_a_shortage_lets_the_whole_line_go() {
        let priority = std::sync::Arc::new(CpuPriority::default());
        priority.apply(LATE, true);
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let p = priority.clone();
                tokio::spawn(async move { p.wait_turn(Duration::from_secs(1)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(priority.short());
        assert_eq!(priority.lag(), LATE);
        priority.apply(ON_TIME, false);
        for waiter in waiters {
            assert!(waiter.await.expect("waiter"));
        }
    }
}

//! Evidence that an attacker solves challenges, and what it changes: a clearance that keeps
//! carrying a flood past the challenge is revoked, and the difficulty rises only then.
//!
//! A flood that never solves is stopped by the challenge at any difficulty, and a harder puzzle
//! only makes real visitors wait. So the difficulty does not follow the attack's pressure; it
//! follows evidence of solvers:
//!
//! - during an attack, every request that a clearance carries past a challenge (a mitigation's,
//!   or everyone's) is counted on that clearance; one that carries more than
//!   `max_requests_per_clearance` in ten seconds is a solver's, and is revoked: its next
//!   request is challenged again, and the solver pays another proof of work;
//! - three or more revocations within ten seconds raise the difficulty one bit, at most one bit
//!   per ten seconds, up to `max_difficulty` (by default the difficulty itself: it never
//!   rises); a minute without a revocation lowers it one bit.
//!
//! Revoked clearances are remembered by hash until they would have expired anyway, at most
//! [`MAX_REVOKED`] of them (the oldest go first).

use super::clearance::COOKIE;
use crate::ratelimit::{WindowCounter, cookie_value};
use http::HeaderMap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Revoked clearances remembered at once, at most (about 40 bytes each).
pub const MAX_REVOKED: usize = 65_536;
/// Counters per row of the per-clearance sketch (64 KiB), allocated at a site's first attack.
const SKETCH_WIDTH: usize = 2048;
/// Revocations within [`EVIDENCE_WINDOW`] that raise the difficulty a bit.
const REVOCATIONS_TO_RAISE: usize = 3;
const EVIDENCE_WINDOW: Duration = Duration::from_secs(10);
/// Without a revocation for this long, the difficulty comes down a bit.
const CALM_TO_LOWER: Duration = Duration::from_secs(60);

/// One site's evidence of solvers; lives across reloads.
#[derive(Debug, Default)]
pub struct SolverWatch {
    counts: OnceLock<WindowCounter>,
    revoked_any: AtomicBool,
    extra_bits: AtomicU8,
    revocations: AtomicU64,
    state: Mutex<Escalation>,
}

#[derive(Debug, Default)]
struct Escalation {
    revoked: HashMap<u64, Instant>,
    order: VecDeque<(u64, Instant)>,
    recent: VecDeque<Instant>,
    last_revocation: Option<Instant>,
    last_change: Option<Instant>,
}

/// What a tick changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DifficultyChange {
    /// Extra bits before.
    pub from: u8,
    /// Extra bits now.
    pub to: u8,
}

impl SolverWatch {
    /// Whether the clearance cookie in `headers` was revoked. One atomic load while none is.
    pub fn is_revoked(&self, headers: &HeaderMap, now: Instant) -> bool {
        if !self.revoked_any.load(Ordering::Relaxed) {
            return false;
        }
        let Some(cookie) = cookie_value(headers, COOKIE) else {
            return false;
        };
        let state = self.lock();
        state
            .revoked
            .get(&hash(cookie))
            .is_some_and(|until| *until > now)
    }

    /// Counts a request the clearance in `headers` carried past a challenge; over `limit` in
    /// ten seconds, revokes it and returns true (the request is then challenged).
    /// `clearance_ttl` bounds how long the revocation is remembered.
    pub fn carried(
        &self,
        headers: &HeaderMap,
        limit: u32,
        clearance_ttl: Duration,
        now: Instant,
    ) -> bool {
        let Some(cookie) = cookie_value(headers, COOKIE) else {
            return false;
        };
        let key = hash(cookie);
        let counts = self
            .counts
            .get_or_init(|| WindowCounter::new(model::CLEARANCE_WINDOW, SKETCH_WIDTH));
        if counts.hit(key, now) <= f64::from(limit) {
            return false;
        }
        let mut state = self.lock();
        if state.revoked.len() >= MAX_REVOKED
            && let Some((oldest, _)) = state.order.pop_front()
        {
            state.revoked.remove(&oldest);
        }
        let until = now + clearance_ttl;
        if state.revoked.insert(key, until).is_none() {
            state.order.push_back((key, until));
            state.recent.push_back(now);
            state.last_revocation = Some(now);
            self.revocations.fetch_add(1, Ordering::Relaxed);
        }
        self.revoked_any.store(true, Ordering::Relaxed);
        true
    }

    /// The bits the evidence adds to the site's difficulty.
    pub fn extra_bits(&self) -> u8 {
        self.extra_bits.load(Ordering::Relaxed)
    }

    /// Clearances revoked since the process started.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Relaxed)
    }

    /// Once a second: raises or lowers the extra bits (at most `max_extra`) on the evidence,
    /// and forgets revocations that expired.
    pub fn tick(&self, max_extra: u8, now: Instant) -> Option<DifficultyChange> {
        let mut state = self.lock();
        while state
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > EVIDENCE_WINDOW)
        {
            state.recent.pop_front();
        }
        while state.order.front().is_some_and(|(_, until)| *until <= now) {
            if let Some((key, _)) = state.order.pop_front() {
                state.revoked.remove(&key);
            }
        }
        self.revoked_any
            .store(!state.revoked.is_empty(), Ordering::Relaxed);
        let from = self.extra_bits().min(max_extra);
        let since_change = state
            .last_change
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let to = if state.recent.len() >= REVOCATIONS_TO_RAISE && since_change >= EVIDENCE_WINDOW {
            (from + 1).min(max_extra)
        } else if from > 0
            && since_change >= CALM_TO_LOWER
            && state
                .last_revocation
                .is_none_or(|t| now.saturating_duration_since(t) >= CALM_TO_LOWER)
        {
            from - 1
        } else {
            from
        };
        self.extra_bits.store(to, Ordering::Relaxed);
        if to == from {
            return None;
        }
        state.last_change = Some(now);
        Some(DifficultyChange { from, to })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Escalation> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn hash(cookie: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("{COOKIE}={value}").parse().unwrap(),
        );
        headers
    }

    const TTL: Duration = Duration::from_secs(1800);

    #[test]
    fn a_clearance_that_carries_a_flood_is_revoked_and_a_browser_is_not() {
        let watch = SolverWatch::default();
        let now = Instant::now();
        let solver = with_cookie("solver");
        let browser = with_cookie("browser");
        for _ in 0..300 {
            assert!(!watch.carried(&solver, 300, TTL, now));
        }
        for _ in 0..30 {
            assert!(!watch.carried(&browser, 300, TTL, now));
        }
        assert!(!watch.is_revoked(&solver, now));
        assert!(watch.carried(&solver, 300, TTL, now));
        assert!(watch.is_revoked(&solver, now));
        assert!(!watch.is_revoked(&browser, now));
        assert!(!watch.is_revoked(&HeaderMap::new(), now));
        // Until it would have expired anyway.
        watch.tick(0, now + TTL);
        assert!(!watch.is_revoked(&solver, now + TTL));
        assert_eq!(watch.revocations(), 1);
    }

    #[test]
    fn difficulty_rises_on_revocations_only_and_comes_down_when_calm() {
        let watch = SolverWatch::default();
        let start = Instant::now();
        // No evidence: nothing rises, however long.
        assert_eq!(watch.tick(4, start), None);
        for n in 0..3 {
            let solver = with_cookie(&format!("solver-{n}"));
            for _ in 0..=10 {
                watch.carried(&solver, 10, TTL, start);
            }
        }
        assert_eq!(
            watch.tick(4, start),
            Some(DifficultyChange { from: 0, to: 1 })
        );
        // At most a bit per ten seconds.
        assert_eq!(watch.tick(4, start + Duration::from_secs(1)), None);
        // Never above the most allowed: by default, none.
        let capped = SolverWatch::default();
        for n in 0..3 {
            let solver = with_cookie(&format!("solver-{n}"));
            for _ in 0..=10 {
                capped.carried(&solver, 10, TTL, start);
            }
        }
        assert_eq!(capped.tick(0, start), None);
        assert_eq!(capped.extra_bits(), 0);
        // A calm minute brings it down.
        assert_eq!(watch.tick(4, start + Duration::from_secs(30)), None);
        assert_eq!(
            watch.tick(4, start + Duration::from_secs(75)),
            Some(DifficultyChange { from: 1, to: 0 })
        );
    }
}

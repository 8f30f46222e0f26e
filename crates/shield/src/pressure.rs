//! Origin pressure: whether a site's origin is struggling right now. Protections that cost
//! real clients something (the per-address miss limit) act only then: an origin that answers
//! a crawler's thousand new URLs a minute with ease needs no protecting from it.
//!
//! Two signals, either enough (`[site.shield]` `origin_pressure_*`):
//! - *concurrency*: origin requests in flight reach a share of `max_origin_concurrency` (half by
//!   default), read live on every call, so a burst is seen by the very request that meets it;
//! - *latency*: most origin responses of the last [`RECENT_SECONDS`] took longer than
//!   `latency_factor ×` the origin's usual latency, and at least `min_latency`. The usual
//!   latency is a baseline with a ten-minute time constant, learned only while the origin is
//!   not under pressure (so an attack does not become the norm); a majority, not the mean, so
//!   one slow report among quick pages is not pressure. Nothing is judged before
//!   [`MIN_LEARNED_SECONDS`] of responses have been learned (an origin slow from the start is
//!   slow by nature, not pressed).
//!
//! Once either signal is seen the origin stays under pressure for [`HOLD`]: a flood whose
//! requests are refused stops pressing at once, and would otherwise be let in again at once.
//!
//! Responses are counted on the hot path with atomic adds; the edge calls [`PressureMonitor::tick`]
//! once a second to judge latency. Nothing here looks at who sent what: a later layer decides who
//! bears the pressure (today the miss limit, per address).

use model::OriginPressure;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the origin stays under pressure after the last sign of it.
pub const HOLD: Duration = Duration::from_secs(10);
/// The window latency is judged over.
pub const RECENT_SECONDS: usize = 3;
/// Seconds with responses learned before latency is judged.
pub const MIN_LEARNED_SECONDS: u64 = 5;
/// Responses in the window needed to judge latency: two slow answers on a quiet site are not
/// pressure.
const MIN_RESPONSES: u64 = 5;
/// The baseline's time constant, in seconds (as attack detection's).
const BASELINE_SECONDS: f64 = 600.0;

/// One site's view of its origin's load; lives across reloads, as the origin does.
#[derive(Debug)]
pub struct PressureMonitor {
    /// Since the last tick: origin responses, how many were slow, and their latencies' sum.
    responses: AtomicU64,
    slow: AtomicU64,
    latency_micros: AtomicU64,
    /// What counts as slow, in µs; `u64::MAX` (nothing) until a baseline is learned.
    slow_micros: AtomicU64,
    /// Until when (ms after `epoch`) the origin counts as under pressure.
    pressed_until_ms: AtomicU64,
    epoch: Instant,
    series: Mutex<Latency>,
}

#[derive(Debug)]
struct Latency {
    baseline_micros: f64,
    learned_seconds: u64,
    /// (responses, slow ones) per second, newest last.
    recent: [(u64, u64); RECENT_SECONDS],
}

impl Default for PressureMonitor {
    fn default() -> Self {
        PressureMonitor {
            responses: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            latency_micros: AtomicU64::new(0),
            slow_micros: AtomicU64::new(u64::MAX),
            pressed_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            series: Mutex::new(Latency {
                baseline_micros: 0.0,
                learned_seconds: 0,
                recent: [(0, 0); RECENT_SECONDS],
            }),
        }
    }
}

impl PressureMonitor {
    /// An origin response's head arrived `took` after its request was sent (a request that
    /// timed out counts with the time it was given).
    pub fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.responses.fetch_add(1, Ordering::Relaxed);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
        if micros >= self.slow_micros.load(Ordering::Relaxed) {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True while the origin is under pressure: `in_flight` of the site's `cap` origin requests
    /// (0: no cap) are in flight now, or a signal was seen within [`HOLD`].
    pub fn under_pressure(
        &self,
        settings: &OriginPressure,
        in_flight: u32,
        cap: u32,
        now: Instant,
    ) -> bool {
        if near_cap(settings, in_flight, cap) {
            self.hold_from(now);
            return true;
        }
        self.ms(now) < self.pressed_until_ms.load(Ordering::Relaxed)
    }

    /// Call about once a second: judges the last seconds' latency, learns the baseline while the
    /// origin is not under pressure, and returns whether it is (for the edge's gauge).
    pub fn tick(&self, settings: &OriginPressure, in_flight: u32, cap: u32, now: Instant) -> bool {
        let responses = self.responses.swap(0, Ordering::Relaxed);
        let slow = self.slow.swap(0, Ordering::Relaxed);
        let latency_micros = self.latency_micros.swap(0, Ordering::Relaxed);
        let mut s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        s.recent.rotate_left(1);
        s.recent[RECENT_SECONDS - 1] = (responses, slow.min(responses));
        let (answered, slow_ones) = s
            .recent
            .iter()
            .fold((0, 0), |(n, k), (a, b)| (n + a, k + b));
        let judged = settings.latency_factor > 0.0
            && s.learned_seconds >= MIN_LEARNED_SECONDS
            && answered >= MIN_RESPONSES;
        if judged && 2 * slow_ones > answered {
            self.hold_from(now);
        }
        let pressed = self.under_pressure(settings, in_flight, cap, now);
        if !pressed && responses > 0 {
            s.learned_seconds += 1;
            let weight = (1.0 / s.learned_seconds as f64).max(1.0 / BASELINE_SECONDS);
            let mean = latency_micros as f64 / responses as f64;
            s.baseline_micros += (mean - s.baseline_micros) * weight;
        }
        let threshold = if settings.latency_factor > 0.0 && s.learned_seconds >= MIN_LEARNED_SECONDS
        {
            let floor = settings.min_latency.as_micros() as f64;
            (settings.latency_factor * s.baseline_micros).max(floor) as u64
        } else {
            u64::MAX
        };
        self.slow_micros.store(threshold, Ordering::Relaxed);
        pressed
    }

    /// The origin's usual latency, as learned so far.
    pub fn baseline(&self) -> Duration {
        let s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_micros(s.baseline_micros as u64)
    }

    fn hold_from(&self, now: Instant) {
        let until = self.ms(now) + HOLD.as_millis() as u64;
        self.pressed_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// Milliseconds from `epoch` to `now`, plus one (0 means "never").
    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }
}

/// Origin requests in flight at or above the configured share of the cap.
fn near_cap(settings: &OriginPressure, in_flight: u32, cap: u32) -> bool {
    cap > 0
        && settings.concurrency > 0.0
        && f64::from(in_flight) >= settings.concurrency * f64::from(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn settings() -> OriginPressure {
        OriginPressure {
            concurrency: 0.5,
            latency_factor: 4.0,
            min_latency: 100 * MS,
        }
    }

    /// `seconds` ticks, each after `per_second` responses that took `took`.
    fn run(m: &PressureMonitor, t: &mut Instant, seconds: u32, per_second: u32, took: Duration) {
        for _ in 0..seconds {
            for _ in 0..per_second {
                m.record(took);
            }
            *t += Duration::from_secs(1);
            m.tick(&settings(), 0, 256, *t);
        }
    }

    #[test]
    fn concurrency_at_half_the_cap_is_pressure_at_once_and_holds_after() {
        let m = PressureMonitor::default();
        let t = Instant::now();
        assert!(!m.under_pressure(&settings(), 3, 8, t));
        assert!(m.under_pressure(&settings(), 4, 8, t));
        assert!(m.under_pressure(&settings(), 0, 8, t + HOLD - MS));
        assert!(!m.under_pressure(&settings(), 0, 8, t + HOLD + MS));
        // No cap, or the signal off: never from concurrency.
        assert!(!m.under_pressure(&settings(), 10_000, 0, t + 2 * HOLD));
        let off = OriginPressure {
            concurrency: 0.0,
            ..settings()
        };
        assert!(!m.under_pressure(&off, 8, 8, t + 2 * HOLD));
    }

    #[test]
    fn steady_latency_is_learned_not_pressure() {
        let m = PressureMonitor::default();
        let mut t = Instant::now();
        run(&m, &mut t, 120, 50, 20 * MS);
        assert!(!m.under_pressure(&settings(), 0, 256, t));
        assert!((m.baseline().as_secs_f64() - 0.020).abs() < 0.001);
    }

    #[test]
    fn latency_rising_past_the_factor_and_the_floor_is_pressure_within_seconds() {
        let m = PressureMonitor::default();
        let mut t = Instant::now();
        run(&m, &mut t, 30, 50, 30 * MS);
        // Three times the usual latency is not yet pressure...
        run(&m, &mut t, 5, 50, 90 * MS);
        assert!(!m.under_pressure(&settings(), 0, 256, t));
        // ...five times it (and over the 100 ms floor) is, within two seconds.
        run(&m, &mut t, 1, 50, 200 * MS);
        assert!(!m.under_pressure(&settings(), 0, 256, t));
        run(&m, &mut t, 1, 50, 200 * MS);
        assert!(m.under_pressure(&settings(), 0, 256, t));
        // It was not learned: still pressure while it lasts, and gone `HOLD` after it ends.
        run(&m, &mut t, 60, 50, 200 * MS);
        assert!(m.under_pressure(&settings(), 0, 256, t));
        run(&m, &mut t, 3, 50, 30 * MS);
        assert!(m.under_pressure(&settings(), 0, 256, t), "held");
        run(&m, &mut t, 10, 50, 30 * MS);
        assert!(!m.under_pressure(&settings(), 0, 256, t));
        // The minute of slow answers was not learned (only the second before it was judged).
        assert!(m.baseline() < 50 * MS, "{:?}", m.baseline());
    }

    #[test]
    fn a_fast_origin_slowing_below_the_floor_is_not_pressure() {
        let m = PressureMonitor::default();
        let mut t = Instant::now();
        run(&m, &mut t, 30, 50, 2 * MS);
        run(&m, &mut t, 10, 50, 60 * MS);
        assert!(!m.under_pressure(&settings(), 0, 256, t));
    }

    #[test]
    fn a_few_slow_answers_among_quick_ones_are_not_pressure() {
        let m = PressureMonitor::default();
        let mut t = Instant::now();
        run(&m, &mut t, 30, 50, 10 * MS);
        for _ in 0..10 {
            for _ in 0..20 {
                m.record(10 * MS);
            }
            for _ in 0..15 {
                m.record(5 * 1000 * MS);
            }
            t += Duration::from_secs(1);
            assert!(
                !m.tick(&settings(), 0, 256, t),
                "a minority of slow answers"
            );
        }
        // Nor a handful on a quiet site.
        run(&m, &mut t, 3, 1, 5 * 1000 * MS);
        assert!(!m.under_pressure(&settings(), 0, 256, t));
    }

    #[test]
    fn an_origin_slow_from_the_start_is_slow_by_nature() {
        let m = PressureMonitor::default();
        let mut t = Instant::now();
        run(&m, &mut t, 30, 20, 800 * MS);
        assert!(!m.under_pressure(&settings(), 0, 256, t));
        let off = OriginPressure {
            latency_factor: 0.0,
            ..settings()
        };
        run(&m, &mut t, 5, 20, 60 * 1000 * MS);
        assert!(m.under_pressure(&settings(), 0, 256, t));
        // With the latency signal off, the same slowdown is not pressure.
        let m = PressureMonitor::default();
        let mut t = Instant::now();
        for second in 0..40 {
            let took = if second < 30 { 10 * MS } else { 60 * 1000 * MS };
            for _ in 0..20 {
                m.record(took);
            }
            t += Duration::from_secs(1);
            assert!(!m.tick(&off, 0, 256, t));
        }
    }
}

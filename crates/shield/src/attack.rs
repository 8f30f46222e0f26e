//! Automatic attack detection: a site whose traffic jumps far above its own baseline goes into
//! under-attack mode (everyone not yet cleared is challenged) until traffic settles.
//!
//! Requests are counted on the hot path with one atomic add; a ticker calls [`AttackDetector::tick`]
//! once a second to turn the counts into rates. Two series are watched: requests that passed the
//! lists, rules and limits (what they refuse is already handled and must not put a whole site
//! under challenge), challenged ones included, so a flood that goes on keeps the mode on; and
//! 5xx answers (an origin buckling under load).
//!
//! - the *baseline* of each is an exponentially weighted average of the per-second rate with a
//!   ten-minute time constant, learned only while the site is not under attack;
//! - the *current* rate is the average of the last three seconds;
//! - an attack is a current rate above `factor ×` baseline and above a floor (`attack_min_rps`
//!   for requests, a quarter of it for errors), so a quiet site's first visitors are not one;
//! - the mode ends `hold` after the current rate has last been above half the threshold that
//!   triggered it (a flood slowed by its answers does not switch it off and on);
//! - nothing trips during a site's first `learning` seconds of traffic (its baseline is
//!   learned whole then), and after that a second's rate is learned for at most twice the
//!   baseline, so that a surge ramping up below the threshold is not learned before it trips.

use crate::events::{EventAction, EventReason, NewEvent};
use model::AttackDetection;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

const BASELINE_SECONDS: f64 = 600.0;
/// Under attack, the share of the rate that started it that keeps it on.
const STAY_SHARE: f64 = 0.5;
const CURRENT_SECONDS: usize = 3;

/// One site's detector; lives across reloads (the baseline is the site's history).
#[derive(Debug)]
pub struct AttackDetector {
    requests: AtomicU64,
    errors: AtomicU64,
    under_attack: AtomicBool,
    /// The current request rate over the rate that trips (or tripped) detection, as f64 bits.
    pressure: AtomicU64,
    /// The current request rate (the last three seconds' average), as f64 bits.
    current: AtomicU64,
    inner: Mutex<Series>,
}

#[derive(Debug)]
struct Series {
    baseline_rps: f64,
    baseline_eps: f64,
    /// Per-second counts of the last few ticks, newest last.
    recent_requests: [u64; CURRENT_SECONDS],
    recent_errors: [u64; CURRENT_SECONDS],
    ticks: u64,
    /// Seconds since the site's first request (attack detection waits `learning` for them).
    history: u64,
    /// While under attack: the thresholds that tripped it, and when traffic last met them.
    trip_rps: f64,
    trip_eps: f64,
    last_hot: Option<Instant>,
    last_tick: Option<Instant>,
}

/// What a tick decided, for the caller to record and report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Under-attack mode went on.
    Started {
        /// Which series tripped it: `RequestSpike` or `ErrorSpike`.
        reason: EventReason,
        /// That series' current rate, per second.
        rate: f64,
    },
    /// Traffic has stayed below the threshold that tripped detection for `hold`.
    Ended,
}

impl Change {
    /// The security event that records the change for `site`.
    pub fn event(self, site: std::sync::Arc<str>) -> NewEvent {
        let (action, reason, value) = match self {
            Change::Started { reason, rate } => (EventAction::UnderAttackOn, reason, Some(rate)),
            Change::Ended => (EventAction::UnderAttackOff, EventReason::Settled, None),
        };
        NewEvent {
            site,
            client_ip: None,
            action,
            reason,
            rule_id: None,
            value,
            mitigation: None,
        }
    }
}

impl Default for AttackDetector {
    fn default() -> Self {
        AttackDetector {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            under_attack: AtomicBool::new(false),
            pressure: AtomicU64::new(0),
            current: AtomicU64::new(0),
            inner: Mutex::new(Series {
                baseline_rps: 0.0,
                baseline_eps: 0.0,
                recent_requests: [0; CURRENT_SECONDS],
                recent_errors: [0; CURRENT_SECONDS],
                ticks: 0,
                history: 0,
                trip_rps: 0.0,
                trip_eps: 0.0,
                last_hot: None,
                last_tick: None,
            }),
        }
    }
}

impl AttackDetector {
    /// A request passed the shield. Returns how many came before it this second (attack
    /// signatures sample by it).
    pub fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    /// An answer with a 5xx status.
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// True while automatic under-attack mode is on.
    pub fn under_attack(&self) -> bool {
        self.under_attack.load(Ordering::Relaxed)
    }

    /// How hard the site is pressed: the current request rate over the rate that trips
    /// detection (or tripped it). The challenge's difficulty rises with it.
    pub fn pressure(&self) -> f64 {
        f64::from_bits(self.pressure.load(Ordering::Relaxed))
    }

    /// The current request rate: the average of the last three seconds.
    pub fn current_rps(&self) -> f64 {
        f64::from_bits(self.current.load(Ordering::Relaxed))
    }

    /// The baseline request rate (requests per second) learned so far.
    pub fn baseline_rps(&self) -> f64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .baseline_rps
    }

    /// Call about once a second.
    pub fn tick(&self, settings: &AttackDetection, now: Instant) -> Option<Change> {
        self.tick_engaged(settings, now, false)
    }

    /// [`tick`](Self::tick), told whether the attack's mitigations are still engaged (matching
    /// requests at a rate that shows the attacker is still there, however slowly their answers
    /// let them come): an engaged attack does not settle.
    pub fn tick_engaged(
        &self,
        settings: &AttackDetection,
        now: Instant,
        engaged: bool,
    ) -> Option<Change> {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let errors = self.errors.swap(0, Ordering::Relaxed);
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Scale to per second by the real time since the last tick (a late ticker must not
        // look like a spike).
        let seconds = s
            .last_tick
            .map_or(1.0, |t| now.saturating_duration_since(t).as_secs_f64())
            .clamp(0.2, 10.0);
        s.last_tick = Some(now);
        s.recent_requests.rotate_left(1);
        s.recent_errors.rotate_left(1);
        s.recent_requests[CURRENT_SECONDS - 1] = (requests as f64 / seconds) as u64;
        s.recent_errors[CURRENT_SECONDS - 1] = (errors as f64 / seconds) as u64;
        s.ticks += 1;
        let filled = (s.ticks as usize).min(CURRENT_SECONDS);
        let current_rps = s.recent_requests.iter().sum::<u64>() as f64 / filled as f64;
        let current_eps = s.recent_errors.iter().sum::<u64>() as f64 / filled as f64;
        let trip = if self.under_attack() && s.trip_rps > 0.0 {
            s.trip_rps
        } else {
            (settings.factor * s.baseline_rps).max(settings.min_rps)
        };
        self.pressure
            .store((current_rps / trip.max(1.0)).to_bits(), Ordering::Relaxed);
        self.current.store(current_rps.to_bits(), Ordering::Relaxed);

        if !settings.enabled {
            if self.under_attack.swap(false, Ordering::Relaxed) {
                return Some(Change::Ended);
            }
            learn(
                &mut s,
                settings,
                requests as f64 / seconds,
                errors as f64 / seconds,
            );
            return None;
        }

        if self.under_attack() {
            // Hysteresis: the attack lasts while traffic stays above half the rate that started
            // it. A flood hovering near the threshold (slowed by the answers it gets) must not
            // switch the mitigation off and on every few seconds.
            if engaged
                || current_rps > s.trip_rps * STAY_SHARE
                || current_eps > s.trip_eps * STAY_SHARE
            {
                s.last_hot = Some(now);
            }
            let settled = s
                .last_hot
                .is_none_or(|hot| now.saturating_duration_since(hot) >= settings.hold);
            if settled {
                self.under_attack.store(false, Ordering::Relaxed);
                s.last_hot = None;
                return Some(Change::Ended);
            }
            return None;
        }

        if s.history > 0 || requests > 0 {
            s.history += 1;
        }
        if (s.history as f64) < settings.learning.as_secs_f64() {
            // Nothing to protect yet: every second is learned whole.
            let weight = (1.0 / s.ticks as f64).max(1.0 / BASELINE_SECONDS);
            s.baseline_rps += (requests as f64 / seconds - s.baseline_rps) * weight;
            s.baseline_eps += (errors as f64 / seconds - s.baseline_eps) * weight;
            return None;
        }
        let trip_rps = (settings.factor * s.baseline_rps).max(settings.min_rps);
        let trip_eps = (settings.factor * s.baseline_eps).max(settings.min_rps / 4.0);
        let reason = if current_rps > trip_rps {
            Some((EventReason::RequestSpike, current_rps))
        } else if current_eps > trip_eps {
            Some((EventReason::ErrorSpike, current_eps))
        } else {
            None
        };
        match reason {
            Some((reason, rate)) => {
                s.trip_rps = trip_rps;
                s.trip_eps = trip_eps;
                s.last_hot = Some(now);
                self.under_attack.store(true, Ordering::Relaxed);
                Some(Change::Started { reason, rate })
            }
            None => {
                learn(
                    &mut s,
                    settings,
                    requests as f64 / seconds,
                    errors as f64 / seconds,
                );
                None
            }
        }
    }
}

/// Folds one second's rates into the baselines. The first minute averages plainly, so a site
/// does not start from a baseline of zero for ten minutes.
///
/// A second counts for at most [`MAX_LEARNED_GROWTH`] times the baseline (or the floor's
/// share, for a quiet site): a surge that ramps up over a few seconds, each below the trip
/// threshold, must not be learned as usual traffic before it trips (in a site's first minute,
/// one second of it weighs a tenth or more). Real growth is still learned, at that pace.
fn learn(s: &mut Series, settings: &AttackDetection, rps: f64, eps: f64) {
    let weight = (1.0 / s.ticks as f64).max(1.0 / BASELINE_SECONDS);
    let floor = settings.min_rps / settings.factor;
    let rps = rps.min(MAX_LEARNED_GROWTH * s.baseline_rps.max(floor));
    let eps = eps.min(MAX_LEARNED_GROWTH * s.baseline_eps.max(floor / 4.0));
    s.baseline_rps += (rps - s.baseline_rps) * weight;
    s.baseline_eps += (eps - s.baseline_eps) * weight;
}

/// The most one second's rate counts for, as a multiple of the baseline, when it is learned.
const MAX_LEARNED_GROWTH: f64 = 2.0;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> AttackDetection {
        AttackDetection {
            enabled: true,
            factor: 5.0,
            min_rps: 50.0,
            hold: Duration::from_secs(30),
            learning: Duration::ZERO,
            fallback: model::AttackFallback::Off,
            min_coverage: 0.8,
            max_baseline_share: 0.01,
            mitigation_hold: Duration::ZERO,
        }
    }

    /// Runs `seconds` ticks with `rps` requests and `eps` errors each; returns the changes.
    fn run(d: &AttackDetector, t: &mut Instant, seconds: u32, rps: u64, eps: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        for _ in 0..seconds {
            for _ in 0..rps {
                d.count_request();
            }
            for _ in 0..eps {
                d.count_error();
            }
            *t += Duration::from_secs(1);
            changes.extend(d.tick(&settings(), *t));
        }
        changes
    }

    #[test]
    fn a_surge_that_ramps_up_in_a_sites_first_minute_is_not_learned_before_it_trips() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        assert!(run(&d, &mut t, 10, 40, 0).is_empty());
        // Had each second been learned whole, every one would stay below what trips detection
        // at the baseline of that moment.
        let mut changes = Vec::new();
        for rps in [150, 350, 600, 600, 600] {
            changes.extend(run(&d, &mut t, 1, rps, 0));
        }
        assert!(
            matches!(changes[..], [Change::Started { .. }]),
            "{changes:?}, baseline {}",
            d.baseline_rps()
        );
        assert!(d.baseline_rps() < 60.0, "{}", d.baseline_rps());
    }

    #[test]
    fn nothing_trips_while_a_new_sites_traffic_is_learned() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        let learning = AttackDetection {
            learning: Duration::from_secs(10),
            ..settings()
        };
        let mut tick = |rps: u64| {
            for _ in 0..rps {
                d.count_request();
            }
            t += Duration::from_secs(1);
            d.tick(&learning, t)
        };
        // Quiet seconds before the first request do not count.
        for _ in 0..20 {
            assert_eq!(tick(0), None);
        }
        // A load test from the start: learned, not an attack.
        for _ in 0..10 {
            assert_eq!(tick(5000), None);
        }
        assert!(d.baseline_rps() > 1000.0, "{}", d.baseline_rps());
        // Past the learning, a jump far above what was learned trips.
        let changes: Vec<Change> = (0..3).filter_map(|_| tick(100_000)).collect();
        assert!(
            matches!(changes[..], [Change::Started { .. }]),
            "{changes:?}"
        );
    }

    #[test]
    fn an_attack_slowed_below_its_trip_rate_lasts_until_it_falls_under_half_of_it() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        run(&d, &mut t, 60, 20, 0);
        // 20 rps baseline, factor 5: 100 rps trips it.
        assert!(!run(&d, &mut t, 3, 400, 0).is_empty());
        // Slowed to 70 rps (under the trip, over half of it) for longer than the hold.
        assert!(
            run(&d, &mut t, 40, 70, 0).is_empty(),
            "it ended while the flood went on"
        );
        assert!(d.under_attack());
        // Under half: it ends after the hold.
        let changes = run(&d, &mut t, 40, 30, 0);
        assert!(matches!(changes[..], [Change::Ended]), "{changes:?}");
    }

    #[test]
    fn an_attack_whose_held_requests_keep_coming_does_not_settle() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        run(&d, &mut t, 60, 20, 0);
        assert!(!run(&d, &mut t, 3, 400, 0).is_empty());
        // The mitigation holds the flood's answers: few requests arrive, but they keep coming.
        for _ in 0..60 {
            t += Duration::from_secs(1);
            assert_eq!(d.tick_engaged(&settings(), t, true), None);
        }
        assert!(d.under_attack());
        // They stop: the attack settles after the hold.
        let mut ended = Vec::new();
        for _ in 0..40 {
            t += Duration::from_secs(1);
            ended.extend(d.tick_engaged(&settings(), t, false));
        }
        assert!(matches!(ended[..], [Change::Ended]), "{ended:?}");
    }

    #[test]
    fn steady_traffic_is_learned_not_flagged() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        assert!(run(&d, &mut t, 120, 40, 0).is_empty());
        assert!((d.baseline_rps() - 40.0).abs() < 1.0);
    }

    #[test]
    fn a_spike_starts_the_mode_within_seconds_and_settling_ends_it() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        run(&d, &mut t, 60, 20, 0);
        // 20 rps baseline, factor 5: 100 rps trips it (above the 50 rps floor).
        let changes = run(&d, &mut t, 3, 400, 0);
        assert!(
            matches!(
                changes[..],
                [Change::Started {
                    reason: EventReason::RequestSpike,
                    ..
                }]
            ),
            "{changes:?}"
        );
        assert!(d.under_attack());
        // 400 rps against the 100 rps that tripped it.
        assert!((d.pressure() - 4.0).abs() < 0.5, "{}", d.pressure());
        // Still hot: stays on. Then quiet: off after `hold`.
        assert!(run(&d, &mut t, 20, 400, 0).is_empty());
        assert!(run(&d, &mut t, 3, 1600, 0).is_empty());
        assert!((d.pressure() - 16.0).abs() < 1.0, "{}", d.pressure());
        assert!(run(&d, &mut t, 29, 20, 0).is_empty());
        assert_eq!(run(&d, &mut t, 5, 20, 0), vec![Change::Ended]);
        assert!(!d.under_attack());
        // The attack did not become the baseline.
        assert!(d.baseline_rps() < 25.0, "{}", d.baseline_rps());
    }

    #[test]
    fn a_quiet_site_doubling_is_not_an_attack() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        run(&d, &mut t, 60, 2, 0);
        assert!(
            run(&d, &mut t, 30, 40, 0).is_empty(),
            "under the 50 rps floor"
        );
    }

    #[test]
    fn an_error_spike_counts_too() {
        let d = AttackDetector::default();
        let mut t = Instant::now();
        run(&d, &mut t, 60, 30, 0);
        let changes = run(&d, &mut t, 4, 30, 25);
        assert!(
            matches!(
                changes[..],
                [Change::Started {
                    reason: EventReason::ErrorSpike,
                    ..
                }]
            ),
            "{changes:?}"
        );
    }
}

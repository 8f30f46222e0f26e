//! What a site's shield remembers between requests, kept by site name so that it outlives
//! reloads as the site's metrics do: attack detection's baselines, the origin's requests in
//! flight and waiting (`origin_gate`) and latency (origin pressure), attack signatures, and the
//! per-address miss counts. Below the phases:
//! the shield phase reads and counts into it, and a background pass ([`watch_attacks`])
//! turns its counts into rates once a second.

use crate::cpu_priority::SiteShare;
use crate::origin_gate::OriginGate;
pub use crate::origin_gate::OriginPermit;
use model::SiteShield;
use shield::attack::AttackDetector;
use shield::challenge::solvers::SolverWatch;
use shield::pressure::PressureMonitor;
use shield::ratelimit::{WindowCounter, random_seed};
use shield::signature::SiteSignatures;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters per row of a site's cache-miss sketch (256 KiB, made at the site's first miss).
const MISS_SKETCH_WIDTH: usize = 8192;

/// A site's shield state that outlives snapshots.
#[derive(Debug)]
pub struct SiteProtection {
    pub attack: AttackDetector,
    /// Attack signatures: the sample windows and the mitigations in force.
    pub signatures: SiteSignatures,
    /// Evidence of solvers: revoked clearances, and the difficulty's extra bits.
    pub solvers: SolverWatch,
    /// The origin's load: latency seen, and whether it is under pressure.
    pub origin: PressureMonitor,
    /// The origin requests in flight under the site's cap, and those waiting for a slot.
    pub gate: Arc<OriginGate>,
    /// The site's share of the edge's requests, and whether it waits its turn when the edge
    /// is short of CPU.
    pub share: SiteShare,
    misses: Mutex<Option<(Duration, Arc<WindowCounter>)>>,
    /// Seeds the miss sketch's hashes, so a client cannot aim its misses at another's counters.
    pub(crate) seed: u64,
    /// On [`BusySites`]' list.
    listed: AtomicBool,
    /// Seconds in a row the site has been quiet (see [`BusySites::QUIET_SECONDS`]).
    quiet_seconds: AtomicU32,
    /// Another edge of the cluster detected an attack on this site: challenge as if this
    /// edge had (until the cluster says the attack is over).
    held_by_cluster: AtomicBool,
}

impl SiteProtection {
    pub(crate) fn new() -> SiteProtection {
        let seed = random_seed();
        SiteProtection {
            attack: AttackDetector::default(),
            signatures: SiteSignatures::default(),
            solvers: SolverWatch::default(),
            origin: PressureMonitor::default(),
            gate: Arc::new(OriginGate::new(seed.rotate_left(17))),
            share: SiteShare::default(),
            misses: Mutex::new(None),
            seed,
            listed: AtomicBool::new(false),
            quiet_seconds: AtomicU32::new(0),
            held_by_cluster: AtomicBool::new(false),
        }
    }

    /// True while another edge of the cluster holds the site under attack.
    pub fn held_by_cluster(&self) -> bool {
        self.held_by_cluster.load(Ordering::Relaxed)
    }

    /// Sets whether another edge of the cluster holds the site under attack; returns what it
    /// was.
    pub fn hold_for_cluster(&self, held: bool) -> bool {
        self.held_by_cluster.swap(held, Ordering::Relaxed)
    }

    /// The miss counter for `period`, made anew when the period changes.
    pub fn miss_counter(&self, period: Duration) -> Arc<WindowCounter> {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        match &*misses {
            Some((p, counter)) if *p == period => Arc::clone(counter),
            _ => {
                let counter = Arc::new(WindowCounter::new(period, MISS_SKETCH_WIDTH));
                *misses = Some((period, Arc::clone(&counter)));
                counter
            }
        }
    }

    /// Takes a slot for an origin request at once, unless `cap` are taken or requests are
    /// waiting for one (0: no cap). Over it, `OriginGate::wait`.
    pub fn origin_permit(&self, cap: u32) -> Option<OriginPermit> {
        self.gate.try_enter(cap)
    }

    pub fn origin_in_flight(&self) -> u32 {
        self.gate.in_flight()
    }

    /// True while the site's origin is under pressure: its requests in flight near
    /// `max_origin_concurrency`, or its latency rising (`shield::pressure`).
    pub fn origin_under_pressure(&self, shield: &SiteShield, now: Instant) -> bool {
        self.origin.under_pressure(
            &shield.pressure,
            self.origin_in_flight(),
            shield.max_origin_concurrency,
            now,
        )
    }
}

/// The sites that have seen traffic lately. The CPU shares, judged ten times a second, walk
/// these, not every site the edge runs: on a provider's edge most of 100,000 sites are quiet at
/// any moment, and walking them all cost a third of a core while nothing happened. (Attack
/// detection still ticks every site each second: it learns from quiet seconds too. It tells
/// this list which sites are quiet.)
///
/// A site is listed by its first request (after that, one relaxed load per request) and let go
/// once it has been quiet for [`BusySites::QUIET_SECONDS`] with nothing left to wind down: no
/// attack, no mitigation, no origin pressure, no raised difficulty. Its next request lists it
/// again, with the state it had.
#[derive(Debug, Default)]
pub struct BusySites {
    sites: Mutex<Vec<(Arc<str>, Arc<SiteProtection>)>>,
}

impl BusySites {
    /// Quiet seconds after which a site is let go: long enough for attack detection and
    /// origin pressure to have settled after its last request.
    pub const QUIET_SECONDS: u32 = 600;

    /// Lists the site `name` (its protection `protection`) unless it is listed already.
    pub fn arrive(&self, name: &Arc<str>, protection: &Arc<SiteProtection>) {
        if protection.listed.load(Ordering::Relaxed)
            || protection.listed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.lock().push((Arc::clone(name), Arc::clone(protection)));
    }

    /// Every listed site, by name, with its protection.
    pub fn listed(&self) -> Vec<(Arc<str>, Arc<SiteProtection>)> {
        self.lock().clone()
    }

    /// Calls `tick` with every listed site; a site is let go when `tick` answers `None` (the
    /// edge no longer runs it) or it has answered `Some(true)` ("quiet") for
    /// [`BusySites::QUIET_SECONDS`] calls in a row. Meant to be called once a second.
    pub fn tick(&self, mut tick: impl FnMut(&str, &SiteProtection) -> Option<bool>) {
        self.lock().retain(|(name, protection)| {
            let keep = match tick(name, protection) {
                None => false,
                Some(false) => {
                    protection.quiet_seconds.store(0, Ordering::Relaxed);
                    true
                }
                Some(true) => {
                    protection.quiet_seconds.fetch_add(1, Ordering::Relaxed) + 1
                        < Self::QUIET_SECONDS
                }
            };
            if !keep {
                protection.quiet_seconds.store(0, Ordering::Relaxed);
                protection.listed.store(false, Ordering::Release);
            }
            keep
        });
    }

    /// How many sites are listed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no site is.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<str>, Arc<SiteProtection>)>> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Site protections by site name.
#[derive(Debug, Default)]
pub struct ProtectionRegistry {
    sites: Mutex<HashMap<String, Arc<SiteProtection>>>,
}

impl ProtectionRegistry {
    pub fn site(&self, name: &str) -> Arc<SiteProtection> {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            sites
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(SiteProtection::new())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_permits_stop_at_the_cap_and_free_on_drop() {
        let registry = ProtectionRegistry::default();
        let p = registry.site("a");
        let first = p.origin_permit(2).unwrap();
        let _second = p.origin_permit(2).unwrap();
        assert!(p.origin_permit(2).is_none());
        assert_eq!(p.origin_in_flight(), 2);
        drop(first);
        assert!(p.origin_permit(2).is_some());
        // The same site name gives the same state (a reload keeps it).
        assert!(Arc::ptr_eq(&p, &registry.site("a")));
        assert!(p.origin_permit(0).is_some(), "0 means no cap");
    }

    #[test]
    fn a_site_is_listed_once_by_its_requests_and_let_go_after_its_quiet_time() {
        let registry = ProtectionRegistry::default();
        let busy = BusySites::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let (pa, pb) = (registry.site("a"), registry.site("b"));
        busy.arrive(&a, &pa);
        busy.arrive(&a, &pa);
        busy.arrive(&b, &pb);
        assert_eq!(busy.len(), 2, "listed once however many requests");
        // "b" is gone from the configuration: let go at the next tick.
        busy.tick(|name, _| (name == "a").then_some(false));
        assert_eq!(busy.len(), 1);
        // A busy second starts the quiet time again.
        for _ in 0..BusySites::QUIET_SECONDS - 1 {
            busy.tick(|_, _| Some(true));
        }
        busy.tick(|_, _| Some(false));
        for _ in 0..BusySites::QUIET_SECONDS - 1 {
            busy.tick(|_, _| Some(true));
        }
        assert_eq!(busy.len(), 1, "still within its quiet time");
        busy.tick(|_, _| Some(true));
        assert!(
            busy.is_empty(),
            "let go after {} quiet seconds",
            BusySites::QUIET_SECONDS
        );
        // Its next request lists it again.
        busy.arrive(&a, &pa);
        let seen: Vec<String> = busy.listed().iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(seen, ["a"]);
    }
}

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
        }
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
}

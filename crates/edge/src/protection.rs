//! What a site's shield remembers between requests, kept by site name so that it outlives
//! reloads as the site's metrics do: attack detection's baselines, the origin's requests in
//! flight and latency (origin pressure), attack signatures, and the per-address miss counts. Below the phases:
//! the shield phase reads and counts into it, and a background pass ([`watch_attacks`])
//! turns its counts into rates once a second.

use model::SiteShield;
use shield::attack::AttackDetector;
use shield::challenge::solvers::SolverWatch;
use shield::pressure::PressureMonitor;
use shield::ratelimit::{WindowCounter, random_seed};
use shield::signature::SiteSignatures;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters per row of a site's cache-miss sketch (256 KiB per site).
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
    origin_in_flight: AtomicU32,
    misses: Mutex<Option<(Duration, Arc<WindowCounter>)>>,
    /// Seeds the miss sketch's hashes, so a client cannot aim its misses at another's counters.
    pub(crate) seed: u64,
}

impl SiteProtection {
    pub(crate) fn new() -> SiteProtection {
        SiteProtection {
            attack: AttackDetector::default(),
            signatures: SiteSignatures::default(),
            solvers: SolverWatch::default(),
            origin: PressureMonitor::default(),
            origin_in_flight: AtomicU32::new(0),
            misses: Mutex::new(None),
            seed: random_seed(),
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

    /// Takes a slot for an origin request, unless `cap` are taken (0: no cap).
    pub fn origin_permit(self: &Arc<Self>, cap: u32) -> Option<OriginPermit> {
        let taken = self.origin_in_flight.fetch_add(1, Ordering::AcqRel);
        if cap != 0 && taken >= cap {
            self.origin_in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(OriginPermit(Arc::clone(self)))
    }

    pub fn origin_in_flight(&self) -> u32 {
        self.origin_in_flight.load(Ordering::Relaxed)
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

/// One origin request in flight; the slot is freed when the response is done (dropped).
#[derive(Debug)]
pub struct OriginPermit(Arc<SiteProtection>);

impl Drop for OriginPermit {
    fn drop(&mut self) {
        self.0.origin_in_flight.fetch_sub(1, Ordering::AcqRel);
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

//! The `shield` phase, between route and cache: the site's lists, rules and rate limits
//! (`shield::guard`), then the challenge gate; and the origin protection the later phases ask
//! for (the per-address cache-miss limit, the cap on concurrent origin requests).
//!
//! What a site's shield remembers between requests (attack baselines, origin requests in flight,
//! miss counts) is a [`SiteProtection`] kept by site name, so it outlives reloads as the site's
//! metrics do.

use crate::body::EdgeBody;
use crate::phases::respond;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use shield::attack::AttackDetector;
use shield::guard::Verdict;
use shield::ratelimit::{WindowCounter, client_prefix, random_seed};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters per row of a site's cache-miss sketch (256 KiB per site).
const MISS_SKETCH_WIDTH: usize = 8192;

/// A site's shield state that outlives snapshots.
#[derive(Debug)]
pub struct SiteProtection {
    pub attack: AttackDetector,
    origin_in_flight: AtomicU32,
    misses: Mutex<Option<(Duration, Arc<WindowCounter>)>>,
    seed: u64,
}

impl SiteProtection {
    fn new() -> SiteProtection {
        SiteProtection {
            attack: AttackDetector::default(),
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

/// Counts a cache miss for the client; true when it is over the site's limit.
pub fn too_many_misses(
    protection: &SiteProtection,
    counter: &WindowCounter,
    limit: u32,
    ip: IpAddr,
    now: Instant,
) -> bool {
    let key = xxhash_rust::xxh3::xxh3_64_with_seed(&client_prefix(ip), protection.seed);
    counter.hit(key, now) > f64::from(limit)
}

/// The response for a verdict that refuses the request; `None` to go on. (A challenge is
/// the challenge gate's to answer: `phases::challenge`.)
pub fn answer(verdict: &Verdict) -> Option<Response<EdgeBody>> {
    match verdict {
        Verdict::Pass | Verdict::Allowed | Verdict::Challenge { .. } => None,
        Verdict::Block { .. } => Some(respond::edge_page(StatusCode::FORBIDDEN, false)),
        Verdict::Limited { retry_after } => Some(too_many_requests(*retry_after)),
    }
}

/// 429 with Retry-After in whole seconds (at least 1).
pub fn too_many_requests(retry_after: Duration) -> Response<EdgeBody> {
    let mut response = respond::edge_page(StatusCode::TOO_MANY_REQUESTS, false);
    retry_after_header(&mut response, retry_after);
    response
}

/// 503 with Retry-After: the site's origin is at its concurrency cap.
pub fn origin_busy() -> Response<EdgeBody> {
    let mut response = respond::edge_page(StatusCode::SERVICE_UNAVAILABLE, false);
    retry_after_header(&mut response, Duration::from_secs(5));
    response
}

fn retry_after_header(response: &mut Response<EdgeBody>, after: Duration) {
    let seconds = after.as_secs().max(1) + u64::from(after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}

/// Once a second, turns every site's request and error counts into rates and switches
/// automatic under-attack mode on and off; each switch is a security event and a warning.
pub async fn watch_attacks(
    state: Arc<crate::pipeline::EdgeState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = state.snapshot.load();
        let now = Instant::now();
        for site in &snapshot.sites {
            let change = site.protection.attack.tick(&site.config.shield.attack, now);
            site.metrics.set_under_attack(
                site.config.state == model::SiteState::UnderAttack
                    || site.protection.attack.under_attack(),
            );
            let Some(change) = change else {
                continue;
            };
            match change {
                shield::attack::Change::Started { reason, rate } => tracing::warn!(
                    site = %site.name,
                    reason = reason.as_str(),
                    rate,
                    baseline = site.protection.attack.baseline_rps(),
                    "under-attack mode on"
                ),
                shield::attack::Change::Ended => {
                    tracing::warn!(site = %site.name, "under-attack mode off: traffic settled")
                }
            }
            state.events.record(change.event(Arc::clone(&site.name)));
        }
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
    fn misses_are_limited_per_address() {
        let p = SiteProtection::new();
        let counter = p.miss_counter(Duration::from_secs(60));
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(!too_many_misses(&p, &counter, 3, a, now));
        }
        assert!(too_many_misses(&p, &counter, 3, a, now));
        assert!(!too_many_misses(&p, &counter, 3, b, now));
        assert!(Arc::ptr_eq(
            &counter,
            &p.miss_counter(Duration::from_secs(60))
        ));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = too_many_requests(Duration::from_millis(1500));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
    }
}

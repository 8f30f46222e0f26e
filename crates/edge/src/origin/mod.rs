//! Origins: pools per site, health (active probes and passive ejection), weighted round robin,
//! and the client that forwards requests with retry and timeouts.
//!
//! An [`Upstream`] is a site's set of origins. It outlives snapshots: a reload that leaves a
//! site's origins unchanged hands the same `Upstream` (warm connections, health verdicts) to the
//! new snapshot, and an origin that stays in a changed set keeps its [`OriginState`].

pub(crate) mod chunked;
mod client;
pub(crate) mod codec;
mod connection;
pub mod fields;
mod health;
mod pool;
mod response_body;
mod schedule;

pub use client::{OriginFailure, OriginRequest};
pub use response_body::OriginResponseBody;

pub use crate::http::interim::InterimSink;

use crate::clock;
use crate::metrics::OriginReport;
use http::uri::Authority;
use model::{HealthCheck, Site};
use schedule::Schedule;
use shield::carried::Carried;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most origins one site may list (the retry logic tracks tried origins in a `u64`).
pub const MAX_ORIGINS_PER_SITE: usize = 64;

/// Why a site's origins cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// More origins than a site may list (64: the retry logic tracks tried origins in a
    /// `u64`).
    #[error("site {site}: {count} origins; at most {MAX_ORIGINS_PER_SITE}")]
    TooManyOrigins {
        /// The site's name.
        site: String,
        /// How many origins it lists.
        count: usize,
    },
    /// An origin's `host:port` is not a valid URI authority.
    #[error("origin {url}: {error}")]
    Authority {
        /// The origin as configured.
        url: model::OriginUrl,
        /// What the URI parser refused.
        error: http::uri::InvalidUri,
    },
}

/// One origin server and what the edge knows about its health.
#[derive(Debug)]
pub struct OriginState {
    /// `host:port`, as shown in logs and metrics (never on an error page).
    pub label: String,
    pub authority: Authority,
    /// Verdict of the active health check; true when there is none.
    probe_healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Passive ejection: not chosen before this instant (clock ms); 0 when not ejected.
    ejected_until_ms: AtomicU64,
    pub connect_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub other_errors: AtomicU64,
}

impl OriginState {
    fn new(url: &model::OriginUrl) -> Result<OriginState, UpstreamError> {
        let label = url.authority();
        let authority =
            Authority::try_from(label.as_str()).map_err(|error| UpstreamError::Authority {
                url: url.clone(),
                error,
            })?;
        Ok(OriginState {
            label,
            authority,
            probe_healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            other_errors: AtomicU64::new(0),
        })
    }

    /// Whether the origin takes traffic now.
    pub fn available(&self, now_ms: u64) -> bool {
        self.available_with(|| now_ms)
    }

    /// [`Self::available`], reading the clock only when the origin has been ejected (on the
    /// request path the clock is rarely needed).
    fn available_with(&self, now_ms: impl FnOnce() -> u64) -> bool {
        if !self.probe_healthy.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until == 0 || until <= now_ms()
    }

    fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a transport failure; after `max_fails` in a row the origin sits out `fail_timeout`.
    fn record_failure(&self, max_fails: u32, fail_timeout: Duration) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < max_fails {
            return;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        match self.eject(clock::now_ms(), fail_timeout) {
            Ejection::New => {
                tracing::warn!(origin = %self.label, failures, "origin ejected after consecutive failures")
            }
            // When every origin of a site is out, requests still try them; a dead one fails
            // `max_fails` times again every few requests. Its ejection was said once: a
            // line each time would be thousands of lines a second under load.
            Ejection::Extended => {
                tracing::debug!(origin = %self.label, failures, "ejected origin failed again; ejection extended")
            }
        }
    }

    /// Takes the origin out of rotation until `fail_timeout` after `now_ms`.
    fn eject(&self, now_ms: u64, fail_timeout: Duration) -> Ejection {
        let until = now_ms.saturating_add(fail_timeout.as_millis() as u64);
        let before = self.ejected_until_ms.swap(until, Ordering::Relaxed);
        if before != 0 && before > now_ms {
            Ejection::Extended
        } else {
            Ejection::New
        }
    }

    fn set_probe_healthy(&self, healthy: bool) {
        self.probe_healthy.store(healthy, Ordering::Relaxed);
        if healthy {
            // An origin that passes its probes again is back, whatever passive ejection said.
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// What a passive ejection changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ejection {
    /// The origin was in rotation and is now out.
    New,
    /// It was already out; it stays out longer.
    Extended,
}

/// The settings that decide whether an `Upstream` can be reused across a reload.
#[derive(Debug, Clone, PartialEq)]
struct UpstreamSettings {
    origins: Vec<model::Origin>,
    connect_timeout: Duration,
    response_timeout: Duration,
    health: Option<HealthCheck>,
    max_fails: u32,
    fail_timeout: Duration,
    probe_host: String,
    pool_idle_timeout: Duration,
    pool_max_idle: usize,
}

/// A site's origins.
pub struct Upstream {
    site: String,
    settings: UpstreamSettings,
    origins: Vec<Arc<OriginState>>,
    schedule: Schedule,
    /// Keep-alive connections, one pool per origin (same order as `origins`).
    pools: Vec<Arc<pool::ConnPool>>,
}

impl Upstream {
    pub fn origins(&self) -> &[Arc<OriginState>] {
        &self.origins
    }

    pub fn response_timeout(&self) -> Duration {
        self.settings.response_timeout
    }

    /// Picks the next available origin in weighted round-robin order, skipping those in `tried`
    /// (bit i = origin i). When none is available, it falls back to any untried origin: trying
    /// a doubtful origin beats failing a request that might have succeeded.
    fn pick(&self, tried: u64) -> Option<usize> {
        let untried = |i: usize| tried & (1 << i) == 0;
        self.schedule
            .iter_from_next()
            .find(|i| untried(*i) && self.origins[*i].available_with(clock::now_ms))
            .or_else(|| (0..self.origins.len()).find(|i| untried(*i)))
    }

    pub fn report(&self, into: &mut Vec<OriginReport>) {
        let now = clock::now_ms();
        for origin in &self.origins {
            into.push(OriginReport {
                site: self.site.clone(),
                origin: origin.label.clone(),
                healthy: origin.available(now),
                connect_errors: origin.connect_errors.load(Ordering::Relaxed),
                timeouts: origin.timeouts.load(Ordering::Relaxed),
                other_errors: origin.other_errors.load(Ordering::Relaxed),
            });
        }
    }
}

/// Keeps upstreams alive across reloads so connection pools and health verdicts survive.
#[derive(Default)]
pub struct UpstreamRegistry {
    by_site: Mutex<Carried<Upstream>>,
}

/// Pool settings that come from `[server]`.
#[derive(Clone)]
pub struct PoolLimits {
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

impl UpstreamRegistry {
    /// The upstream for `site`: the existing one when nothing about its origins changed,
    /// otherwise a new one that keeps the state of origins it shares with the old.
    pub fn upstream_for(
        &self,
        site: &Site,
        pool: &PoolLimits,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        if site.origins.len() > MAX_ORIGINS_PER_SITE {
            return Err(UpstreamError::TooManyOrigins {
                site: site.name.clone(),
                count: site.origins.len(),
            });
        }
        let settings = UpstreamSettings {
            origins: site.origins.clone(),
            connect_timeout: site.connect_timeout,
            response_timeout: site.response_timeout,
            health: site.health.clone(),
            max_fails: site.max_fails,
            fail_timeout: site.fail_timeout,
            probe_host: probe_host(site),
            pool_idle_timeout: pool.idle_timeout,
            pool_max_idle: pool.max_idle,
        };
        let mut by_site = self.by_site.lock().unwrap_or_else(|p| p.into_inner());
        let previous = by_site.get(&site.name);
        if let Some(previous) = &previous
            && previous.settings == settings
        {
            return Ok(Arc::clone(previous));
        }
        let mut origins = Vec::with_capacity(site.origins.len());
        for origin in &site.origins {
            let kept = previous.as_ref().and_then(|p| {
                p.origins
                    .iter()
                    .find(|o| o.label == origin.url.authority())
                    .cloned()
            });
            origins.push(match kept {
                Some(state) => state,
                None => Arc::new(OriginState::new(&origin.url)?),
            });
        }
        let weights: Vec<u32> = site.origins.iter().map(|o| o.weight).collect();
        let pools = origins
            .iter()
            .map(|o: &Arc<OriginState>| {
                pool::ConnPool::new(
                    o.label.clone(),
                    settings.pool_max_idle,
                    settings.pool_idle_timeout,
                    settings.connect_timeout,
                )
            })
            .collect();
        let upstream = Arc::new(Upstream {
            site: site.name.clone(),
            pools,
            schedule: Schedule::smooth_weighted(&weights),
            origins,
            settings,
        });
        if let Some(check) = &upstream.settings.health {
            health::spawn_checker(Arc::downgrade(&upstream), check.clone());
        }
        by_site.insert(site.name.clone(), &upstream);
        Ok(upstream)
    }
}

/// The Host sent with health probes: the site's first exact name, so name-based origins
/// answer for the right site; else the origin's own authority.
fn probe_host(site: &Site) -> String {
    site.hosts
        .iter()
        .find_map(|h| match h {
            model::HostPattern::Exact(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> OriginState {
        OriginState::new(&model::OriginUrl::parse("http://127.0.0.1:9").expect("origin url"))
            .expect("origin")
    }

    #[test]
    fn an_ejection_is_new_only_when_the_origin_was_in_rotation() {
        let origin = origin();
        let timeout = Duration::from_secs(10);
        assert_eq!(origin.eject(1_000, timeout), Ejection::New);
        assert!(!origin.available(1_001));
        // Failing again while out (every origin of the site is out, so it is still tried).
        assert_eq!(origin.eject(5_000, timeout), Ejection::Extended);
        assert!(!origin.available(14_999), "the ejection was extended");
        // Past its end the origin was back in rotation: a new ejection.
        assert!(origin.available(15_000));
        assert_eq!(origin.eject(15_000, timeout), Ejection::New);
    }
}

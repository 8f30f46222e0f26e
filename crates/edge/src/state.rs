//! What every request reads: the current snapshot (swapped whole on a reload) and the sinks
//! that outlive snapshots (the cache, metrics, the access log, security events, analytics).

use crate::abuse_intake::AbuseIntake;
use crate::access_log::AccessLog;
use crate::body::BodyBuffers;
use crate::cpu_priority::CpuPriority;
use crate::metrics::{Metrics, SiteMetrics, UNROUTED};
use crate::protection::BusySites;
use crate::snapshot::Snapshot;
use analytics::Analytics;
use arc_swap::ArcSwap;
use cache::Cache;
use shield::challenge::{NonceSource, ReplayFilter};
use shield::events::EventRing;
use std::sync::Arc;

/// What every request reads: the current snapshot and the shared sinks.
pub struct EdgeState {
    pub snapshot: ArcSwap<Snapshot>,
    pub access_log: AccessLog,
    pub metrics: Arc<Metrics>,
    /// Outlives snapshots: a reload keeps what is stored.
    pub cache: Arc<Cache>,
    /// Wakes the background pass that applies purges to stored objects.
    pub purge_wake: Arc<tokio::sync::Notify>,
    /// What the shield did, for `GET /api/events`.
    pub events: Arc<EventRing>,
    /// Challenge nonces and the filter of answered challenges.
    pub challenges: ChallengeState,
    /// The abuse intake's sink and per-address counter.
    pub abuse: AbuseIntake,
    /// Per-site minutes for the control plane to take.
    pub analytics: Arc<Analytics>,
    /// Request bodies read ahead of their origin slot, every site together (bounded by
    /// `body_buffer_memory`).
    pub body_buffers: Arc<BodyBuffers>,
    /// Metrics for requests that matched no site.
    pub(crate) unrouted: Arc<SiteMetrics>,
    /// Whether the edge is short of CPU, and the line deprioritised sites' requests wait in.
    pub cpu: CpuPriority,
    /// The sites that saw traffic lately: what the passes beside the request path walk.
    pub busy: BusySites,
    /// Told when automatic under-attack mode goes on or off for a site (a cluster shares it).
    pub attack_hook: std::sync::OnceLock<AttackHook>,
}

/// Called with a site's name and whether this edge's attack detection holds it under attack
/// now (on each switch, and again every few seconds while it lasts: see `attack_watch`).
pub type AttackHook = Arc<dyn Fn(&str, bool) + Send + Sync>;

impl EdgeState {
    pub fn new(
        snapshot: Snapshot,
        access_log: AccessLog,
        metrics: Arc<Metrics>,
        cache: Arc<Cache>,
        events: Arc<EventRing>,
        analytics: Arc<Analytics>,
    ) -> EdgeState {
        EdgeState {
            events,
            challenges: ChallengeState::new(),
            abuse: AbuseIntake::new(),
            snapshot: ArcSwap::from_pointee(snapshot),
            access_log,
            unrouted: metrics.site(UNROUTED),
            metrics,
            cache,
            purge_wake: Arc::new(tokio::sync::Notify::new()),
            analytics,
            body_buffers: Arc::new(BodyBuffers::default()),
            cpu: CpuPriority::default(),
            busy: BusySites::default(),
            attack_hook: std::sync::OnceLock::new(),
        }
    }
}

/// What the edge keeps for challenges across snapshots.
#[derive(Debug)]
pub struct ChallengeState {
    pub replay: ReplayFilter,
    pub nonces: NonceSource,
}

impl ChallengeState {
    pub fn new() -> ChallengeState {
        ChallengeState {
            replay: ReplayFilter::new(
                model::MAX_CHALLENGE_TTL,
                shield::challenge::replay::DEFAULT_BITS,
            ),
            nonces: NonceSource::new(),
        }
    }
}

impl Default for ChallengeState {
    fn default() -> Self {
        ChallengeState::new()
    }
}

impl EdgeState {
    /// Reports a change of `site`'s attack mitigations: a security event, a warning, metrics.
    /// Called by the tick, and by the request that a proposed rule was written from.
    pub fn report_signature(
        &self,
        site: &crate::snapshot::SiteRuntime,
        change: &shield::signature::SignatureChange,
    ) {
        match change {
            shield::signature::SignatureChange::Started(m) => {
                site.metrics.mitigation_started();
                tracing::warn!(
                    site = %site.name,
                    id = %m.id,
                    action = m.action.as_str(),
                    rule = m.rule.source(),
                    surge_coverage = m.surge_coverage,
                    baseline_share = m.baseline_share,
                    "attack mitigation on"
                );
            }
            shield::signature::SignatureChange::Ended {
                mitigation,
                dismissed,
            } => {
                site.metrics.mitigation_ended();
                tracing::warn!(
                    site = %site.name,
                    id = %mitigation.id,
                    matched = mitigation.matched.load(std::sync::atomic::Ordering::Relaxed),
                    dismissed,
                    "attack mitigation off"
                );
            }
            shield::signature::SignatureChange::FallbackOn { coverage } => tracing::warn!(
                site = %site.name,
                coverage,
                "no signature covers the surge: challenging everyone without clearance"
            ),
            shield::signature::SignatureChange::FallbackOff => {
                tracing::warn!(site = %site.name, "challenging everyone: off")
            }
        }
        self.events
            .record(change.event(std::sync::Arc::clone(&site.name)));
    }
}

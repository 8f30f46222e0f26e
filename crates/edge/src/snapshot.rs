//! The config snapshot: everything a request needs, immutable, swapped whole on reload.
//!
//! A request loads the current snapshot once and keeps it to the end, so a reload never changes
//! the rules under a request in flight, and the hot path takes no lock.

use crate::metrics::{Metrics, OriginReport, SiteMetrics};
use crate::origin::{PoolLimits, Upstream, UpstreamError, UpstreamRegistry};
use crate::protection::{ProtectionRegistry, SiteProtection};
use crate::router::HostRouter;
use crate::tls::{self, TlsError, TlsShared};
use analytics::{Analytics, SiteAnalytics};
use ipnet::IpNet;
use model::{Config, ServerLimits, Site};
use shield::challenge::{ChallengeKeys, SiteChallenge};
use shield::guard::{BuildError, GlobalLists, GuardError, ListsError, SiteGuard};
use shield::ratelimit::{LimiterRegistry, WindowCounter};
use std::net::IpAddr;
use std::sync::Arc;

/// Why a configuration cannot become a snapshot. Each message starts with the configuration's
/// source (its file path, or "the store") and names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A site's certificate or key, or TLS itself (the message names the file and the line).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The `[shield]` allow or deny list files.
    #[error("{config}: {error}")]
    Lists {
        /// The configuration's source.
        config: String,
        /// Which file, and why (boxed, like `Guard`'s: it is large, and errors are rare).
        error: Box<ListsError>,
    },
    /// A site's lists, rules or rate limits.
    #[error("{config}: {error}")]
    Guard {
        /// The configuration's source.
        config: String,
        /// Which key, and why.
        error: Box<GuardError>,
    },
    /// A site's challenge `exempt` expression.
    #[error("{config}: {error}")]
    Challenge {
        /// The configuration's source.
        config: String,
        /// Where in the expression, and why.
        error: BuildError,
    },
    /// A site's origins.
    #[error("{config}: {error}")]
    Upstream {
        /// The configuration's source.
        config: String,
        /// Which site or origin, and why.
        error: UpstreamError,
    },
}

/// A site as the edge runs it.
pub struct SiteRuntime {
    pub name: Arc<str>,
    pub config: Site,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<SiteMetrics>,
    /// This minute's counts and top lists, kept across reloads like `metrics`.
    pub analytics: Arc<SiteAnalytics>,
    /// Lists, rules and rate limits, compiled.
    pub guard: SiteGuard,
    /// The shield's state that outlives this snapshot (attack baseline, origin slots).
    pub protection: Arc<SiteProtection>,
    /// Cache misses per client address over `shield.misses_period`.
    pub misses: Arc<WindowCounter>,
    /// The browser challenge's settings, its `exempt` expression compiled.
    pub challenge: SiteChallenge,
}

/// One immutable version of the edge's configuration.
pub struct Snapshot {
    /// The sites, in configuration order; the router's answers index into it.
    pub sites: Vec<SiteRuntime>,
    /// Host name to site.
    pub router: HostRouter,
    /// `[server]` timeouts and caps.
    pub limits: ServerLimits,
    trusted_proxies: Vec<IpNet>,
    /// Every site's certificate, chosen by SNI; `None` when no site has one.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Counts reloads; 1 is the configuration the edge started with.
    pub generation: u64,
    /// Signs challenges and clearance cookies (read from the data directory at each reload).
    pub challenge_keys: Arc<ChallengeKeys>,
    /// `[server] operator_host`: where abuse reports are taken when no site claims the name.
    pub operator_host: Option<Box<str>>,
    /// The `[shield]` lists, for requests that belong to no site (the operator's hostname).
    pub global_lists: Arc<GlobalLists>,
}

/// What building a snapshot borrows from the running edge.
pub struct BuildContext<'a> {
    pub upstreams: &'a UpstreamRegistry,
    pub metrics: &'a Metrics,
    pub analytics: &'a Analytics,
    pub limiters: &'a LimiterRegistry,
    pub protections: &'a ProtectionRegistry,
    pub tls: &'a TlsShared,
    pub challenge_keys: &'a Arc<ChallengeKeys>,
    /// Names the configuration's source in errors.
    pub source: &'a str,
    pub generation: u64,
}

impl Snapshot {
    /// Builds the snapshot of `config`: compiles every site's shield and challenge and loads its
    /// certificate. State that outlives snapshots (origin pools, counters, limits, protection) is
    /// taken from `ctx`, so a reload keeps it.
    pub fn build(config: &Config, ctx: &BuildContext<'_>) -> Result<Snapshot, SnapshotError> {
        let pool = PoolLimits {
            idle_timeout: config.server.limits.origin_idle_timeout,
            max_idle: config.server.limits.origin_max_idle,
        };
        let source = || ctx.source.to_string();
        let tls = tls::server_config(&config.sites, ctx.source, ctx.tls)?;
        let global = Arc::new(
            shield::guard::build_lists(&config.shield.lists, "shield").map_err(|error| {
                SnapshotError::Lists {
                    config: source(),
                    error: Box::new(error),
                }
            })?,
        );
        let mut sites = Vec::with_capacity(config.sites.len());
        for (i, site) in config.sites.iter().enumerate() {
            let guard =
                SiteGuard::build(i, site, Arc::clone(&global), ctx.limiters).map_err(|error| {
                    SnapshotError::Guard {
                        config: source(),
                        error: Box::new(error),
                    }
                })?;
            let protection = ctx.protections.site(&site.name);
            let challenge =
                SiteChallenge::build(&format!("site[{i}]"), &site.challenge).map_err(|error| {
                    SnapshotError::Challenge {
                        config: source(),
                        error,
                    }
                })?;
            sites.push(SiteRuntime {
                guard,
                challenge,
                misses: protection.miss_counter(site.shield.misses_period),
                protection,
                name: site.name.as_str().into(),
                upstream: ctx.upstreams.upstream_for(site, &pool).map_err(|error| {
                    SnapshotError::Upstream {
                        config: source(),
                        error,
                    }
                })?,
                metrics: ctx.metrics.site(&site.name),
                analytics: ctx.analytics.site(&site.name),
                config: site.clone(),
            });
        }
        Ok(Snapshot {
            router: HostRouter::new(&config.sites),
            sites,
            limits: config.server.limits.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            tls,
            generation: ctx.generation,
            challenge_keys: Arc::clone(ctx.challenge_keys),
            operator_host: config.server.operator_host.as_deref().map(Box::from),
            global_lists: global,
        })
    }

    /// Whether `ip` is one of `[server] trusted_proxies`, whose forwarding headers are believed.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Every site's origins, with their health and error counts, for the metrics page.
    pub fn origin_reports(&self) -> Vec<OriginReport> {
        let mut reports = Vec::new();
        for site in &self.sites {
            site.upstream.report(&mut reports);
        }
        reports
    }
}

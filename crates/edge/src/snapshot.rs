//! The config snapshot: everything a request needs, immutable, swapped whole on reload.
//!
//! A request loads the current snapshot once and keeps it to the end, so a reload never changes
//! the rules under a request in flight, and the hot path takes no lock.
//!
//! A reload builds every site ([`Snapshot::build`]); a change to some sites
//! ([`Snapshot::apply`]) builds only those and shares the rest with the snapshot before it.

use crate::metrics::{Metrics, OriginReport};
use crate::origin::{PoolLimits, UpstreamError, UpstreamRegistry};
use crate::protection::ProtectionRegistry;
pub use crate::site_table::SiteRuntime;
use crate::site_table::SiteTable;
use crate::tls::{self, TlsError, TlsShared};
use analytics::Analytics;
use ipnet::IpNet;
use model::{Config, ServerLimits, Site, SiteChange};
use shield::challenge::{ChallengeKeys, SiteChallenge};
use shield::guard::{BuildError, GlobalLists, GuardError, ListsError, SiteGuard};
use shield::ratelimit::LimiterRegistry;
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
    /// A changed site claims a host name another site holds.
    #[error("{config}: host {host} is already claimed by site {holder:?}")]
    HostTaken {
        /// The configuration's source.
        config: String,
        /// The name both claim.
        host: String,
        /// The site that holds it.
        holder: String,
    },
}

/// One immutable version of the edge's configuration.
pub struct Snapshot {
    /// The sites, by index (what routing answers), host name and name.
    pub sites: Arc<SiteTable>,
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
    /// Origin pool settings from `[server]`, for the sites a change builds.
    pool: PoolLimits,
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

impl SiteRuntime {
    /// Builds `site`, the `index`th of its configuration (errors name it so): compiles its
    /// shield and challenge, reads its certificate, and takes the state that outlives
    /// snapshots (origin pools, counters, limits, protection) from `ctx`.
    fn build(
        index: usize,
        site: &Site,
        global: &Arc<GlobalLists>,
        pool: &PoolLimits,
        ctx: &BuildContext<'_>,
    ) -> Result<SiteRuntime, SnapshotError> {
        let source = || ctx.source.to_string();
        let guard =
            SiteGuard::build(index, site, Arc::clone(global), ctx.limiters).map_err(|error| {
                SnapshotError::Guard {
                    config: source(),
                    error: Box::new(error),
                }
            })?;
        let challenge =
            SiteChallenge::build(&format!("site[{index}]"), &site.challenge).map_err(|error| {
                SnapshotError::Challenge {
                    config: source(),
                    error,
                }
            })?;
        let protection = ctx.protections.site(&site.name);
        Ok(SiteRuntime {
            guard,
            challenge,
            cert: tls::site_cert(site, index, ctx.source)?,
            misses: protection.miss_counter(site.shield.misses_period),
            protection,
            name: site.name.as_str().into(),
            upstream: ctx.upstreams.upstream_for(site, pool).map_err(|error| {
                SnapshotError::Upstream {
                    config: source(),
                    error,
                }
            })?,
            metrics: ctx.metrics.site(&site.name),
            analytics: ctx.analytics.site(&site.name),
            config: site.clone(),
        })
    }
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
        let global = Arc::new(
            shield::guard::build_lists(&config.shield.lists, "shield").map_err(|error| {
                SnapshotError::Lists {
                    config: ctx.source.to_string(),
                    error: Box::new(error),
                }
            })?,
        );
        let mut sites = Vec::with_capacity(config.sites.len());
        for (index, site) in config.sites.iter().enumerate() {
            sites.push(Arc::new(SiteRuntime::build(
                index, site, &global, &pool, ctx,
            )?));
        }
        let sites = Arc::new(SiteTable::new(sites));
        Ok(Snapshot {
            tls: tls::server_config(&sites, ctx.tls)?,
            sites,
            limits: config.server.limits.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            generation: ctx.generation,
            challenge_keys: Arc::clone(ctx.challenge_keys),
            operator_host: config.server.operator_host.as_deref().map(Box::from),
            global_lists: global,
            pool,
        })
    }

    /// The snapshot this one becomes with `changes`: only the sites they name are built (and
    /// their host names checked against every other site's); the others are shared. Server
    /// settings and the challenge's keys stay this snapshot's. On error nothing is built.
    pub fn apply(
        &self,
        changes: &[SiteChange],
        ctx: &BuildContext<'_>,
    ) -> Result<Snapshot, SnapshotError> {
        let mut sites = SiteTable::clone(&self.sites);
        // Removals first: a change may hand a name from a removed site to another.
        for change in changes {
            if let SiteChange::Removed(name) = change {
                sites.remove(name);
            }
        }
        for change in changes {
            let site = match change {
                SiteChange::Removed(_) => continue,
                SiteChange::Added(site) | SiteChange::Changed(site) => site.clone(),
                SiteChange::State {
                    name,
                    state,
                    suspension,
                } => {
                    let Some(running) = sites.by_name(name) else {
                        continue;
                    };
                    Site {
                        state: *state,
                        suspension: *suspension,
                        ..running.config.clone()
                    }
                }
            };
            for host in &site.hosts {
                if let Some(holder) = sites.holder(host)
                    && *holder.name != *site.name
                {
                    return Err(SnapshotError::HostTaken {
                        config: ctx.source.to_string(),
                        host: host.to_string(),
                        holder: holder.name.to_string(),
                    });
                }
            }
            let index = sites.index_of(&site.name).unwrap_or(sites.len());
            let built = SiteRuntime::build(index, &site, &self.global_lists, &self.pool, ctx)?;
            sites.put(Arc::new(built));
        }
        let sites = Arc::new(sites);
        Ok(Snapshot {
            tls: tls::server_config(&sites, ctx.tls)?,
            sites,
            limits: self.limits.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            generation: ctx.generation,
            challenge_keys: Arc::clone(&self.challenge_keys),
            operator_host: self.operator_host.clone(),
            global_lists: Arc::clone(&self.global_lists),
            pool: self.pool.clone(),
        })
    }

    /// Whether `ip` is one of `[server] trusted_proxies`, whose forwarding headers are believed.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Every site's origins, with their health and error counts, for the metrics page.
    pub fn origin_reports(&self) -> Vec<OriginReport> {
        let mut reports = Vec::new();
        for site in self.sites.iter() {
            site.upstream.report(&mut reports);
        }
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{SiteState, Suspension};

    struct Registries {
        metrics: Arc<Metrics>,
        upstreams: UpstreamRegistry,
        analytics: Analytics,
        limiters: LimiterRegistry,
        protections: ProtectionRegistry,
        tls: TlsShared,
        keys: Arc<ChallengeKeys>,
    }

    impl Registries {
        fn new() -> Registries {
            Registries {
                metrics: Metrics::new(),
                upstreams: UpstreamRegistry::default(),
                analytics: Analytics::new(),
                limiters: LimiterRegistry::default(),
                protections: ProtectionRegistry::default(),
                tls: TlsShared::new().unwrap(),
                keys: Arc::new(ChallengeKeys::ephemeral().unwrap()),
            }
        }

        fn ctx(&self) -> BuildContext<'_> {
            BuildContext {
                upstreams: &self.upstreams,
                metrics: &self.metrics,
                analytics: &self.analytics,
                limiters: &self.limiters,
                protections: &self.protections,
                tls: &self.tls,
                challenge_keys: &self.keys,
                source: "test",
                generation: 1,
            }
        }
    }

    fn config(sites: &[(&str, &[&str])]) -> Config {
        let mut text = String::new();
        for (name, hosts) in sites {
            let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
            text.push_str(&format!(
                "[[site]]\nname = {name:?}\nhosts = [{}]\norigins = [\"http://127.0.0.1:9\"]\n\
                 [[site.rule]]\nid = \"r\"\nexpr = 'http.request.uri.path starts_with \"/x\"'\n\
                 action = \"block\"\n",
                hosts.join(", ")
            ));
        }
        Config::from_toml_str("test", &text).unwrap()
    }

    fn routed(snapshot: &Snapshot, host: &str) -> Option<String> {
        snapshot
            .sites
            .route(host)
            .map(|i| snapshot.sites[i].name.to_string())
    }

    #[test]
    fn a_delta_routes_as_a_rebuild_of_the_same_configuration_and_shares_what_it_left() {
        let registries = Registries::new();
        let before = config(&[
            ("a", &["a.example"]),
            ("b", &["b.example", "*.b.example"]),
            ("c", &["c.example"]),
            ("keep", &["keep.example"]),
        ]);
        let snapshot = Snapshot::build(&before, &registries.ctx()).unwrap();
        let after = config(&[
            ("keep", &["keep.example"]),
            // "a" is gone and its name is b's now.
            ("b", &["b.example", "a.example"]),
            ("c", &["c.example"]),
            ("d", &["*.b.example", "d.example"]),
        ]);
        let site = |name: &str| after.sites.iter().find(|s| s.name == name).unwrap().clone();
        let changes = [
            SiteChange::Removed("a".into()),
            SiteChange::Changed(site("b")),
            SiteChange::Added(site("d")),
            SiteChange::State {
                name: "c".into(),
                state: SiteState::Suspended,
                suspension: Some(Suspension { legal: true }),
            },
        ];
        let changed = snapshot.apply(&changes, &registries.ctx()).unwrap();
        let rebuilt = Snapshot::build(&after, &registries.ctx()).unwrap();
        for host in [
            "a.example",
            "b.example",
            "x.b.example",
            "c.example",
            "d.example",
            "keep.example",
            "nobody.example",
        ] {
            assert_eq!(routed(&changed, host), routed(&rebuilt, host), "{host}");
        }
        assert_eq!(changed.sites.len(), 4);
        assert!(changed.sites.by_name("a").is_none());
        let c = changed.sites.by_name("c").unwrap();
        assert_eq!(c.config.state, SiteState::Suspended);
        assert_eq!(c.config.suspension, Some(Suspension { legal: true }));
        assert!(Arc::ptr_eq(
            snapshot.sites.by_name("keep").unwrap(),
            changed.sites.by_name("keep").unwrap()
        ));
        // The snapshot it was made from is untouched.
        assert_eq!(routed(&snapshot, "a.example").as_deref(), Some("a"));
        assert_eq!(routed(&snapshot, "x.b.example").as_deref(), Some("b"));
    }

    #[test]
    fn a_delta_that_claims_another_sites_name_is_refused_whole() {
        let registries = Registries::new();
        let snapshot = Snapshot::build(
            &config(&[("a", &["a.example"]), ("b", &["b.example"])]),
            &registries.ctx(),
        )
        .unwrap();
        let thief = config(&[("c", &["c.example", "b.example"])])
            .sites
            .remove(0);
        let error = snapshot
            .apply(&[SiteChange::Added(thief)], &registries.ctx())
            .err()
            .unwrap();
        assert!(
            matches!(&error, SnapshotError::HostTaken { host, holder, .. } if host == "b.example" && holder == "b"),
            "{error}"
        );
        assert_eq!(routed(&snapshot, "c.example"), None);
    }
}

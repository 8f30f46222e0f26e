//! Running the edge: bind listeners, reload snapshots, drain on shutdown.
//!
//! ```no_run
//! # async fn run(config: model::Config) -> Result<(), edge::EdgeError> {
//! let edge = edge::Edge::start(config, "palisade.toml".into()).await?;
//! edge.serve_admin(); // after the control plane's handler, if any, is installed
//! // ... on SIGHUP: edge.reload(&new_config)
//! edge.shutdown(std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

use crate::access_log::AccessLog;
use crate::conn_guard::ConnGuard;
use crate::listener::{self, ListenerKind};
use crate::metrics::Metrics;
use crate::origin::UpstreamRegistry;
use crate::protection::ProtectionRegistry;
use crate::snapshot::{BuildContext, Snapshot, SnapshotError};
use crate::state::EdgeState;
use crate::tls::{TlsError, TlsShared};
use analytics::Analytics;
use cache::Cache;
use model::{Config, ServerSettings, SiteChange};
use shield::challenge::{ChallengeKeys, KeyError};
use shield::events::EventRing;
use shield::ratelimit::LimiterRegistry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The configuration is not one the edge can run.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// TLS session tickets could not start.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The challenge's signing keys in the data directory cannot be read or made.
    #[error("challenge keys: {0}")]
    ChallengeKeys(KeyError),
    /// A check's throwaway signing keys could not be made (the random source failed).
    #[error("{0}")]
    CheckKeys(KeyError),
    /// A listener's address could not be bound.
    #[error("cannot listen on {addr} ({kind}): {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which listener: `http`, `https` or `admin`.
        kind: &'static str,
        /// The operating system's refusal.
        error: std::io::Error,
    },
    /// The access log's file could not be opened for appending.
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {error}")]
    DataDir {
        /// The directory.
        path: String,
        /// The operating system's refusal.
        error: std::io::Error,
    },
    /// The cache's disk tier could not be opened.
    #[error("cannot open the cache's disk tier in {path}: {error}")]
    CacheDisk {
        /// The tier's directory.
        path: String,
        /// Why it could not be opened.
        error: cache::disk::DiskError,
    },
    /// The blocking task that opens the disk tier panicked or was cancelled.
    #[error("opening the cache's disk tier: {0}")]
    CacheDiskTask(tokio::task::JoinError),
}

/// Why a reload was refused. The edge keeps serving the snapshot it had.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The challenge's signing keys, read again at every reload, cannot be read.
    #[error("challenge keys: {0}")]
    ChallengeKeys(KeyError),
    /// The new configuration is not one the edge can run.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// A change built on the snapshot that ran when it was prepared, waiting to be installed.
pub struct PreparedChange {
    snapshot: Snapshot,
    built_on: Arc<Snapshot>,
    changes: Vec<SiteChange>,
}

/// The cache, with its disk tier under `data_dir/cache` unless `cache_disk` is 0. Opening the
/// disk tier reads what a previous run stored (it is warm after a restart), off the async
/// threads.
async fn open_cache(config: &Config) -> Result<Cache, EdgeError> {
    let storage = config.server.cache;
    if storage.disk_bytes == 0 {
        return Ok(Cache::new(storage.memory_bytes));
    }
    let dir = config.server.data_dir.join("cache");
    let path = dir.display().to_string();
    let opened =
        tokio::task::spawn_blocking(move || cache::disk::DiskTier::open(&dir, storage.disk_bytes))
            .await
            .map_err(EdgeError::CacheDiskTask)?;
    let disk = opened.map_err(|error| EdgeError::CacheDisk { path, error })?;
    tracing::info!(
        objects = disk.len(),
        bytes = disk.used_bytes(),
        "cache disk tier open"
    );
    Ok(Cache::with_disk(storage.memory_bytes, Some(disk)))
}

/// A running edge.
pub struct Edge {
    state: Arc<EdgeState>,
    guard: Arc<ConnGuard>,
    upstreams: UpstreamRegistry,
    limiters: LimiterRegistry,
    protections: ProtectionRegistry,
    tls: TlsShared,
    shutdown: watch::Sender<bool>,
    generation: AtomicU64,
    /// One swap at a time: a reload and a change must not both build on the same snapshot.
    swaps: std::sync::Mutex<()>,
    source: String,
    started_with: ServerSettings,
    addrs: Vec<(ListenerKind, SocketAddr)>,
    admin_addr: SocketAddr,
    /// Answers the admin listener's requests once the control plane installs it.
    admin_handler: Arc<std::sync::OnceLock<crate::operator::admin::AdminHandler>>,
    /// The admin listener until [`Edge::serve_admin`] takes it.
    admin: std::sync::Mutex<Option<(TcpListener, watch::Receiver<bool>)>>,
}

impl Edge {
    /// Builds the first snapshot, binds every listener and starts serving. `source` names the
    /// configuration in errors (its file path).
    pub async fn start(config: Config, source: String) -> Result<Edge, EdgeError> {
        std::fs::create_dir_all(&config.server.data_dir).map_err(|e| EdgeError::DataDir {
            path: config.server.data_dir.display().to_string(),
            error: e,
        })?;
        let metrics = Metrics::new();
        let analytics = Arc::new(Analytics::new());
        let upstreams = UpstreamRegistry::default();
        let limiters = LimiterRegistry::default();
        let protections = ProtectionRegistry::default();
        let tls = TlsShared::new()?;
        let challenge_keys =
            load_challenge_keys(&config.server.data_dir).map_err(EdgeError::ChallengeKeys)?;
        let snapshot = Snapshot::build(
            &config,
            &BuildContext {
                upstreams: &upstreams,
                metrics: &metrics,
                analytics: &analytics,
                limiters: &limiters,
                protections: &protections,
                tls: &tls,
                challenge_keys: &challenge_keys,
                source: &source,
                generation: 1,
            },
        )?;
        let access_log = AccessLog::start(&config.server.access_log, Arc::clone(&metrics))
            .map_err(EdgeError::AccessLog)?;
        // Before any listener answers: SIGUSR1's default action ends the process, and logrotate
        // may send it at any time.
        let reopen_signal = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::user_defined1(),
        ) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot handle SIGUSR1: the access log cannot be reopened");
                None
            }
        };
        let cache = Arc::new(open_cache(&config).await?);
        let events = Arc::new(EventRing::new(config.shield.events));
        let state = Arc::new(EdgeState::new(
            snapshot, access_log, metrics, cache, events, analytics,
        ));
        let guard = ConnGuard::new();
        let (shutdown, shutdown_rx) = watch::channel(false);

        let mut addrs = Vec::new();
        let wanted = config
            .server
            .listen
            .iter()
            .map(|a| (ListenerKind::Http, *a))
            .chain(
                config
                    .server
                    .listen_tls
                    .iter()
                    .map(|a| (ListenerKind::Https, *a)),
            );
        let mut listeners = Vec::new();
        for (kind, addr) in wanted {
            let socket = listener::bind(addr).map_err(|e| EdgeError::Bind {
                addr,
                kind: kind.label(),
                error: e,
            })?;
            let local = socket.local_addr().unwrap_or(addr);
            addrs.push((kind, local));
            listeners.push((kind, socket));
        }
        let admin = listener::bind(config.server.admin).map_err(|e| EdgeError::Bind {
            addr: config.server.admin,
            kind: "admin",
            error: e,
        })?;
        let admin_addr = admin.local_addr().unwrap_or(config.server.admin);

        for (kind, socket) in listeners {
            tokio::spawn(listener::accept_loop(
                socket,
                kind,
                Arc::clone(&state),
                Arc::clone(&guard),
                shutdown_rx.clone(),
            ));
        }
        tokio::spawn(crate::operator::purge_api::lurker(
            Arc::clone(&state.cache),
            Arc::clone(&state.purge_wake),
        ));
        tokio::spawn(crate::attack_watch::watch_attacks(
            Arc::clone(&state),
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::cpu_watch::watch_cpu(
            Arc::clone(&state),
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::access_log::upkeep(
            state.access_log.clone(),
            reopen_signal,
            shutdown_rx.clone(),
        ));
        for (kind, addr) in &addrs {
            tracing::info!(kind = %kind.label(), addr = %addr, "listening");
        }

        Ok(Edge {
            state,
            guard,
            upstreams,
            limiters,
            protections,
            tls,
            shutdown,
            generation: AtomicU64::new(1),
            swaps: std::sync::Mutex::new(()),
            source,
            started_with: config.server,
            addrs,
            admin_addr,
            admin_handler: Arc::default(),
            admin: std::sync::Mutex::new(Some((admin, shutdown_rx))),
        })
    }

    /// Starts answering on the admin listener (bound by [`Edge::start`], so its address is
    /// known and a port conflict fails the start). Called once the control plane has
    /// installed its handler, so the API never answers half-ready; a second call does nothing.
    pub fn serve_admin(&self) {
        let taken = self.admin.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((listener, shutdown)) = taken {
            tokio::spawn(crate::operator::admin::serve(
                listener,
                Arc::clone(&self.state),
                Arc::clone(&self.admin_handler),
                Arc::clone(&self.guard),
                shutdown,
            ));
            tracing::info!(kind = %"admin", addr = %self.admin_addr, "listening");
        }
    }

    /// Bound addresses of the HTTP and HTTPS listeners (useful with port 0).
    pub fn listen_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.addrs.iter().map(|(k, a)| (k.label(), *a)).collect()
    }

    /// The admin listener's bound address (useful with port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Tells `hook` each time this edge's attack detection switches a site's automatic
    /// under-attack mode on or off (a cluster shares it with its other edges). Set once.
    pub fn set_attack_hook(&self, hook: crate::state::AttackHook) {
        if self.state.attack_hook.set(hook).is_err() {
            tracing::warn!("an attack hook is already installed");
        }
    }

    /// Holds `site` under attack because another edge of the cluster detected one (`true`),
    /// or lets it go (`false`). Returns whether the site exists here. Logged on each switch.
    pub fn hold_for_cluster(&self, site: &str, held: bool) -> bool {
        let snapshot = self.state.snapshot.load();
        let Some(runtime) = snapshot.sites.by_name(site) else {
            return false;
        };
        if runtime.protection.hold_for_cluster(held) != held {
            tracing::warn!(
                site,
                "under-attack mode {} by the cluster (another edge {})",
                if held { "on" } else { "off" },
                if held {
                    "detected an attack"
                } else {
                    "saw it end"
                }
            );
        }
        true
    }

    /// The sites this edge's attack detection holds under attack now.
    pub fn attacked_sites(&self) -> Vec<String> {
        // A site under attack has traffic: the busy list holds it.
        self.state
            .busy
            .listed()
            .into_iter()
            .filter(|(_, protection)| protection.attack.under_attack())
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The rate limits' counting state: a cluster node activates its sharing and sends the
    /// `scope = "cluster"` limits' counts to the other edges.
    pub fn limiters(&self) -> &LimiterRegistry {
        &self.limiters
    }

    /// The edge's metrics (`/metrics`); other parts add sections of their own to them.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.state.metrics
    }

    /// Per-site, per-minute analytics: the control plane calls
    /// [`Analytics::take_finished`](analytics::Analytics::take_finished) once a minute.
    pub fn analytics(&self) -> &Arc<Analytics> {
        &self.state.analytics
    }

    /// Swaps in a snapshot built from `config`. Requests in flight keep the snapshot they
    /// started with. On error nothing changes and the error names what is wrong.
    /// Listener addresses, the data directory and the access-log target apply at start only.
    pub fn reload(&self, config: &Config) -> Result<u64, ReloadError> {
        let _one_swap = self.swaps.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        // Read again at every reload: `palisade keys rotate` takes effect this way.
        let keys = load_challenge_keys(&self.started_with.data_dir);
        let built = keys
            .map_err(ReloadError::ChallengeKeys)
            .and_then(|challenge_keys| {
                Ok(Snapshot::build(
                    config,
                    &self.build_context(&challenge_keys, generation),
                )?)
            });
        let snapshot = match built {
            Ok(snapshot) => snapshot,
            Err(e) => {
                self.state
                    .metrics
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let s = &self.started_with;
        let n = &config.server;
        if s.listen != n.listen
            || s.listen_tls != n.listen_tls
            || s.admin != n.admin
            || s.data_dir != n.data_dir
            || s.access_log != n.access_log
            || s.workers != n.workers
        {
            tracing::warn!(
                "listen, listen_tls, admin, data_dir, access_log and workers changes take effect at the next restart"
            );
        }
        if config.sites.is_empty() {
            tracing::warn!("the new configuration has no sites: every request will get 421");
        }
        self.swap_in(snapshot, generation);
        Ok(generation)
    }

    /// Puts `snapshot` in force as generation `generation`.
    fn swap_in(&self, mut snapshot: Snapshot, generation: u64) {
        snapshot.generation = generation;
        self.state.snapshot.store(Arc::new(snapshot));
        self.generation.store(generation, Ordering::Relaxed);
        self.state
            .metrics
            .reloads_ok
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The snapshot running now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.snapshot.load_full()
    }

    /// Builds what the running snapshot becomes with `changes` (only the sites they name; see
    /// [`Snapshot::apply`]) without putting it in force: the control plane checks a change
    /// this way before it commits it, then [`Edge::install`]s it.
    pub fn prepare(&self, changes: Vec<SiteChange>) -> Result<PreparedChange, ReloadError> {
        let current = self.state.snapshot.load_full();
        let snapshot = current
            .apply(&changes, &self.build_context(&current.challenge_keys, 0))
            .inspect_err(|_| {
                self.state
                    .metrics
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
            })?;
        Ok(PreparedChange {
            snapshot,
            built_on: current,
            changes,
        })
    }

    /// Puts a prepared change in force and returns its generation. When another snapshot came
    /// in since it was prepared, the change is built again on that one; should that fail (the
    /// other snapshot made it impossible), the edge keeps what it runs and says so.
    pub fn install(&self, prepared: PreparedChange) -> u64 {
        let _one_swap = self.swaps.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let current = self.state.snapshot.load_full();
        let snapshot = if Arc::ptr_eq(&current, &prepared.built_on) {
            prepared.snapshot
        } else {
            let ctx = self.build_context(&current.challenge_keys, generation);
            match current.apply(&prepared.changes, &ctx) {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    tracing::error!("a change no longer applies to the running snapshot: {e}");
                    self.state
                        .metrics
                        .reloads_failed
                        .fetch_add(1, Ordering::Relaxed);
                    return generation - 1;
                }
            }
        };
        self.swap_in(snapshot, generation);
        generation
    }

    /// [`Edge::prepare`] and [`Edge::install`] in one step.
    pub fn apply(&self, changes: Vec<SiteChange>) -> Result<u64, ReloadError> {
        let prepared = self.prepare(changes)?;
        Ok(self.install(prepared))
    }

    fn build_context<'a>(
        &'a self,
        challenge_keys: &'a Arc<ChallengeKeys>,
        generation: u64,
    ) -> BuildContext<'a> {
        BuildContext {
            upstreams: &self.upstreams,
            metrics: &self.state.metrics,
            analytics: &self.state.analytics,
            limiters: &self.limiters,
            protections: &self.protections,
            tls: &self.tls,
            challenge_keys,
            source: &self.source,
            generation,
        }
    }

    /// Hands every admin request to `handler` from now on (the control plane's API). Only the
    /// first call takes effect.
    pub fn set_admin_handler(&self, handler: crate::operator::admin::AdminHandler) {
        if self.admin_handler.set(handler).is_err() {
            tracing::warn!("an admin handler is already installed");
        }
    }

    /// The edge's own admin endpoints (`/metrics`, `/healthz`), for the control plane to
    /// answer with after it has decided who may see them.
    pub async fn admin_builtin<B>(
        &self,
        request: http::Request<B>,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        crate::operator::admin::answer(request, &self.state, &self.guard).await
    }

    /// The ring of security events (a cluster names its node in it and adds other nodes').
    pub fn event_ring(&self) -> &Arc<shield::events::EventRing> {
        &self.state.events
    }

    /// The newest security events `query` selects, newest first.
    pub fn security_events(
        &self,
        query: &shield::events::EventQuery<'_>,
    ) -> Vec<shield::events::SecurityEvent> {
        self.state.events.recent(query)
    }

    /// The mitigations derived from attack signatures in force on `site`; `None` when the
    /// edge runs no such site.
    pub fn mitigations(&self, site: &str) -> Option<Vec<Arc<shield::signature::Mitigation>>> {
        let snapshot = self.state.snapshot.load();
        let site = snapshot.sites.by_name(site)?;
        Some(site.protection.signatures.mitigations())
    }

    /// Ends `site`'s mitigation `id` at an operator's word (it is not proposed again while
    /// this attack lasts); returns it, or `None` when no such site or mitigation is in force.
    pub fn dismiss_mitigation(
        &self,
        site: &str,
        id: &str,
    ) -> Option<Arc<shield::signature::Mitigation>> {
        let snapshot = self.state.snapshot.load();
        let site = snapshot.sites.by_name(site)?;
        let change = site.protection.signatures.dismiss(id)?;
        self.state.report_signature(site, &change);
        match change {
            shield::signature::SignatureChange::Ended { mitigation, .. } => Some(mitigation),
            _ => None,
        }
    }

    /// Purges `site`'s cached responses by the JSON selector `body` (see `purge_api`): from
    /// the next request on nothing it selects is served as fresh; stored objects are walked in
    /// the background. The caller has read the body (at most
    /// [`MAX_PURGE_BODY_BYTES`](crate::MAX_PURGE_BODY_BYTES)) and decided who may purge.
    pub fn purge(
        &self,
        site: &str,
        body: &[u8],
    ) -> Result<crate::operator::purge_api::Purged, crate::operator::purge_api::PurgeError> {
        use crate::operator::purge_api::{PurgeError, Purged};
        let snapshot = self.state.snapshot.load();
        let Some(site) = snapshot.sites.by_name(site) else {
            return Err(PurgeError::NoSuchSite(site.to_string()));
        };
        let purge =
            crate::operator::purge_api::parse(&site.name, body).map_err(PurgeError::Invalid)?;
        let scope = format!("{:?}", purge.scope);
        let soft = purge.soft;
        let seq = self.state.cache.purge(purge);
        self.state.purge_wake.notify_one();
        tracing::info!(site = %site.name, %scope, soft, seq, "purge");
        Ok(Purged {
            site: site.name.to_string(),
            purge: seq,
            soft,
        })
    }

    /// The configuration's data directory, as the edge started with it.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.started_with.data_dir
    }

    /// Stops accepting, lets requests in flight finish for up to `grace`, writes the access
    /// log's buffered lines, and returns whether every connection closed in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + grace;
        let mut drained = true;
        while self.guard.open() > 0 {
            if Instant::now() >= deadline {
                tracing::warn!(
                    open = self.guard.open(),
                    "grace period over; closing remaining connections"
                );
                drained = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !self.state.access_log.flush(ACCESS_LOG_EXIT_FLUSH).await {
            tracing::warn!(
                "the access log's last lines could not be written within {ACCESS_LOG_EXIT_FLUSH:?}"
            );
        }
        drained
    }

    /// Installs (or replaces) where the abuse intake hands the reports it takes
    /// (`/.well-known/palisade/abuse`). Until one is installed, reports are refused with 503.
    pub fn set_report_sink(&self, sink: Arc<dyn crate::abuse_intake::ReportSink>) {
        self.state.abuse.set_sink(sink);
    }

    /// The configured shutdown grace of the current snapshot.
    pub fn shutdown_grace(&self) -> Duration {
        self.state.snapshot.load().limits.shutdown_grace
    }
}

/// How long shutdown waits for the access log's buffered lines to be written: a blocked stdout
/// pipe must not keep the process from exiting.
const ACCESS_LOG_EXIT_FLUSH: Duration = Duration::from_secs(2);

/// Checks everything a start would check short of binding sockets: that every certificate and
/// key loads and every origin is well-formed.
pub async fn validate(config: &Config, source: &str) -> Result<(), EdgeError> {
    check(config, source)
}

/// [`validate`] without the async: it reads certificate files but waits on nothing else, so
/// the control plane calls it from its blocking thread before it commits a change.
pub fn check(config: &Config, source: &str) -> Result<(), EdgeError> {
    let metrics = Metrics::new();
    let upstreams = UpstreamRegistry::default();
    let tls = TlsShared::new()?;
    // A check reads no key file (and makes none): any key builds the same snapshot.
    let challenge_keys = Arc::new(ChallengeKeys::ephemeral().map_err(EdgeError::CheckKeys)?);
    Snapshot::build(
        config,
        &BuildContext {
            upstreams: &upstreams,
            metrics: &metrics,
            analytics: &Analytics::new(),
            limiters: &LimiterRegistry::default(),
            protections: &ProtectionRegistry::default(),
            tls: &tls,
            challenge_keys: &challenge_keys,
            source,
            generation: 0,
        },
    )
    .map(|_| ())
    .map_err(EdgeError::Snapshot)
}

/// The challenge's signing keys from the data directory, made on first start.
fn load_challenge_keys(data_dir: &std::path::Path) -> Result<Arc<ChallengeKeys>, KeyError> {
    ChallengeKeys::load_or_create(data_dir).map(Arc::new)
}

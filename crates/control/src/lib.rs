//! The control plane: the operator's side of Palisade.
//!
//! It owns the authoritative state (sites the API manages, suspensions, API tokens, the
//! hash-chained audit log, abuse reports, analytics rollups) in one SQLite file in the data
//! directory, serves the admin API on the admin listener, and turns every accepted change into
//! a new snapshot for the edge. It is not on a request's path: the edge reads only its snapshot
//! and hands abuse reports and analytics over through narrow hooks.
//!
//! ## Invariants (each pinned by a named test)
//! 1. Every `/api/` route passes one gate before it does anything: the token (401), the scope
//!    its operation names in the OpenAPI document (403), its query parsed once against the
//!    parameters the document declares (400: given twice however spelled, undeclared,
//!    malformed). A route the document lacks is not served. (`api::query::tests::*`,
//!    `api::openapi::tests::the_gate_reads_scopes_and_query_parameters_from_the_document`;
//!    black-box `every_operation_under_every_credential_keeps_a_site_limited_token_inside_its_site`.)
//! 2. A token limited to sites never reads, changes or learns of another site: 403 for a route,
//!    `site=` or `target=site:` naming it (without repeating the name), 404 for a report of it
//!    or of none (as for a missing one, to `GET` and `PATCH`), listings and events held to its
//!    sites, and a suspension cites only reports it reaches. (black-box
//!    `every_operation_under_every_credential_keeps_a_site_limited_token_inside_its_site`,
//!    `a_site_named_twice_or_percent_encoded_in_a_query_is_refused_not_read_two_ways`,
//!    `a_report_out_of_a_tokens_reach_is_404_to_get_and_patch_alike`,
//!    `a_suspension_by_a_limited_token_cites_only_its_own_sites_reports_and_cannot_probe_others`.)
//! 3. A token limited to sites gives its sites only host names under those they hold.
//!    (`claims::tests::*`; black-box
//!    `a_limited_token_claims_only_names_under_those_its_sites_already_hold`.)
//! 4. `/metrics` shows every site: without a token only to a peer in `metrics_open_to`, on a
//!    request no proxy relayed. (black-box
//!    `metrics_are_open_without_a_token_only_to_the_networks_metrics_open_to_names`,
//!    `by_default_metrics_are_open_to_loopback_only_on_a_loopback_listener_and_never_to_relayed_requests`.)
//! 5. Errors quote what was sent cut short and name no server path: a file site's file by its
//!    base name, store and disk failures only in the log. (`model::shown::tests::*`; black-box
//!    `errors_name_the_configuration_file_by_its_base_name_and_cut_what_they_echo`.)

pub mod analytics;
pub mod api;
pub mod bootstrap;
pub mod claims;
pub mod cluster_view;
pub mod documents;
pub mod intake;
pub mod plane;
pub mod replica;
pub mod store;

pub use plane::{BaseConfig, ControlPlane, ReloadError};

use std::sync::Arc;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {error}")]
    /// The data directory could not be created.
    DataDir {
        /// The directory.
        path: String,
        /// The operating system's refusal.
        error: std::io::Error,
    },
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The first admin token could not be made.
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    /// The stored sites conflict with the configuration (a name or host both claim).
    #[error("the store's sites do not fit the configuration: {0}")]
    Compose(plane::ChangeError),
    /// The edge could not start.
    #[error(transparent)]
    Edge(#[from] edge::EdgeError),
}

/// Opens the store in the data directory, makes the first admin token if there is none
/// (printing it once), starts the edge on the base composed with the store (so the edge's
/// first request already sees every stored site and suspension), and takes over the admin
/// listener, the abuse intake and analytics.
///
/// ```no_run
/// # async fn run(config: model::Config) -> Result<(), control::StartError> {
/// let base = control::BaseConfig::from_flags(config, "--origin".into());
/// let (edge, plane) = control::start(base).await?;
/// # Ok(()) }
/// ```
pub async fn start(base: BaseConfig) -> Result<(Arc<edge::Edge>, Arc<ControlPlane>), StartError> {
    start_sealed(base, None).await
}

/// [`start`] on a cluster's control node: `sealer` seals the private keys its edges are sent.
pub async fn start_sealed(
    base: BaseConfig,
    sealer: Option<replica::Sealer>,
) -> Result<(Arc<edge::Edge>, Arc<ControlPlane>), StartError> {
    let data_dir = base.config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|error| StartError::DataDir {
        path: data_dir.display().to_string(),
        error,
    })?;
    let store = tokio::task::spawn_blocking(move || store::Store::open(&data_dir))
        .await
        .map_err(|e| store::StoreError::Task(e.to_string()))??;
    let from_env = std::env::var(bootstrap::BOOTSTRAP_ENV).ok();
    match bootstrap::ensure_admin_token(&store, from_env)? {
        bootstrap::Bootstrap::Existing => {}
        bootstrap::Bootstrap::FromEnvironment => tracing::info!(
            "admin token created from {}; only its hash is kept",
            bootstrap::BOOTSTRAP_ENV
        ),
        bootstrap::Bootstrap::Generated(secret) => {
            // Printed once, on stdout (the log goes to stderr): the store keeps only its hash.
            println!("admin token (shown once; only its hash is kept): {secret}");
            tracing::warn!("first start: an admin token was printed on stdout; keep it safe");
        }
    }
    let config = store
        .with(|conn| {
            let tx = conn.transaction().map_err(store::StoreError::from)?;
            plane::compose(&base, &tx)
        })
        .map_err(StartError::Compose)?;
    let retention = base.config.server.analytics_retention;
    let edge = Arc::new(edge::Edge::start(config, base.source.clone()).await?);
    let plane = ControlPlane::new(store.clone(), Arc::clone(&edge), base, sealer);
    // A cluster's edges load this start's snapshot: the base may have changed meanwhile.
    plane.resync_edges().await.map_err(StartError::Compose)?;
    edge.set_admin_handler(api::admin_handler(Arc::clone(&plane)));
    edge.set_report_sink(Arc::new(intake::StoreSink { store }));
    edge.serve_admin();
    tokio::spawn(analytics::collect(Arc::clone(&plane), retention));
    Ok((edge, plane))
}

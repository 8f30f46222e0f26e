//! The control plane: the operator's side of Palisade.
//!
//! It owns the authoritative state (sites the API manages, suspensions, API tokens, the
//! hash-chained audit log, abuse reports, analytics rollups) in one SQLite file in the data
//! directory, serves the admin API on the admin listener, and turns every accepted change into
//! a new snapshot for the edge. It is not on a request's path: the edge reads only its snapshot
//! and hands abuse reports and analytics over through narrow hooks.

pub mod analytics;
pub mod api;
pub mod bootstrap;
pub mod documents;
pub mod intake;
pub mod plane;
pub mod store;

pub use plane::{BaseConfig, ControlPlane};

use std::sync::Arc;
use std::time::Duration;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("the store's sites do not fit the configuration: {0}")]
    Compose(String),
}

/// Opens the store in the edge's data directory, makes the first admin token if there is
/// none (printing it once), swaps in the composed configuration, and takes over the admin
/// listener, the abuse intake and analytics.
///
/// ```no_run
/// # async fn run(edge: std::sync::Arc<edge::Edge>, config: model::Config) -> Result<(), control::StartError> {
/// let base = control::BaseConfig::from_flags(config, "--origin".into());
/// let plane = control::start(edge, base, std::time::Duration::from_secs(7 * 86400)).await?;
/// # Ok(()) }
/// ```
pub async fn start(
    edge: Arc<edge::Edge>,
    base: BaseConfig,
    analytics_retention: Duration,
) -> Result<Arc<ControlPlane>, StartError> {
    let data_dir = edge.data_dir().to_path_buf();
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
    let plane =
        ControlPlane::start(store.clone(), Arc::clone(&edge), base).map_err(StartError::Compose)?;
    edge.set_admin_handler(api::admin_handler(Arc::clone(&plane)));
    edge.set_report_sink(Arc::new(intake::StoreSink { store }));
    tokio::spawn(analytics::collect(Arc::clone(&plane), analytics_retention));
    Ok(plane)
}

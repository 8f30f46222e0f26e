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

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {error}")]
    DataDir { path: String, error: std::io::Error },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("the store's sites do not fit the configuration: {0}")]
    Compose(String),
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
        .map_err(|e| StartError::Compose(e.to_string()))?;
    let retention = base.config.server.analytics_retention;
    let edge = Arc::new(edge::Edge::start(config, base.source.clone()).await?);
    let plane = ControlPlane::new(store.clone(), Arc::clone(&edge), base);
    edge.set_admin_handler(api::admin_handler(Arc::clone(&plane)));
    edge.set_report_sink(Arc::new(intake::StoreSink { store }));
    edge.serve_admin();
    tokio::spawn(analytics::collect(Arc::clone(&plane), retention));
    Ok((edge, plane))
}

//! What the control plane asks of its cluster, when it is a cluster's control node: the nodes
//! and the versions they run (`GET /api/edges`), and waiting until every connected edge has
//! applied a version (`?wait=applied`). The cluster crate answers; a node alone has none.

use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, for a trait object's async methods.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long `?wait=applied` waits for the edges before answering 504.
pub const APPLIED_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster as the control plane sees it.
pub trait ClusterView: Send + Sync {
    /// Every node that has sent a heartbeat, as `GET /api/edges` shows it.
    fn nodes(&self) -> Boxed<'_, Result<Vec<Value>, String>>;

    /// Waits (up to `timeout`) until every connected edge runs `version` or later. `Ok`
    /// with how many edges run it; `Err` with the names of those that did not in time.
    fn wait_applied(
        &self,
        version: u64,
        timeout: Duration,
    ) -> Boxed<'_, Result<usize, Vec<String>>>;
}

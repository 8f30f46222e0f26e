//! What a node knows of its place in the cluster, for `/metrics`, heartbeats and the API.

use crate::envelope::Refused;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Versions whose publication times the control node remembers, for the lag it shows.
const REMEMBERED: usize = 10_000;

/// Shared by the node's cluster tasks and its metrics.
#[derive(Default)]
pub struct Status {
    connected: AtomicBool,
    version: AtomicU64,
    /// The control node's run whose versions these are.
    epoch: AtomicU64,
    /// Unix milliseconds when the node last heard from Redis.
    heard_ms: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
    /// Woken when the node applies a version (its heartbeat goes out at once).
    applied: tokio::sync::Notify,
    /// On the control node: when recent versions were published, oldest first.
    published: Mutex<VecDeque<(u64, u64)>>,
}

impl Status {
    /// Connected to Redis or not.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected {
            self.heard();
        }
    }

    /// Whether the node is connected to Redis now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Redis answered.
    pub fn heard(&self) {
        self.heard_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The configuration version the node runs.
    pub fn set_version(&self, version: u64) {
        self.version.store(version, Ordering::Relaxed);
        self.applied.notify_one();
    }

    /// The control node's run whose versions the node runs (on the control node, its own).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Sets [`Status::epoch`].
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// Waits until the node applies a version.
    pub async fn applied(&self) {
        self.applied.notified().await;
    }

    /// On the control node: `version` was published now.
    pub fn published(&self, version: u64) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if published.back().is_some_and(|(v, _)| *v >= version) {
            return;
        }
        if published.len() == REMEMBERED {
            published.pop_front();
        }
        published.push_back((version, now_ms()));
    }

    /// On the control node: when the first version after `version` was published (Unix
    /// milliseconds), if it is remembered; the age of what a node lacks.
    pub fn published_after(&self, version: u64) -> Option<u64> {
        let published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        published
            .iter()
            .find(|(v, _)| *v > version)
            .map(|(_, at)| *at)
    }

    /// The configuration version the node runs.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// A message refused, for `reason`.
    pub fn refused(&self, reason: Refused) {
        let i = Refused::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = reason.as_str(), "cluster message refused");
    }

    /// Messages refused so far, by reason.
    pub fn refused_count(&self, reason: Refused) -> u64 {
        let i = Refused::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.refused[i].load(Ordering::Relaxed)
    }

    /// How far behind the cluster this node may be: 0 while connected (it follows within a
    /// read), else the seconds since it last heard from Redis (0 if it never has).
    pub fn lag_seconds(&self) -> f64 {
        let heard = self.heard_ms.load(Ordering::Relaxed);
        if heard == 0 || self.connected() {
            return 0.0;
        }
        now_ms().saturating_sub(heard) as f64 / 1000.0
    }

    /// The Prometheus lines of the `palisade_cluster_*` metrics.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP palisade_cluster_connected 1 while this node is connected to the cluster's Redis.\n\
             # TYPE palisade_cluster_connected gauge\n\
             palisade_cluster_connected {}",
            u8::from(self.connected())
        );
        let _ = writeln!(
            out,
            "# HELP palisade_cluster_config_version The configuration version this node runs.\n\
             # TYPE palisade_cluster_config_version gauge\n\
             palisade_cluster_config_version {}",
            self.version()
        );
        let _ = writeln!(
            out,
            "# HELP palisade_cluster_lag_seconds How far behind the cluster this node may be: 0 while connected, else seconds since it last heard from Redis.\n\
             # TYPE palisade_cluster_lag_seconds gauge\n\
             palisade_cluster_lag_seconds {:.3}",
            self.lag_seconds()
        );
        out.push_str(
            "# HELP palisade_cluster_messages_refused_total Cluster messages refused, by reason (a forged or damaged message is never applied).\n\
             # TYPE palisade_cluster_messages_refused_total counter\n",
        );
        for reason in Refused::ALL {
            let _ = writeln!(
                out,
                "palisade_cluster_messages_refused_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.refused_count(reason)
            );
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

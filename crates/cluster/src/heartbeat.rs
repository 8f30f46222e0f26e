//! Heartbeats: each node says, every second and at once after applying a version, what it is
//! and what it runs; the control node reads them all for `GET /api/edges` and to know when
//! every edge has applied a change (`?wait=applied`).

use crate::envelope::Envelope;
use crate::link::{self, NODES_KEY};
use crate::secret::Keys;
use crate::status::{Status, now_ms};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How often a node sends one when nothing changes.
pub const EVERY: Duration = Duration::from_secs(1);

/// A node whose last heartbeat is older than this is shown as not connected (and not waited
/// for by `?wait=applied`).
pub const STALE: Duration = Duration::from_secs(5);

/// The message kind of a heartbeat.
pub const KIND: &str = "heartbeat";

/// What a heartbeat says (the envelope carries the node's name and its configuration version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    /// `control` or `edge`.
    pub role: String,
    /// The Palisade version it runs.
    pub software: String,
    /// When the process started, Unix milliseconds.
    pub started_at: u64,
    /// When this heartbeat was sent, Unix milliseconds.
    pub at: u64,
    /// Requests answered since it started.
    pub requests_total: u64,
    /// Requests answered per second since the previous heartbeat.
    pub requests_per_second: f64,
}

/// Sends this node's heartbeats for as long as the process runs.
pub struct Heart {
    /// This node's name.
    pub node: String,
    /// `control` or `edge`.
    pub role: &'static str,
    /// The cluster's keys.
    pub keys: Arc<Keys>,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// The version it runs, and the signal that it applied one.
    pub status: Arc<Status>,
    /// The edge whose requests it counts.
    pub edge: Arc<edge::Edge>,
}

impl Heart {
    /// Runs until the process ends.
    pub async fn run(self) {
        let started_at = now_ms();
        let mut last = (started_at, self.edge.metrics().requests_total());
        let mut wait = link::MIN_BACKOFF;
        loop {
            let mut con =
                link::connect_retrying(&self.client, link::RESPONSE_TIMEOUT, &mut wait).await;
            loop {
                let now = now_ms();
                let total = self.edge.metrics().requests_total();
                let seconds = now.saturating_sub(last.0) as f64 / 1000.0;
                let beat = Beat {
                    role: self.role.to_string(),
                    software: env!("CARGO_PKG_VERSION").to_string(),
                    started_at,
                    at: now,
                    requests_total: total,
                    requests_per_second: if seconds > 0.0 {
                        total.saturating_sub(last.1) as f64 / seconds
                    } else {
                        0.0
                    },
                };
                last = (now, total);
                let body = serde_json::to_vec(&beat).expect("a heartbeat serialises");
                let sealed = Envelope::new(KIND, &self.node, self.status.version(), body)
                    .in_epoch(self.status.epoch())
                    .seal(&self.keys);
                let sent: redis::RedisResult<()> = redis::cmd("HSET")
                    .arg(NODES_KEY)
                    .arg(&self.node)
                    .arg(sealed)
                    .query_async(&mut con)
                    .await;
                if sent.is_err() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = self.status.applied() => {}
                }
            }
            link::back_off(&mut wait).await;
        }
    }
}

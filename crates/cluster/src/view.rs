//! The control node's view of its cluster, read from the heartbeats: `GET /api/edges` and
//! `?wait=applied`.

use crate::envelope::Envelope;
use crate::heartbeat::{self, Beat};
use crate::link::{self, NODES_KEY};
use crate::secret::Keys;
use crate::status::{Status, now_ms};
use control::cluster_view::{Boxed, ClusterView};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often `?wait=applied` reads the heartbeats while it waits.
const WAIT_POLL: Duration = Duration::from_millis(5);

/// One node as its last heartbeat shows it.
#[derive(Debug, Clone)]
pub struct NodeBeat {
    /// Its name.
    pub node: String,
    /// The version it ran then.
    pub version: u64,
    /// The control node's run that numbered it.
    pub epoch: u64,
    /// What it said.
    pub beat: Beat,
}

impl NodeBeat {
    /// Whether its heartbeat is recent enough to count it as connected.
    pub fn connected(&self, now: u64) -> bool {
        now.saturating_sub(self.beat.at) <= heartbeat::STALE.as_millis() as u64
    }
}

/// The control node's view.
pub struct View {
    /// The cluster's keys.
    pub keys: Arc<Keys>,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// The control node's status (its version, when versions were published).
    pub status: Arc<Status>,
    /// The connection, made at first use and again after a failure.
    pub con: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl View {
    /// Every heartbeat that verifies (the others are refused and counted).
    pub async fn beats(&self) -> Result<Vec<NodeBeat>, redis::RedisError> {
        let mut slot = self.con.lock().await;
        let con = match slot.as_mut() {
            Some(con) => con,
            None => slot.insert(link::connect(&self.client, link::RESPONSE_TIMEOUT).await?),
        };
        let all: Result<Vec<(String, Vec<u8>)>, _> =
            redis::cmd("HGETALL").arg(NODES_KEY).query_async(con).await;
        let all = match all {
            Ok(all) => all,
            Err(e) => {
                *slot = None;
                return Err(e);
            }
        };
        let mut beats = Vec::with_capacity(all.len());
        for (node, bytes) in all {
            let message = match Envelope::open(&bytes, &self.keys) {
                Ok(m) if m.kind == heartbeat::KIND && m.node == node => m,
                Ok(_) => {
                    self.status.refused(crate::envelope::Refused::Unexpected);
                    continue;
                }
                Err(reason) => {
                    self.status.refused(reason);
                    continue;
                }
            };
            let Ok(beat) = serde_json::from_slice::<Beat>(&message.body) else {
                self.status.refused(crate::envelope::Refused::Body);
                continue;
            };
            beats.push(NodeBeat {
                node,
                version: message.version,
                epoch: message.epoch,
                beat,
            });
        }
        beats.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(beats)
    }
}

impl ClusterView for View {
    fn nodes(&self) -> Boxed<'_, Result<Vec<Value>, String>> {
        Box::pin(async move {
            let beats = self.beats().await.map_err(|e| e.to_string())?;
            let now = now_ms();
            let latest = self.status.version();
            let epoch = self.status.epoch();
            Ok(beats
                .into_iter()
                .map(|b| {
                    // Versions of another run of the control node are all behind.
                    let behind = match b.epoch == epoch {
                        true => latest.saturating_sub(b.version),
                        false => latest.max(1),
                    };
                    let lag_seconds = match behind {
                        0 => 0.0,
                        _ => self
                            .status
                            .published_after(if b.epoch == epoch { b.version } else { 0 })
                            .map_or(0.0, |at| now.saturating_sub(at) as f64 / 1000.0),
                    };
                    json!({
                        "node": b.node,
                        "role": b.beat.role,
                        "version": b.beat.software,
                        "config_version": b.version,
                        "lag_versions": behind,
                        "lag_seconds": lag_seconds,
                        "last_heartbeat": b.beat.at,
                        "requests_per_second": (b.beat.requests_per_second * 10.0).round() / 10.0,
                        "connected": b.connected(now),
                    })
                })
                .collect())
        })
    }

    fn wait_applied(
        &self,
        version: u64,
        timeout: Duration,
    ) -> Boxed<'_, Result<usize, Vec<String>>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            // The edges connected now are the ones waited for: one that hangs meanwhile is
            // named in the answer, not dropped from the wait.
            let mut waiting: Option<Vec<String>> = None;
            loop {
                let beats = self.beats().await.unwrap_or_default();
                let now = now_ms();
                let edges = waiting.get_or_insert_with(|| {
                    beats
                        .iter()
                        .filter(|b| b.beat.role == "edge" && b.connected(now))
                        .map(|b| b.node.clone())
                        .collect()
                });
                let behind: Vec<String> = edges
                    .iter()
                    .filter(|node| {
                        beats
                            .iter()
                            .find(|b| b.node == **node)
                            .is_none_or(|b| b.epoch != self.status.epoch() || b.version < version)
                    })
                    .cloned()
                    .collect();
                if behind.is_empty() {
                    return Ok(edges.len());
                }
                if Instant::now() >= deadline {
                    return Err(behind);
                }
                tokio::time::sleep(WAIT_POLL).await;
            }
        })
    }
}

//! What edges send the control node: abuse reports taken at their intakes, stored once in the
//! control node's store; their security events, which the control node's `GET /api/events`
//! shows with the node named; and their finished analytics minutes, which its
//! `GET /api/sites/{site}/analytics` adds up for the cluster and shows per edge.
//!
//! An edge signs each message and puts it in its spool; a sender moves the spool onto the
//! `palisade:uplink` stream whenever Redis is reachable (the spool is bounded: past
//! [`SPOOL_LIMIT`] the oldest message goes, counted in `palisade_cluster_spool_dropped_total`).
//! The control node reads the stream as the consumer group `control` and acknowledges a
//! message once it is stored, so one is not lost to a control node that stops halfway; a
//! report carries the receipt its edge gave it, so one delivered twice is stored once.
//!
//! A reporter at an edge gets the stored report's number when the control node answers within
//! [`REPLY_WAIT`] (it pushes the id to `palisade:reply:RECEIPT`); otherwise a 202 saying the
//! report is on its way.

use crate::envelope::{Envelope, Refused};
use crate::link;
use crate::secret::Keys;
use crate::status::Status;
use edge::{Receipt, ReportSink, SubmitFuture};
use model::NewReport;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The stream edges send on.
pub const UPLINK_KEY: &str = "palisade:uplink";
/// The consumer group (and consumer) the control node reads it as.
pub const GROUP: &str = "control";
/// Messages the stream keeps (about): acknowledged ones are only history.
const UPLINK_KEEP: u64 = 100_000;
/// Messages an edge holds while Redis is away.
pub const SPOOL_LIMIT: usize = 10_000;
/// How long a reporter waits for the control node's number for the report.
pub const REPLY_WAIT: Duration = Duration::from_secs(3);
/// How long an answered number waits in Redis for its edge to read it.
const REPLY_KEEP_SECS: u64 = 60;
/// The message kind of a report.
pub const KIND_REPORT: &str = "report";
/// The message kind of a batch of security events.
pub const KIND_EVENTS: &str = "events";
/// How often an edge sends the security events its ring took since the last batch.
pub const EVENTS_EVERY: Duration = Duration::from_millis(500);
/// The most events a batch carries (a flood's events beyond it stay in the edge's own ring).
pub const EVENTS_PER_BATCH: usize = 1_000;

/// The message kind of a batch of finished analytics minutes.
pub const KIND_ANALYTICS: &str = "analytics";
/// How often an edge sends its finished minutes (as often as the control node collects its
/// own).
pub const ANALYTICS_EVERY: Duration = control::analytics::COLLECT_EVERY;

/// A security event as it travels.
#[derive(Serialize, Deserialize)]
struct WireEvent {
    /// When the edge took it, Unix milliseconds.
    time: u64,
    site: String,
    client_ip: Option<std::net::IpAddr>,
    action: shield::events::EventAction,
    reason: shield::events::EventReason,
    rule_id: Option<String>,
    value: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct ReportMessage {
    receipt: String,
    report: NewReport,
}

fn reply_key(receipt: &str) -> String {
    format!("palisade:reply:{receipt}")
}

/// An edge's messages waiting for Redis.
#[derive(Default)]
pub struct Spool {
    queue: Mutex<VecDeque<Vec<u8>>>,
    ready: tokio::sync::Notify,
    dropped: AtomicU64,
    connected: AtomicBool,
}

impl Spool {
    fn push(&self, message: Vec<u8>) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= SPOOL_LIMIT {
                queue.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    limit = SPOOL_LIMIT,
                    "cluster: the spool is full; its oldest message was dropped"
                );
            }
            queue.push_back(message);
        }
        self.ready.notify_one();
    }

    fn front(&self) -> Option<Vec<u8>> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .cloned()
    }

    fn pop(&self) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
    }

    fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The `palisade_cluster_spool*` metrics.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP palisade_cluster_spooled Messages for the control node waiting for Redis.\n\
             # TYPE palisade_cluster_spooled gauge\n\
             palisade_cluster_spooled {}\n\
             # HELP palisade_cluster_spool_dropped_total Messages dropped because the spool was full.\n\
             # TYPE palisade_cluster_spool_dropped_total counter\n\
             palisade_cluster_spool_dropped_total {}",
            self.len(),
            self.dropped.load(Ordering::Relaxed)
        );
    }
}

/// Moves an edge's spool onto the stream for as long as the process runs.
pub async fn send(spool: Arc<Spool>, client: redis::Client) {
    let mut wait = link::MIN_BACKOFF;
    loop {
        let mut con = link::connect_retrying(&client, link::RESPONSE_TIMEOUT, &mut wait).await;
        spool.connected.store(true, Ordering::Relaxed);
        loop {
            let Some(message) = spool.front() else {
                // Wait for a message, checking the connection now and then.
                let woken = tokio::time::timeout(Duration::from_secs(1), spool.ready.notified());
                if woken.await.is_err()
                    && redis::cmd("PING")
                        .query_async::<()>(&mut con)
                        .await
                        .is_err()
                {
                    break;
                }
                continue;
            };
            let sent: redis::RedisResult<String> = redis::cmd("XADD")
                .arg(UPLINK_KEY)
                .arg("MAXLEN")
                .arg("~")
                .arg(UPLINK_KEEP)
                .arg("*")
                .arg("m")
                .arg(message)
                .query_async(&mut con)
                .await;
            if sent.is_err() {
                break;
            }
            spool.pop();
        }
        spool.connected.store(false, Ordering::Relaxed);
        link::back_off(&mut wait).await;
    }
}

/// Sends the security events `edge`'s ring takes, a batch every [`EVENTS_EVERY`], for as long
/// as the process runs.
pub async fn ship_events(edge: Arc<edge::Edge>, spool: Arc<Spool>, keys: Arc<Keys>, node: String) {
    let mut after = 0;
    let mut tick = tokio::time::interval(EVENTS_EVERY);
    loop {
        tick.tick().await;
        let mut events = edge.security_events(&shield::events::EventQuery {
            after: Some(after),
            limit: EVENTS_PER_BATCH,
            ..Default::default()
        });
        let Some(newest) = events.first().map(|e| e.id) else {
            continue;
        };
        after = newest;
        events.reverse();
        let wire: Vec<WireEvent> = events
            .into_iter()
            .map(|e| WireEvent {
                time: e
                    .time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                site: e.event.site.to_string(),
                client_ip: e.event.client_ip,
                action: e.event.action,
                reason: e.event.reason,
                rule_id: e.event.rule_id.map(|r| r.to_string()),
                value: e.event.value,
            })
            .collect();
        let body = serde_json::to_vec(&wire).expect("events serialise");
        spool.push(Envelope::new(KIND_EVENTS, &node, 0, body).seal(&keys));
    }
}

/// Sends the analytics minutes `edge` finishes, every [`ANALYTICS_EVERY`], for as long as the
/// process runs.
pub async fn ship_analytics(
    edge: Arc<edge::Edge>,
    spool: Arc<Spool>,
    keys: Arc<Keys>,
    node: String,
) {
    let mut tick = tokio::time::interval(ANALYTICS_EVERY);
    loop {
        tick.tick().await;
        let minutes = edge.analytics().take_finished(std::time::SystemTime::now());
        if minutes.is_empty() {
            continue;
        }
        let body = serde_json::to_vec(&minutes).expect("minutes serialise");
        spool.push(Envelope::new(KIND_ANALYTICS, &node, 0, body).seal(&keys));
    }
}

/// An edge's abuse intake in a cluster: reports go to the control node's store.
pub struct UplinkSink {
    /// This node's name (receipts begin with it).
    pub node: String,
    /// The cluster's keys.
    pub keys: Arc<Keys>,
    /// The cluster's Redis, for the control node's answer.
    pub client: redis::Client,
    /// Where messages wait for Redis.
    pub spool: Arc<Spool>,
}

impl ReportSink for UplinkSink {
    fn submit(&self, report: NewReport) -> SubmitFuture {
        let receipt = format!("{}-{:016x}", self.node, crate::secret::random_u64());
        let body = serde_json::to_vec(&ReportMessage {
            receipt: receipt.clone(),
            report,
        })
        .expect("a report serialises");
        self.spool
            .push(Envelope::new(KIND_REPORT, &self.node, 0, body).seal(&self.keys));
        let connected = self.spool.connected.load(Ordering::Relaxed);
        let client = self.client.clone();
        Box::pin(async move {
            if !connected {
                return Ok(Receipt::Queued);
            }
            let answered = async {
                let mut con = link::connect(&client, REPLY_WAIT + link::RESPONSE_TIMEOUT).await?;
                redis::cmd("BLPOP")
                    .arg(reply_key(&receipt))
                    .arg(REPLY_WAIT.as_secs_f64())
                    .query_async::<Option<(String, u64)>>(&mut con)
                    .await
            };
            Ok(match answered.await {
                Ok(Some((_, id))) => Receipt::Stored(id),
                _ => Receipt::Queued,
            })
        })
    }
}

/// Reads what the edges send and stores it, on the control node, for as long as it runs.
pub struct Collector {
    /// The control plane whose store keeps what arrives.
    pub plane: Arc<control::ControlPlane>,
    /// The cluster's keys.
    pub keys: Arc<Keys>,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// Where refusals are counted.
    pub status: Arc<Status>,
}

impl Collector {
    /// Runs until the process ends.
    pub async fn run(self) {
        let mut wait = link::MIN_BACKOFF;
        loop {
            if let Err(error) = self.session(&mut wait).await {
                tracing::debug!(%error, "cluster: reading the edges' messages stopped");
            }
            link::back_off(&mut wait).await;
        }
    }

    async fn session(&self, wait: &mut Duration) -> redis::RedisResult<()> {
        let mut con = link::connect(&self.client, link::RESPONSE_TIMEOUT + link::BLOCK).await?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(UPLINK_KEY)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e);
        }
        *wait = link::MIN_BACKOFF;
        // What was delivered before but not acknowledged (a stop halfway) comes first.
        let mut position = "0".to_string();
        loop {
            let mut command = redis::cmd("XREADGROUP");
            command
                .arg("GROUP")
                .arg(GROUP)
                .arg(GROUP)
                .arg("COUNT")
                .arg(100);
            if position == ">" {
                command.arg("BLOCK").arg(link::BLOCK.as_millis() as u64);
            }
            let reply: Option<redis::streams::StreamReadReply> = command
                .arg("STREAMS")
                .arg(UPLINK_KEY)
                .arg(&position)
                .query_async(&mut con)
                .await?;
            let entries: Vec<_> = reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
            if position != ">" {
                match entries.last() {
                    // The pending pass goes on after what it has seen.
                    Some(last) => position = last.id.clone(),
                    None => {
                        position = ">".to_string();
                        continue;
                    }
                }
            }
            for entry in entries {
                let handled = match entry.map.get("m") {
                    Some(redis::Value::BulkString(bytes)) => self.take(&mut con, bytes).await,
                    _ => {
                        self.status.refused(Refused::Malformed);
                        true
                    }
                };
                if handled {
                    redis::cmd("XACK")
                        .arg(UPLINK_KEY)
                        .arg(GROUP)
                        .arg(&entry.id)
                        .query_async::<()>(&mut con)
                        .await?;
                }
            }
        }
    }

    /// Handles one message; false when it should be read again later (the store failed).
    async fn take(&self, con: &mut redis::aio::MultiplexedConnection, bytes: &[u8]) -> bool {
        let message = match Envelope::open(bytes, &self.keys) {
            Ok(message) => message,
            Err(reason) => {
                self.status.refused(reason);
                return true;
            }
        };
        if message.kind == KIND_EVENTS {
            let Ok(events) = serde_json::from_slice::<Vec<WireEvent>>(&message.body) else {
                self.status.refused(Refused::Body);
                return true;
            };
            let ring = self.plane.edge.event_ring();
            let node: Arc<str> = message.node.as_str().into();
            for e in events {
                ring.record_from(
                    Arc::clone(&node),
                    std::time::UNIX_EPOCH + Duration::from_millis(e.time),
                    shield::events::NewEvent {
                        site: e.site.into(),
                        client_ip: e.client_ip,
                        action: e.action,
                        reason: e.reason,
                        rule_id: e.rule_id.map(Into::into),
                        value: e.value,
                        mitigation: None,
                    },
                );
            }
            return true;
        }
        if message.kind == KIND_ANALYTICS {
            let Ok(minutes) = serde_json::from_slice::<Vec<analytics::SiteMinute>>(&message.body)
            else {
                self.status.refused(Refused::Body);
                return true;
            };
            let node = message.node.clone();
            let stored = self
                .plane
                .store
                .run(move |conn| -> Result<(), control::store::StoreError> {
                    let tx = conn.transaction()?;
                    for minute in &minutes {
                        let data = serde_json::to_string(minute)
                            .map_err(|e| control::store::StoreError::Corrupt(e.to_string()))?;
                        control::store::analytics::put_node(
                            &tx,
                            &node,
                            &minute.site,
                            minute.minute,
                            &data,
                        )?;
                    }
                    tx.commit()?;
                    Ok(())
                })
                .await;
            if let Err(error) = stored {
                tracing::error!(%error, node = %message.node, "cluster: an edge's analytics could not be stored; they are read again later");
                return false;
            }
            return true;
        }
        if message.kind != KIND_REPORT {
            self.status.refused(Refused::Unexpected);
            return true;
        }
        let Ok(ReportMessage { receipt, report }) = serde_json::from_slice(&message.body) else {
            self.status.refused(Refused::Body);
            return true;
        };
        // The edge checked it; the receipt must be its own (a node cannot answer for another's).
        if !receipt.starts_with(&format!("{}-", message.node)) {
            self.status.refused(Refused::Unexpected);
            return true;
        }
        let id = match control::intake::store_report(
            &self.plane.store,
            report,
            Some(receipt.clone()),
        )
        .await
        {
            Ok(id) => id,
            Err(error) => {
                tracing::error!(%error, node = %message.node, "cluster: a report from an edge could not be stored; it is read again later");
                return false;
            }
        };
        let key = reply_key(&receipt);
        let answered: redis::RedisResult<()> = redis::pipe()
            .cmd("LPUSH")
            .arg(&key)
            .arg(id)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(REPLY_KEEP_SECS)
            .ignore()
            .query_async(con)
            .await;
        if let Err(error) = answered {
            tracing::debug!(%error, "cluster: the report's number could not be given to its edge");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spool_drops_its_oldest_message_and_counts_it() {
        let spool = Spool::default();
        for i in 0..SPOOL_LIMIT + 2 {
            spool.push(i.to_be_bytes().to_vec());
        }
        assert_eq!(spool.len(), SPOOL_LIMIT);
        assert_eq!(
            spool.front(),
            Some(2usize.to_be_bytes().to_vec()),
            "the oldest went"
        );
        let mut text = String::new();
        spool.render(&mut text);
        assert!(
            text.contains("palisade_cluster_spool_dropped_total 2"),
            "{text}"
        );
        spool.pop();
        assert_eq!(spool.front(), Some(3usize.to_be_bytes().to_vec()));
    }
}

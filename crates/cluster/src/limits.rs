//! `scope = "cluster"` rate limits: every [`SYNC_INTERVAL`], each node adds what its edge
//! counted to per-window totals in Redis and reads the totals back, so each edge's count of a
//! key includes the others' (shield's `ratelimit::shared` keeps the counts).
//!
//! A window's totals live in one Redis hash per limit and window,
//! `palisade:rl:{site}:{limit id}:{definition digest}:{window number}`, one field per key
//! ([`Keys::count_field`]). `HINCRBY` adds and answers the new total in one command; a key's
//! previous window is read (`HGET`) once after it ended. Each hash expires two periods (and
//! [`EXPIRY_SLACK`]) after it was last added to: long enough to be read as the previous window
//! through the whole of the next.
//!
//! Counts are not signed: Redis holds numbers, not messages. Whoever can write to Redis can
//! raise the counts of keys it sees there (limiting those keys, for at most two periods) or
//! lower them (back to what each edge counts alone, which always applies): it cannot learn
//! which clients the keys are, or touch anything but rate-limit counts.
//!
//! Without Redis, limits count locally (every edge enforces the limit on what it sees), and
//! what was counted is sent when Redis answers again, if its window has not passed.

use crate::link;
use crate::secret::Keys;
use crate::status::now_ms;
use redis::aio::MultiplexedConnection;
use shield::ratelimit::{Ask, Outgoing, SharedCounts, Totals};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often counts go to Redis and totals come back.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);
/// Keys one sync sends at most, across all limits; the rest go at the next (their counts wait,
/// none is lost).
pub const KEYS_PER_SYNC: usize = 10_000;
/// How long a sync may wait for Redis before its counts wait for the next one.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(1);
/// Beyond two periods, how long a window's totals are kept: room for clocks a little apart.
pub const EXPIRY_SLACK: Duration = Duration::from_secs(10);
/// Where the totals live.
pub const COUNTS_PREFIX: &str = "palisade:rl:";

/// Syncs, for `/metrics`.
#[derive(Debug, Default)]
pub struct SyncStats {
    ok: AtomicU64,
    failed: AtomicU64,
    keys: AtomicU64,
}

/// Sends this node's counts of its `scope = "cluster"` limits and brings back the cluster's.
pub struct LimitSync {
    /// The cluster's keys (for the names of rate-limit keys).
    pub keys: Arc<Keys>,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// The edge whose limits share their counts.
    pub edge: Arc<edge::Edge>,
    /// What `/metrics` shows of the syncs.
    pub stats: Arc<SyncStats>,
}

impl LimitSync {
    /// Turns sharing on for the edge's cluster limits and syncs them until the process ends.
    pub async fn run(self) {
        self.edge.limiters().sharing().activate();
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut con: Option<MultiplexedConnection> = None;
        let mut wait = link::MIN_BACKOFF;
        let mut retry_at = tokio::time::Instant::now();
        // Which limit goes first: a different one each sync, so that limits early in the list
        // cannot take every sync's budget from the others.
        let mut first = 0usize;
        loop {
            tick.tick().await;
            let limits = self.edge.limiters().shared_limits();
            if limits.is_empty() {
                continue;
            }
            if con.is_none() {
                if tokio::time::Instant::now() < retry_at {
                    // Counts wait in the tables meanwhile.
                    continue;
                }
                match link::connect(&self.client, SYNC_TIMEOUT).await {
                    Ok(connected) => {
                        con = Some(connected);
                        wait = link::MIN_BACKOFF;
                    }
                    Err(_) => {
                        retry_at = tokio::time::Instant::now() + wait;
                        wait = (wait * 2).min(link::MAX_BACKOFF);
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            let Some(connection) = con.as_mut() else {
                continue;
            };
            first = first.wrapping_add(1);
            let turn = first % limits.len();
            let in_turn: Vec<Arc<SharedCounts>> = limits[turn..]
                .iter()
                .chain(&limits[..turn])
                .cloned()
                .collect();
            if self.sync(connection, &in_turn).await.is_err() {
                con = None;
            }
        }
    }

    /// One sync of every limit: what each counted goes out, the totals come back. On failure
    /// every limit takes its counts back for the next.
    async fn sync(
        &self,
        con: &mut MultiplexedConnection,
        limits: &[Arc<SharedCounts>],
    ) -> Result<(), ()> {
        let now = now_ms();
        let mut budget = KEYS_PER_SYNC;
        let mut batches = Vec::with_capacity(limits.len());
        for limit in limits {
            if budget == 0 {
                break;
            }
            let sent = limit.collect(now, budget);
            budget -= sent.len();
            if !sent.is_empty() {
                batches.push((limit, sent));
            }
        }
        if batches.is_empty() {
            return Ok(());
        }
        let (mut pipe, asked) = self.commands(&batches);
        // One key Redis refuses (a hash overwritten with a string, say) fails its own command,
        // not the sync: its count is given back, the rest are taken.
        pipe.ignore_errors();
        let answers =
            tokio::time::timeout(SYNC_TIMEOUT, pipe.query_async::<Vec<redis::Value>>(con))
                .await
                .map_err(|_| ())
                .and_then(|answer| answer.map_err(|_| ()));
        let Ok(answers) = answers else {
            for (limit, sent) in &batches {
                limit.settle(sent, Err(()));
            }
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return Err(());
        };
        let mut totals: Vec<Vec<Totals>> = batches
            .iter()
            .map(|(_, sent)| vec![Totals::default(); sent.len()])
            .collect();
        for (answer, (batch, key, previous)) in answers.into_iter().zip(asked) {
            // A missing field is a total of 0; a refusal, no answer.
            let total = redis::from_redis_value::<Option<i64>>(answer)
                .ok()
                .map(|total| total.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32);
            let slot = &mut totals[batch][key];
            if previous {
                slot.previous = total;
            } else {
                slot.current = total;
            }
        }
        let mut keys = 0;
        for ((limit, sent), totals) in batches.iter().zip(&totals) {
            limit.settle(sent, Ok(totals));
            keys += sent.len() as u64;
        }
        self.stats.ok.fetch_add(1, Ordering::Relaxed);
        self.stats.keys.fetch_add(keys, Ordering::Relaxed);
        Ok(())
    }

    /// The pipeline of one sync, and for each command with an answer: which batch and key it
    /// is for, and whether for the previous window.
    fn commands(
        &self,
        batches: &[(&Arc<SharedCounts>, Vec<Outgoing>)],
    ) -> (redis::Pipeline, Vec<(usize, usize, bool)>) {
        let mut pipe = redis::pipe();
        let mut asked = Vec::new();
        for (b, (limit, sent)) in batches.iter().enumerate() {
            let ttl_ms = 2 * limit.period_ms() + EXPIRY_SLACK.as_millis() as u64;
            // Each window's hash is given its expiry once per sync, after its adds.
            let mut added: Vec<u64> = Vec::new();
            for (k, outgoing) in sent.iter().enumerate() {
                let field = self.keys.count_field(&outgoing.digest);
                let windows = [
                    (outgoing.window, outgoing.current, false),
                    (outgoing.window.wrapping_sub(1), outgoing.previous, true),
                ];
                for (window, ask, previous) in windows {
                    let hash = format!("{COUNTS_PREFIX}{}:{window}", limit.name());
                    match ask {
                        Ask::Add(n) => {
                            pipe.cmd("HINCRBY").arg(&hash).arg(&field).arg(n);
                            if !added.contains(&window) {
                                added.push(window);
                            }
                        }
                        Ask::Read => {
                            pipe.cmd("HGET").arg(&hash).arg(&field);
                        }
                        Ask::Skip => continue,
                    }
                    asked.push((b, k, previous));
                }
            }
            for window in added {
                let hash = format!("{COUNTS_PREFIX}{}:{window}", limit.name());
                pipe.cmd("PEXPIRE").arg(hash).arg(ttl_ms).ignore();
            }
        }
        (pipe, asked)
    }
}

impl SyncStats {
    /// The Prometheus lines of the `palisade_cluster_rate_limit_*` metrics; `untracked` is
    /// what the edge's limits could not share.
    pub fn render(&self, out: &mut String, untracked: u64) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP palisade_cluster_rate_limit_syncs_total Syncs of scope = \"cluster\" rate-limit counts with Redis, by outcome.\n\
             # TYPE palisade_cluster_rate_limit_syncs_total counter\n\
             palisade_cluster_rate_limit_syncs_total{{outcome=\"ok\"}} {}\n\
             palisade_cluster_rate_limit_syncs_total{{outcome=\"failed\"}} {}",
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP palisade_cluster_rate_limit_keys_synced_total Keys whose counts went to Redis (one per key per sync).\n\
             # TYPE palisade_cluster_rate_limit_keys_synced_total counter\n\
             palisade_cluster_rate_limit_keys_synced_total {}",
            self.keys.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP palisade_cluster_rate_limit_untracked_total Requests to scope = \"cluster\" limits counted on this edge alone: their key found its limit's table full.\n\
             # TYPE palisade_cluster_rate_limit_untracked_total counter\n\
             palisade_cluster_rate_limit_untracked_total {untracked}"
        );
    }
}

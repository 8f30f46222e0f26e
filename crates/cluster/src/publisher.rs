//! The control node's side: every change the control plane accepted (its outbox, written in the
//! change's own transaction) goes out, signed, on the changes stream in version order, and a
//! snapshot of every site is kept under the snapshot key for edges that start, reconnect or
//! fall behind. With Redis away the outbox fills and nothing is lost: the next session
//! publishes a snapshot and the backlog.

use crate::envelope::Envelope;
use crate::link::{self, CHANGES_KEY, SNAPSHOT_EVERY, SNAPSHOT_KEY, STREAM_KEEP};
use crate::secret::Keys;
use crate::status::Status;
use control::ControlPlane;
use control::replica::{self, KIND_RESYNC};
use control::store::outbox;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;

/// Changes read from the outbox at a time.
const BATCH: usize = 256;

/// How often an idle publisher checks that its connection is alive and the outbox empty.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The message kind of a snapshot.
pub const KIND_SNAPSHOT: &str = "snapshot";

/// Why a publishing session ended (it starts again after a back-off).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Redis refused or went away.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The store could not be read.
    #[error("store: {0}")]
    Store(String),
}

impl From<control::plane::ChangeError> for PublishError {
    fn from(e: control::plane::ChangeError) -> PublishError {
        PublishError::Store(e.to_string())
    }
}

impl From<control::store::StoreError> for PublishError {
    fn from(e: control::store::StoreError) -> PublishError {
        PublishError::Store(e.to_string())
    }
}

/// Publishes the control plane's changes for as long as the process runs.
pub struct Publisher {
    /// The control plane whose outbox is published.
    pub plane: Arc<ControlPlane>,
    /// The cluster's keys.
    pub keys: Arc<Keys>,
    /// This node's name.
    pub node: String,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// What `/metrics` and heartbeats show.
    pub status: Arc<Status>,
}

impl Publisher {
    /// Runs until the process ends, reconnecting with back-off.
    pub async fn run(self) {
        let Some(notify) = self.plane.outbox().cloned() else {
            tracing::error!("cluster: the control plane keeps no outbox; nothing is published");
            return;
        };
        let mut wait = link::MIN_BACKOFF;
        loop {
            if let Err(error) = self.session(&notify, &mut wait).await {
                if self.status.connected() {
                    tracing::warn!(%error, "cluster: publishing stopped; changes wait in the outbox");
                }
                self.status.set_connected(false);
                link::back_off(&mut wait).await;
            }
        }
    }

    async fn session(
        &self,
        notify: &tokio::sync::Notify,
        wait: &mut Duration,
    ) -> Result<(), PublishError> {
        let mut con = link::connect(&self.client, link::RESPONSE_TIMEOUT).await?;
        let mut snapshot = self.publish_snapshot(&mut con).await?;
        if !self.status.connected() {
            tracing::info!(version = snapshot, "cluster: connected; snapshot published");
        }
        self.status.set_connected(true);
        *wait = link::MIN_BACKOFF;
        loop {
            let published = self.publish_outbox(&mut con, &mut snapshot).await?;
            let wanted: Option<String> = redis::cmd("GETDEL")
                .arg(link::SNAPSHOT_WANTED_KEY)
                .query_async(&mut con)
                .await?;
            if wanted.is_some() {
                snapshot = self.publish_snapshot(&mut con).await?;
            }
            if published == 0 {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {
                        let _: () = redis::cmd("PING").query_async(&mut con).await?;
                        self.status.heard();
                    }
                }
            }
        }
    }

    /// Sets the snapshot key to every site as it runs now; returns its version.
    async fn publish_snapshot(&self, con: &mut MultiplexedConnection) -> Result<u64, PublishError> {
        // Changes wait while it is composed: the snapshot's version and its sites (and the
        // base they compose with) must agree.
        let snapshot = {
            let _hold = self.plane.hold_changes().await;
            let base = self.plane.base();
            let sealer = self.plane.sealer().cloned();
            self.plane
                .store
                .run(move |conn| replica::snapshot(&base, conn, sealer.as_ref()))
                .await?
        };
        // Changes go on from here. Where an edge that loads the snapshot starts reading the
        // stream: what is in it now is covered by the snapshot or skipped by version, and a
        // change made from now on has a newer version and lands after this position (this
        // task alone writes the stream).
        let after = link::last_id(con, CHANGES_KEY).await?;
        let version = snapshot.version;
        // The control node's own key file (its edge made it at start).
        let challenge_keys =
            shield::challenge::ChallengeKeys::file_text(self.plane.edge.data_dir())
                .inspect_err(|error| {
                    tracing::warn!(%error, "cluster: the challenge keys cannot be read; edges keep their own")
                })
                .ok();
        let body = crate::snapshot::encode(&self.keys, &after, challenge_keys.as_deref(), snapshot);
        let sealed = Envelope::new(KIND_SNAPSHOT, &self.node, version, body)
            .in_epoch(self.status.epoch())
            .seal(&self.keys);
        let _: () = redis::cmd("SET")
            .arg(SNAPSHOT_KEY)
            .arg(sealed)
            .query_async(con)
            .await?;
        self.status.set_version(version);
        // The stream before the snapshot is no longer needed to catch up: keep the outbox
        // short (the stream trims itself).
        self.plane
            .store
            .run(move |conn| outbox::prune(conn, version))
            .await?;
        tracing::debug!(version, "cluster: snapshot published");
        Ok(version)
    }

    /// Publishes up to a batch of the outbox; returns how many.
    async fn publish_outbox(
        &self,
        con: &mut MultiplexedConnection,
        snapshot: &mut u64,
    ) -> Result<usize, PublishError> {
        let entries = self
            .plane
            .store
            .run(|conn| outbox::unpublished(conn, BATCH))
            .await?;
        let Some(last) = entries.last().map(|e| e.version) else {
            return Ok(0);
        };
        for entry in &entries {
            if entry.kind == KIND_RESYNC && entry.version > *snapshot {
                // The base changed: the snapshot first, then the word to load it.
                *snapshot = self.publish_snapshot(con).await?;
            }
            let sealed = Envelope::new(&entry.kind, &self.node, entry.version, entry.body.clone())
                .in_epoch(self.status.epoch())
                .seal(&self.keys);
            let _: String = redis::cmd("XADD")
                .arg(CHANGES_KEY)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_KEEP)
                .arg("*")
                .arg("m")
                .arg(sealed)
                .query_async(con)
                .await?;
        }
        self.plane
            .store
            .run(move |conn| outbox::mark_published(conn, last))
            .await?;
        self.status.set_version(last.max(self.status.version()));
        self.status.published(last);
        if last >= *snapshot + SNAPSHOT_EVERY {
            *snapshot = self.publish_snapshot(con).await?;
        }
        Ok(entries.len())
    }
}

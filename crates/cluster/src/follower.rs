//! An edge node's side: it loads the snapshot, follows the changes stream from it and applies
//! each change in version order (a gap means the snapshot again), keeping what it applied in
//! its data directory. With Redis away it serves on what it has; restarted then, it starts from
//! what it kept ([`restore`]).

use crate::envelope::{Envelope, Refused};
use crate::link::{self, CHANGES_KEY, SNAPSHOT_KEY};
use crate::persist::Kept;
use crate::publisher::KIND_SNAPSHOT;
use crate::secret::Keys;
use crate::snapshot::{Opened, TLS_KEY_CONTEXT};
use crate::status::Status;
use control::replica::{self, KIND_PURGE, KIND_RESYNC, KIND_SITES};
use model::{Config, Site, SiteChange};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use std::sync::Arc;
use std::time::Duration;

/// Changes read from the stream at a time.
const BATCH: usize = 256;

/// Why a following session ended (it starts again after a back-off).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Redis refused or went away.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The stream skips versions the latest snapshot does not cover yet.
    #[error("the changes stream skips from version {have} to {next} and no snapshot covers it yet")]
    Gap {
        /// The version this edge runs.
        have: u64,
        /// The next version the stream holds.
        next: u64,
    },
}

/// Follows the cluster's configuration for as long as the process runs.
pub struct Follower {
    /// The edge it drives.
    pub edge: Arc<edge::Edge>,
    /// This node's own configuration: `[server]`, `[shield]`, `[cluster]`, no sites.
    pub own: Config,
    /// The cluster's keys.
    pub keys: Arc<Keys>,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// Where it keeps what it applied.
    pub kept: Kept,
    /// What `/metrics` and heartbeats show.
    pub status: Arc<Status>,
    /// The version it runs (from [`restore`], or 0).
    pub version: u64,
    /// The control node's run that numbered it (from [`restore`], or 0).
    pub epoch: u64,
    /// The stream position it read through (`None`: the snapshot's).
    pub cursor: Option<String>,
}

impl Follower {
    /// Runs until the process ends, reconnecting with back-off.
    pub async fn run(mut self) {
        let mut wait = link::MIN_BACKOFF;
        loop {
            if let Err(error) = self.session(&mut wait).await {
                if let FollowError::Gap { .. } = error {
                    self.want_snapshot().await;
                }
                if self.status.connected() {
                    tracing::warn!(%error, version = self.version, "cluster: following stopped; serving the configuration it has");
                }
                self.status.set_connected(false);
                link::back_off(&mut wait).await;
            }
        }
    }

    /// The epoch and version the control node runs, from its heartbeat (`None`: none that
    /// verifies).
    async fn control_version(&self, con: &mut MultiplexedConnection) -> Option<(u64, u64)> {
        let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(link::NODES_KEY)
            .query_async(con)
            .await
            .ok()?;
        all.iter().find_map(|(node, bytes)| {
            let message = Envelope::open(bytes, &self.keys).ok()?;
            let beat: crate::heartbeat::Beat = serde_json::from_slice(&message.body).ok()?;
            (message.kind == crate::heartbeat::KIND
                && message.node == *node
                && beat.role == "control")
                .then_some((message.epoch, message.version))
        })
    }

    /// Asks the control node for a snapshot that covers a gap.
    async fn want_snapshot(&self) {
        let asked = async {
            let mut con = link::connect(&self.client, link::RESPONSE_TIMEOUT).await?;
            redis::cmd("SET")
                .arg(link::SNAPSHOT_WANTED_KEY)
                .arg(self.version)
                .query_async::<()>(&mut con)
                .await
        };
        if let Err(error) = asked.await {
            tracing::debug!(%error, "cluster: could not ask for a snapshot");
        }
    }

    async fn session(&mut self, wait: &mut Duration) -> Result<(), FollowError> {
        let mut con = link::connect(&self.client, link::RESPONSE_TIMEOUT + link::BLOCK).await?;
        self.load_snapshot(&mut con).await?;
        if !self.status.connected() {
            tracing::info!(
                version = self.version,
                "cluster: connected; following changes"
            );
        }
        self.status.set_connected(true);
        *wait = link::MIN_BACKOFF;
        let mut behind_since: Option<(u64, u64)> = None;
        loop {
            let Some(cursor) = self.cursor.clone() else {
                // No snapshot it could use yet (none published, or refused and asked for
                // again): look for one each second; the stream means nothing without it.
                tokio::time::sleep(link::BLOCK).await;
                self.load_snapshot(&mut con).await?;
                continue;
            };
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(link::BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(CHANGES_KEY)
                .arg(&cursor)
                .query_async(&mut con)
                .await?;
            self.status.heard();
            if reply.is_none() {
                // Nothing new for a second. If the control node runs a newer version all
                // the same, the stream lost what leads to it (trimmed, or deleted): the
                // snapshot brings it. Twice in a row, so a change on its way is not mistaken
                // for a loss.
                match self.control_version(&mut con).await {
                    Some(latest) if latest.0 != self.epoch || latest.1 > self.version => {
                        if behind_since == Some(latest) {
                            behind_since = None;
                            self.load_snapshot(&mut con).await?;
                            if self.epoch != latest.0 || self.version < latest.1 {
                                return Err(FollowError::Gap {
                                    have: self.version,
                                    next: latest.1,
                                });
                            }
                        } else {
                            behind_since = Some(latest);
                        }
                    }
                    _ => behind_since = None,
                }
                continue;
            }
            let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
            for entry in entries {
                let bytes = match entry.map.get("m") {
                    Some(redis::Value::BulkString(bytes)) => bytes.clone(),
                    _ => {
                        self.status.refused(Refused::Malformed);
                        self.cursor = Some(entry.id);
                        continue;
                    }
                };
                self.take(&mut con, &bytes).await?;
                self.cursor = Some(entry.id);
            }
        }
    }

    /// Applies one message from the stream.
    async fn take(
        &mut self,
        con: &mut MultiplexedConnection,
        bytes: &[u8],
    ) -> Result<(), FollowError> {
        let message = match Envelope::open(bytes, &self.keys) {
            Ok(message) => message,
            Err(reason) => {
                self.status.refused(reason);
                return Ok(());
            }
        };
        if message.epoch != self.epoch {
            // Numbered by another run of the control node: its snapshot first.
            self.load_snapshot(con).await?;
            if message.epoch != self.epoch {
                return Err(FollowError::Gap {
                    have: self.version,
                    next: message.version,
                });
            }
        }
        if message.version <= self.version {
            return Ok(());
        }
        if message.version != self.version + 1 {
            // Missed changes (trimmed from the stream, or refused): the snapshot covers them.
            self.load_snapshot(con).await?;
            if message.version <= self.version {
                return Ok(());
            }
            if message.version != self.version + 1 {
                return Err(FollowError::Gap {
                    have: self.version,
                    next: message.version,
                });
            }
        }
        match message.kind.as_str() {
            KIND_SITES => {
                let certs = certs_dir(&self.own);
                let keys = Arc::clone(&self.keys);
                let open = move |sealed: &str| keys.open_text(sealed, TLS_KEY_CONTEXT);
                let unsealer = replica::Unsealer {
                    dir: &certs,
                    open: &open,
                };
                let changes = match replica::decode_changes(&message.body, Some(&unsealer)) {
                    Ok(changes) => changes,
                    Err(error) => {
                        tracing::error!(%error, version = message.version, "cluster: a change does not decode");
                        self.status.refused(Refused::Body);
                        return Ok(());
                    }
                };
                let applied = self
                    .edge
                    .prepare(changes)
                    .map(|prepared| self.edge.install(prepared));
                if let Err(error) = applied {
                    // The control node checked it against the same sites: only a diverged
                    // edge gets here. The snapshot puts it right.
                    tracing::error!(%error, version = message.version, "cluster: a change does not apply; loading the snapshot");
                    self.load_snapshot(con).await?;
                    return Ok(());
                }
                self.keep(|kept| kept.keep_change(bytes));
                self.set_version(message.version);
            }
            KIND_PURGE => {
                match replica::decode_purge(&message.body) {
                    Ok(purge) => {
                        if let Err(error) = self.edge.purge(&purge.site, purge.selector.as_bytes())
                        {
                            // A site removed since, or a purge this edge's version reads
                            // otherwise: nothing of it is cached here to purge.
                            tracing::warn!(%error, site = %purge.site, "cluster: purge not applied");
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, version = message.version, "cluster: a purge does not decode");
                        self.status.refused(Refused::Body);
                    }
                }
                self.keep(|kept| kept.keep_change(bytes));
                self.set_version(message.version);
            }
            KIND_RESYNC => {
                self.load_snapshot(con).await?;
                if self.version < message.version {
                    return Err(FollowError::Gap {
                        have: self.version,
                        next: message.version,
                    });
                }
            }
            other => {
                // Kinds a newer control node sends: this edge has nothing to do with them.
                tracing::debug!(kind = other, "cluster: message of another kind skipped");
                self.set_version(message.version);
            }
        }
        Ok(())
    }

    /// Loads the snapshot if it is newer than what runs; sets the cursor to its position if
    /// there is none.
    async fn load_snapshot(&mut self, con: &mut MultiplexedConnection) -> Result<(), FollowError> {
        let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(SNAPSHOT_KEY).query_async(con).await?;
        let Some(bytes) = bytes else {
            // No control node has published yet.
            return Ok(());
        };
        let Some(Opened {
            version,
            after,
            sites,
            challenge_keys,
            purged,
            epoch,
            global,
        }) = self.open_snapshot(&bytes)
        else {
            // Damaged or forged: the control node writes a genuine one when asked.
            self.want_snapshot().await;
            return Ok(());
        };
        // Another run's versions are not comparable with ours: its snapshot replaces all.
        let new_epoch = epoch != self.epoch;
        if !new_epoch && version <= self.version && self.cursor.is_some() {
            return Ok(());
        }
        if new_epoch || version > self.version || self.version == 0 {
            install_challenge_keys(&self.own, challenge_keys.as_deref());
            let mut config = self.own.clone();
            config.sites = sites;
            if let Err(error) = global.apply(&mut config.shield.lists) {
                tracing::error!(%error, version, "cluster: the snapshot's global lists do not read; serving the configuration it has");
                self.status.refused(Refused::Body);
                return Ok(());
            }
            if let Err(error) = self.edge.reload(&config) {
                tracing::error!(%error, version, "cluster: the snapshot does not load; serving the configuration it has");
                self.status.refused(Refused::Body);
                return Ok(());
            }
            // Purges among the changes this edge missed: what it caches of those sites goes.
            for (site, purged_at) in purged {
                if new_epoch || purged_at > self.version {
                    let everything = br#"{"everything": true}"#;
                    if self.edge.purge(&site, everything).is_ok() {
                        tracing::info!(%site, purged_at, "cluster: cache dropped for a purge this edge missed");
                    }
                }
            }
            self.keep(|kept| kept.keep_snapshot(&bytes));
            self.epoch = epoch;
            self.status.set_epoch(epoch);
            self.set_version(version);
            tracing::info!(version, "cluster: snapshot loaded");
        }
        self.cursor = Some(after);
        Ok(())
    }

    fn open_snapshot(&self, bytes: &[u8]) -> Option<Opened> {
        let opened = open_snapshot(bytes, &self.keys, &certs_dir(&self.own));
        if let Err(reason) = &opened {
            self.status.refused(*reason);
        }
        opened.ok()
    }

    fn set_version(&mut self, version: u64) {
        self.version = version;
        self.status.set_version(version);
    }

    fn keep(&self, write: impl FnOnce(&Kept) -> std::io::Result<()>) {
        if let Err(error) = write(&self.kept) {
            tracing::warn!(%error, "cluster: the configuration could not be kept on disk; a restart while Redis is away would not have it");
        }
    }
}

/// A snapshot message, checked and read.
/// Where the certificates the control node sends are written.
fn certs_dir(own: &Config) -> std::path::PathBuf {
    own.server.data_dir.join("cluster").join("certs")
}

fn open_snapshot(bytes: &[u8], keys: &Keys, certs: &std::path::Path) -> Result<Opened, Refused> {
    let message = Envelope::open(bytes, keys)?;
    if message.kind != KIND_SNAPSHOT {
        return Err(Refused::Unexpected);
    }
    let mut opened = crate::snapshot::decode(keys, &message.body, message.version, certs)?;
    opened.epoch = message.epoch;
    Ok(opened)
}

/// Writes the control node's challenge keys into this edge's data directory, where its next
/// reload (or its start) reads them.
fn install_challenge_keys(own: &Config, text: Option<&str>) {
    let Some(text) = text else { return };
    if let Err(error) = shield::challenge::ChallengeKeys::install(&own.server.data_dir, text) {
        tracing::error!(%error, "cluster: the control node's challenge keys cannot be installed; this edge's clearance is its own");
    }
}

/// What an edge starts from.
pub struct Restored {
    /// Its own configuration with the sites it kept.
    pub config: Config,
    /// Their version (0: nothing kept).
    pub version: u64,
    /// The control node's run that numbered it.
    pub epoch: u64,
}

/// What an edge kept: the configuration it ran (its own with the kept sites), its version
/// and epoch. `None` when nothing usable was kept. Messages are checked again: a kept file
/// someone changed is not believed.
pub fn restore(kept: &Kept, keys: &Keys, own: &Config) -> Option<Restored> {
    let (snapshot, changes) = match kept.read() {
        Ok(Some(read)) => (read.snapshot, read.changes),
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(%error, "cluster: the kept configuration cannot be read");
            return None;
        }
    };
    let certs = certs_dir(own);
    let mut config = own.clone();
    let (mut version, epoch, mut sites) = match open_snapshot(&snapshot, keys, &certs) {
        Ok(opened) => {
            install_challenge_keys(own, opened.challenge_keys.as_deref());
            if opened.global.apply(&mut config.shield.lists).is_err() {
                return None;
            }
            (opened.version, opened.epoch, opened.sites)
        }
        Err(reason) => {
            tracing::warn!(
                reason = reason.as_str(),
                "cluster: the kept snapshot is refused"
            );
            return None;
        }
    };
    for bytes in changes {
        let Ok(message) = Envelope::open(&bytes, keys) else {
            break;
        };
        if message.epoch != epoch {
            break;
        }
        if message.version <= version {
            continue;
        }
        if message.version != version + 1 {
            break;
        }
        if message.kind == KIND_SITES {
            let open = |sealed: &str| keys.open_text(sealed, TLS_KEY_CONTEXT);
            let unsealer = replica::Unsealer {
                dir: &certs,
                open: &open,
            };
            let Ok(changes) = replica::decode_changes(&message.body, Some(&unsealer)) else {
                break;
            };
            apply_to(&mut sites, changes);
        }
        // A purge was applied to the cache then; its disk tier kept the result.
        version = message.version;
    }
    config.sites = sites;
    Some(Restored {
        config,
        version,
        epoch,
    })
}

/// Applies changes to a list of sites, as the edge applies them to its table.
fn apply_to(sites: &mut Vec<Site>, changes: Vec<SiteChange>) {
    for change in changes {
        match change {
            SiteChange::Added(site) | SiteChange::Changed(site) => {
                match sites.iter_mut().find(|s| s.name == site.name) {
                    Some(slot) => *slot = site,
                    None => sites.push(site),
                }
            }
            SiteChange::Removed(name) => sites.retain(|s| s.name != name),
            SiteChange::State {
                name,
                state,
                suspension,
            } => {
                if let Some(site) = sites.iter_mut().find(|s| s.name == name) {
                    site.state = state;
                    site.suspension = suspension;
                }
            }
        }
    }
}

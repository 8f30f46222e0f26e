//! Many edges, one control plane: the cluster over Redis.
//!
//! What it is for: carrying every change a cluster's control node accepts to every edge node
//! (a versioned snapshot under one key, the changes after it on a stream), signed so that a
//! Redis anyone can write to cannot inject a site, and kept on each edge's disk so an edge
//! serves its last configuration while Redis is away, restarts included.
//!
//! What it is not: a consensus system. Exactly one node is the `control` node; it alone writes
//! the configuration (from its SQLite store, through an outbox written in each change's own
//! transaction), so versions have one author and edges apply them in order.
//!
//! | module | job |
//! |---|---|
//! | `secret` | the cluster secret, `palisade cluster init`, the signing and sealing keys made from it |
//! | `envelope` | a signed message: kind, node, version, body |
//! | `link` | the Redis keys, timeouts and back-off |
//! | `publisher` | the control node: outbox to stream, snapshots |
//! | `follower` | an edge node: snapshot and stream to its edge, kept on disk, restored at start |
//! | `persist` | what an edge keeps on disk |
//! | `snapshot` | a snapshot's body: sites, stream position, sealed challenge keys |
//! | `status` | connected, version, lag and refusals, for `/metrics` |
//! | `defence` | attack state shared by every edge: one trips, all challenge |
//! | `limits` | `scope = "cluster"` rate limits: counts to Redis and back every 250 ms |
//! | `heartbeat` | each node's heartbeat: role, versions, requests per second |
//! | `uplink` | what edges send the control node (abuse reports), spooled while Redis is away |
//! | `view` | the control node's view of the nodes: `GET /api/edges`, `?wait=applied` |
//!
//! ## Invariants (each pinned by a named test)
//! 1. **Nothing unsigned is applied**: a message that does not verify under the cluster's key
//!    is refused and counted, whatever key it sits under, kept files included.
//!    `envelope::tests::a_message_round_trips_and_every_changed_byte_is_refused`,
//!    `envelope::tests::a_forger_without_the_secret_is_refused_for_its_signature`;
//!    black-box `a_forged_change_written_into_redis_is_refused_and_counted`.
//! 2. **Versions apply in order, none skipped**: a change is applied only on top of the
//!    version before it; a gap loads the snapshot. Black-box
//!    `site_changes_reach_every_edge_in_order`.
//! 3. **Nothing accepted is lost to an outage**: the outbox is written in the change's
//!    transaction and published when Redis is back. `store::outbox::tests` (control),
//!    black-box `changes_made_while_redis_is_down_reach_every_edge_when_it_returns`.
//! 4. **An edge serves on without Redis**, restarted too. `persist::tests`, black-box
//!    `an_edge_restarted_while_redis_is_down_serves_its_last_configuration`.
//! 5. **A cluster limit counts locally first**: an edge's own count of a key always applies;
//!    what the others counted only adds to it, so losing Redis leaves each edge's limit whole.
//!    `shield::ratelimit::tests::a_cluster_limit_adds_what_the_other_edges_counted`, black-box
//!    `without_redis_each_edge_still_holds_the_limit_on_what_it_sees`.

pub mod defence;
pub mod envelope;
pub mod follower;
pub mod heartbeat;
pub mod limits;
pub mod link;
pub mod persist;
pub mod publisher;
pub mod secret;
pub mod snapshot;
pub mod status;
pub mod uplink;
pub mod view;

use model::{ClusterSettings, Config};
use std::sync::Arc;

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The secret file is missing or unreadable.
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    /// The Redis URL cannot be used.
    #[error(transparent)]
    Url(#[from] link::UrlError),
    /// The edge's data directory cannot keep the configuration.
    #[error("cannot keep the cluster's configuration in {path}: {error}")]
    Kept {
        /// The directory.
        path: String,
        /// The operating system's refusal.
        error: std::io::Error,
    },
}

/// A node's membership: its keys, its Redis and its status.
pub struct Node {
    /// The `[cluster]` table.
    pub settings: ClusterSettings,
    /// The keys from the cluster secret.
    pub keys: Arc<secret::Keys>,
    /// The cluster's Redis.
    pub client: redis::Client,
    /// Connected, version, lag, refusals.
    pub status: Arc<status::Status>,
}

impl Node {
    /// Reads the secret and checks the Redis URL (it connects later, and again whenever it
    /// must: a node starts whether Redis is up or not).
    pub fn open(settings: &ClusterSettings) -> Result<Node, StartError> {
        Ok(Node {
            keys: Arc::new(secret::Keys::load(&settings.secret_file)?),
            client: link::client(settings)?,
            status: Arc::default(),
            settings: settings.clone(),
        })
    }

    /// What seals the private keys of certificates the control node sends its edges.
    pub fn sealer(&self) -> control::replica::Sealer {
        let keys = Arc::clone(&self.keys);
        Arc::new(move |key: &[u8]| keys.seal_text(key, snapshot::TLS_KEY_CONTEXT))
    }

    /// Shows the cluster's metrics on `edge`'s `/metrics`.
    pub fn show_metrics(&self, edge: &edge::Edge) {
        let status = Arc::clone(&self.status);
        edge.metrics()
            .add_section(Arc::new(move |out: &mut String| status.render(out)));
    }

    /// The control node: publishes `plane`'s changes, sends its heartbeats and shows the
    /// cluster to the API. Each run numbers its versions in an epoch of its own.
    pub fn publish(&self, plane: Arc<control::ControlPlane>) {
        self.status.set_epoch(secret::random_u64());
        self.show_metrics(&plane.edge);
        self.beside(Arc::clone(&plane.edge));
        plane.edge.event_ring().name_node(&self.settings.node);
        tokio::spawn(
            uplink::Collector {
                plane: Arc::clone(&plane),
                keys: Arc::clone(&self.keys),
                client: self.client.clone(),
                status: Arc::clone(&self.status),
            }
            .run(),
        );
        plane.set_cluster(Arc::new(view::View {
            keys: Arc::clone(&self.keys),
            client: self.client.clone(),
            status: Arc::clone(&self.status),
            con: tokio::sync::Mutex::new(None),
        }));
        tokio::spawn(
            publisher::Publisher {
                plane,
                keys: Arc::clone(&self.keys),
                node: self.settings.node.clone(),
                client: self.client.clone(),
                status: Arc::clone(&self.status),
            }
            .run(),
        );
    }

    /// An edge node's first configuration: what it kept from its last run (its own
    /// configuration with the kept sites) and that version, or its own with no sites.
    pub fn restore(&self, own: &Config) -> Result<follower::Restored, StartError> {
        let kept = self.kept(own)?;
        Ok(
            follower::restore(&kept, &self.keys, own).unwrap_or_else(|| follower::Restored {
                config: own.clone(),
                version: 0,
                epoch: 0,
            }),
        )
    }

    /// An edge node: follows the control node's changes into `edge` from `version` (of
    /// `epoch`) on.
    pub fn follow(
        &self,
        edge: Arc<edge::Edge>,
        own: Config,
        (version, epoch): (u64, u64),
    ) -> Result<(), StartError> {
        // Shown from the first scrape: what it restored is what it runs.
        self.status.set_version(version);
        self.status.set_epoch(epoch);
        self.show_metrics(&edge);
        self.beside(Arc::clone(&edge));
        // Reports taken here go to the control node's store.
        let spool = Arc::new(uplink::Spool::default());
        let shown = Arc::clone(&spool);
        edge.metrics()
            .add_section(Arc::new(move |out: &mut String| shown.render(out)));
        edge.set_report_sink(Arc::new(uplink::UplinkSink {
            node: self.settings.node.clone(),
            keys: Arc::clone(&self.keys),
            client: self.client.clone(),
            spool: Arc::clone(&spool),
        }));
        edge.event_ring().name_node(&self.settings.node);
        tokio::spawn(uplink::ship_events(
            Arc::clone(&edge),
            Arc::clone(&spool),
            Arc::clone(&self.keys),
            self.settings.node.clone(),
        ));
        tokio::spawn(uplink::ship_analytics(
            Arc::clone(&edge),
            Arc::clone(&spool),
            Arc::clone(&self.keys),
            self.settings.node.clone(),
        ));
        tokio::spawn(uplink::send(spool, self.client.clone()));
        let kept = self.kept(&own)?;
        tokio::spawn(
            follower::Follower {
                edge,
                own,
                keys: Arc::clone(&self.keys),
                client: self.client.clone(),
                kept,
                status: Arc::clone(&self.status),
                version,
                epoch,
                cursor: None,
            }
            .run(),
        );
        Ok(())
    }

    /// The tasks every node runs beside its edge: heartbeats, shared attack state and shared
    /// rate-limit counts.
    fn beside(&self, edge: Arc<edge::Edge>) {
        let stats = Arc::new(limits::SyncStats::default());
        let (shown, sharing) = (Arc::clone(&stats), Arc::clone(edge.limiters().sharing()));
        edge.metrics()
            .add_section(Arc::new(move |out: &mut String| {
                shown.render(out, sharing.untracked())
            }));
        tokio::spawn(
            limits::LimitSync {
                keys: Arc::clone(&self.keys),
                client: self.client.clone(),
                edge: Arc::clone(&edge),
                stats,
            }
            .run(),
        );
        defence::Defence {
            node: self.settings.node.clone(),
            keys: Arc::clone(&self.keys),
            client: self.client.clone(),
            status: Arc::clone(&self.status),
            edge: Arc::clone(&edge),
        }
        .start();
        tokio::spawn(
            heartbeat::Heart {
                node: self.settings.node.clone(),
                role: self.settings.role.as_str(),
                keys: Arc::clone(&self.keys),
                client: self.client.clone(),
                status: Arc::clone(&self.status),
                edge,
            }
            .run(),
        );
    }

    fn kept(&self, own: &Config) -> Result<persist::Kept, StartError> {
        persist::Kept::open(&own.server.data_dir).map_err(|error| StartError::Kept {
            path: own.server.data_dir.display().to_string(),
            error,
        })
    }
}

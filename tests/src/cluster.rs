//! A cluster of real `palisade` processes over a real `redis-server`: one control node and any
//! number of edge nodes sharing a secret `palisade cluster init` wrote.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::palisade::{Palisade, binary_path};
use crate::redis::RedisServer;
use crate::{client, metrics};

/// Redis, the shared secret, a control node and edges.
pub struct TestCluster {
    /// The cluster's Redis.
    pub redis: RedisServer,
    /// The control node (its file's sites, the store, the API).
    pub control: Palisade,
    /// The edge nodes, named `edge-1`, `edge-2`, ...
    pub edges: Vec<Palisade>,
    secret: PathBuf,
    _secret_dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts Redis, writes a secret, starts a control node on `control_toml` (a whole
    /// configuration, `[cluster]` added) and `edges` edge nodes.
    pub fn start(control_toml: &str, edges: usize) -> TestCluster {
        let redis = RedisServer::start();
        let secret_dir = tempfile::tempdir().expect("temp dir for the secret");
        let secret = secret_dir.path().join("cluster.key");
        let init = std::process::Command::new(binary_path())
            .args(["cluster", "init"])
            .arg(&secret)
            .output()
            .expect("run palisade cluster init");
        assert!(init.status.success(), "cluster init: {init:?}");
        let control = Palisade::start(&format!(
            "{control_toml}\n{}",
            cluster_table(&redis, &secret, "control-1", "control")
        ));
        let mut cluster = TestCluster {
            redis,
            control,
            edges: Vec::new(),
            secret,
            _secret_dir: secret_dir,
        };
        for _ in 0..edges {
            let edge = cluster.start_edge();
            cluster.edges.push(edge);
        }
        cluster
    }

    /// Stops the control node and starts another on `control_toml` (a whole configuration,
    /// `[cluster]` added), as an operator brings up a new control node.
    pub fn replace_control(&mut self, control_toml: &str) {
        let toml = format!(
            "{control_toml}\n{}",
            cluster_table(&self.redis, &self.secret, "control-1", "control")
        );
        // The old one goes first: one control node at a time.
        self.control.sigterm();
        assert!(
            self.control.wait_exit(Duration::from_secs(15)).is_some(),
            "the old control node did not stop"
        );
        self.control = Palisade::start(&toml);
    }

    /// Starts one more edge node (not added to [`TestCluster::edges`]).
    pub fn start_edge(&self) -> Palisade {
        let name = format!("edge-{}", self.edges.len() + 1);
        Palisade::start(&self.edge_toml(&name))
    }

    /// An edge node's whole configuration.
    pub fn edge_toml(&self, node: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n{}",
            cluster_table(&self.redis, &self.secret, node, "edge")
        )
    }

    /// Waits (up to `within`) until every edge answers `GET /echo` on `host` with `status`; returns how long
    /// that took, or panics naming the edges that did not.
    pub async fn until_every_edge_answers(
        &self,
        host: &str,
        status: u16,
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        let mut pending: Vec<usize> = (0..self.edges.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            let mut last = Vec::new();
            for &i in &pending {
                let reply = client::try_get(self.edges[i].http_addr(), host, "/echo").await;
                if !matches!(&reply, Ok(r) if r.status.as_u16() == status) {
                    still.push(i);
                    last.push(reply.map(|r| r.status.as_u16()).map_err(|e| e.to_string()));
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if start.elapsed() >= within {
                let logs: Vec<String> = pending
                    .iter()
                    .map(|&i| format!("--- edge {i} ---\n{}", self.edges[i].stderr_text()))
                    .collect();
                panic!(
                    "edges {pending:?} did not answer {host} with {status} within {within:?} (last: {last:?})\n{}\n--- control ---\n{}",
                    logs.join("\n"),
                    self.control.stderr_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        start.elapsed()
    }

    /// Waits until every node runs the same configuration version as the control node; returns
    /// that version.
    pub async fn until_caught_up(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let control = version(&self.control).await;
            let mut behind = Vec::new();
            for (i, edge) in self.edges.iter().enumerate() {
                if version(edge).await != control {
                    behind.push(i);
                }
            }
            if behind.is_empty() && control > 0 {
                return control;
            }
            assert!(
                Instant::now() < deadline,
                "edges {behind:?} not at the control node's version {control} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The configuration version a node reports on `/metrics`.
pub async fn version(node: &Palisade) -> u64 {
    let text = metrics::scrape(node.admin_addr()).await;
    metrics::sample(&text, "palisade_cluster_config_version", &[]).unwrap_or(0.0) as u64
}

fn cluster_table(redis: &RedisServer, secret: &std::path::Path, node: &str, role: &str) -> String {
    format!(
        "[cluster]\nredis = \"{}\"\nnode = \"{node}\"\nrole = \"{role}\"\nsecret_file = \"{}\"\n",
        redis.url(),
        secret.display()
    )
}

//! The `[cluster]` table: this node's place among many edges sharing one control plane over
//! Redis. Without the table a node is alone, exactly as before clusters existed.

use serde::Deserialize;
use std::path::PathBuf;

/// What a node does in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRole {
    /// Holds the store, serves the admin API and publishes every change; also an edge.
    Control,
    /// Serves traffic on what the control node publishes; has no store and no API of its own.
    Edge,
}

impl ClusterRole {
    /// As written in the configuration and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterRole::Control => "control",
            ClusterRole::Edge => "edge",
        }
    }
}

/// The `[cluster]` table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` (TLS) URL; a password in it, or `PALISADE_REDIS_PASSWORD`.
    pub redis: String,
    /// This node's name, unique in the cluster (default: the host name).
    pub node: String,
    /// What this node does.
    pub role: ClusterRole,
    /// The secret every node shares (`palisade cluster init FILE` writes one); relative to the
    /// configuration file.
    pub secret_file: PathBuf,
}

/// The file name `secret_file` defaults to, beside the configuration file.
pub const DEFAULT_SECRET_FILE: &str = "cluster.key";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCluster {
    redis: String,
    node: Option<String>,
    role: ClusterRole,
    secret_file: Option<PathBuf>,
}

impl FileCluster {
    /// Checks the table; the error names the key.
    pub(crate) fn validate(self) -> Result<ClusterSettings, (String, String)> {
        let redis = self.redis.trim().to_string();
        if !(redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return Err((
                "cluster.redis".into(),
                format!(
                    "{} is not a Redis URL: write redis://HOST:PORT/DB (rediss:// for TLS)",
                    crate::shown(&redis)
                ),
            ));
        }
        let node = match self.node {
            Some(node) => node,
            None => host_name().ok_or_else(|| {
                (
                    "cluster.node".to_string(),
                    "the host name could not be read: name this node with `node`".to_string(),
                )
            })?,
        };
        if !valid_node_name(&node) {
            return Err((
                "cluster.node".into(),
                format!(
                    "node name {} must be 1 to 63 characters of letters, digits, '.', '-' and '_'",
                    crate::shown(&node)
                ),
            ));
        }
        Ok(ClusterSettings {
            redis,
            node,
            role: self.role,
            secret_file: self
                .secret_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SECRET_FILE)),
        })
    }
}

/// Node names travel in every message and name the node in the API and in metrics.
pub fn valid_node_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The kernel's host name, the default node name.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn parse(text: &str) -> Result<Config, crate::ConfigError> {
        Config::from_toml_str("palisade.toml", text)
    }

    #[test]
    fn a_cluster_table_is_read_and_its_defaults_filled() {
        let config = parse(
            r#"
            [cluster]
            redis = "redis://127.0.0.1:6379/0"
            role = "control"
            "#,
        )
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.role, super::ClusterRole::Control);
        assert!(super::valid_node_name(&cluster.node), "{}", cluster.node);
        assert_eq!(cluster.secret_file, std::path::PathBuf::from("cluster.key"));
    }

    #[test]
    fn a_bad_url_a_bad_node_name_and_an_unknown_role_are_refused_by_key() {
        for (table, key) in [
            ("redis = \"http://x\"\nrole = \"edge\"", "cluster.redis"),
            (
                "redis = \"redis://x\"\nrole = \"edge\"\nnode = \"a b\"",
                "cluster.node",
            ),
            ("redis = \"redis://x\"\nrole = \"leader\"", "cluster.role"),
        ] {
            let error = parse(&format!("[cluster]\n{table}\n")).unwrap_err();
            assert_eq!(error.key, key, "{error}");
        }
    }

    #[test]
    fn an_edge_node_takes_its_sites_from_the_control_node_and_needs_none() {
        let edge = "[cluster]\nredis = \"redis://x\"\nrole = \"edge\"\nnode = \"e1\"\n";
        let config = parse(edge).unwrap();
        assert!(config.sites.is_empty());
        let error = parse(&format!(
            "{edge}[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:1\"]\n"
        ))
        .unwrap_err();
        assert_eq!(error.key, "site", "{error}");
        assert!(error.message.contains("control node"), "{error}");
        let tls = parse(&format!(
            "{edge}[server]\nlisten_tls = [\"127.0.0.1:8443\"]\n"
        ));
        assert!(tls.is_ok(), "its certificates come with its sites: {tls:?}");
    }
}

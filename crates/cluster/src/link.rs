//! The connection to Redis: where the cluster keeps what it shares, how long it waits, and how
//! it tries again.

use model::ClusterSettings;
use redis::aio::MultiplexedConnection;
use std::time::Duration;

/// The latest snapshot: every site at one version (a signed message, `snapshot`).
pub const SNAPSHOT_KEY: &str = "palisade:snapshot";
/// The changes after it, in order (a stream of signed messages, field `m`).
pub const CHANGES_KEY: &str = "palisade:changes";
/// Set by an edge that found a gap no snapshot covers (the stream trimmed past it): the
/// control node publishes a snapshot when it sees it. Unsigned: a forged request costs one
/// snapshot, nothing more.
pub const SNAPSHOT_WANTED_KEY: &str = "palisade:snapshot:wanted";
/// Every node's last heartbeat, by node name (a hash of signed messages, `heartbeat`).
pub const NODES_KEY: &str = "palisade:nodes";

/// Entries the changes stream keeps (about: Redis trims whole blocks). A snapshot is published
/// every [`SNAPSHOT_EVERY`] versions, well inside it, so an edge that falls behind the stream
/// always finds a snapshot that covers the gap.
pub const STREAM_KEEP: u64 = 10_000;
/// Versions between snapshots.
pub const SNAPSHOT_EVERY: u64 = 1_000;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its answer (a blocking read waits [`BLOCK`] on top).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an edge's read of the stream waits for a new change before asking again.
pub const BLOCK: Duration = Duration::from_secs(1);
/// The first wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before reconnecting.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The variable a password can come from when the URL carries none.
pub const PASSWORD_ENV: &str = "PALISADE_REDIS_PASSWORD";

/// Why the Redis URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cluster.redis: {0}")]
pub struct UrlError(String);

/// A client for the cluster's Redis (it connects when asked).
pub fn client(settings: &ClusterSettings) -> Result<redis::Client, UrlError> {
    let info = redis::IntoConnectionInfo::into_connection_info(settings.redis.as_str())
        .map_err(|e| UrlError(e.to_string()))?;
    let info = match std::env::var(PASSWORD_ENV) {
        Ok(password) if info.redis_settings().password().is_none() && !password.is_empty() => {
            let redis = info.redis_settings().clone().set_password(password);
            info.set_redis_settings(redis)
        }
        _ => info,
    };
    redis::Client::open(info).map_err(|e| UrlError(e.to_string()))
}

/// A connection whose commands give up after `response` (a blocking read needs more than its
/// block time).
pub async fn connect(
    client: &redis::Client,
    response: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A connection, however many attempts it takes: between them it waits `wait` (doubling it,
/// up to [`MAX_BACKOFF`]); once connected, `wait` starts over.
pub async fn connect_retrying(
    client: &redis::Client,
    response: Duration,
    wait: &mut Duration,
) -> MultiplexedConnection {
    loop {
        if let Ok(con) = connect(client, response).await {
            *wait = MIN_BACKOFF;
            return con;
        }
        back_off(wait).await;
    }
}

/// Waits before the next connection attempt, and doubles the wait for the one after.
pub async fn back_off(wait: &mut Duration) {
    tokio::time::sleep(*wait).await;
    *wait = (*wait * 2).min(MAX_BACKOFF);
}

/// The id of the last entry of the stream `key`, or `0-0` while it has none: where a reader
/// that wants only what comes next starts (`$` would start after whatever is last when each
/// read begins, missing what arrives between two reads).
pub async fn last_id(con: &mut MultiplexedConnection, key: &str) -> redis::RedisResult<String> {
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    Ok(last
        .ids
        .into_iter()
        .next()
        .map_or_else(|| "0-0".into(), |entry| entry.id))
}

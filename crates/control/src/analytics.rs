//! Analytics: the edge's finished minutes, stored per site (`analytics_minutes`), pruned after
//! the retention, and served by `GET /api/sites/{site}/analytics?since=...`.

use crate::api::{ApiError, ApiResult, reply};
use crate::plane::ControlPlane;
use crate::store::{self, StoreError};
use ::analytics::{SiteMinute, merge_top};
use axum::http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often finished minutes are collected from the edge (a minute is stored at most this
/// long after it ends).
pub const COLLECT_EVERY: Duration = Duration::from_secs(10);
/// The window the top paths and clients cover.
pub const TOP_WINDOW: Duration = Duration::from_secs(3600);
/// Entries of each top list served.
pub const TOP_SERVED: usize = 20;
/// The most minutes one answer holds (a week).
pub const MAX_MINUTES: usize = 7 * 24 * 60;

/// Collects finished minutes into the store until the process ends; prunes what is older
/// than `retention` once an hour.
pub async fn collect(plane: Arc<ControlPlane>, retention: Duration) {
    let mut tick = tokio::time::interval(COLLECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = None::<std::time::Instant>;
    loop {
        tick.tick().await;
        let minutes = plane.edge.analytics().take_finished(SystemTime::now());
        let prune = last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
        if minutes.is_empty() && !prune {
            continue;
        }
        let cutoff = unix_now() - retention.as_secs() as i64;
        let stored = plane
            .store
            .run(move |conn| -> Result<(usize, usize), StoreError> {
                let tx = conn.transaction()?;
                for minute in &minutes {
                    let data = serde_json::to_string(minute)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    store::analytics::put(&tx, &minute.site, minute.minute, &data)?;
                }
                tx.commit()?;
                let pruned = if prune {
                    store::analytics::prune(conn, cutoff)?
                } else {
                    0
                };
                Ok((minutes.len(), pruned))
            })
            .await;
        match stored {
            Ok((_, pruned)) => {
                if prune {
                    last_prune = Some(std::time::Instant::now());
                    if pruned > 0 {
                        tracing::debug!(pruned, "analytics minutes past retention dropped");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "analytics minutes not stored"),
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `since`: unix seconds, or a duration back from now (`90m`, `24h`); default one hour. The
/// query it comes from was parsed once, by the API's gate.
pub fn parse_since(since: Option<&str>, now: i64) -> Result<i64, ApiError> {
    let Some(value) = since else {
        return Ok(now - TOP_WINDOW.as_secs() as i64);
    };
    match value.parse::<i64>() {
        Ok(seconds) => Ok(seconds),
        Err(_) => match model::parse_duration(value) {
            Ok(back) => Ok(now - back.as_secs() as i64),
            Err(_) => Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "since",
                "unix seconds, or a duration back from now such as 90m or 24h",
            )),
        },
    }
}

/// The answer: every minute from `since`, their totals, and the top paths and clients over
/// the last hour of them. Minutes the edge has not handed over yet are read from it: the
/// minute under way (`"partial": true`) and those finished since the last collection, so
/// traffic shows as soon as it is served, not up to a minute later.
pub async fn serve(plane: &ControlPlane, site: &str, since: Option<&str>) -> ApiResult {
    let now = unix_now();
    let since = parse_since(since, now)?;
    // Read before the store: a minute collected in between is then in both, and the stored
    // copy wins; read after, it could be in neither.
    let live = plane.edge.analytics().peek(site, SystemTime::now());
    let name = site.to_string();
    let rows = crate::api::read(plane, move |conn| {
        store::analytics::since(conn, &name, since, MAX_MINUTES)
    })
    .await?;
    if rows.is_empty() && live.is_empty() {
        // No minutes: a quiet site, or no such site (a mistyped name must not look quiet).
        let exists = {
            let name = site.to_string();
            let plane_sites = crate::api::read(plane, move |conn| {
                Ok(store::sites::get(conn, &name)?.is_some())
            })
            .await?;
            plane_sites || plane.base().has_site(site)
        };
        if !exists {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no site named {}, and no analytics kept for one",
                    model::shown(site)
                ),
            ));
        }
    }
    let mut minutes = Vec::with_capacity(rows.len() + live.len());
    for (_, data) in rows {
        match serde_json::from_str::<SiteMinute>(&data) {
            Ok(minute) => minutes.push(minute),
            Err(e) => tracing::warn!(error = %e, "unreadable analytics minute skipped"),
        }
    }
    let mut under_way = None;
    for (minute, partial) in live {
        if minute.minute >= since && !minutes.iter().any(|m| m.minute == minute.minute) {
            if partial {
                under_way = Some(minute.minute);
            }
            minutes.push(minute);
        }
    }
    minutes.sort_by_key(|m| m.minute);
    let Some(this_node) = plane.base().config.cluster.as_ref().map(|c| c.node.clone()) else {
        return reply(StatusCode::OK, summary(site, since, &minutes, under_way));
    };
    // A cluster's control node: the other edges' minutes too, added up minute by minute, and
    // each edge's totals beside the cluster's.
    let name = site.to_string();
    let rows = crate::api::read(plane, move |conn| {
        store::analytics::node_since(conn, &name, since, MAX_MINUTES * 64)
    })
    .await?;
    let mut by_node: std::collections::BTreeMap<String, Vec<SiteMinute>> = Default::default();
    for (node, _, data) in rows {
        match serde_json::from_str::<SiteMinute>(&data) {
            Ok(minute) => by_node.entry(node).or_default().push(minute),
            Err(e) => tracing::warn!(error = %e, "unreadable analytics minute skipped"),
        }
    }
    let mut cluster: std::collections::BTreeMap<i64, SiteMinute> = Default::default();
    for m in minutes.iter().chain(by_node.values().flatten()) {
        cluster
            .entry(m.minute)
            .or_insert_with(|| SiteMinute {
                site: site.to_string(),
                minute: m.minute,
                ..SiteMinute::default()
            })
            .absorb(m);
    }
    let merged: Vec<SiteMinute> = cluster.into_values().collect();
    let mut answer = summary(site, since, &merged, under_way);
    let mut edges = serde_json::Map::new();
    edges.insert(this_node, totals(&minutes));
    for (node, minutes) in &by_node {
        edges.insert(node.clone(), totals(minutes));
    }
    answer["edges"] = serde_json::Value::Object(edges);
    reply(StatusCode::OK, answer)
}

/// The counts of `minutes` added up, as the answer shows totals (no top lists: those cover the
/// last hour, beside them).
pub fn totals(minutes: &[SiteMinute]) -> serde_json::Value {
    let mut sum = SiteMinute::default();
    for m in minutes {
        let counts = SiteMinute {
            top_paths: Vec::new(),
            top_clients: Vec::new(),
            ..m.clone()
        };
        sum.absorb(&counts);
    }
    let mut totals = serde_json::to_value(&sum).unwrap_or_default();
    if let Some(object) = totals.as_object_mut() {
        for key in ["site", "minute", "top_paths", "top_clients"] {
            object.remove(key);
        }
    }
    totals
}

/// Totals and top lists of `minutes` (oldest first); the minute starting at `under_way` is
/// marked `"partial": true`.
pub fn summary(
    site: &str,
    since: i64,
    minutes: &[SiteMinute],
    under_way: Option<i64>,
) -> serde_json::Value {
    let hour_start = minutes
        .last()
        .map_or(0, |m| m.minute - TOP_WINDOW.as_secs() as i64 + 60);
    let last_hour: Vec<&SiteMinute> = minutes.iter().filter(|m| m.minute >= hour_start).collect();
    let top_paths = merge_top(last_hour.iter().map(|m| m.top_paths.as_slice()), TOP_SERVED);
    let top_clients = merge_top(
        last_hour.iter().map(|m| m.top_clients.as_slice()),
        TOP_SERVED,
    );
    let per_minute: Vec<serde_json::Value> = minutes
        .iter()
        .map(|m| {
            let mut value = serde_json::to_value(m).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.remove("site");
                object.remove("top_paths");
                object.remove("top_clients");
                if under_way == Some(m.minute) {
                    object.insert("partial".into(), serde_json::Value::Bool(true));
                }
            }
            value
        })
        .collect();
    json!({
        "site": site,
        "since": since,
        "totals": totals(minutes),
        "top_paths": top_paths,
        "top_clients": top_clients,
        "minutes": per_minute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(at: i64, requests: u64, path: &str) -> SiteMinute {
        SiteMinute {
            site: "blog".into(),
            minute: at,
            requests,
            status_2xx: requests,
            blocked: [("rule".to_string(), 2)].into(),
            top_paths: vec![(path.to_string(), requests)],
            ..SiteMinute::default()
        }
    }

    #[test]
    fn totals_add_up_and_top_lists_cover_the_last_hour_only() {
        let minutes = [
            minute(0, 1000, "/old"),
            minute(7200, 5, "/a"),
            minute(7260, 7, "/b"),
            minute(7320, 3, "/a"),
        ];
        let summary = summary("blog", 0, &minutes, Some(7320));
        assert_eq!(summary["totals"]["requests"], 1015);
        assert_eq!(summary["totals"]["blocked"]["rule"], 8);
        assert_eq!(summary["top_paths"], json!([["/a", 8], ["/b", 7]]));
        assert_eq!(summary["minutes"].as_array().unwrap().len(), 4);
        assert!(summary["minutes"][0].get("top_paths").is_none());
        assert_eq!(summary["minutes"][3]["partial"], true);
        assert!(summary["minutes"][2].get("partial").is_none());
    }

    #[test]
    fn since_takes_seconds_or_a_duration_back() {
        assert_eq!(parse_since(None, 10_000).unwrap(), 10_000 - 3600);
        assert_eq!(parse_since(Some("1234"), 10_000).unwrap(), 1234);
        assert_eq!(parse_since(Some("90m"), 10_000).unwrap(), 10_000 - 5400);
        assert!(parse_since(Some("soon"), 10_000).is_err());
    }
}

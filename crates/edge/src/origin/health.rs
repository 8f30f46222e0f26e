//! Active health checks: one task per upstream probes each origin every `interval`; `fall`
//! failures in a row take an origin out, `rise` successes bring it back.
//!
//! The task holds only a weak reference, so it ends by itself when a reload retires the
//! upstream.

use super::Upstream;
use model::HealthCheck;
use std::sync::Weak;

pub(super) fn spawn_checker(upstream: Weak<Upstream>, check: HealthCheck) {
    tokio::spawn(async move {
        // Per origin: consecutive results pointing away from the current verdict.
        let mut streaks: Vec<u32> = Vec::new();
        let mut healthy: Vec<bool> = Vec::new();
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(upstream) = upstream.upgrade() else {
                return;
            };
            let origins = upstream.origins();
            if streaks.len() != origins.len() {
                streaks = vec![0; origins.len()];
                healthy = origins
                    .iter()
                    .map(|o| o.probe_healthy.load(std::sync::atomic::Ordering::Relaxed))
                    .collect();
            }
            let probes = (0..origins.len()).map(|i| upstream.probe(i, &check.path, check.timeout));
            let results = futures_join_all(probes).await;
            for (i, ok) in results.into_iter().enumerate() {
                if ok == healthy[i] {
                    streaks[i] = 0;
                    continue;
                }
                streaks[i] += 1;
                let needed = if ok { check.rise } else { check.fall };
                if streaks[i] >= needed {
                    streaks[i] = 0;
                    healthy[i] = ok;
                    origins[i].set_probe_healthy(ok);
                    if ok {
                        tracing::info!(origin = %origins[i].label, "origin healthy again");
                    } else {
                        tracing::warn!(origin = %origins[i].label, path = %check.path, "origin failed its health check");
                    }
                }
            }
        }
    });
}

/// Runs the probes concurrently so one slow origin does not delay the others' verdicts.
async fn futures_join_all<F: std::future::Future<Output = bool>>(
    futures: impl Iterator<Item = F>,
) -> Vec<bool> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut results = vec![false; set.len()];
    let mut pending: Vec<usize> = (0..set.len()).collect();
    std::future::poll_fn(|cx| {
        pending.retain(|&i| match set[i].as_mut().poll(cx) {
            std::task::Poll::Ready(ok) => {
                results[i] = ok;
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results
}

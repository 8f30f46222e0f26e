//! The task beside the request path that measures the edge's scheduling lag and judges the
//! sites' shares of its requests, for `cpu_priority`: the phases read the result from
//! `EdgeState::cpu`; this task is the only writer.

use crate::cpu_priority::{PROBE_EVERY, SHARE_EVERY, Shortage, judge_shares};
use crate::state::EdgeState;
use std::sync::Arc;
use std::time::Instant;

/// Every [`PROBE_EVERY`]: measures the scheduling lag against `server.overload_lag`, and with
/// it whether the edge is short of CPU; every [`SHARE_EVERY`], and when a shortage starts,
/// judges which sites wait their turn when it is. Spawns the line's releaser
/// (`CpuPriority::let_go_in_turn`).
pub async fn watch_cpu(state: Arc<EdgeState>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut shortage = Shortage::default();
    // The line's turns, on the runtime like any request: it comes round when they do.
    let line = Arc::clone(&state);
    let releaser = tokio::spawn(async move { line.cpu.let_go_in_turn().await });
    let mut judged = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = shutdown.changed() => {
                releaser.abort();
                return;
            }
        }
        // Ready again at once, the probe goes to the back of its worker's queue: how long it
        // takes to come round is how long any request that becomes ready waits for a worker.
        // (A timer's lateness would say the same, blurred by its millisecond resolution.)
        let yielded = Instant::now();
        tokio::task::yield_now().await;
        let woke = Instant::now();
        let lag = woke.duration_since(yielded);
        let snapshot = state.snapshot.load();
        let was_short = shortage.short();
        let short = shortage.tick(lag, snapshot.limits.overload_lag, state.cpu.waiting());
        state.cpu.apply(lag, short);
        state.metrics.set_cpu(lag, short, state.cpu.waiting());
        if short != was_short {
            tracing::info!(
                lag_ms = lag.as_secs_f64() * 1e3,
                waiting = state.cpu.waiting(),
                "short of CPU: {}",
                if short {
                    "sites under attack or above their share wait their turn"
                } else {
                    "over"
                }
            );
        }
        // Judged at once when a shortage starts, on the window so far: the site that caused it
        // then waits from the next request on, not up to a window later.
        let starting = short && !was_short;
        if starting || woke.duration_since(judged) >= SHARE_EVERY {
            judged = woke;
            // The busy sites only: a site without requests has no share to judge.
            let busy = state.busy.listed();
            judge_shares(busy.iter().map(|(name, protection)| {
                let switched = snapshot
                    .sites
                    .by_name(name)
                    .is_some_and(|site| site.config.state == model::SiteState::UnderAttack);
                (
                    &protection.share,
                    switched || protection.attack.under_attack(),
                )
            }));
        }
    }
}

//! The task beside the request path that measures the edge's scheduling lag and judges the
//! sites' shares of its requests, for `cpu_priority`: the phases read the result from
//! `EdgeState::cpu`; this task is the only writer.

use crate::cpu_priority::{PROBE_EVERY, Pacing, SHARE_EVERY, TIMER_RESOLUTION, judge_shares};
use crate::state::EdgeState;
use std::sync::Arc;
use std::time::Instant;

/// Every [`PROBE_EVERY`]: sleeps, measures how late it woke against `server.overload_lag`,
/// and lets waiting requests go; every [`SHARE_EVERY`], and when a shortage starts, judges
/// which sites wait their turn when the edge is short.
pub async fn watch_cpu(state: Arc<EdgeState>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut pacing = Pacing::default();
    let mut judged = Instant::now();
    loop {
        let asked = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let woke = Instant::now();
        // A timer wakes up to a millisecond late on an idle runtime (its resolution); what
        // is beyond that, the task spent ready and waiting for a worker thread.
        let lag = woke
            .duration_since(asked)
            .saturating_sub(PROBE_EVERY + TIMER_RESOLUTION);
        let snapshot = state.snapshot.load();
        let was_short = pacing.short();
        let let_go = pacing.tick(lag, snapshot.limits.overload_lag, state.cpu.waiting());
        state.cpu.apply(lag, pacing.short(), let_go);
        state
            .metrics
            .set_cpu(lag, pacing.short(), state.cpu.waiting());
        if pacing.short() != was_short {
            tracing::info!(
                lag_ms = lag.as_secs_f64() * 1e3,
                waiting = state.cpu.waiting(),
                "short of CPU: {}",
                if pacing.short() {
                    "sites under attack or above their share wait their turn"
                } else {
                    "over"
                }
            );
        }
        // Judged at once when a shortage starts, on the window so far: the site that caused it
        // then waits from the next request on, not up to a window later.
        let starting = pacing.short() && !was_short;
        if starting || woke.duration_since(judged) >= SHARE_EVERY {
            judged = woke;
            judge_shares(snapshot.sites.iter().map(|site| {
                let under_attack = site.config.state == model::SiteState::UnderAttack
                    || site.protection.attack.under_attack();
                (&site.protection.share, under_attack)
            }));
        }
    }
}

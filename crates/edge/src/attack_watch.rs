//! The once-a-second task beside the request path that turns each site's counts into its
//! protection state: automatic under-attack mode on and off, and whether its origin is under
//! pressure. The phases read the result from `protection`; this task is the only writer.

use crate::state::EdgeState;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Once a second, turns every site's request and error counts into rates and switches
/// automatic under-attack mode on and off (each switch is a security event and a warning), and
/// judges whether each site's origin is under pressure (each switch is logged).
pub async fn watch_attacks(
    state: Arc<EdgeState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = state.snapshot.load();
        let now = Instant::now();
        for site in &snapshot.sites {
            let shield = &site.config.shield;
            let protection = &site.protection;
            let pressed = protection.origin.tick(
                &shield.pressure,
                protection.origin_in_flight(),
                shield.max_origin_concurrency,
                now,
            );
            if site.metrics.set_origin_pressure(pressed) != pressed {
                tracing::info!(
                    site = %site.name,
                    in_flight = protection.origin_in_flight(),
                    usual_latency_ms = protection.origin.baseline().as_millis() as u64,
                    "origin pressure {}",
                    if pressed { "on" } else { "off" },
                );
            }
            let change = site.protection.attack.tick(&site.config.shield.attack, now);
            site.metrics.set_under_attack(
                site.config.state == model::SiteState::UnderAttack
                    || site.protection.attack.under_attack(),
            );
            let Some(change) = change else {
                continue;
            };
            match change {
                shield::attack::Change::Started { reason, rate } => tracing::warn!(
                    site = %site.name,
                    reason = reason.as_str(),
                    rate,
                    baseline = site.protection.attack.baseline_rps(),
                    "under-attack mode on"
                ),
                shield::attack::Change::Ended => {
                    tracing::warn!(site = %site.name, "under-attack mode off: traffic settled")
                }
            }
            state.events.record(change.event(Arc::clone(&site.name)));
        }
    }
}

//! The once-a-second task beside the request path that turns each site's counts into its
//! protection state: attack detection, the mitigations derived from an attack's signature
//! (and the fallback of challenging everyone), and whether its origin is under pressure. The phases read the result from `protection`; this task is the only writer.

use crate::snapshot::SiteRuntime;
use crate::state::EdgeState;
use shield::signature::{Thresholds, TickInput};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slices of the sites ticked in turn, one every 50 ms: each site is still ticked once a
/// second (it measures the time since its own last tick), but no single pass holds a worker
/// for the whole table (100,000 sites took it about 100 ms; a slice, about 5 ms).
const SLICES: usize = 20;

/// Once a second, turns every site's request and error counts into rates and switches
/// automatic under-attack mode on and off (each switch is a security event and a warning), and
/// judges whether each site's origin is under pressure (each switch is logged). The sites are
/// ticked a twentieth at a time (see [`SLICES`]). Once a second it tells the busy list
/// (`protection::BusySites`, which the CPU shares walk) which sites are quiet.
pub async fn watch_attacks(
    state: Arc<EdgeState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / SLICES as u32);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stirring = std::collections::HashSet::new();
    for slice in (0..SLICES).cycle() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = state.snapshot.load();
        let now = Instant::now();
        // Every site, quiet or not: attack detection learns from quiet seconds too (a site's
        // first busy second is judged beside them), so skipping them would change its verdicts.
        for site in snapshot.sites.iter().skip(slice).step_by(SLICES) {
            if !tick_site(&state, site, now) {
                stirring.insert(Arc::clone(&site.name));
            }
        }
        if slice == SLICES - 1 {
            state.busy.tick(|name, _| {
                snapshot.sites.by_name(name)?;
                Some(!stirring.contains(name))
            });
            stirring.clear();
        }
    }
}

/// One site's second: its counts into rates, attack detection and mitigations, origin
/// pressure and the challenge's difficulty. True when the site is quiet: no traffic, and
/// nothing left to wind down.
fn tick_site(state: &EdgeState, site: &SiteRuntime, now: Instant) -> bool {
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
    let detection = &site.config.shield.attack;
    let attack = &site.protection.attack;
    // Mitigated requests held by `mitigation_hold` arrive slowly, but an attacker still
    // sending them is still there: a twentieth of the floor keeps the attack on.
    let matched = site.protection.signatures.take_matches() as f64;
    let engaged = matched >= (detection.min_rps / 20.0).max(1.0);
    let change = attack.tick_engaged(detection, now, engaged);
    let outcome = site.protection.signatures.tick(&TickInput {
        under_attack: attack.under_attack(),
        current_rps: attack.current_rps(),
        baseline_rps: attack.baseline_rps(),
        thresholds: Thresholds {
            min_coverage: detection.min_coverage,
            max_baseline_share: detection.max_baseline_share,
        },
        fallback: detection.fallback == model::AttackFallback::Challenge,
    });
    site.metrics.set_under_attack(
        site.config.state == model::SiteState::UnderAttack
            || site.protection.signatures.challenge_all()
            || site.protection.held_by_cluster(),
    );
    site.metrics
        .set_attack(attack.under_attack(), outcome.coverage);
    for signature_change in &outcome.changes {
        state.report_signature(site, signature_change);
    }
    let challenge = &site.challenge.settings;
    let room = challenge
        .max_difficulty
        .saturating_sub(challenge.difficulty);
    if let Some(change) = site.protection.solvers.tick(room, now) {
        let bits = challenge.difficulty + change.to;
        tracing::warn!(
            site = %site.name,
            difficulty = bits,
            revoked = site.protection.solvers.revocations(),
            "challenge difficulty {} on evidence of solvers",
            if change.to > change.from { "raised" } else { "lowered" },
        );
        state.events.record(shield::events::NewEvent {
            value: Some(f64::from(bits)),
            site: Arc::clone(&site.name),
            client_ip: None,
            action: shield::events::EventAction::Difficulty,
            reason: shield::events::EventReason::Solver,
            rule_id: None,
            mitigation: None,
        });
    }
    let quiet = attack.current_rps() == 0.0
        && !attack.under_attack()
        && !pressed
        && site.protection.solvers.extra_bits() == 0
        && !site.protection.signatures.challenge_all()
        && site.protection.signatures.mitigations().is_empty();
    let Some(change) = change else {
        return quiet;
    };
    match change {
        shield::attack::Change::Started { reason, rate } => tracing::warn!(
            site = %site.name,
            reason = reason.as_str(),
            rate,
            baseline = site.protection.attack.baseline_rps(),
            "attack detected"
        ),
        shield::attack::Change::Ended => {
            tracing::warn!(site = %site.name, "attack over: traffic settled")
        }
    }
    state.events.record(change.event(Arc::clone(&site.name)));
    if let Some(hook) = state.attack_hook.get() {
        hook(
            &site.name,
            matches!(change, shield::attack::Change::Started { .. }),
        );
    }
    quiet
}

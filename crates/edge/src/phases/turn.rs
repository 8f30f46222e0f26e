//! The `turn` phase: while the edge is short of CPU, the requests of a site under attack, or
//! of one above its share of the edge's requests, wait their turn so that the other sites'
//! go first (`cpu_priority` has the why and the how).

use crate::phases::request::SiteRequest;
use std::time::Instant;

/// Runs after the site's state, before the shield. Counts the request into its site's share
/// of the edge's requests. When the edge is short of CPU and the site is deprioritised,
/// returns the wait: in the line until the line lets the request go (once the work that was
/// ready before it has run), at most `server.overload_wait`, then on as usual. Never answers;
/// `None` (the usual case: two relaxed loads, and the site's listing among the busy sites the
/// first time) means go straight on.
pub fn wait_if_short<'r>(request: &'r SiteRequest<'_>) -> Option<impl Future<Output = ()> + 'r> {
    let site = &request.site;
    request.state.busy.arrive(&site.name, &site.protection);
    let deprioritised = site.protection.share.arrive();
    let cpu = &request.state.cpu;
    if !deprioritised || !cpu.short() {
        return None;
    }
    let limit = request.snapshot.limits.overload_wait;
    let metrics = &request.site.metrics;
    Some(async move {
        let started = Instant::now();
        let let_go = cpu.wait_turn(limit).await;
        metrics.deprioritised(started.elapsed(), let_go);
    })
}

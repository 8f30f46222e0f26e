//! The `shield` phase, between route and cache: the site's lists, rules and rate limits
//! (`shield::guard`), then the challenge gate; and the origin protection the later phases ask
//! for (the per-address cache-miss limit, the cap on concurrent origin requests).
//!
//! What a site's shield remembers between requests (attack baselines, origin requests in flight
//! and latency, miss counts) is a `protection::SiteProtection` kept by site name, so it outlives
//! reloads as the site's metrics do.
//!
//! The miss limit is there to keep a cache-busting flood off an origin that is struggling, so
//! by default it acts only while the origin is under pressure (`shield::pressure`), and then
//! answers a client that can take the challenge with it: a browser behind a busy NAT address
//! solves it once and is then counted on its clearance, with an allowance of its own, rather
//! than on the address it shares. Everyone else past the limit gets 429.

use crate::body::ClientBody;
use crate::body::EdgeBody;
use crate::http::client::ClientFacts;
use crate::own_responses::edge_page;
use crate::phases::challenge as challenge_phase;
use crate::phases::request::SiteRequest;
use crate::protection::SiteProtection;
use crate::snapshot::SiteRuntime;
use crate::state::ChallengeState;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use model::{LimitAction, SiteShield, SiteState};
use shield::RequestFacts;
use shield::challenge::{ChallengeKeys, clearance};
use shield::events::{EventAction, EventReason, NewEvent};
use shield::guard::Verdict;
use shield::ratelimit::{WindowCounter, client_prefix, cookie_value};
use shield::signature::{Mitigation, MitigationAction};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// What the miss limit decided for one cache miss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MissVerdict {
    /// Under the limit, or over it while the origin copes: on to the origin.
    Pass,
    /// Over the limit, and the site's `misses_action` is `log`.
    Log { count: f64 },
    /// Over the limit without clearance: the challenge, for a client that can take one.
    Challenge { count: f64 },
    /// 429: over the limit with `misses_action = "block"`, or a cleared client over the
    /// allowance of its own clearance.
    Refuse { count: f64 },
}

/// Counts a cache miss for the client at `ip` and judges it: over `max_misses_per_ip`, and (by
/// default) while the origin is under pressure, the site's `misses_action` applies. A client
/// with a live clearance (`clearance` returns its cookie) that would be challenged is counted
/// on its cookie instead of its address: each browser behind a shared address has an
/// allowance of its own, and one that floods alone is refused rather than challenged again.
/// (A cookie is bound to the site, the network, the User-Agent and the second it was earned:
/// two alike browsers solving in the same second share one allowance, and a client that solves
/// again earns another, at the price of the proof of work.)
pub fn judge_miss<'a>(
    protection: &SiteProtection,
    counter: &WindowCounter,
    shield: &SiteShield,
    ip: IpAddr,
    clearance: impl FnOnce() -> Option<&'a [u8]>,
    now: Instant,
) -> MissVerdict {
    let limit = f64::from(shield.max_misses_per_ip);
    if limit == 0.0 {
        return MissVerdict::Pass;
    }
    // Counted whatever the origin's state, so that the heaviest clients are known the moment
    // pressure starts.
    let key = xxhash_rust::xxh3::xxh3_64_with_seed(&client_prefix(ip), protection.seed);
    let count = counter.hit(key, now);
    if count <= limit
        || (shield.misses_only_under_pressure && !protection.origin_under_pressure(shield, now))
    {
        return MissVerdict::Pass;
    }
    match shield.misses_action {
        LimitAction::Log => MissVerdict::Log { count },
        LimitAction::Block => MissVerdict::Refuse { count },
        LimitAction::Challenge => match clearance() {
            None => MissVerdict::Challenge { count },
            Some(cookie) => {
                // Another seed than addresses', so a cookie and an address never share a key.
                let key = xxhash_rust::xxh3::xxh3_64_with_seed(cookie, !protection.seed);
                let count = counter.hit(key, now);
                if count <= limit {
                    MissVerdict::Pass
                } else {
                    MissVerdict::Refuse { count }
                }
            }
        },
    }
}

/// Runs after the site's state, unless the site is paused. Reads the client's address, the
/// request's method, host, path, query and fields, and its clearance cookie (verified at most
/// once, and only when a challenge would otherwise be answered). Writes whether an allow list
/// or rule let the request skip the rest of the shield (`SiteRequest::allowed`), and counts
/// the request for attack detection.
///
/// Also samples the request for attack signatures (`shield::signature`), and marks it
/// `suspect` when it matched a mitigation but went on (its clearance let it).
///
/// Answers early: a deny list or `block` rule → 403; a rate limit → 429; a mitigation of an
/// attack's signature → the challenge, or 403 and a closed connection when certain, held
/// `mitigation_hold`; a `challenge` rule, or under-attack mode (the site's state, or the
/// fallback when no signature covers a surge) for a request without clearance → the challenge
/// page (503), or 403 where a browser is needed (`phases::challenge`). A clearance that has
/// carried a flood past a challenge is revoked and challenged again
/// (`shield::challenge::solvers`).
pub fn gate(request: &mut SiteRequest<'_>) -> ControlFlow<Response<EdgeBody>> {
    if request.paused {
        return ControlFlow::Continue(());
    }
    let (site, snapshot, state) = (request.site, request.snapshot, request.state);
    let client_ip = request.client_ip;
    let record = |event| crate::phases::request::record(state, site, event);
    let http_request = &request.request;
    let facts = RequestFacts {
        ip: client_ip,
        host: &request.host,
        method: http_request.method().as_str(),
        path: http_request.uri().path(),
        query: http_request.uri().query().unwrap_or(""),
        headers: http_request.headers(),
        tls: request.conn.client.tls,
        version: http_request.version(),
        connection: &request.conn.client.traits,
    };
    // Verified at most once, and only when a challenge would otherwise be answered.
    let clearance = std::cell::OnceCell::new();
    let cleared = || {
        *clearance.get_or_init(|| {
            challenge_phase::cleared(
                &snapshot.challenge_keys,
                site,
                client_ip,
                http_request.headers(),
            )
        })
    };
    let challenge = || {
        challenge_phase::challenge(
            &state.challenges,
            &snapshot.challenge_keys,
            site,
            client_ip,
            http_request,
            &request.host,
        )
    };
    let verdict = if site.guard.is_empty() {
        Verdict::Pass
    } else {
        site.guard
            .check_cleared(&facts, Instant::now(), &record, &cleared)
    };
    if let Verdict::Challenge { .. } = verdict {
        return ControlFlow::Break(challenge());
    }
    if let Some(refusal) = answer(&verdict) {
        return ControlFlow::Break(refusal);
    }
    let allowed = verdict == Verdict::Allowed;
    // Counted before the mitigations and the challenge gate: requests they answer are still
    // the traffic that keeps an attack on (counting only those let through, it would end
    // `attack_hold` after it began, flood or no flood).
    let count = site.protection.attack.count_request();
    let signatures = &site.protection.signatures;
    if let Some(baseline) = signatures.sample(count)
        && let Some(changes) = signatures.observe(&facts, baseline)
    {
        for change in changes {
            state.report_signature(site, &change);
        }
    }
    let exempt = std::cell::OnceCell::new();
    let exempt = || *exempt.get_or_init(|| site.challenge.exempt(&facts));
    if !allowed
        && let Some(mitigation) = signatures.matching(&facts)
        && !exempt()
    {
        request.suspect = true;
        let carried = || solver_flood(site, request.request.headers());
        let refused = mitigate(
            (&site.name, &mitigation),
            client_ip,
            &record,
            (&cleared, &carried),
            &challenge,
        );
        if let Some(refused) = refused {
            // Held before it goes out: a tool in a closed loop waits, rather than being
            // answered at once and sending the next request.
            let hold = site.config.shield.attack.mitigation_hold;
            if !hold.is_zero() {
                request.log.hold = Some(hold);
            }
            return ControlFlow::Break(refused);
        }
    }
    let under_attack = site.config.state == SiteState::UnderAttack
        || signatures.challenge_all()
        || site.protection.held_by_cluster();
    if under_attack && !allowed && !exempt() {
        if !cleared() {
            record(NewEvent::for_client(
                &site.name,
                client_ip,
                EventAction::Challenge,
                EventReason::UnderAttack,
            ));
            return ControlFlow::Break(challenge());
        }
        if solver_flood(site, request.request.headers()) {
            record(NewEvent::for_client(
                &site.name,
                client_ip,
                EventAction::ClearanceRevoked,
                EventReason::Solver,
            ));
            return ControlFlow::Break(challenge());
        }
    }
    request.allowed = allowed;
    ControlFlow::Continue(())
}

/// Counts a request that clearance carried past a challenge during an attack; true when the
/// clearance has carried a flood and was revoked (the request is challenged again).
fn solver_flood(site: &SiteRuntime, headers: &http::HeaderMap) -> bool {
    let settings = &site.challenge.settings;
    site.protection.solvers.carried(
        headers,
        settings.max_requests_per_clearance,
        settings.clearance_ttl,
        Instant::now(),
    )
}

/// A request that matched `mitigation`: for `block`, 403 and the HTTP/1.1 connection closed;
/// for `challenge`, the challenge unless the client holds clearance (`None`: it goes on) that
/// has not carried a flood. The caller holds the answer `mitigation_hold`.
fn mitigate(
    (site, mitigation): (&std::sync::Arc<str>, &Mitigation),
    client_ip: IpAddr,
    record: &dyn Fn(NewEvent),
    (cleared, solver_flood): (&dyn Fn() -> bool, &dyn Fn() -> bool),
    challenge: &dyn Fn() -> Response<EdgeBody>,
) -> Option<Response<EdgeBody>> {
    let event = |action| {
        record(NewEvent {
            rule_id: Some(std::sync::Arc::clone(&mitigation.id)),
            ..NewEvent::for_client(site, client_ip, action, EventReason::Signature)
        })
    };
    match mitigation.action {
        MitigationAction::Block => {
            event(EventAction::Block);
            let mut response = edge_page(StatusCode::FORBIDDEN, false);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Some(response)
        }
        MitigationAction::Challenge if cleared() => {
            if !solver_flood() {
                return None;
            }
            record(NewEvent {
                rule_id: Some(std::sync::Arc::clone(&mitigation.id)),
                ..NewEvent::for_client(
                    site,
                    client_ip,
                    EventAction::ClearanceRevoked,
                    EventReason::Solver,
                )
            });
            Some(challenge())
        }
        MitigationAction::Challenge => {
            event(EventAction::Challenge);
            Some(challenge())
        }
    }
}

/// Runs inside the cache phase, on a miss that goes to the origin, unless an allow list or
/// rule let the request through. Answers a client past its miss limit while the origin is
/// under pressure: see [`limit_misses`].
pub fn limit_request_misses(request: &SiteRequest<'_>) -> ControlFlow<Response<EdgeBody>> {
    if request.allowed {
        return ControlFlow::Continue(());
    }
    let state = request.state;
    let site = request.site;
    let refusal = limit_misses(
        (&state.challenges, &request.snapshot.challenge_keys),
        site,
        (request.client_ip, &request.conn.client),
        request.request,
        &request.host,
        &|event| crate::phases::request::record(state, site, event),
    );
    match refusal {
        Some(refusal) => ControlFlow::Break(refusal),
        None => ControlFlow::Continue(()),
    }
}

/// The cache phase's miss limit ([`judge_miss`]): `None` to go on to the origin, or the answer
/// for a client past it: the challenge page when the request can take one
/// ([`challenge_phase::can_take`]), else 429 with Retry-After.
pub fn limit_misses(
    (challenges, keys): (&ChallengeState, &ChallengeKeys),
    site: &SiteRuntime,
    (ip, client): (IpAddr, &ClientFacts),
    request: &Request<ClientBody>,
    host: &str,
    record: &dyn Fn(NewEvent),
) -> Option<Response<EdgeBody>> {
    let shield = &site.config.shield;
    let headers = request.headers();
    let cleared = || {
        let cookie = cookie_value(headers, clearance::COOKIE)?;
        challenge_phase::cleared(keys, site, ip, headers).then_some(cookie)
    };
    let verdict = judge_miss(
        &site.protection,
        &site.misses,
        shield,
        ip,
        cleared,
        Instant::now(),
    );
    let event = |action, count| {
        record(NewEvent {
            value: Some(count),
            ..NewEvent::for_client(&site.name, ip, action, EventReason::CacheMisses)
        })
    };
    let facts = || RequestFacts {
        ip,
        host,
        method: request.method().as_str(),
        path: request.uri().path(),
        query: request.uri().query().unwrap_or(""),
        headers,
        tls: client.tls,
        version: request.version(),
        connection: &client.traits,
    };
    match verdict {
        MissVerdict::Pass => None,
        MissVerdict::Log { count } => {
            event(EventAction::Log, count);
            None
        }
        MissVerdict::Challenge { count }
            if challenge_phase::can_take(&site.challenge, &facts()) =>
        {
            event(EventAction::Challenge, count);
            Some(challenge_phase::challenge(
                challenges, keys, site, ip, request, host,
            ))
        }
        MissVerdict::Challenge { count } | MissVerdict::Refuse { count } => {
            event(EventAction::RateLimit, count);
            Some(too_many_requests(shield.misses_period))
        }
    }
}

/// The response for a verdict that refuses the request; `None` to go on. (A challenge is
/// the challenge gate's to answer: `phases::challenge`.)
pub fn answer(verdict: &Verdict) -> Option<Response<EdgeBody>> {
    match verdict {
        Verdict::Pass | Verdict::Allowed | Verdict::Challenge { .. } => None,
        Verdict::Block { .. } => Some(edge_page(StatusCode::FORBIDDEN, false)),
        Verdict::Limited { retry_after } => Some(too_many_requests(*retry_after)),
    }
}

/// 429 with Retry-After in whole seconds (at least 1).
pub fn too_many_requests(retry_after: Duration) -> Response<EdgeBody> {
    let mut response = edge_page(StatusCode::TOO_MANY_REQUESTS, false);
    retry_after_header(&mut response, retry_after);
    response
}

/// 503 with Retry-After: the site's origin is at its concurrency cap.
pub fn origin_busy() -> Response<EdgeBody> {
    let mut response = edge_page(StatusCode::SERVICE_UNAVAILABLE, false);
    retry_after_header(&mut response, Duration::from_secs(5));
    response
}

fn retry_after_header(response: &mut Response<EdgeBody>, after: Duration) {
    let seconds = after.as_secs().max(1) + u64::from(after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::ProtectionRegistry;

    /// A site with a miss limit of 3 and an origin cap of 4 (under pressure from 2 in flight).
    fn shield(action: LimitAction) -> SiteShield {
        SiteShield {
            max_misses_per_ip: 3,
            max_origin_concurrency: 4,
            misses_action: action,
            ..SiteShield::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// `n` misses from `ip` without clearance; the last one's verdict.
    fn misses(p: &SiteProtection, s: &SiteShield, ip: IpAddr, n: usize) -> MissVerdict {
        let counter = p.miss_counter(s.misses_period);
        let now = Instant::now();
        let mut verdict = MissVerdict::Pass;
        for _ in 0..n {
            verdict = judge_miss(p, &counter, s, ip, || None, now);
        }
        verdict
    }

    #[test]
    fn misses_over_the_limit_pass_while_the_origin_copes() {
        let registry = ProtectionRegistry::default();
        let p = registry.site("a");
        let s = shield(LimitAction::Challenge);
        assert_eq!(misses(&p, &s, ip("10.0.0.1"), 50), MissVerdict::Pass);
        // Two of four origin slots taken: under pressure, and the count was kept all along.
        let _busy = [p.origin_permit(4).unwrap(), p.origin_permit(4).unwrap()];
        assert!(p.origin_under_pressure(&s, Instant::now()));
        assert!(matches!(
            misses(&p, &s, ip("10.0.0.1"), 1),
            MissVerdict::Challenge { count } if count > 50.0
        ));
        // Per address: another one has its own count.
        assert_eq!(misses(&p, &s, ip("10.0.0.2"), 3), MissVerdict::Pass);
        assert!(matches!(
            misses(&p, &s, ip("10.0.0.2"), 1),
            MissVerdict::Challenge { .. }
        ));
    }

    #[test]
    fn under_pressure_the_misses_action_decides() {
        for (action, over) in [
            (LimitAction::Block, MissVerdict::Refuse { count: 4.0 }),
            (LimitAction::Log, MissVerdict::Log { count: 4.0 }),
            (
                LimitAction::Challenge,
                MissVerdict::Challenge { count: 4.0 },
            ),
        ] {
            let registry = ProtectionRegistry::default();
            let p = registry.site("a");
            let s = shield(action);
            let _busy = [p.origin_permit(4).unwrap(), p.origin_permit(4).unwrap()];
            assert_eq!(misses(&p, &s, ip("10.0.0.1"), 3), MissVerdict::Pass);
            assert_eq!(misses(&p, &s, ip("10.0.0.1"), 1), over, "{action:?}");
        }
    }

    #[test]
    fn with_the_pressure_gate_off_the_limit_always_applies() {
        let p = SiteProtection::new();
        let s = SiteShield {
            misses_only_under_pressure: false,
            ..shield(LimitAction::Block)
        };
        assert_eq!(misses(&p, &s, ip("10.0.0.1"), 3), MissVerdict::Pass);
        assert_eq!(
            misses(&p, &s, ip("10.0.0.1"), 1),
            MissVerdict::Refuse { count: 4.0 }
        );
        // 0: no limit at all.
        let none = SiteShield {
            max_misses_per_ip: 0,
            ..s
        };
        assert_eq!(misses(&p, &none, ip("10.0.0.1"), 100), MissVerdict::Pass);
    }

    #[test]
    fn a_cleared_client_past_its_address_limit_is_counted_on_its_clearance() {
        let registry = ProtectionRegistry::default();
        let p = registry.site("a");
        let s = shield(LimitAction::Challenge);
        let _busy = [p.origin_permit(4).unwrap(), p.origin_permit(4).unwrap()];
        let nat = ip("192.0.2.1");
        let counter = p.miss_counter(s.misses_period);
        let now = Instant::now();
        let miss =
            |cookie: Option<&'static [u8]>| judge_miss(&p, &counter, &s, nat, || cookie, now);
        for _ in 0..10 {
            miss(None);
        }
        // Two browsers behind the busy address, each with its own clearance and allowance...
        for _ in 0..3 {
            assert_eq!(miss(Some(b"first")), MissVerdict::Pass);
            assert_eq!(miss(Some(b"second")), MissVerdict::Pass);
        }
        // ...and one that keeps going past it is refused, not challenged again.
        assert_eq!(miss(Some(b"first")), MissVerdict::Refuse { count: 4.0 });
        assert!(matches!(miss(None), MissVerdict::Challenge { .. }));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = too_many_requests(Duration::from_millis(1500));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
    }
}

//! A request's path through the edge, phase by phase. Each phase can end the request.
//!
//! ```text
//! http     framing checks (smuggling shapes → 400, close)       phases::framing
//! route    Host/:authority → site; unknown → 421, CONNECT → 405   phases::route
//! reserved /.well-known/palisade/: challenge answers, abuse       phases::challenge,
//!          reports (also on the operator's hostname; any site state) phases::abuse
//! shield   lists, rules, rate limits → 403/429; challenge gate     phases::shield,
//!          (no clearance: challenge page 503, or 403)               phases::challenge
//! limits   declared body over max_body_bytes → 413
//! cache    fresh stored response → answer; else one fill per miss  phases::cache
//!          (a miss over the client's miss limit while the origin is
//!          under pressure → challenge or 429)                       phases::shield
//! origin   concurrency cap (stale or 503), rewrite the header,      phases::forward, origin
//!          pick an origin, forward, failover
//! respond  clean the origin's header, or the edge's own page      phases::respond
//! log      when the body is done: metrics and one access line     RequestLog
//! ```
//! (`accept`, `tls` and the `http` timeouts run before this, per connection: see `conn`.)

use crate::access_log::{AccessLog, AccessRecord};
use crate::analytics::{Analytics, Minute, ServedRequest, SiteAnalytics};
use crate::body::{BodyMeter, BodyPace, ClientBody, EdgeBody, Finish, OriginBody};
use crate::conn::ConnContext;
use crate::http::client::real_client_ip;
use crate::http::fields::has_token;
use crate::http::framing;
use crate::metrics::{CacheOutcome, Metrics, SiteMetrics, UNROUTED};
use crate::origin::{OriginFailure, OriginRequest, OriginState};
use crate::phases::cache::CacheStep;
use crate::phases::route::RouteRefusal;
use crate::phases::{
    abuse as abuse_phase, cache as cache_phase, challenge as challenge_phase, forward, respond,
    route, shield as shield_phase,
};
use crate::protection::OriginPermit;
use crate::snapshot::{SiteRuntime, Snapshot};
use arc_swap::ArcSwap;
use cache::Cache;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use model::SiteState;
use shield::RequestFacts;
use shield::events::{EventAction, EventReason, EventRing, NewEvent};
use shield::guard::Verdict;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What every request reads: the current snapshot and the shared sinks.
pub struct EdgeState {
    pub snapshot: ArcSwap<Snapshot>,
    pub access_log: AccessLog,
    pub metrics: Arc<Metrics>,
    /// Outlives snapshots: a reload keeps what is stored.
    pub cache: Arc<Cache>,
    /// Wakes the background pass that applies purges to stored objects.
    pub purge_wake: Arc<tokio::sync::Notify>,
    /// What the shield did, for `GET /api/events`.
    pub events: Arc<EventRing>,
    /// Challenge nonces and the filter of answered challenges.
    pub challenges: challenge_phase::ChallengeState,
    /// The abuse intake's sink and per-address counter.
    pub abuse: abuse_phase::AbuseIntake,
    /// Answers the admin listener's requests once the control plane installs it.
    pub admin_handler: std::sync::OnceLock<crate::admin::AdminHandler>,
    /// Per-site minutes for the control plane to take.
    pub analytics: Arc<Analytics>,
    unrouted: Arc<SiteMetrics>,
}

impl EdgeState {
    pub fn new(
        snapshot: Snapshot,
        access_log: AccessLog,
        metrics: Arc<Metrics>,
        cache: Arc<Cache>,
        events: Arc<EventRing>,
        analytics: Arc<Analytics>,
    ) -> EdgeState {
        EdgeState {
            events,
            challenges: challenge_phase::ChallengeState::new(),
            abuse: abuse_phase::AbuseIntake::new(),
            admin_handler: std::sync::OnceLock::new(),
            snapshot: ArcSwap::from_pointee(snapshot),
            access_log,
            unrouted: metrics.site(UNROUTED),
            metrics,
            cache,
            purge_wake: Arc::new(tokio::sync::Notify::new()),
            analytics,
        }
    }
}

/// Runs one request through every phase and returns what the client gets. `h2_stream`: on
/// HTTP/2, where the origin's interim responses go (on HTTP/1.1 the connection takes them).
pub async fn handle(
    state: &Arc<EdgeState>,
    conn: &Arc<ConnContext>,
    mut request: Request<ClientBody>,
    h2_stream: Option<Arc<dyn crate::origin::InterimSink>>,
) -> Response<EdgeBody> {
    let started = Instant::now();
    let ambiguous_on_wire = conn.activity.request_started();
    if let Some(rooted) = route::with_rooted_path(request.uri()) {
        *request.uri_mut() = rooted;
    }
    let snapshot = state.snapshot.load_full();
    let mut log = RequestLog {
        state: Arc::clone(state),
        conn: Arc::clone(conn),
        site: None,
        client_ip: conn.client.peer,
        method: request.method().clone(),
        uri: request.uri().clone(),
        host: None,
        version: request.version(),
        status: 0,
        meter: None,
        origin: None,
        upstream_time: None,
        origin_permit: None,
        analytics: None,
        cache: None,
        started,
    };

    // http: framing that could be read two ways never reaches routing.
    let framing = match ambiguous_on_wire {
        Some(e) => Err(e),
        None => framing::check(request.version(), request.headers()),
    };
    if let Err(e) = framing {
        tracing::debug!(peer = %conn.client.peer, reason = e.reason(), "refused request framing");
        return log.finish_with(respond::edge_page(StatusCode::BAD_REQUEST, true));
    }

    // route
    let routed = match route::route(
        &snapshot,
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
        conn.sni_site.as_deref(),
    ) {
        Ok(routed) => routed,
        Err(RouteRefusal::OperatorHost) => {
            // The operator's hostname: the abuse intake and nothing else, never forwarded.
            log.client_ip = real_client_ip(request.headers(), &conn.client, |ip| {
                snapshot.is_trusted_proxy(ip)
            });
            if state.access_log.enabled() {
                log.host = snapshot.operator_host.as_deref().map(str::to_string);
            }
            let (response, bytes_in) = abuse_phase::operator_host(
                &state.abuse,
                &state.metrics,
                &snapshot,
                log.client_ip,
                request,
            )
            .await;
            log.meter = Some(Arc::new(BodyMeter::read(bytes_in)));
            return log.finish_with(response);
        }
        Err(refusal) => {
            let status = match refusal {
                RouteRefusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
                RouteRefusal::BadHost | RouteRefusal::BadTarget => StatusCode::BAD_REQUEST,
                RouteRefusal::UnknownHost
                | RouteRefusal::SniMismatch
                | RouteRefusal::OperatorHost => StatusCode::MISDIRECTED_REQUEST,
            };
            let close = refusal != RouteRefusal::UnknownHost;
            return log.finish_with(respond::edge_page(status, close));
        }
    };
    let site = &snapshot.sites[routed.site];
    log.site = Some((Arc::clone(&site.name), Arc::clone(&site.metrics)));
    log.analytics = Some(Arc::clone(&site.analytics));
    if state.access_log.enabled() {
        log.host = Some(routed.host.to_string());
    }
    log.client_ip = real_client_ip(request.headers(), &conn.client, |ip| {
        snapshot.is_trusted_proxy(ip)
    });

    // shield
    let record = |event: shield::events::NewEvent| {
        site.metrics.shield(event.action);
        site.analytics
            .shield(Minute::at(Instant::now()), event.action, event.reason);
        state.events.record(event);
    };
    let client_ip = log.client_ip;
    // Palisade's own endpoints (challenge answers, abuse reports): never forwarded, never
    // challenged (a challenge rule must not stand between a browser and its answer), answered
    // before the site's state (a suspended site's visitors can still report it), but deny
    // lists hold.
    if challenge_phase::is_reserved(request.uri().path()) {
        if let Some(refusal) = shield_phase::answer(&site.guard.check_lists(client_ip, &record)) {
            return log.finish_with(refusal);
        }
        let (response, bytes_in) = if request.uri().path() == abuse_phase::ABUSE_PATH {
            // The host is copied: `routed` borrows the request, which the intake takes.
            let host = routed.host.to_string();
            let place = abuse_phase::Place {
                site: Some(&site.name),
                host: &host,
            };
            let timeout = snapshot.limits.request_body_timeout;
            abuse_phase::serve(
                &state.abuse,
                &state.metrics,
                place,
                client_ip,
                timeout,
                request,
            )
            .await
        } else {
            challenge_phase::reserved(
                &state.challenges,
                &snapshot.challenge_keys,
                site,
                (client_ip, conn.client.tls),
                snapshot.limits.request_body_timeout,
                request,
                &record,
            )
            .await
        };
        log.meter = Some(Arc::new(BodyMeter::read(bytes_in)));
        return log.finish_with(response);
    }
    // state: a suspended site answers with its notice and nothing else (no cache, no origin);
    // a paused one is a plain proxy, past the shield and the cache.
    let paused = match site.config.state {
        SiteState::Suspended => {
            let legal = site.config.suspension.is_some_and(|s| s.legal);
            return log.finish_with(respond::suspension_notice(legal, request.headers()));
        }
        SiteState::Paused => true,
        SiteState::Active | SiteState::UnderAttack => false,
    };
    let allowed = if paused {
        false
    } else {
        let gate = shield_gate(
            state,
            &snapshot,
            site,
            (client_ip, conn.client.tls),
            &request,
            &routed.host,
            &record,
        );
        match gate {
            ControlFlow::Continue(allowed) => allowed,
            ControlFlow::Break(response) => return log.finish_with(response),
        }
    };
    // The Host field already names the authority for an origin-form HTTP/1.1 request; reuse
    // its value rather than copying the text.
    let host_is_set =
        request.uri().authority().is_none() && request.headers().contains_key(header::HOST);
    let authority = match request.headers().get(header::HOST) {
        Some(host) if host_is_set => host.clone(),
        _ => {
            HeaderValue::from_str(routed.authority).unwrap_or_else(|_| HeaderValue::from_static(""))
        }
    };

    // limits: a declared length over the site's limit is refused before any byte is read.
    let declared = declared_length(&request);
    if declared.is_some_and(|n| n > site.config.max_body_bytes) {
        return log.finish_with(respond::edge_page(StatusCode::PAYLOAD_TOO_LARGE, true));
    }

    let version = request.version();
    let http10_keep_alive = version == Version::HTTP_10
        && has_token(request.headers(), &header::CONNECTION, "keep-alive");

    // cache
    let cache_settings = &site.config.cache;
    let scheme = if conn.client.tls { "https" } else { "http" };
    let cache_key = |host: &str, path_and_query: &str, headers: &http::HeaderMap| {
        cache::CacheKey::new(
            &site.name,
            cache_settings,
            scheme,
            host,
            path_and_query,
            headers,
        )
    };
    let target = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut fill = None;
    // RFC 9211 §2.2 `fwd` for a request the cache passes to the origin without storing.
    let mut pass: Option<&'static str> = None;
    let cache_on = cache_settings.enabled && !paused;
    let cacheable =
        cache_on && cache_phase::applies(cache_settings, request.method(), request.uri().path());
    if cache_on && !cacheable {
        let get_or_head = matches!(*request.method(), Method::GET | Method::HEAD);
        pass = Some(if get_or_head {
            "fwd=bypass"
        } else {
            "fwd=method"
        });
    }
    if cacheable {
        let key = cache_key(&routed.host, target.as_str(), request.headers());
        match cache_phase::lookup(
            &state.cache,
            &site.name,
            cache_settings,
            key,
            request.method(),
            request.uri().path(),
            request.headers(),
        )
        .await
        {
            CacheStep::Answer(mut response) => {
                site.metrics.cache(CacheOutcome::Hit);
                log.cache = Some(CacheOutcome::Hit);
                respond::client_response_headers(&mut response, version, http10_keep_alive);
                return log.finish_with(response);
            }
            CacheStep::AnswerAndRefresh(mut response, refresh) => {
                site.metrics.cache(CacheOutcome::Stale);
                log.cache = Some(CacheOutcome::Stale);
                if let Some(refresh) = refresh {
                    // The background request is this one's twin: same fields, no body.
                    let mut fields = Vec::with_capacity(512);
                    let hop = forward::Hop {
                        version,
                        authority: &authority,
                        client: &conn.client,
                        client_ip: log.client_ip,
                        upgrade: false,
                        cache_fill: Some(cache_settings),
                    };
                    forward::write_origin_fields(&mut fields, request.headers(), &hop);
                    spawn_refresh(site, target.clone(), fields, refresh);
                }
                respond::client_response_headers(&mut response, version, http10_keep_alive);
                return log.finish_with(response);
            }
            CacheStep::Forward(step) => {
                if !allowed
                    && let Some(refusal) = shield_phase::limit_misses(
                        (&state.challenges, &snapshot.challenge_keys),
                        site,
                        (client_ip, conn.client.tls),
                        &request,
                        &routed.host,
                        &record,
                    )
                {
                    return log.finish_with(refusal);
                }
                fill = Some(step)
            }
            CacheStep::Pass(why) => {
                site.metrics.cache(CacheOutcome::Pass);
                log.cache = Some(CacheOutcome::Pass);
                pass = Some(why);
            }
        }
    }
    let method = request.method().clone();
    // §4.4 needs the request's host and keyed fields after the request has gone to the origin.
    let invalidation = (cache_settings.enabled && !cache::policy::invalidation::is_safe(&method))
        .then(|| (routed.host.to_string(), request.headers().clone()));

    // origin
    let upgrade = forward::is_websocket_upgrade(version, request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let mut fields = Vec::with_capacity(512);
    let hop = forward::Hop {
        version,
        authority: &authority,
        client: &conn.client,
        client_ip: log.client_ip,
        upgrade,
        cache_fill: fill.is_some().then_some(cache_settings),
    };
    forward::write_origin_fields(&mut fields, &parts.headers, &hop);
    if let Some(fill) = &mut fill {
        fill.write_validators(&mut fields);
    }
    let has_body = !http_body::Body::is_end_stream(&body);
    // The length the origin is told is the one the body is held to: hyper reads exactly a
    // declared Content-Length (h2 checks its DATA against it), and the upload checks again.
    let length = if has_body {
        http_body::Body::size_hint(&body).exact()
    } else {
        declared.filter(|n| *n == 0)
    };
    let body = if has_body {
        let meter = Arc::new(BodyMeter::default());
        log.meter = Some(Arc::clone(&meter));
        let pace = BodyPace::new(&snapshot.limits, Arc::clone(&state.metrics));
        OriginBody::client(body, meter, site.config.max_body_bytes, pace)
    } else {
        OriginBody::Empty
    };
    let origin_request = OriginRequest {
        retryable: !has_body && parts.method.is_idempotent(),
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        fields,
        length,
        body,
        // HTTP/1.1 and HTTP/2 clients take interim responses (RFC 9110 §15.2: never an
        // HTTP/1.0 one): through the connection, or the HTTP/2 stream.
        interim: match version {
            Version::HTTP_11 => Some(Arc::clone(conn) as Arc<dyn crate::origin::InterimSink>),
            _ => h2_stream,
        },
    };
    // Origin protection: over the site's cap, a stale copy or 503.
    match site
        .protection
        .origin_permit(site.config.shield.max_origin_concurrency)
    {
        Some(permit) => log.origin_permit = Some(permit),
        None => {
            record(NewEvent::for_client(
                &site.name,
                log.client_ip,
                EventAction::Shed,
                EventReason::OriginConcurrency,
            ));
            if let Some(f) = &fill
                && let Some(mut stale) = f.stale_when_shed(&method).await
            {
                site.metrics.cache(CacheOutcome::Stale);
                log.cache = Some(CacheOutcome::Stale);
                respond::client_response_headers(&mut stale, version, http10_keep_alive);
                return log.finish_with(stale);
            }
            return log.finish_with(shield_phase::origin_busy());
        }
    }
    let forwarded = site.upstream.forward(origin_request).await;
    // Interim responses the origin sent go to the client before whatever answers it.
    conn.interim.written().await;
    let answer = match forwarded {
        Ok(answer) => answer,
        Err(failure) => {
            site.protection.attack.count_error();
            if matches!(failure, OriginFailure::TimedOut { .. }) {
                // The slowest answer there is, for the origin's latency.
                site.protection.origin.record(site.config.response_timeout);
            }
            // RFC 5861 §4 / always online: a stale copy beats an error page.
            let stale = match &fill {
                Some(f) => f.stale_on_error(&method, None).await,
                None => None,
            };
            if let Some(mut stale) = stale {
                site.metrics.cache(CacheOutcome::Stale);
                log.cache = Some(CacheOutcome::Stale);
                respond::client_response_headers(&mut stale, version, http10_keep_alive);
                return log.finish_with(stale);
            }
            let status = match &failure {
                OriginFailure::Unreachable { origin } | OriginFailure::Broken { origin } => {
                    log.origin = Some(Arc::clone(origin));
                    StatusCode::BAD_GATEWAY
                }
                OriginFailure::TimedOut { origin } => {
                    log.origin = Some(Arc::clone(origin));
                    StatusCode::GATEWAY_TIMEOUT
                }
                OriginFailure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                OriginFailure::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
                OriginFailure::ClientBody => StatusCode::BAD_REQUEST,
            };
            // A body we stopped reading leaves the connection unusable for the next request.
            return log.finish_with(respond::edge_page(status, has_body));
        }
    };
    log.origin = Some(Arc::clone(&answer.origin));
    log.upstream_time = Some(answer.upstream_time);
    site.protection.origin.record(answer.upstream_time);
    let mut origin_response = answer.response;
    if origin_response.status().is_server_error() {
        site.protection.attack.count_error();
    }

    if origin_response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The origin connection now belongs to the tunnel, never to the pool.
        match (client_upgrade, origin_response.body_mut().take_upgraded()) {
            (Some(client_upgrade), Some((origin_io, origin_early))) => {
                crate::conn::spawn_tunnel(
                    Arc::clone(conn),
                    client_upgrade,
                    origin_io,
                    origin_early,
                    snapshot.limits.idle_timeout,
                );
            }
            // An origin may not switch protocols the client did not ask for.
            _ => return log.finish_with(respond::edge_page(StatusCode::BAD_GATEWAY, false)),
        }
    }

    // respond (and store)
    let (mut parts, mut body) = origin_response.into_parts();
    if let Some(f) = &fill
        && let Some(mut stale) = f.stale_on_error(&method, Some(parts.status)).await
    {
        site.metrics.cache(CacheOutcome::Stale);
        log.cache = Some(CacheOutcome::Stale);
        respond::client_response_headers(&mut stale, version, http10_keep_alive);
        return log.finish_with(stale);
    }
    if parts.status == StatusCode::NOT_MODIFIED
        && let Some(f) = fill.take()
    {
        match f
            .not_modified(&method, cache_settings, &parts.headers)
            .await
        {
            cache_phase::NotModified::Refreshed(mut refreshed) => {
                site.metrics.cache(CacheOutcome::Revalidated);
                log.cache = Some(CacheOutcome::Revalidated);
                respond::client_response_headers(&mut refreshed, version, http10_keep_alive);
                return log.finish_with(*refreshed);
            }
            // RFC 9111 §4.3.4: a 304 about another representation; the same GET again,
            // without validators, and its answer is the one sent and stored.
            cache_phase::NotModified::Refetch(f, fields) => {
                let again = site
                    .upstream
                    .forward(origin_get(target.clone(), fields))
                    .await;
                match again {
                    Ok(answer) if answer.response.status() != StatusCode::NOT_MODIFIED => {
                        log.origin = Some(Arc::clone(&answer.origin));
                        log.upstream_time = Some(answer.upstream_time);
                        (parts, body) = answer.response.into_parts();
                        fill = Some(f);
                    }
                    _ => {
                        return log.finish_with(respond::edge_page(StatusCode::BAD_GATEWAY, false));
                    }
                }
            }
            // The client's conditions were never sent: a 304 cannot be its answer.
            cache_phase::NotModified::Unrequested => {
                return log.finish_with(respond::edge_page(StatusCode::BAD_GATEWAY, false));
            }
        }
    }
    if let Some((host, request_headers)) = &invalidation {
        cache_phase::invalidate_after(
            &state.cache,
            &method,
            parts.status,
            host,
            target.as_str(),
            &parts.headers,
            |path| cache_key(host, path, request_headers),
        );
    }
    if fill.is_some() {
        site.metrics.cache(CacheOutcome::Miss);
        log.cache = Some(CacheOutcome::Miss);
    }
    if let Some(why) = pass {
        cache_phase::mark_pass(&mut parts.headers, why, cache_settings);
    }
    let tee = fill
        .and_then(|fill| fill.respond(&method, cache_settings, parts.status, &mut parts.headers));
    let body = match tee {
        Some(tee) => EdgeBody::origin_with_tee(body, tee),
        None => EdgeBody::origin(body),
    };
    let mut response = Response::from_parts(parts, body);
    respond::client_response_headers(&mut response, version, http10_keep_alive);
    log.finish_with(response)
}

/// Starts the background refresh of a stale response served under stale-while-revalidate:
/// a GET with `fields` (the client's, as written for a fill) and the stored validators.
fn spawn_refresh(
    site: &crate::snapshot::SiteRuntime,
    path_and_query: PathAndQuery,
    mut fields: Vec<u8>,
    mut refresh: Box<cache_phase::Fill>,
) {
    refresh.write_validators(&mut fields);
    tokio::spawn(refresh_in_background(
        Arc::clone(&site.upstream),
        origin_get(path_and_query, fields),
        refresh,
        site.config.cache.clone(),
    ));
}

/// A GET without a body to `path_and_query`, with `fields` as written for a fill (validators
/// included or not).
fn origin_get(path_and_query: PathAndQuery, fields: Vec<u8>) -> OriginRequest {
    OriginRequest {
        method: Method::GET,
        path_and_query,
        fields,
        length: None,
        body: OriginBody::Empty,
        retryable: true,
        interim: None,
    }
}

/// Refreshes a stored response while its stale copy is being served (RFC 5861 §3). The fill
/// holds the object's lock, so there is one refresh at a time; if it fails, the stale copy stays
/// until the stale-while-revalidate window closes and a request revalidates in the foreground.
async fn refresh_in_background(
    upstream: Arc<crate::origin::Upstream>,
    request: OriginRequest,
    mut fill: Box<cache_phase::Fill>,
    settings: model::SiteCache,
) {
    let path_and_query = request.path_and_query.clone();
    let Ok(answer) = upstream.forward(request).await else {
        return;
    };
    let (mut parts, mut body) = answer.response.into_parts();
    if parts.status == StatusCode::NOT_MODIFIED {
        let cache_phase::NotModified::Refetch(again, fields) = fill
            .not_modified(&Method::GET, &settings, &parts.headers)
            .await
        else {
            return;
        };
        // RFC 9111 §4.3.4: another representation; fetch it whole.
        let Ok(answer) = upstream.forward(origin_get(path_and_query, fields)).await else {
            return;
        };
        if answer.response.status() == StatusCode::NOT_MODIFIED {
            return;
        }
        (parts, body) = answer.response.into_parts();
        fill = again;
    }
    if let Some(tee) = fill.respond(&Method::GET, &settings, parts.status, &mut parts.headers) {
        // Read to the end: the tee stores the body when it is complete.
        let _ = http_body_util::BodyExt::collect(EdgeBody::origin_with_tee(body, tee)).await;
    }
}

/// The shield's checks and the challenge gate: `Continue(allowed)` to go on (`allowed`: an
/// allow list or rule let the request skip the rest of the shield), or `Break` with the
/// response that ends the request.
fn shield_gate(
    state: &EdgeState,
    snapshot: &Snapshot,
    site: &SiteRuntime,
    (client_ip, tls): (IpAddr, bool),
    request: &Request<ClientBody>,
    host: &str,
    record: &dyn Fn(NewEvent),
) -> ControlFlow<Response<EdgeBody>, bool> {
    let facts = RequestFacts {
        ip: client_ip,
        host,
        method: request.method().as_str(),
        path: request.uri().path(),
        query: request.uri().query().unwrap_or(""),
        headers: request.headers(),
        tls,
    };
    // Verified at most once, and only when a challenge would otherwise be answered.
    let clearance = std::cell::OnceCell::new();
    let cleared = || {
        *clearance.get_or_init(|| {
            challenge_phase::cleared(&snapshot.challenge_keys, site, client_ip, request.headers())
        })
    };
    let challenge = || {
        challenge_phase::challenge(
            &state.challenges,
            &snapshot.challenge_keys,
            site,
            client_ip,
            request,
            host,
        )
    };
    let verdict = if site.guard.is_empty() {
        Verdict::Pass
    } else {
        site.guard
            .check_cleared(&facts, Instant::now(), record, &cleared)
    };
    if let Verdict::Challenge { .. } = verdict {
        return ControlFlow::Break(challenge());
    }
    if let Some(refusal) = shield_phase::answer(&verdict) {
        return ControlFlow::Break(refusal);
    }
    let allowed = verdict == Verdict::Allowed;
    // Counted before the challenge gate: requests it challenges are still the traffic that
    // keeps under-attack mode on (counting only those let through, the mode would end
    // `attack_hold` after it began, flood or no flood).
    site.protection.attack.count_request();
    let under_attack =
        site.config.state == SiteState::UnderAttack || site.protection.attack.under_attack();
    if under_attack && !allowed && !site.challenge.exempt(&facts) && !cleared() {
        record(NewEvent::for_client(
            &site.name,
            client_ip,
            EventAction::Challenge,
            EventReason::UnderAttack,
        ));
        return ControlFlow::Break(challenge());
    }
    ControlFlow::Continue(allowed)
}

fn declared_length(request: &Request<ClientBody>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Everything the `log` phase needs, carried to the end of the response body.
struct RequestLog {
    state: Arc<EdgeState>,
    conn: Arc<ConnContext>,
    site: Option<(Arc<str>, Arc<SiteMetrics>)>,
    client_ip: IpAddr,
    method: Method,
    uri: Uri,
    host: Option<String>,
    version: Version,
    status: u16,
    meter: Option<Arc<BodyMeter>>,
    origin: Option<Arc<OriginState>>,
    upstream_time: Option<Duration>,
    /// The origin request's slot under the site's concurrency cap, held to the response's end.
    origin_permit: Option<OriginPermit>,
    /// The site's analytics (none for a request that matched no site).
    analytics: Option<Arc<SiteAnalytics>>,
    /// What the cache did, for the site's analytics.
    cache: Option<CacheOutcome>,
    started: Instant,
}

impl RequestLog {
    fn finish_with(mut self, mut response: Response<EdgeBody>) -> Response<EdgeBody> {
        self.conn.interim.discard_unsent();
        self.status = response.status().as_u16();
        response.body_mut().watch_sends(Arc::clone(&self.conn));
        response.body_mut().on_finish(Box::new(self));
        response
    }
}

impl Finish for RequestLog {
    fn finish(mut self: Box<Self>, bytes_out: u64, _complete: bool) {
        // The response is done with the origin: its slot under the site's cap is free.
        drop(self.origin_permit.take());
        // One clock read for the duration and the connection's idle clock.
        let now = Instant::now();
        let duration = now.saturating_duration_since(self.started);
        let bytes_in = self.meter.as_ref().map_or(0, |m| m.bytes());
        let (site_name, metrics) = match &self.site {
            Some((name, metrics)) => (&**name, metrics),
            None => (UNROUTED, &self.state.unrouted),
        };
        metrics.record(self.status, duration, bytes_in, bytes_out);
        if let Some(analytics) = &self.analytics {
            let request = ServedRequest {
                status: self.status,
                bytes_in,
                bytes_out,
                path: self.uri.path(),
                client: self.client_ip,
                cache: self.cache,
            };
            analytics.record(Minute::at(now), &request);
        }
        if self.state.access_log.enabled() {
            self.state.access_log.write(&AccessRecord {
                time: SystemTime::now()
                    .checked_sub(duration)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                site: site_name,
                client_ip: self.client_ip,
                method: self.method.as_str(),
                host: self.host.as_deref().unwrap_or(""),
                path: self.uri.path(),
                protocol: protocol(self.version),
                status: self.status,
                bytes_in,
                bytes_out,
                duration_ms: duration.as_secs_f64() * 1000.0,
                origin: self.origin.as_ref().map(|o| o.label.as_str()),
                upstream_ms: self.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
            });
        }
        self.conn
            .activity
            .request_finished(crate::clock::ms_at(now));
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

//! The `cache` phase: answer from the cache when RFC 9111 allows it, otherwise fetch once
//! (concurrent misses wait on the first) and store the response while it streams to the client.
//!
//! ## The default policy, in order (each line names the function that decides)
//!
//! ```text
//! request   cache off or site paused → not this phase's                      look_up
//!           not GET/HEAD, or a `bypass` path → pass (fwd=method|bypass)         applies
//! key       site, scheme, host, path and the keyed query and fields            SiteRequest::cache_key
//!           (cache::CacheKey; Vary picks the variant at lookup)
//! lookup    known uncacheable (hit-for-miss) → pass, no lock                    lookup
//!           on disk: small ones promoted to memory, large ones served from disk  lookup, load
//! fresh     fresh for the request's directives → hit                            cache::policy::reuse::reuse
//!           (Range and conditionals answered from the stored response)          serve::serve
//! stale     within stale-while-revalidate → served, refreshed in the background  reuse, spawn_refresh
//!           otherwise revalidated with the stored validators                    Fill::write_validators
//!           (stale-if-error / always online: kept to serve if the origin fails) Fill::stale_on_error
//! miss      only-if-cached → 504; HEAD → pass; concurrent misses wait on one     lookup, cache::coalesce
//!           fill (`lock_timeout`), then go themselves
//!           past the per-address miss limit under origin pressure → challenge/429 shield::limit_request_misses
//! origin    validators kept, the client's own conditions and Range not sent     origin::fields::write_origin_fields
//! 304       refreshes the stored response; another representation → fetched    Fill::not_modified
//!           again without validators
//! storable  targeted field, else CDN-Cache-Control, else Cache-Control; status, cache::policy::storable::storable
//!           Authorization, Set-Cookie, Vary: *, the deception armour            (deception::withheld)
//! store     while the body streams; large ones straight to disk; a body cut    Fill::respond, Filling
//!           short or longer than declared is not stored
//! deliver   Cache-Status (RFC 9211) written, targeted fields kept from clients  fields::add_cache_status
//! unsafe    a successful POST/PUT/DELETE... invalidates the URL and its         invalidate_after
//!           same-host Location / Content-Location (§4.4)
//! ```
//!
//! Range requests are answered from the stored complete response; a miss with a Range fetches
//! the whole response (sent to the client as a 200, which RFC 9110 §14.2 allows) and stores it.
//! Both tiers store: every response is written through to the disk tier (`[server]
//! cache_disk`), and one larger than an eighth of `cache_memory` lives on disk only.
//!
//! Parts: `fill` (a fill's life: validators, 304s, stale copies, storing as it streams),
//! `serve` (answering from a stored response), `fields` (`Cache-Status` and the fields kept
//! out of what is stored).

mod fields;
pub mod fill;
mod serve;

use crate::body::EdgeBody;
use crate::metrics::CacheOutcome;
use crate::origin::fields as origin_fields;
use crate::phases::request::SiteRequest;
use crate::phases::shield as shield_phase;
use crate::snapshot::SiteRuntime;
use cache::coalesce::{self, FillOutcome, Lock};
use cache::policy::{RequestDirectives, deception, invalidation, reuse};
use cache::{Cache, CacheKey, Loaded, Lookup};
use fields::{add_cache_status, gateway_timeout, glob_match, strip_edge_fields, unix_now};
pub use fill::{Fill, NotModified};
use fill::{StaleCopy, load};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Response, StatusCode};
use model::SiteCache;
use serve::serve;
use std::ops::ControlFlow;
use std::sync::Arc;
/// The name this cache gives itself in `Cache-Status` (RFC 9211 §2).
const CACHE_NAME: &str = "palisade";

/// What the phase decided.
pub enum CacheStep {
    /// Answered from the cache.
    Answer(Response<EdgeBody>),
    /// Answered from the cache with a stale response (stale-while-revalidate); the fill
    /// refreshes it in the background. No fill when another request is already refreshing it.
    AnswerAndRefresh(Response<EdgeBody>, Option<Box<Fill>>),
    /// Go to the origin to fetch a response that may be stored.
    Forward(Box<Fill>),
    /// Go to the origin without storing; the `Cache-Status` parameters saying why (RFC 9211
    /// §2.2), for [`mark_pass`].
    Pass(&'static str),
}

/// Runs after the limits. Reads the site's cache settings, the request's method, target and
/// fields, and the store. Writes the fill (the response may be stored) or the pass reason
/// (it goes to the origin unstored) for the `origin` and `respond` phases, and the cache's
/// outcome into the metrics and the log.
///
/// Answers early: a fresh stored response (a hit), or a stale one within
/// stale-while-revalidate (refreshed in the background, once); `only-if-cached` with nothing
/// usable → 504; on a miss, a client past its miss limit while the origin is under pressure →
/// the challenge or 429 (`phases::shield::limit_request_misses`).
pub async fn look_up(request: &mut SiteRequest<'_>) -> ControlFlow<Response<EdgeBody>> {
    let site = request.site;
    let settings = &site.config.cache;
    if !settings.enabled || request.paused {
        return ControlFlow::Continue(());
    }
    let method = request.request.method();
    if !applies(settings, method, request.request.uri().path()) {
        let get_or_head = matches!(*method, Method::GET | Method::HEAD);
        request.pass = Some(if get_or_head {
            "fwd=bypass"
        } else {
            "fwd=method"
        });
        return ControlFlow::Continue(());
    }
    let target = request.target();
    let key = request.cache_key(target.as_str(), request.request.headers());
    let step = lookup(
        &request.state.cache,
        &site.name,
        settings,
        key,
        method,
        request.request.uri().path(),
        request.request.headers(),
    )
    .await;
    match step {
        CacheStep::Answer(response) => {
            request.cache_outcome(CacheOutcome::Hit);
            ControlFlow::Break(request.for_client(response))
        }
        CacheStep::AnswerAndRefresh(response, refresh) => {
            request.cache_outcome(CacheOutcome::Stale);
            if let Some(refresh) = refresh {
                // The background request is this one's twin: same fields, no body.
                let mut fields = Vec::with_capacity(512);
                let hop = origin_fields::Hop {
                    version: request.framing.version,
                    authority: &request.authority,
                    client: &request.conn.client,
                    client_ip: request.client_ip,
                    upgrade: false,
                    cache_fill: Some(settings),
                };
                origin_fields::write_origin_fields(&mut fields, request.request.headers(), &hop);
                spawn_refresh(site, target, fields, refresh);
            }
            ControlFlow::Break(request.for_client(response))
        }
        CacheStep::Forward(fill) => {
            shield_phase::limit_request_misses(request)?;
            request.fill = Some(fill);
            ControlFlow::Continue(())
        }
        CacheStep::Pass(why) => {
            request.cache_outcome(CacheOutcome::Pass);
            request.pass = Some(why);
            ControlFlow::Continue(())
        }
    }
}

/// Starts the background refresh of a stale response served under stale-while-revalidate:
/// a GET with `fields` (the client's, as written for a fill) and the stored validators.
fn spawn_refresh(
    site: &SiteRuntime,
    path_and_query: PathAndQuery,
    mut fields: Vec<u8>,
    mut refresh: Box<Fill>,
) {
    refresh.write_validators(&mut fields);
    tokio::spawn(refresh_in_background(
        Arc::clone(&site.upstream),
        origin_fields::origin_get(path_and_query, fields),
        refresh,
        site.config.cache.clone(),
    ));
}

/// Refreshes a stored response while its stale copy is being served (RFC 5861 §3). The fill
/// holds the object's lock, so there is one refresh at a time; if it fails, the stale copy stays
/// until the stale-while-revalidate window closes and a request revalidates in the foreground.
async fn refresh_in_background(
    upstream: Arc<crate::origin::Upstream>,
    request: crate::origin::OriginRequest,
    mut fill: Box<Fill>,
    settings: SiteCache,
) {
    let path_and_query = request.path_and_query.clone();
    let Ok(answer) = upstream.forward(request).await else {
        return;
    };
    let (mut parts, mut body) = answer.response.into_parts();
    if parts.status == StatusCode::NOT_MODIFIED {
        let NotModified::Refetch(again, fields) = fill
            .not_modified(&Method::GET, &settings, &parts.headers)
            .await
        else {
            return;
        };
        // RFC 9111 §4.3.4: another representation; fetch it whole.
        let Ok(answer) = upstream
            .forward(origin_fields::origin_get(path_and_query, fields))
            .await
        else {
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

/// Whether the site caches and the request is one the cache handles (GET and HEAD, outside
/// the bypass paths).
pub fn applies(settings: &SiteCache, method: &Method, path: &str) -> bool {
    settings.enabled
        && (*method == Method::GET || *method == Method::HEAD)
        && !settings
            .bypass
            .iter()
            .any(|pattern| glob_match(pattern, path))
}

/// Looks the request up and waits on a fill in progress if there is one. `path`: the request
/// target's path, for the deception armour.
pub async fn lookup(
    cache: &Arc<Cache>,
    site: &Arc<str>,
    settings: &SiteCache,
    key: CacheKey,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> CacheStep {
    let request_directives = RequestDirectives::parse(headers);
    let own_field = settings.targeted_field.as_deref();
    let mut waited = false;
    let reuse_settings = reuse::ReuseSettings {
        ignore_client_no_cache: settings.ignore_client_no_cache,
        always_online: settings.always_online,
    };
    // Every way to the origin ends this loop with the fill lock (if held), the Cache-Status
    // `fwd` reason, the request time, the stale response being revalidated, and the purge mark.
    let mut promotions = 0;
    let (guard, fwd, request_time, stale, purge_mark) = loop {
        let now = unix_now();
        let purge_mark = cache.purge_mark();
        let found = match cache.lookup(&key, headers, now) {
            Lookup::Found {
                object,
                id,
                soft_purged,
            } => Ok((object, id, soft_purged, None)),
            // Warm from disk: small responses (and Vary specs) move to memory and are looked
            // up again; large ones are served from disk. A tiny memory tier could evict a
            // promoted object before the second look: after a few tries it counts as missing.
            Lookup::OnDisk { id } => match load(cache, id).await {
                Loaded::Promoted if promotions < 3 => {
                    promotions += 1;
                    continue;
                }
                Loaded::Large {
                    object,
                    body,
                    soft_purged,
                } => Ok((object, id, soft_purged, Some(body))),
                _ => Err(id),
            },
            // Known uncacheable: no fill, no lock, no copy of the request (Varnish's
            // hit-for-miss); the mark expires after `UNCACHEABLE_FOR` and the URL is tried again.
            Lookup::Uncacheable => return CacheStep::Pass("fwd=miss; detail=uncacheable"),
            Lookup::Missing { id } => Err(id),
        };
        let id = match found {
            Ok((object, id, soft_purged, disk)) => {
                let decision = reuse::reuse(
                    &request_directives,
                    &object.directives,
                    &object.timing,
                    now,
                    soft_purged,
                    reuse_settings,
                );
                let on_disk = disk.is_some().then_some(id);
                let serve_on_error = match decision {
                    reuse::Reuse::Hit { .. } => {
                        return CacheStep::Answer(serve(
                            &object, disk, method, headers, own_field, now, "hit",
                        ));
                    }
                    reuse::Reuse::StaleWhileRevalidate => {
                        let answer = serve(
                            &object,
                            disk,
                            method,
                            headers,
                            own_field,
                            now,
                            "hit; detail=stale-while-revalidate",
                        );
                        // One refresh at a time: a held lock means one is under way.
                        let refresh = match cache.lock(id) {
                            Lock::Filler(guard) if *method == Method::GET => Some(Box::new(Fill {
                                cache: Arc::clone(cache),
                                key,
                                request_headers: headers.clone(),
                                request_directives,
                                guard: Some(guard),
                                fwd: "stale",
                                request_time: now,
                                stale: Some(StaleCopy {
                                    object: Arc::clone(&object),
                                    serve_on_error: false,
                                    on_disk,
                                }),
                                site: Arc::clone(site),
                                purge_mark,
                                unconditional: None,
                                own_field: settings.targeted_field.clone(),
                                deception: armour(settings, headers, path),
                            })),
                            _ => None,
                        };
                        return CacheStep::AnswerAndRefresh(answer, refresh);
                    }
                    reuse::Reuse::Revalidate {
                        serve_stale_on_error,
                    } => serve_stale_on_error,
                };
                // §5.2.1.7: only-if-cached and nothing usable: 504.
                if request_directives.only_if_cached {
                    return CacheStep::Answer(gateway_timeout());
                }
                if *method != Method::GET {
                    return CacheStep::Pass("fwd=stale");
                }
                let stale = StaleCopy {
                    object,
                    serve_on_error,
                    on_disk,
                };
                break (None, "stale", now, Some(stale), purge_mark);
            }
            Err(id) => id,
        };
        if request_directives.only_if_cached {
            return CacheStep::Answer(gateway_timeout());
        }
        // A HEAD miss goes to the origin as HEAD and stores nothing (only GET responses are
        // stored): it must not hold the fill lock of the GET it is not.
        if *method != Method::GET {
            return CacheStep::Pass("fwd=miss");
        }
        // RFC 9211 §2.2: nothing for the URL at all, or a URL whose stored variants differ.
        let miss = if id == key.id {
            "uri-miss"
        } else {
            "vary-miss"
        };
        if waited {
            // The fill we waited on did not store anything this request can use.
            break (None, miss, now, None, purge_mark);
        }
        match cache.lock(id) {
            Lock::Filler(guard) => break (Some(guard), miss, now, None, purge_mark),
            Lock::Waiter(receiver) => match coalesce::wait(receiver, settings.lock_timeout).await {
                FillOutcome::Stored => waited = true,
                // Failed, not storable, or timed out: this request goes to the origin itself.
                _ => break (None, "miss", unix_now(), None, cache.purge_mark()),
            },
        }
    };
    CacheStep::Forward(Box::new(Fill {
        cache: Arc::clone(cache),
        key,
        request_headers: headers.clone(),
        request_directives,
        guard,
        fwd,
        request_time,
        stale,
        site: Arc::clone(site),
        purge_mark,
        unconditional: None,
        own_field: settings.targeted_field.clone(),
        deception: armour(settings, headers, path),
    }))
}

/// What the request tells the deception armour (`policy::deception`), if the site has it on.
/// The challenge's clearance cookie is the edge's, no credential of the origin's.
fn armour(settings: &SiteCache, headers: &HeaderMap, path: &str) -> Option<deception::Request> {
    settings
        .deception_armour
        .then(|| deception::Request::of(headers, path, &[shield::challenge::clearance::COOKIE]))
}

/// Adds this cache's `Cache-Status` member to a response the cache passed through unstored,
/// and takes out the fields meant for this edge alone.
pub fn mark_pass(headers: &mut HeaderMap, params: &str, settings: &SiteCache) {
    strip_edge_fields(headers, settings.targeted_field.as_deref());
    add_cache_status(headers, params);
}
/// §4.4: after an unsafe request succeeded, the URL (and same-host Location/Content-Location)
/// is invalidated. `make_key` builds the key of a path on the request's host.
pub fn invalidate_after(
    cache: &Cache,
    method: &Method,
    status: StatusCode,
    host: &str,
    path_and_query: &str,
    response: &HeaderMap,
    make_key: impl Fn(&str) -> CacheKey,
) {
    for path in invalidation::invalidated_paths(method, status, host, path_and_query, response) {
        cache.invalidate(&make_key(&path));
    }
}

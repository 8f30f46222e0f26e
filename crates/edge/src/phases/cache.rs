//! The `cache` phase: answer from the cache when RFC 9111 allows it, otherwise fetch once
//! (concurrent misses wait on the first) and store the response while it streams to the client.
//!
//! A stored response that is no longer fresh is revalidated: the origin gets its validators
//! (§4.3.1) and a 304 refreshes it (§4.3.4); within stale-while-revalidate it is served at once
//! and refreshed in the background, once; within stale-if-error (or with the site's always-online
//! switch) it is served when the origin fails.
//!
//! Range requests are answered from the stored complete response; a miss with a Range fetches
//! the whole response (sent to the client as a 200, which RFC 9110 §14.2 allows) and stores it.
//!
//! Not done yet: the disk tier (only the memory tier stores).

use crate::body::{EdgeBody, Tee};
use crate::metrics::CacheOutcome;
use crate::phases::request::SiteRequest;
use crate::phases::{forward, shield as shield_phase};
use crate::snapshot::SiteRuntime;
use bytes::{Bytes, BytesMut};
use cache::coalesce::{self, FillGuard, FillOutcome, Lock};
use cache::disk::DiskObject;
use cache::persist;
use cache::policy::targeted::{self, CDN_CACHE_CONTROL};
use cache::policy::{
    self, RequestDirectives, deception, invalidation, reuse, storable, validation,
};
use cache::{Cache, CacheKey, Loaded, Lookup, ObjectId, StoredObject, range};
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Response, StatusCode};
use model::SiteCache;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::SystemTime;

/// The name this cache gives itself in `Cache-Status` (RFC 9211 §2).
const CACHE_NAME: &str = "palisade";

/// A cacheable request on its way to the origin: what storing its response needs.
pub struct Fill {
    cache: Arc<Cache>,
    key: CacheKey,
    request_headers: HeaderMap,
    request_directives: RequestDirectives,
    /// Held by the request that fills; `None` when it goes to the origin without the lock
    /// (the lock wait timed out, or the URL is known uncacheable).
    guard: Option<FillGuard>,
    /// `Cache-Status` `fwd` parameter: why the cache went forward.
    fwd: &'static str,
    request_time: u64,
    /// The stored response being revalidated.
    stale: Option<StaleCopy>,
    site: Arc<str>,
    /// The purge log's position before the origin was asked (purges after it apply).
    purge_mark: u64,
    /// The origin request's fields without the validators, kept while revalidating: a 304 that
    /// names another representation sends the request again without them (§4.3.4).
    unconditional: Option<Vec<u8>>,
    /// The site's own targeted field, kept out of what a stale copy answers with.
    own_field: Option<String>,
    /// What the request tells the deception armour, when the site has it on.
    deception: Option<deception::Request>,
}

/// A stored response being revalidated.
struct StaleCopy {
    object: Arc<StoredObject>,
    /// It may be served if the origin fails (stale-if-error, always online).
    serve_on_error: bool,
    /// Its body is on disk only, under this id (the object holds the header alone).
    on_disk: Option<ObjectId>,
}

/// Reads `id` from the disk tier on a blocking thread.
async fn load(cache: &Arc<Cache>, id: ObjectId) -> Loaded {
    let cache = Arc::clone(cache);
    tokio::task::spawn_blocking(move || cache.load(id))
        .await
        .unwrap_or(Loaded::Absent)
}

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

/// What a 304 from the origin means for a fill (RFC 9111 §4.3.4). A fill never passes the
/// client's own conditions on (the cache answers them itself), so a 304 is only ever the answer
/// to the cache's validators, never one the client asked for.
pub enum NotModified {
    /// It refreshed the stored response: the answer built from it.
    Refreshed(Box<Response<EdgeBody>>),
    /// It names a representation the cache does not hold: the stored one is dropped, and the
    /// request is made again with these fields (the validators left out); the fill stores
    /// what that brings.
    Refetch(Box<Fill>, Vec<u8>),
    /// No validator of the cache's asked for it (a miss, or the request made again): no answer
    /// for a client, to whom it would say "you have it already" about nothing it has.
    Unrequested,
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
                let hop = forward::Hop {
                    version: request.framing.version,
                    authority: &request.authority,
                    client: &request.conn.client,
                    client_ip: request.client_ip,
                    upgrade: false,
                    cache_fill: Some(settings),
                };
                forward::write_origin_fields(&mut fields, request.request.headers(), &hop);
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
        forward::origin_get(path_and_query, fields),
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
            .forward(forward::origin_get(path_and_query, fields))
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

impl Fill {
    /// Writes the validators of the response being revalidated into the origin request's
    /// fields (§4.3.1), keeping the fields as they were for [`NotModified::Refetch`].
    pub fn write_validators(&mut self, fields: &mut Vec<u8>) {
        let Some(stale) = &self.stale else {
            return;
        };
        self.unconditional = Some(fields.clone());
        for (name, value) in validation::conditional_fields(&stale.object.headers) {
            fields.extend_from_slice(name.as_str().as_bytes());
            fields.extend_from_slice(b": ");
            fields.extend_from_slice(value.as_bytes());
            fields.extend_from_slice(b"\r\n");
        }
    }

    /// The origin could not be reached, timed out, or answered `status` (500, 502, 503, 504):
    /// the stale response, if RFC 5861 §4 or the site's always-online switch allow it.
    pub async fn stale_on_error(
        &self,
        method: &Method,
        status: Option<StatusCode>,
    ) -> Option<Response<EdgeBody>> {
        let stale = self.stale.as_ref()?;
        if !stale.serve_on_error || status.is_some_and(|s| !is_error_for_stale(s)) {
            return None;
        }
        let detail = match status {
            Some(s) => format!(
                "fwd=stale; fwd-status={}; detail=stale-if-error",
                s.as_u16()
            ),
            None => "fwd=stale; detail=stale-if-error".to_string(),
        };
        self.serve_stale(method, &detail).await
    }

    /// Origin protection turned this request away (the site's origin requests are at their
    /// cap): the stored copy is served if it may be served stale at all. §4.2.4 allows a cache
    /// cut off from its origin to do so unless the response forbids it (must-revalidate,
    /// proxy-revalidate, no-cache).
    pub async fn stale_when_shed(&self, method: &Method) -> Option<Response<EdgeBody>> {
        let stale = self.stale.as_ref()?;
        let d = &stale.object.directives;
        if d.must_revalidate
            || d.proxy_revalidate
            || d.no_cache != cache::policy::directives::Qualified::Absent
        {
            return None;
        }
        self.serve_stale(method, "fwd=stale; detail=origin-busy")
            .await
    }

    async fn serve_stale(&self, method: &Method, detail: &str) -> Option<Response<EdgeBody>> {
        let stale = self.stale.as_ref()?;
        let disk = match stale.on_disk {
            None => None,
            Some(id) => match load(&self.cache, id).await {
                Loaded::Large { body, .. } => Some(body),
                // Gone from disk meanwhile: nothing to serve.
                _ => return None,
            },
        };
        Some(serve(
            &stale.object,
            disk,
            method,
            &self.request_headers,
            self.own_field.as_deref(),
            unix_now(),
            detail,
        ))
    }

    /// The origin answered 304: refresh the stored response it names and answer from it
    /// (§4.3.4, §3.2), or say what else to do (see [`NotModified`]).
    pub async fn not_modified(
        mut self: Box<Self>,
        method: &Method,
        settings: &SiteCache,
        not_modified: &HeaderMap,
    ) -> NotModified {
        let Some(stale) = self.stale.take() else {
            return NotModified::Unrequested;
        };
        let refetch = |mut fill: Box<Fill>| match fill.unconditional.take() {
            Some(fields) => NotModified::Refetch(fill, fields),
            None => NotModified::Unrequested,
        };
        // §4.3.4: "If none of the initial set contains at least one of the same strong
        // validators, then the cache MUST NOT use the new response to update any stored
        // responses." The stored one is superseded: the representation is another now.
        if !validation::not_modified_applies(&stale.object.headers, not_modified) {
            self.cache.invalidate(&self.key);
            return refetch(self);
        }
        let now = unix_now();
        let mut refreshed = StoredObject::clone(&stale.object);
        // Revalidated: a soft purge is answered, and purges from now on apply.
        refreshed.soft_purged = false;
        refreshed.purge_mark = self.purge_mark;
        validation::update_stored_fields(&mut refreshed.headers, not_modified);
        strip_own_cache_status(&mut refreshed.headers);
        refreshed.reparse(&target_list(settings));
        refreshed.timing = policy::freshness::timing(
            refreshed.status,
            &refreshed.headers,
            &refreshed.directives,
            self.request_time,
            now,
            settings.ttl,
        );
        let params = "fwd=stale; fwd-status=304";
        let answer = match stale.on_disk {
            None => {
                let answer = serve(
                    &refreshed,
                    None,
                    method,
                    &self.request_headers,
                    settings.targeted_field.as_deref(),
                    now,
                    params,
                );
                self.cache
                    .store(&self.key, &self.request_headers, refreshed);
                answer
            }
            Some(id) => {
                // A large body stays where it is: only its stored header is rewritten.
                let cache = Arc::clone(&self.cache);
                let refreshed = Arc::new(refreshed);
                let written = Arc::clone(&refreshed);
                let _ =
                    tokio::task::spawn_blocking(move || cache.refresh_on_disk(id, &written)).await;
                match load(&self.cache, id).await {
                    Loaded::Large { body, .. } => serve(
                        &refreshed,
                        Some(body),
                        method,
                        &self.request_headers,
                        settings.targeted_field.as_deref(),
                        now,
                        params,
                    ),
                    // Gone from disk meanwhile: nothing left to answer from.
                    _ => return refetch(self),
                }
            }
        };
        if let Some(guard) = self.guard.take() {
            guard.finish(FillOutcome::Stored);
        }
        NotModified::Refreshed(Box::new(answer))
    }

    /// Decides whether the origin's response is stored, adds this cache's `Cache-Status`, and
    /// returns the tee that stores the body as it streams (`None`: not stored).
    pub fn respond(
        self,
        method: &Method,
        settings: &SiteCache,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Option<Box<dyn Tee>> {
        let now = unix_now();
        // RFC 9213 §2.2: the site's own targeted field, else CDN-Cache-Control, else
        // Cache-Control decides.
        let directives = targeted::response_directives(headers, &target_list(settings));
        let decision = storable::storable(
            method,
            &self.request_headers,
            &self.request_directives,
            status,
            headers,
            &directives,
            storable::StoreSettings {
                has_edge_ttl: settings.ttl.is_some(),
                share_set_cookie: settings.share_set_cookie,
                deception: self
                    .deception
                    .and_then(|request| deception::withheld(&request, headers)),
            },
        );
        let limit = settings.max_object_size.min(self.cache.store_limit());
        let small_limit = self.cache.small_limit();
        let declared = content_length(headers);
        let strip = match decision {
            Ok(strip) if declared.is_none_or(|n| n <= limit) => strip,
            _ => {
                strip_edge_fields(headers, settings.targeted_field.as_deref());
                // A new representation that may not be stored replaces the stale one too.
                if self.stale.is_some() {
                    self.cache.invalidate(&self.key);
                }
                self.cache.mark_uncacheable(&self.key, now);
                // RFC 9211 §2.8's detail: why, when the policy said no (as NotStored promises).
                let detail = match decision {
                    Err(why) => format!("; detail={}", why.as_str()),
                    Ok(_) => String::new(),
                };
                add_cache_status(
                    headers,
                    &format!("fwd={}; fwd-status={}{detail}", self.fwd, status.as_u16()),
                );
                // Dropping the guard releases the waiters to go to the origin themselves.
                return None;
            }
        };
        let timing = policy::freshness::timing(
            status,
            headers,
            &directives,
            self.request_time,
            now,
            settings.ttl,
        );
        let mut stored_headers = headers.clone();
        // Members named as this cache's (a Palisade nearer the origin) are not stored: hits
        // write their own.
        strip_own_cache_status(&mut stored_headers);
        // The stored copy keeps the targeted fields (a 304 may refresh them, §3.2); the client
        // never sees them.
        strip_edge_fields(headers, settings.targeted_field.as_deref());
        let fwd = self.fwd;
        let mut object = StoredObject::new(
            status,
            stored_headers,
            &strip,
            Bytes::new(),
            timing,
            self.key.url.clone(),
            self.purge_mark,
        );
        object.directives = directives;
        object.site = Arc::clone(&self.site);
        let mut filling = Filling {
            object: Some(object),
            fill: self,
            body: BytesMut::with_capacity(declared.unwrap_or(0).min(small_limit) as usize),
            stream: None,
            size: 0,
            small_limit,
            limit,
        };
        // Known to be large: straight to disk from the first byte.
        if declared.is_some_and(|n| n > small_limit) && !filling.start_streaming() {
            add_cache_status(
                headers,
                &format!("fwd={fwd}; fwd-status={}", status.as_u16()),
            );
            return None;
        }
        // RFC 9211 §2.8: `stored` says the response was stored; from here on only a body
        // broken off or longer than it declared keeps it from being so.
        add_cache_status(
            headers,
            &format!("fwd={fwd}; fwd-status={}; stored", status.as_u16()),
        );
        Some(Box::new(filling))
    }
}

/// The body of a response being stored, gathered as it goes to the client: in memory while it
/// is small, then streamed to the disk tier (never held whole in memory).
struct Filling {
    fill: Fill,
    /// The stored header, until the body is complete or handed to a disk write.
    object: Option<StoredObject>,
    body: BytesMut,
    stream: Option<persist::StreamWrite>,
    size: u64,
    small_limit: u64,
    limit: u64,
}

impl Filling {
    /// Moves the response to a streamed disk write (taking the fill lock with it) and queues
    /// what was gathered so far; `false` if there is no disk tier or the write is refused.
    fn start_streaming(&mut self) -> bool {
        let Some(object) = self.object.take() else {
            return false;
        };
        let guard = self.fill.guard.take();
        let Some(mut stream) = self.fill.cache.store_streaming(
            &self.fill.key,
            &self.fill.request_headers,
            object,
            guard,
        ) else {
            return false;
        };
        if !self.body.is_empty() && !stream.push(std::mem::take(&mut self.body).freeze()) {
            return false;
        }
        self.stream = Some(stream);
        true
    }
}

impl Tee for Filling {
    fn data(&mut self, chunk: &Bytes) -> bool {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            // Larger than the cache takes: released, and the URL goes uncacheable for a while.
            self.fill.cache.mark_uncacheable(&self.fill.key, unix_now());
            return false;
        }
        if let Some(stream) = &mut self.stream {
            return stream.push(chunk.clone());
        }
        if self.size > self.small_limit {
            if !self.start_streaming() {
                return false;
            }
            return self.stream.as_mut().is_some_and(|s| s.push(chunk.clone()));
        }
        self.body.extend_from_slice(chunk);
        true
    }

    fn end(mut self: Box<Self>) {
        if let Some(stream) = self.stream.take() {
            // The writing thread releases the fill lock once the object is on disk.
            stream.commit();
            return;
        }
        let Some(mut object) = self.object.take() else {
            return;
        };
        object.body = std::mem::take(&mut self.body).freeze();
        self.fill
            .cache
            .store(&self.fill.key, &self.fill.request_headers, object);
        if let Some(guard) = self.fill.guard.take() {
            guard.finish(FillOutcome::Stored);
        }
    }
}

/// A response built from a stored one (RFC 9111 §4), or a 304/412 when the client's own
/// preconditions say so (§4.3.2).
///
/// `own_field`: the site's own targeted field, which (with the other fields meant for this
/// edge) the stored copy keeps and the client never gets.
fn serve(
    object: &StoredObject,
    disk: Option<DiskObject>,
    method: &Method,
    request: &HeaderMap,
    own_field: Option<&str>,
    now: u64,
    params: &str,
) -> Response<EdgeBody> {
    let body_len = disk
        .as_ref()
        .map_or(object.body.len() as u64, DiskObject::body_len);
    let age = object.timing.current_age(now);
    // RFC 9211 §2.5: ttl is the remaining freshness; negative when stale.
    let ttl = object.timing.lifetime as i64 - age as i64;
    // Most requests carry no precondition and no Range: one pass over their names (usually a
    // handful) skips five lookups and the date parsing.
    let conditional = request
        .keys()
        .any(|name| name.as_str().starts_with("if-") || *name == header::RANGE);
    let precondition = if conditional {
        validation::evaluate_preconditions(request, &object.headers, object.timing.response_time)
    } else {
        validation::Precondition::Proceed
    };
    let (status, mut headers, body) = match precondition {
        validation::Precondition::NotModified => (
            StatusCode::NOT_MODIFIED,
            validation::not_modified_fields(&object.headers),
            EdgeBody::empty(),
        ),
        validation::Precondition::Failed => {
            return crate::phases::respond::edge_page(StatusCode::PRECONDITION_FAILED, false);
        }
        validation::Precondition::Proceed
            if *method == Method::GET && object.status == StatusCode::OK =>
        {
            match disk {
                None if !conditional => (
                    StatusCode::OK,
                    object.headers.clone(),
                    EdgeBody::fixed(object.body.clone()),
                ),
                None => ranged(object, request),
                Some(disk) => ranged_on_disk(object, disk, request),
            }
        }
        validation::Precondition::Proceed => {
            let body = match (method, disk) {
                (&Method::HEAD, _) => EdgeBody::empty(),
                (_, Some(disk)) => stream_from_disk(disk, 0, body_len),
                (_, None) => EdgeBody::fixed(object.body.clone()),
            };
            (object.status, object.headers.clone(), body)
        }
    };
    // §5.2.2.4: fields a qualified no-cache names are not sent without revalidation.
    if let policy::Qualified::Fields(names) = &object.directives.no_cache {
        for name in names {
            headers.remove(name);
        }
    }
    // (Purge tags never make it into a stored header.)
    strip_targeted_fields(&mut headers, own_field);
    // §5.1: the Age of a response from the cache.
    headers.insert(header::AGE, HeaderValue::from(age));
    // RFC 9110 §8.6: never in a 204.
    if *method == Method::HEAD
        && !headers.contains_key(header::CONTENT_LENGTH)
        && status == object.status
        && status != StatusCode::NO_CONTENT
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
    add_cache_status_ttl(&mut headers, params, Some(ttl));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A GET of a stored 200, with its Range answered from the stored body (RFC 9110 §14): 206
/// with one span or a multipart/byteranges body, 416, or the full 200.
fn ranged(object: &StoredObject, request: &HeaderMap) -> (StatusCode, HeaderMap, EdgeBody) {
    let len = object.body.len() as u64;
    let mut headers = object.headers.clone();
    match range::answer(request, &object.headers, len) {
        range::RangeAnswer::Full => (
            StatusCode::OK,
            headers,
            EdgeBody::fixed(object.body.clone()),
        ),
        range::RangeAnswer::Unsatisfiable => {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            );
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                EdgeBody::empty(),
            )
        }
        range::RangeAnswer::Partial(spans) => {
            // The body's length is the part's; hyper writes Content-Length from it.
            headers.remove(header::CONTENT_LENGTH);
            if let [(first, last)] = spans[..] {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
                let part = object.body.slice(first as usize..=last as usize);
                return (StatusCode::PARTIAL_CONTENT, headers, EdgeBody::fixed(part));
            }
            // A boundary that cannot occur in the parts: derived from the object and the time,
            // checked against the body.
            let mut boundary = format!(
                "palisade-{:016x}",
                object.timing.response_time ^ len.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
            );
            while object
                .body
                .windows(boundary.len())
                .any(|w| w == boundary.as_bytes())
            {
                boundary.push('x');
            }
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = range::multipart(&object.body, &spans, content_type.as_deref(), &boundary);
            if let Ok(value) =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
            {
                headers.insert(header::CONTENT_TYPE, value);
            }
            (StatusCode::PARTIAL_CONTENT, headers, EdgeBody::fixed(body))
        }
    }
}

/// A GET of a stored 200 whose body is on disk: its Range answered with one span, 416, or the
/// full 200 (several spans of a large body are not assembled: the full response is a valid
/// answer to any Range, RFC 9110 §14.2).
fn ranged_on_disk(
    object: &StoredObject,
    disk: DiskObject,
    request: &HeaderMap,
) -> (StatusCode, HeaderMap, EdgeBody) {
    let len = disk.body_len();
    let mut headers = object.headers.clone();
    match range::answer(request, &object.headers, len) {
        range::RangeAnswer::Partial(spans) if spans.len() == 1 => {
            let (first, last) = spans[0];
            headers.remove(header::CONTENT_LENGTH);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let body = stream_from_disk(disk, first, last - first + 1);
            (StatusCode::PARTIAL_CONTENT, headers, body)
        }
        range::RangeAnswer::Unsatisfiable => {
            headers.remove(header::CONTENT_LENGTH);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                EdgeBody::empty(),
            )
        }
        _ => (StatusCode::OK, headers, stream_from_disk(disk, 0, len)),
    }
}

/// Blocks of a body on disk, `len` bytes from `first`, read on a blocking thread a few blocks
/// ahead of the client (the channel's capacity is the read-ahead). A block that fails its
/// checksum ends the body with an error: the client sees a cut-off response, never wrong bytes.
fn stream_from_disk(mut disk: DiskObject, first: u64, len: u64) -> EdgeBody {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let fail = |sender: &tokio::sync::mpsc::Sender<_>, why: String| {
            let _ = sender.blocking_send(Err(why));
        };
        if first > 0
            && let Err(e) = disk.seek(first)
        {
            return fail(&sender, e.to_string());
        }
        let mut left = len;
        while left > 0 {
            match disk.read_block() {
                Ok(Some(mut block)) => {
                    if block.len() as u64 > left {
                        block.truncate(left as usize);
                    }
                    left -= block.len() as u64;
                    if sender.blocking_send(Ok(block)).is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) => return fail(&sender, "stored body shorter than recorded".into()),
                Err(e) => return fail(&sender, e.to_string()),
            }
        }
    });
    EdgeBody::channel(receiver, len)
}

/// RFC 5861 §4: the errors stale-if-error covers.
fn is_error_for_stale(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// §5.2.1.7: "a cache SHOULD either respond using a stored response consistent with the other
/// constraints of the request or respond with a 504 (Gateway Timeout) status code".
fn gateway_timeout() -> Response<EdgeBody> {
    let mut response = crate::phases::respond::edge_page(StatusCode::GATEWAY_TIMEOUT, false);
    add_cache_status(response.headers_mut(), "fwd=miss; detail=only-if-cached");
    response
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

/// The site's target list (RFC 9213 §2.2): its own targeted field, when it names one, before
/// `CDN-Cache-Control` (without one, `CDN-Cache-Control` is simply looked at twice).
fn target_list(settings: &SiteCache) -> [&str; 2] {
    [
        settings
            .targeted_field
            .as_deref()
            .unwrap_or(CDN_CACHE_CONTROL),
        CDN_CACHE_CONTROL,
    ]
}

/// Takes out the fields meant for this edge alone: the targeted fields and the purge tags.
///
/// On every response, and almost every response has none of them: one pass over the names
/// present decides, rather than a removal per name (each parses and hashes its name; together
/// about 900 instructions per request under callgrind).
fn strip_edge_fields(headers: &mut HeaderMap, own_field: Option<&str>) {
    let present = headers.keys().any(|name| {
        let name = name.as_str();
        name == CDN_CACHE_CONTROL
            || own_field == Some(name)
            || cache::object::TAG_FIELDS.contains(&name)
    });
    if !present {
        return;
    }
    strip_targeted_fields(headers, own_field);
    for tag in cache::object::TAG_FIELDS {
        headers.remove(tag);
    }
}

/// Takes out `CDN-Cache-Control` (RFC 9213 §3: a CDN "MAY remove it" when nothing downstream
/// uses it, and this edge is the last CDN hop, the one that answers visitors) and the site's
/// own targeted field.
fn strip_targeted_fields(headers: &mut HeaderMap, own_field: Option<&str>) {
    // Looked for first, as in `strip_edge_fields`: a hit pays for the scan, not the removals.
    let present = headers
        .keys()
        .any(|name| name.as_str() == CDN_CACHE_CONTROL || own_field == Some(name.as_str()));
    if !present {
        return;
    }
    headers.remove(CDN_CACHE_CONTROL);
    if let Some(own) = own_field {
        headers.remove(own);
    }
}

/// RFC 9211 §2: each cache appends its member; the last one is the cache closest to the client.
fn add_cache_status(headers: &mut HeaderMap, params: &str) {
    add_cache_status_ttl(headers, params, None);
}

/// [`add_cache_status`] with `; ttl=N` (RFC 9211 §2.5) appended. Written byte by byte: on a hit
/// this is most of what the cache adds to hyper's own work, and `format!` cost more than the
/// lookup (callgrind).
fn add_cache_status_ttl(headers: &mut HeaderMap, params: &str, ttl: Option<i64>) {
    let existing = headers.get(&CACHE_STATUS);
    let mut value = Vec::with_capacity(
        existing.map_or(0, |v| v.len() + 2) + CACHE_NAME.len() + params.len() + 32,
    );
    if let Some(existing) = existing {
        value.extend_from_slice(existing.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(CACHE_NAME.as_bytes());
    value.extend_from_slice(b"; ");
    value.extend_from_slice(params.as_bytes());
    if let Some(ttl) = ttl {
        value.extend_from_slice(b"; ttl=");
        push_decimal(&mut value, ttl);
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(CACHE_STATUS, value);
    }
}

fn push_decimal(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Removes this cache's own member from Cache-Status (keeping those of caches nearer the origin).
fn strip_own_cache_status(headers: &mut HeaderMap) {
    let Some(value) = headers.get(CACHE_STATUS).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let prefix = format!("{CACHE_NAME};");
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.starts_with(&prefix) && *m != CACHE_NAME)
        .collect();
    match HeaderValue::from_str(&kept.join(", ")) {
        Ok(v) if !kept.is_empty() => {
            headers.insert(CACHE_STATUS, v);
        }
        _ => {
            headers.remove(CACHE_STATUS);
        }
    }
}

const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn unix_now() -> u64 {
    policy::freshness::unix_seconds(SystemTime::now())
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut resume) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            resume = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            resume += 1;
            ti = resume;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_patterns_match_with_stars() {
        assert!(glob_match("/admin/*", "/admin/users"));
        assert!(glob_match("/admin/*", "/admin/"));
        assert!(!glob_match("/admin/*", "/administrator"));
        assert!(glob_match("*.php", "/index.php"));
        assert!(glob_match("/a/*/b", "/a/x/y/b"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exact/more"));
    }

    #[test]
    fn ttl_is_written_as_a_signed_decimal() {
        let mut h = HeaderMap::new();
        add_cache_status_ttl(&mut h, "hit", Some(-42));
        assert_eq!(h["cache-status"], "palisade; hit; ttl=-42");
        let mut h = HeaderMap::new();
        add_cache_status_ttl(&mut h, "hit", Some(0));
        assert_eq!(h["cache-status"], "palisade; hit; ttl=0");
        let mut h = HeaderMap::new();
        add_cache_status_ttl(&mut h, "hit", Some(i64::MIN));
        assert_eq!(h["cache-status"], "palisade; hit; ttl=-9223372036854775808");
    }

    #[test]
    fn rfc9211_members_are_appended_and_our_own_is_not_stored() {
        let mut h = HeaderMap::new();
        add_cache_status(&mut h, "fwd=miss; stored");
        assert_eq!(h["cache-status"], "palisade; fwd=miss; stored");
        let mut upstream = HeaderMap::new();
        upstream.insert("cache-status", HeaderValue::from_static("OriginCache; hit"));
        add_cache_status(&mut upstream, "hit; ttl=5");
        assert_eq!(
            upstream["cache-status"],
            "OriginCache; hit, palisade; hit; ttl=5"
        );
        strip_own_cache_status(&mut upstream);
        assert_eq!(upstream["cache-status"], "OriginCache; hit");
        strip_own_cache_status(&mut h);
        assert!(!h.contains_key("cache-status"));
    }
}

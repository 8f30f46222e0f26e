//! A fill: a cacheable request on its way to the origin, and storing what comes back while it
//! streams to the client (a 304 refreshing what is stored, stale copies when the origin fails).

use super::fields::{
    add_cache_status, content_length, is_error_for_stale, strip_edge_fields,
    strip_own_cache_status, target_list, unix_now,
};
use super::serve::serve;
use crate::body::{EdgeBody, Tee};
use bytes::{Bytes, BytesMut};
use cache::coalesce::{FillGuard, FillOutcome};
use cache::persist;
use cache::policy::targeted::{self};
use cache::policy::{self, RequestDirectives, deception, storable, validation};
use cache::{Cache, CacheKey, Loaded, ObjectId, StoredObject};
use http::{HeaderMap, Method, Response, StatusCode};
use model::SiteCache;
use std::sync::Arc;

/// A cacheable request on its way to the origin: what storing its response needs.
pub struct Fill {
    pub(super) cache: Arc<Cache>,
    pub(super) key: CacheKey,
    pub(super) request_headers: HeaderMap,
    pub(super) request_directives: RequestDirectives,
    /// Held by the request that fills; `None` when it goes to the origin without the lock
    /// (the lock wait timed out, or the URL is known uncacheable).
    pub(super) guard: Option<FillGuard>,
    /// `Cache-Status` `fwd` parameter: why the cache went forward.
    pub(super) fwd: &'static str,
    pub(super) request_time: u64,
    /// The stored response being revalidated.
    pub(super) stale: Option<StaleCopy>,
    pub(super) site: Arc<str>,
    /// The purge log's position before the origin was asked (purges after it apply).
    pub(super) purge_mark: u64,
    /// The origin request's fields without the validators, kept while revalidating: a 304 that
    /// names another representation sends the request again without them (§4.3.4).
    pub(super) unconditional: Option<Vec<u8>>,
    /// The site's own targeted field, kept out of what a stale copy answers with.
    pub(super) own_field: Option<String>,
    /// What the request tells the deception armour, when the site has it on.
    pub(super) deception: Option<deception::Request>,
}

/// A stored response being revalidated.
pub(super) struct StaleCopy {
    pub(super) object: Arc<StoredObject>,
    /// It may be served if the origin fails (stale-if-error, always online).
    pub(super) serve_on_error: bool,
    /// Its body is on disk only, under this id (the object holds the header alone).
    pub(super) on_disk: Option<ObjectId>,
}

/// Reads `id` from the disk tier on a blocking thread.
pub(super) async fn load(cache: &Arc<Cache>, id: ObjectId) -> Loaded {
    let cache = Arc::clone(cache);
    tokio::task::spawn_blocking(move || cache.load(id))
        .await
        .unwrap_or(Loaded::Absent)
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

    pub(super) async fn serve_stale(
        &self,
        method: &Method,
        detail: &str,
    ) -> Option<Response<EdgeBody>> {
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
pub(super) struct Filling {
    pub(super) fill: Fill,
    /// The stored header, until the body is complete or handed to a disk write.
    pub(super) object: Option<StoredObject>,
    pub(super) body: BytesMut,
    pub(super) stream: Option<persist::StreamWrite>,
    pub(super) size: u64,
    pub(super) small_limit: u64,
    pub(super) limit: u64,
}

impl Filling {
    /// Moves the response to a streamed disk write (taking the fill lock with it) and queues
    /// what was gathered so far; `false` if there is no disk tier or the write is refused.
    pub(super) fn start_streaming(&mut self) -> bool {
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

//! The cache as the edge uses it: look a request up, coalesce misses, store responses.

use crate::coalesce::{FillGuard, FillLocks, FillOutcome, Lock};
use crate::disk::{DiskObject, DiskTier};
use crate::key::{CacheKey, ObjectId};
use crate::memory::{Entry, MemoryTier};
use crate::meta::{self, Meta};
use crate::object::StoredObject;
use crate::persist::{self, Read, StreamWrite};
use crate::purge::{Purge, PurgeLog, Verdict};
use crate::vary::VarySpec;
use crate::write_order::{Ticket, WriteOrder};
use http::HeaderMap;
use std::sync::Arc;

/// How long a URL whose response could not be stored skips the fill lock. Short, so a URL that
/// becomes cacheable again (an origin fixed its headers) is coalesced again soon.
pub const UNCACHEABLE_FOR: u64 = 10;

/// Shared by every request and site (objects of different sites never share a key).
pub struct Cache {
    memory: MemoryTier,
    disk: Option<Arc<DiskTier>>,
    locks: Arc<FillLocks>,
    purges: PurgeLog,
    /// Changes on their way to the disk tier, so it never brings back what memory replaced.
    order: Arc<WriteOrder>,
    /// This process's run, written with objects: their purge marks mean nothing to another run.
    run: u64,
}

/// What a lookup found.
pub enum Lookup {
    /// A stored response for this request (its Vary fields matched).
    Found {
        /// The response.
        object: Arc<StoredObject>,
        /// The id it is stored under (the variant's, when it varies).
        id: ObjectId,
        /// A soft purge applies to it: use it only as a stale response.
        soft_purged: bool,
    },
    /// In the disk tier only: [`Cache::load`] it (blocking), then look up again or stream it.
    OnDisk {
        /// The id to load.
        id: ObjectId,
    },
    /// Nothing stored; `id` names the object a fill would store (the variant's id when the
    /// URL's Vary spec is known).
    Missing {
        /// The id a fill stores under.
        id: ObjectId,
    },
    /// The URL's last response could not be stored: go to the origin without waiting on a fill.
    Uncacheable,
}

/// What [`Cache::load`] found on disk.
pub enum Loaded {
    /// Now in the memory tier (a small response, or a URL's Vary spec): look up again.
    Promoted,
    /// Too large for memory: serve its header from `object` and stream `body`.
    Large {
        /// The response without its body.
        object: Arc<StoredObject>,
        /// The body, open for reading.
        body: DiskObject,
        /// A soft purge applies to it: use it only as a stale response.
        soft_purged: bool,
    },
    /// Not on disk after all (removed meanwhile, or unreadable).
    Absent,
}

impl Cache {
    /// A cache whose memory tier holds at most `memory_bytes`, without a disk tier.
    pub fn new(memory_bytes: u64) -> Cache {
        Cache::with_disk(memory_bytes, None)
    }

    /// A cache with a memory tier and, when given, a disk tier.
    pub fn with_disk(memory_bytes: u64, disk: Option<DiskTier>) -> Cache {
        Cache {
            memory: MemoryTier::new(memory_bytes),
            disk: disk.map(Arc::new),
            locks: Arc::new(FillLocks::default()),
            purges: PurgeLog::default(),
            order: Arc::default(),
            run: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1),
        }
    }

    /// Responses larger than this live on disk only (an eighth of the memory tier: one body must
    /// not push out hundreds of small ones). Without a disk tier they are not stored.
    pub fn small_limit(&self) -> u64 {
        self.memory.capacity() / 8
    }

    /// The largest body the cache can store at all.
    pub fn store_limit(&self) -> u64 {
        match &self.disk {
            Some(disk) => disk.max_bytes() / 2,
            None => self.small_limit(),
        }
    }

    /// The disk tier, when there is one.
    pub fn disk(&self) -> Option<&Arc<DiskTier>> {
        self.disk.as_ref()
    }

    /// Finds what `request` (with primary key `key`) can be answered with. `now`: Unix seconds.
    pub fn lookup(&self, key: &CacheKey, request: &HeaderMap, now: u64) -> Lookup {
        let (object, id) = match self.memory.get(key.id) {
            None => return self.missing_or_on_disk(key.id),
            Some(Entry::Object(object)) => (object, key.id),
            Some(Entry::Uncacheable { until }) if until > now => return Lookup::Uncacheable,
            Some(Entry::Uncacheable { .. }) => return Lookup::Missing { id: key.id },
            Some(Entry::Vary(spec)) => {
                let id = spec.variant_id(key.id, request);
                match self.memory.get(id) {
                    Some(Entry::Object(object)) => (object, id),
                    _ => return self.missing_or_on_disk(id),
                }
            }
        };
        match self.purges.verdict(&object) {
            Verdict::Gone => {
                self.memory.remove(id);
                Lookup::Missing { id }
            }
            verdict => Lookup::Found {
                soft_purged: object.soft_purged || verdict == Verdict::Stale,
                object,
                id,
            },
        }
    }

    fn missing_or_on_disk(&self, id: ObjectId) -> Lookup {
        match &self.disk {
            // While a change is on its way to disk, the disk's copy is the one it replaces.
            Some(disk) if !self.order.pending(id) && disk.contains(id) => Lookup::OnDisk { id },
            _ => Lookup::Missing { id },
        }
    }

    /// Reads `id` from the disk tier (blocking: call it from a blocking thread). A small
    /// response and a Vary spec are promoted to the memory tier; a large response is returned
    /// open for streaming. Purges apply as at lookup. A promotion that a store or removal
    /// overtook while it read is dropped (still `Promoted`: the caller looks again and finds
    /// what that change left).
    pub fn load(&self, id: ObjectId) -> Loaded {
        let Some(disk) = &self.disk else {
            return Loaded::Absent;
        };
        // A change on its way to disk: what is there is what it replaces.
        if self.order.pending(id) {
            return Loaded::Absent;
        }
        let mark = self.order.mark(id);
        let read = match persist::read(disk, id, self.run, self.small_limit()) {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!(error = %e, "cache: disk read failed");
                return Loaded::Absent;
            }
        };
        let (object, body) = match read {
            Read::Absent => return Loaded::Absent,
            Read::Vary(spec) => {
                self.order.promote(id, mark, || {
                    self.memory.insert(id, Entry::Vary(Arc::new(spec)));
                });
                return Loaded::Promoted;
            }
            Read::Small(object) => (object, None),
            Read::Large(object, body) => (object, Some(body)),
        };
        let soft_purged = match self.purges.verdict(&object) {
            Verdict::Gone => {
                let _ = disk.remove(id);
                return Loaded::Absent;
            }
            Verdict::Stale => true,
            Verdict::Keep => object.soft_purged,
        };
        match body {
            None => {
                let mut object = object;
                object.soft_purged = soft_purged;
                self.order.promote(id, mark, || {
                    self.memory.insert(id, Entry::Object(Arc::new(object)));
                });
                Loaded::Promoted
            }
            Some(body) => Loaded::Large {
                object: Arc::new(object),
                body,
                soft_purged,
            },
        }
    }

    /// Rewrites the stored header of an object kept on disk (a 304 refreshed it, §3.2), leaving
    /// its body alone (blocking). `false` if it is no longer there.
    pub fn refresh_on_disk(&self, id: ObjectId, object: &StoredObject) -> bool {
        let Some(disk) = &self.disk else {
            return false;
        };
        let meta = meta::encode_object(object, self.run);
        disk.update_meta(id, &meta).unwrap_or(false)
    }

    /// Changes object `id`: `memory` now, then `work` on the disk tier off the async threads
    /// (inline where there is no runtime), in order with the object's other changes.
    fn change(
        &self,
        id: ObjectId,
        memory: impl FnOnce(),
        work: impl FnOnce(&DiskTier) + Send + 'static,
    ) {
        let Some(disk) = &self.disk else {
            memory();
            return;
        };
        let disk = Arc::clone(disk);
        let ticket = self.order.change(id, memory);
        let run = move || {
            ticket.apply(|| work(&disk));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(run);
            }
            Err(_) => run(),
        }
    }

    /// The purge log's position, recorded by a fill when it starts (`StoredObject::purge_mark`).
    pub fn purge_mark(&self) -> u64 {
        self.purges.mark()
    }

    /// Adds a purge; it applies to lookups at once. Returns its sequence number; call
    /// [`Cache::apply_purges`] (in the background: it walks every stored object) to apply it
    /// to what is stored and retire it.
    pub fn purge(&self, purge: Purge) -> u64 {
        self.purges.add(purge)
    }

    /// The lurker's pass: applies the pending purges to every object in the memory tier
    /// (hard: removed; soft: replaced by a copy marked stale), then retires them. Returns how
    /// many objects it removed or marked.
    pub fn apply_purges(&self) -> usize {
        let through = self.purges.newest();
        if through == 0 {
            return 0;
        }
        let mut touched = 0;
        for (id, entry) in self.memory.iter() {
            let Entry::Object(object) = entry else {
                continue;
            };
            match self.purges.verdict(&object) {
                Verdict::Keep => {}
                Verdict::Gone => {
                    self.memory.remove(id);
                    touched += 1;
                }
                Verdict::Stale if !object.soft_purged => {
                    let mut marked = StoredObject::clone(&object);
                    marked.soft_purged = true;
                    marked.purge_mark = through + 1;
                    // Only if it was not replaced meanwhile (a newer fill was judged when
                    // it was stored).
                    if matches!(self.memory.get(id), Some(Entry::Object(now)) if Arc::ptr_eq(&now, &object))
                    {
                        self.memory.insert(id, Entry::Object(Arc::new(marked)));
                        touched += 1;
                    }
                }
                Verdict::Stale => {}
            }
        }
        if let Some(disk) = &self.disk {
            touched += self.apply_purges_on_disk(disk, through);
        }
        self.purges.retire_through(through);
        touched
    }

    /// The lurker's pass over the disk tier: reads every object's metadata (blocking).
    fn apply_purges_on_disk(&self, disk: &DiskTier, through: u64) -> usize {
        let mut touched = 0;
        for (id, bytes) in disk.scan() {
            let Some(Meta::Object { mut object, run }) = meta::decode(&bytes) else {
                continue;
            };
            if run != self.run {
                object.purge_mark = 0;
            }
            match self.purges.verdict(&object) {
                Verdict::Keep => {}
                Verdict::Gone => {
                    let _ = disk.remove(id);
                    touched += 1;
                }
                Verdict::Stale if !object.soft_purged => {
                    object.soft_purged = true;
                    object.purge_mark = through + 1;
                    let meta = meta::encode_object(&object, self.run);
                    if disk.update_meta(id, &meta).unwrap_or(false) {
                        touched += 1;
                    }
                }
                Verdict::Stale => {}
            }
        }
        touched
    }

    /// Purges not yet applied by a pass.
    pub fn pending_purges(&self) -> usize {
        self.purges.pending()
    }

    /// Takes or joins the fill of object `id`.
    pub fn lock(&self, id: ObjectId) -> Lock {
        self.locks.lock(id)
    }

    /// Stores a response for `key`, under the variant `request` selects when it varies.
    pub fn store(&self, key: &CacheKey, request: &HeaderMap, mut object: StoredObject) {
        // A purge that arrived while the response was being fetched applies to it.
        match self.purges.verdict(&object) {
            Verdict::Gone => return,
            Verdict::Stale => object.soft_purged = true,
            Verdict::Keep => {}
        }
        let object = Arc::new(object);
        let id = self.place(key, request, &object.headers);
        let in_memory = Entry::Object(Arc::clone(&object));
        // Written through to disk, so it is there after eviction from memory and a restart.
        let run = self.run;
        self.change(
            id,
            || self.memory.insert(id, in_memory),
            move |disk| {
                let meta = meta::encode_object(&object, run);
                if let Err(e) = persist::write_whole(disk, id, &meta, &object.body) {
                    tracing::debug!(error = %e, "cache: disk write failed");
                }
            },
        );
    }

    /// Where a response for `key` and `request` is stored: the primary id, or its variant's id
    /// once the URL's Vary spec (kept in memory and on disk) says how variants differ.
    fn place(&self, key: &CacheKey, request: &HeaderMap, headers: &HeaderMap) -> ObjectId {
        let Some(spec) = VarySpec::from_response(headers) else {
            return key.id;
        };
        let id = spec.variant_id(key.id, request);
        // The newest response's Vary decides how the URL's variants are told apart (§4.1: the
        // most recent response's Vary is the one that applies).
        let replace = !matches!(
            self.memory.get(key.id),
            Some(Entry::Vary(existing)) if *existing == spec
        );
        if replace {
            let spec = Arc::new(spec);
            let in_memory = Entry::Vary(Arc::clone(&spec));
            let primary = key.id;
            self.change(
                primary,
                || self.memory.insert(primary, in_memory),
                move |disk| {
                    if let Err(e) = persist::write_vary(disk, primary, &spec) {
                        tracing::debug!(error = %e, "cache: disk write failed");
                    }
                },
            );
        }
        id
    }

    /// Starts storing a response too large for memory straight to disk while it streams.
    /// `object` has no body. The fill lock, if held, is released when the write ends (waiters
    /// then find it on disk). `None` without a disk tier or when a purge already covers it.
    pub fn store_streaming(
        &self,
        key: &CacheKey,
        request: &HeaderMap,
        mut object: StoredObject,
        guard: Option<FillGuard>,
    ) -> Option<StreamWrite> {
        let disk = Arc::clone(self.disk.as_ref()?);
        match self.purges.verdict(&object) {
            Verdict::Gone => return None,
            Verdict::Stale => object.soft_purged = true,
            Verdict::Keep => {}
        }
        let id = self.place(key, request, &object.headers);
        // The old copy, if any, must not outlive the new one in memory.
        let ticket: Ticket = self.order.change(id, || self.memory.remove(id));
        let meta = meta::encode_object(&object, self.run);
        Some(StreamWrite::start(
            disk,
            ticket,
            meta,
            Box::new(move |committed| {
                if let Some(guard) = guard {
                    guard.finish(if committed {
                        FillOutcome::Stored
                    } else {
                        FillOutcome::NotStored
                    });
                }
            }),
        ))
    }

    /// Remembers that `key`'s response could not be stored, so misses skip the fill lock for a
    /// while ([`UNCACHEABLE_FOR`]). Does not replace a stored object or Vary spec.
    pub fn mark_uncacheable(&self, key: &CacheKey, now: u64) {
        if self.memory.get(key.id).is_none() {
            self.memory.insert(
                key.id,
                Entry::Uncacheable {
                    until: now + UNCACHEABLE_FOR,
                },
            );
        }
    }

    /// Drops whatever is stored for `key`: every variant becomes unreachable with its spec
    /// (they age out of the tier), and a non-varying object goes at once.
    pub fn invalidate(&self, key: &CacheKey) {
        self.remove(key.id);
    }

    /// Drops one stored object (a variant, or a non-varying response), from both tiers.
    pub fn remove(&self, id: ObjectId) {
        // Nothing on disk and nothing on its way there: memory is all there is.
        let on_disk = self
            .disk
            .as_ref()
            .is_some_and(|d| self.order.pending(id) || d.contains(id));
        if !on_disk {
            self.memory.remove(id);
            return;
        }
        self.change(
            id,
            || self.memory.remove(id),
            move |disk| {
                let _ = disk.remove(id);
            },
        );
    }

    /// Whether a store or removal has yet to reach the disk tier (for tests and shutdown).
    pub fn disk_changes_pending(&self) -> bool {
        self.order.any_pending()
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryTier {
        &self.memory
    }

    /// Fills in progress.
    pub fn fills(&self) -> usize {
        self.locks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coalesce::FillOutcome;
    use crate::policy::Timing;
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};
    use model::SiteCache;

    fn key(path: &str) -> CacheKey {
        CacheKey::new(
            "s",
            &SiteCache::default(),
            "http",
            "a.example",
            path,
            &HeaderMap::new(),
        )
    }

    fn object(vary: Option<&'static str>, body: &'static [u8]) -> StoredObject {
        let mut headers = HeaderMap::new();
        if let Some(vary) = vary {
            headers.insert("vary", HeaderValue::from_static(vary));
        }
        StoredObject::new(
            StatusCode::OK,
            headers,
            &[],
            Bytes::from_static(body),
            Timing {
                initial_age: 0,
                response_time: 0,
                lifetime: 60,
                heuristic: false,
            },
            "http://a.example/".into(),
            0,
        )
    }

    fn request(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in lines {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn found(lookup: Lookup) -> Option<Bytes> {
        match lookup {
            Lookup::Found { object, .. } => Some(object.body.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_stored_object_is_found_by_its_key() {
        let cache = Cache::new(1 << 20);
        let k = key("/a");
        assert!(matches!(cache.lookup(&k, &request(&[]), 0), Lookup::Missing { id } if id == k.id));
        cache.store(&k, &request(&[]), object(None, b"A"));
        assert_eq!(found(cache.lookup(&k, &request(&[]), 0)).unwrap(), "A");
        assert!(found(cache.lookup(&key("/b"), &request(&[]), 0)).is_none());
    }

    #[test]
    fn s4_1_variants_are_stored_and_selected_by_the_vary_fields() {
        let cache = Cache::new(1 << 20);
        let k = key("/page");
        let de = request(&[("accept-language", "de")]);
        let en = request(&[("accept-language", "en")]);
        cache.store(&k, &de, object(Some("accept-language"), b"Hallo"));
        assert_eq!(found(cache.lookup(&k, &de, 0)).unwrap(), "Hallo");
        let Lookup::Missing { id } = cache.lookup(&k, &en, 0) else {
            panic!("another language is another variant")
        };
        assert_ne!(id, k.id, "the miss names the variant");
        cache.store(&k, &en, object(Some("accept-language"), b"Hello"));
        assert_eq!(found(cache.lookup(&k, &en, 0)).unwrap(), "Hello");
        assert_eq!(found(cache.lookup(&k, &de, 0)).unwrap(), "Hallo");
    }

    #[test]
    fn an_uncacheable_mark_expires_and_never_hides_a_stored_object() {
        let cache = Cache::new(1 << 20);
        let k = key("/u");
        cache.mark_uncacheable(&k, 100);
        assert!(matches!(
            cache.lookup(&k, &request(&[]), 105),
            Lookup::Uncacheable
        ));
        assert!(matches!(
            cache.lookup(&k, &request(&[]), 100 + UNCACHEABLE_FOR),
            Lookup::Missing { .. }
        ));
        cache.store(&k, &request(&[]), object(None, b"now cacheable"));
        cache.mark_uncacheable(&k, 200);
        assert!(found(cache.lookup(&k, &request(&[]), 201)).is_some());
    }

    #[test]
    fn purges_apply_at_lookup_at_once_and_a_pass_applies_them_to_what_is_stored() {
        use crate::purge::{Purge, PurgeScope};
        let cache = Cache::new(1 << 20);
        let (a, b) = (key("/a"), key("/b"));
        for (k, tag) in [(&a, "red"), (&b, "blue")] {
            let mut o = object(None, b"x");
            o.site = "s".into();
            o.tags = vec![tag.to_string()].into_boxed_slice();
            o.purge_mark = cache.purge_mark();
            cache.store(k, &request(&[]), o);
        }
        let tag = |t: &str, soft| Purge {
            site: "s".into(),
            scope: PurgeScope::Tag(t.into()),
            soft,
        };
        cache.purge(tag("red", false));
        cache.purge(tag("blue", true));
        assert!(matches!(
            cache.lookup(&a, &request(&[]), 0),
            Lookup::Missing { .. }
        ));
        assert!(matches!(
            cache.lookup(&b, &request(&[]), 0),
            Lookup::Found {
                soft_purged: true,
                ..
            }
        ));
        assert_eq!(cache.apply_purges(), 1, "a is gone already; b is marked");
        assert_eq!(cache.pending_purges(), 0);
        assert!(
            matches!(
                cache.lookup(&b, &request(&[]), 0),
                Lookup::Found {
                    soft_purged: true,
                    ..
                }
            ),
            "the mark outlives the retired rule"
        );
    }

    #[test]
    fn a_response_fetched_across_a_purge_is_not_stored() {
        use crate::purge::{Purge, PurgeScope};
        let cache = Cache::new(1 << 20);
        let k = key("/late");
        let mut o = object(None, b"old");
        o.site = "s".into();
        o.purge_mark = cache.purge_mark();
        cache.purge(Purge {
            site: "s".into(),
            scope: PurgeScope::Everything,
            soft: false,
        });
        cache.store(&k, &request(&[]), o);
        assert!(matches!(
            cache.lookup(&k, &request(&[]), 0),
            Lookup::Missing { .. }
        ));
    }

    fn disk_cache(dir: &std::path::Path, memory: u64) -> Cache {
        Cache::with_disk(memory, Some(DiskTier::open(dir, 64 << 20).unwrap()))
    }

    #[test]
    fn a_restart_finds_stored_responses_on_disk_and_promotes_them() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("/warm");
        let de = request(&[("accept-language", "de")]);
        {
            let cache = disk_cache(dir.path(), 1 << 20);
            cache.store(&k, &request(&[]), object(None, b"plain"));
            cache.store(&key("/v"), &de, object(Some("accept-language"), b"Hallo"));
        }
        let cache = disk_cache(dir.path(), 1 << 20);
        let Lookup::OnDisk { id } = cache.lookup(&k, &request(&[]), 0) else {
            panic!("on disk after a restart")
        };
        assert!(matches!(cache.load(id), Loaded::Promoted));
        assert_eq!(found(cache.lookup(&k, &request(&[]), 0)).unwrap(), "plain");
        // A varying URL: first its Vary spec comes back, then the variant.
        let Lookup::OnDisk { id } = cache.lookup(&key("/v"), &de, 0) else {
            panic!("spec on disk")
        };
        assert!(matches!(cache.load(id), Loaded::Promoted));
        let Lookup::OnDisk { id } = cache.lookup(&key("/v"), &de, 0) else {
            panic!("variant on disk")
        };
        assert!(matches!(cache.load(id), Loaded::Promoted));
        assert_eq!(found(cache.lookup(&key("/v"), &de, 0)).unwrap(), "Hallo");
    }

    #[test]
    fn a_large_response_is_streamed_to_disk_and_read_back_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let cache = disk_cache(dir.path(), 64 << 10);
        let k = key("/big");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let Lock::Filler(guard) = cache.lock(k.id) else {
            panic!("first fill")
        };
        let Lock::Waiter(mut waiter) = cache.lock(k.id) else {
            panic!("second waits")
        };
        let mut write = cache
            .store_streaming(&k, &request(&[]), object(None, b""), Some(guard))
            .expect("disk tier present");
        let chunk = Bytes::from(vec![7u8; 100 * 1024]);
        for _ in 0..10 {
            assert!(write.push(chunk.clone()));
        }
        write.commit();
        std::thread::spawn(move || {
            let outcome = loop {
                let now = *waiter.borrow_and_update();
                if now != FillOutcome::Pending {
                    break now;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            };
            done_tx.send(outcome).unwrap();
        });
        let outcome = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            outcome,
            FillOutcome::Stored,
            "waiters released after the commit"
        );
        let Lookup::OnDisk { id } = cache.lookup(&k, &request(&[]), 0) else {
            panic!("large objects live on disk only")
        };
        let Loaded::Large { mut body, .. } = cache.load(id) else {
            panic!("too large to promote")
        };
        let mut total = 0;
        while let Some(block) = body.read_block().unwrap() {
            assert!(block.iter().all(|b| *b == 7));
            total += block.len();
        }
        assert_eq!(total, 1000 * 1024);
    }

    /// Runs `f` on a runtime with blocking threads, where the cache's disk work is deferred,
    /// then waits for that work to end.
    fn with_deferred_disk_work(cache: &Cache, f: impl FnOnce()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async { f() });
        // Dropping a runtime waits for blocking work that started and cancels the rest: wait
        // for every change to have reached the disk instead.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cache.disk_changes_pending() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!cache.disk_changes_pending(), "disk work ended within 10 s");
    }

    #[test]
    fn an_invalidated_object_is_not_read_back_while_its_removal_is_on_its_way() {
        let dir = tempfile::tempdir().unwrap();
        let cache = disk_cache(dir.path(), 1 << 20);
        for round in 0..200 {
            let k = key(&format!("/r{round}"));
            // Stored without a runtime: on disk at once.
            cache.store(&k, &request(&[]), object(None, b"old"));
            assert!(cache.disk().unwrap().contains(k.id));
            with_deferred_disk_work(&cache, || {
                cache.invalidate(&k);
                // The removal from disk may not have run yet: the disk copy must not count.
                assert!(
                    matches!(cache.lookup(&k, &request(&[]), 0), Lookup::Missing { .. }),
                    "round {round}: the invalidated object came back from disk"
                );
                assert!(
                    matches!(cache.load(k.id), Loaded::Absent | Loaded::Promoted),
                    "round {round}"
                );
                assert!(
                    found(cache.lookup(&k, &request(&[]), 0)).is_none(),
                    "round {round}: a load promoted the invalidated object"
                );
            });
            assert!(!cache.disk().unwrap().contains(k.id), "round {round}");
        }
    }

    #[test]
    fn a_promotion_read_before_a_store_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = disk_cache(dir.path(), 1 << 20);
        let k = key("/p");
        cache.store(&k, &request(&[]), object(None, b"v0"));
        // Evicted from memory: the next lookup reads the disk.
        cache.memory().remove(k.id);
        let mark = cache.order.mark(k.id);
        cache.store(&k, &request(&[]), object(None, b"v2"));
        // A load that read v0 before that store lands its promotion now.
        let promoted = cache.order.promote(k.id, mark, || {
            cache
                .memory()
                .insert(k.id, Entry::Object(Arc::new(object(None, b"v0"))))
        });
        assert!(!promoted);
        assert_eq!(found(cache.lookup(&k, &request(&[]), 0)).unwrap(), "v2");
    }

    #[test]
    fn the_disk_ends_with_the_last_of_many_quick_changes_to_one_object() {
        let dir = tempfile::tempdir().unwrap();
        let cache = disk_cache(dir.path(), 1 << 20);
        static BODIES: [&[u8]; 4] = [b"v0", b"v1", b"v2", b"v3"];
        for round in 0..50 {
            let k = key(&format!("/q{round}"));
            let last = round % 5;
            let expected = (last < 4).then(|| BODIES[last]);
            with_deferred_disk_work(&cache, || {
                // Up to four stores, and an invalidation after the fourth.
                for body in BODIES.iter().take(last + 1) {
                    cache.store(&k, &request(&[]), object(None, body));
                }
                if last == 4 {
                    cache.invalidate(&k);
                }
                // Evicted, perhaps before the writes landed: nothing older may come back.
                cache.memory().remove(k.id);
                if let Lookup::OnDisk { id } = cache.lookup(&k, &request(&[]), 0) {
                    let _ = cache.load(id);
                    let read_back = found(cache.lookup(&k, &request(&[]), 0));
                    assert!(
                        read_back.is_none() || read_back.as_deref() == expected,
                        "round {round}: {read_back:?} came back from disk"
                    );
                }
            });
            // What the disk holds once every change has landed.
            cache.memory().remove(k.id);
            let on_disk = match cache.lookup(&k, &request(&[]), 0) {
                Lookup::OnDisk { id } => {
                    assert!(matches!(cache.load(id), Loaded::Promoted));
                    found(cache.lookup(&k, &request(&[]), 0))
                }
                _ => None,
            };
            assert_eq!(on_disk.as_deref(), expected, "round {round}");
        }
    }

    #[test]
    fn a_hard_purge_reaches_the_disk_tier() {
        use crate::purge::{Purge, PurgeScope};
        let dir = tempfile::tempdir().unwrap();
        let cache = disk_cache(dir.path(), 1 << 20);
        let k = key("/gone");
        let mut o = object(None, b"x");
        o.site = "s".into();
        o.purge_mark = cache.purge_mark();
        cache.store(&k, &request(&[]), o);
        assert!(cache.disk().unwrap().contains(k.id));
        cache.purge(Purge {
            site: "s".into(),
            scope: PurgeScope::Everything,
            soft: false,
        });
        cache.apply_purges();
        assert!(!cache.disk().unwrap().contains(k.id));
    }

    #[test]
    fn the_memory_tier_stays_within_its_bound() {
        let cache = Cache::new(64 << 10);
        static BODY: [u8; 1000] = [b'x'; 1000];
        for i in 0..1000 {
            cache.store(&key(&format!("/{i}")), &request(&[]), object(None, &BODY));
        }
        assert!(
            cache.memory().used_bytes() <= 64 << 10,
            "{}",
            cache.memory().used_bytes()
        );
        assert!(cache.memory().len() > 10);
    }
}

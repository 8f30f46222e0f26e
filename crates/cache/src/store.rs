//! The cache as the edge uses it: look a request up, coalesce misses, store responses.

use crate::coalesce::{FillLocks, Lock};
use crate::key::{CacheKey, ObjectId};
use crate::memory::{Entry, MemoryTier};
use crate::object::StoredObject;
use crate::purge::{Purge, PurgeLog, Verdict};
use crate::vary::VarySpec;
use http::HeaderMap;
use std::sync::Arc;

/// How long a URL whose response could not be stored skips the fill lock. Short, so a URL that
/// becomes cacheable again (an origin fixed its headers) is coalesced again soon.
pub const UNCACHEABLE_FOR: u64 = 10;

/// Shared by every request and site (objects of different sites never share a key).
pub struct Cache {
    memory: MemoryTier,
    locks: Arc<FillLocks>,
    purges: PurgeLog,
}

/// What a lookup found.
pub enum Lookup {
    /// A stored response for this request (its Vary fields matched).
    Found {
        object: Arc<StoredObject>,
        id: ObjectId,
        /// A soft purge applies to it: use it only as a stale response.
        soft_purged: bool,
    },
    /// Nothing stored; `id` names the object a fill would store (the variant's id when the
    /// URL's Vary spec is known).
    Missing { id: ObjectId },
    /// The URL's last response could not be stored: go to the origin without waiting on a fill.
    Uncacheable,
}

impl Cache {
    /// A cache whose memory tier holds at most `memory_bytes`.
    pub fn new(memory_bytes: u64) -> Cache {
        Cache {
            memory: MemoryTier::new(memory_bytes),
            locks: Arc::new(FillLocks::default()),
            purges: PurgeLog::default(),
        }
    }

    /// Finds what `request` (with primary key `key`) can be answered with. `now`: Unix seconds.
    pub fn lookup(&self, key: &CacheKey, request: &HeaderMap, now: u64) -> Lookup {
        let (object, id) = match self.memory.get(key.id) {
            None => return Lookup::Missing { id: key.id },
            Some(Entry::Object(object)) => (object, key.id),
            Some(Entry::Uncacheable { until }) if until > now => return Lookup::Uncacheable,
            Some(Entry::Uncacheable { .. }) => return Lookup::Missing { id: key.id },
            Some(Entry::Vary(spec)) => {
                let id = spec.variant_id(key.id, request);
                match self.memory.get(id) {
                    Some(Entry::Object(object)) => (object, id),
                    _ => return Lookup::Missing { id },
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
        self.purges.retire_through(through);
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
        match VarySpec::from_response(&object.headers) {
            None => self.memory.insert(key.id, Entry::Object(object)),
            Some(spec) => {
                let id = spec.variant_id(key.id, request);
                // The newest response's Vary decides how the URL's variants are told apart
                // (§4.1: the most recent response's Vary is the one that applies).
                let replace = !matches!(
                    self.memory.get(key.id),
                    Some(Entry::Vary(existing)) if *existing == spec
                );
                if replace {
                    self.memory.insert(key.id, Entry::Vary(Arc::new(spec)));
                }
                self.memory.insert(id, Entry::Object(object));
            }
        }
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
        self.memory.remove(key.id);
    }

    /// Drops one stored object (a variant, or a non-varying response).
    pub fn remove(&self, id: ObjectId) {
        self.memory.remove(id);
    }

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

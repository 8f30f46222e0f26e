//! The memory tier: stored responses and Vary specs, bounded in bytes, with a scan-resistant
//! policy.
//!
//! `quick_cache` does the bounding: a CLOCK-Pro variant (close to S3-FIFO) whose admission keeps
//! one pass over many cold URLs from flushing the hot set, which plain LRU would let happen; it
//! has no background threads and a get costs about one hash-table probe.

use crate::key::ObjectId;
use crate::object::StoredObject;
use crate::vary::VarySpec;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use std::sync::Arc;

/// What the memory tier holds under an id.
#[derive(Clone)]
pub enum Entry {
    /// A stored response.
    Object(Arc<StoredObject>),
    /// Under a primary id: the response for this URL varies on these fields; the object lives
    /// under the variant's id.
    Vary(Arc<VarySpec>),
    /// Under a primary id: the last response for this URL could not be stored, until this time
    /// (Unix seconds). Misses skip the fill lock meanwhile, so requests for an uncacheable URL are
    /// not queued behind one another (Varnish's "hit-for-miss").
    Uncacheable {
        /// Unix seconds.
        until: u64,
    },
}

/// Bytes an entry is charged: its body and fields plus a fixed overhead for the object, its
/// table slot and allocations.
#[derive(Clone, Copy)]
struct EntryWeight;

/// Per-entry overhead charged on top of the stored bytes.
pub const ENTRY_OVERHEAD: u64 = 256;

impl Weighter<ObjectId, Entry> for EntryWeight {
    fn weight(&self, _id: &ObjectId, entry: &Entry) -> u64 {
        match entry {
            Entry::Object(object) => object.stored_bytes() + ENTRY_OVERHEAD,
            Entry::Vary(spec) => 32 * spec.names().len() as u64 + ENTRY_OVERHEAD,
            Entry::Uncacheable { .. } => ENTRY_OVERHEAD,
        }
    }
}

/// The memory tier.
pub struct MemoryTier {
    entries: Cache<ObjectId, Entry, EntryWeight>,
    capacity: u64,
}

impl MemoryTier {
    /// A tier holding at most `bytes` (as [`Entry`] weights count them).
    pub fn new(bytes: u64) -> MemoryTier {
        // quick_cache sizes its tables from an estimate of the item count; 4 KiB per object is a
        // typical web mix, and the estimate only affects the initial allocation.
        let estimated_items = (bytes / 4096).clamp(1024, 1 << 22) as usize;
        MemoryTier {
            entries: Cache::with_weighter(estimated_items, bytes.max(1), EntryWeight),
            capacity: bytes,
        }
    }

    /// The entry under `id`, if any; counts as a use for eviction.
    pub fn get(&self, id: ObjectId) -> Option<Entry> {
        self.entries.get(&id)
    }

    /// Stores `entry` under `id`, replacing what was there; may evict colder entries.
    pub fn insert(&self, id: ObjectId, entry: Entry) {
        self.entries.insert(id, entry);
    }

    /// Every entry, cloned (cheap: entries are `Arc`s). Entries added or removed during the
    /// walk may or may not be seen.
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, Entry)> + '_ {
        self.entries.iter()
    }

    /// Drops the entry under `id`, if any.
    pub fn remove(&self, id: ObjectId) {
        self.entries.remove(&id);
    }

    /// Bytes in use, as charged.
    pub fn used_bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// The bound the tier was made with, in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Entries held: objects, Vary specs and uncacheable marks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Timing;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    fn entry(size: usize) -> Entry {
        Entry::Object(Arc::new(StoredObject::new(
            StatusCode::OK,
            HeaderMap::new(),
            &[],
            Bytes::from(vec![0u8; size]),
            Timing {
                initial_age: 0,
                response_time: 0,
                lifetime: 60,
                heuristic: false,
            },
            String::new(),
            0,
        )))
    }

    #[test]
    fn a_scan_of_cold_objects_does_not_flush_the_hot_ones() {
        // Room for about 10,000 objects of 1 KiB.
        let tier = MemoryTier::new(10_000 * (1024 + ENTRY_OVERHEAD));
        const HOT: u128 = 5_000;
        for id in 0..HOT {
            tier.insert(id, entry(1024));
        }
        // The hot set is read again and again.
        for _ in 0..3 {
            for id in 0..HOT {
                assert!(tier.get(id).is_some());
            }
        }
        // One pass over 100,000 objects read once each (a crawler, a cache-busting flood).
        for id in 1_000_000..1_100_000u128 {
            tier.insert(id, entry(1024));
        }
        let survivors = (0..HOT).filter(|id| tier.get(*id).is_some()).count();
        assert!(
            survivors as u128 >= HOT * 9 / 10,
            "only {survivors} of {HOT} hot objects survived the scan"
        );
        assert!(tier.used_bytes() <= tier.capacity());
    }
}

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
    Uncacheable { until: u64 },
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

    pub fn get(&self, id: ObjectId) -> Option<Entry> {
        self.entries.get(&id)
    }

    pub fn insert(&self, id: ObjectId, entry: Entry) {
        self.entries.insert(id, entry);
    }

    /// Every entry, cloned (cheap: entries are `Arc`s). Entries added or removed during the
    /// walk may or may not be seen.
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, Entry)> + '_ {
        self.entries.iter()
    }

    pub fn remove(&self, id: ObjectId) {
        self.entries.remove(&id);
    }

    /// Bytes in use, as charged.
    pub fn used_bytes(&self) -> u64 {
        self.entries.weight()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

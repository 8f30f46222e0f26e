//! The in-memory index: which objects the tier holds, what they weigh on disk, and the order
//! of their last use.
//!
//! A tier can hold millions of objects, so an object costs one 40-byte [`Slot`] in a vector
//! plus a 4-byte slot number and a 1-byte tag in a hash table: 45 bytes when both are full,
//! up to about 90 right after one has doubled. Recency is an exact LRU list threaded through
//! the slots by slot number, so a touch and an eviction are O(1) under one short lock.

use super::ObjectId;
use hashbrown::HashTable;

/// No slot: the end of the recency list.
const NIL: u32 = u32::MAX;

/// What the index knows of one stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// Serial of the commit that wrote the body, which names the body file.
    pub serial: u64,
    /// Bytes of both files on disk.
    pub bytes: u64,
}

/// One object. The id is kept as two halves: a `u128` field is 16-byte aligned and would pad
/// the slot to 48 bytes.
struct Slot {
    id: [u64; 2],
    entry: Entry,
    /// Neighbours in the recency list; a free slot uses `older` to chain the free list.
    newer: u32,
    older: u32,
}

/// What inserting an object displaced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Displaced {
    /// The object's own previous version.
    pub replaced: Option<Entry>,
    /// The least recently used object, pushed out because every slot number was taken.
    pub pushed_out: Option<(ObjectId, Entry)>,
}

pub(super) struct Index {
    by_id: HashTable<u32>,
    slots: Vec<Slot>,
    free: u32,
    newest: u32,
    oldest: u32,
    len: usize,
    used_bytes: u64,
    /// Slot numbers are u32; tests lower this to reach the limit.
    max_slots: usize,
}

/// The index's hash of an id. Ids are already hashes, so folding and one multiply spread them;
/// the multiply also spreads the small ids tests use into hashbrown's top-bit tags.
pub(super) fn id_hash(id: ObjectId) -> u64 {
    ((id as u64) ^ ((id >> 64) as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn split(id: ObjectId) -> [u64; 2] {
    [id as u64, (id >> 64) as u64]
}

fn join(halves: [u64; 2]) -> ObjectId {
    u128::from(halves[0]) | (u128::from(halves[1]) << 64)
}

impl Index {
    pub fn with_capacity(objects: usize) -> Index {
        Index {
            by_id: HashTable::with_capacity(objects),
            slots: Vec::with_capacity(objects),
            free: NIL,
            newest: NIL,
            oldest: NIL,
            len: 0,
            used_bytes: 0,
            max_slots: NIL as usize,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    pub fn get(&self, id: ObjectId) -> Option<Entry> {
        self.find(id).map(|slot| self.slots[slot as usize].entry)
    }

    /// The object's entry, now the most recently used.
    pub fn touch(&mut self, id: ObjectId) -> Option<Entry> {
        let slot = self.find(id)?;
        self.unlink(slot);
        self.push_newest(slot);
        Some(self.slots[slot as usize].entry)
    }

    /// Stores `entry` as the most recently used object.
    pub fn insert(&mut self, id: ObjectId, entry: Entry) -> Displaced {
        if let Some(slot) = self.find(id) {
            let old = std::mem::replace(&mut self.slots[slot as usize].entry, entry);
            self.used_bytes = self.used_bytes - old.bytes + entry.bytes;
            self.unlink(slot);
            self.push_newest(slot);
            return Displaced {
                replaced: Some(old),
                pushed_out: None,
            };
        }
        let pushed_out = if self.free == NIL && self.slots.len() >= self.max_slots {
            self.pop_oldest()
        } else {
            None
        };
        let slot = self.allocate(id, entry);
        let slots = &self.slots;
        self.by_id
            .insert_unique(id_hash(id), slot, |&s| id_hash(join(slots[s as usize].id)));
        self.push_newest(slot);
        self.len += 1;
        self.used_bytes += entry.bytes;
        Displaced {
            replaced: None,
            pushed_out,
        }
    }

    pub fn remove(&mut self, id: ObjectId) -> Option<Entry> {
        let slots = &self.slots;
        let found = self
            .by_id
            .find_entry(id_hash(id), |&s| slots[s as usize].id == split(id))
            .ok()?;
        let (slot, _) = found.remove();
        Some(self.release(slot))
    }

    /// Removes and returns the least recently used object.
    pub fn pop_oldest(&mut self) -> Option<(ObjectId, Entry)> {
        let slot = self.oldest;
        if slot == NIL {
            return None;
        }
        let id = join(self.slots[slot as usize].id);
        if let Ok(found) = self.by_id.find_entry(id_hash(id), |&s| s == slot) {
            found.remove();
        }
        Some((id, self.release(slot)))
    }

    fn find(&self, id: ObjectId) -> Option<u32> {
        let halves = split(id);
        self.by_id
            .find(id_hash(id), |&s| self.slots[s as usize].id == halves)
            .copied()
    }

    fn allocate(&mut self, id: ObjectId, entry: Entry) -> u32 {
        let slot = Slot {
            id: split(id),
            entry,
            newer: NIL,
            older: NIL,
        };
        if self.free != NIL {
            let reused = self.free;
            self.free = self.slots[reused as usize].older;
            self.slots[reused as usize] = slot;
            reused
        } else {
            self.slots.push(slot);
            // max_slots <= NIL keeps this below NIL.
            (self.slots.len() - 1) as u32
        }
    }

    /// Takes a slot already out of the hash table off the recency list and onto the free list.
    fn release(&mut self, slot: u32) -> Entry {
        self.unlink(slot);
        self.slots[slot as usize].older = self.free;
        self.free = slot;
        self.len -= 1;
        let entry = self.slots[slot as usize].entry;
        self.used_bytes -= entry.bytes;
        entry
    }

    fn unlink(&mut self, slot: u32) {
        let Slot { newer, older, .. } = self.slots[slot as usize];
        match newer {
            NIL => self.newest = older,
            n => self.slots[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let previous = self.newest;
        self.slots[slot as usize].newer = NIL;
        self.slots[slot as usize].older = previous;
        match previous {
            NIL => self.oldest = slot,
            p => self.slots[p as usize].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: u64, bytes: u64) -> Entry {
        Entry { serial, bytes }
    }

    #[test]
    fn slot_is_40_bytes_as_the_memory_estimate_says() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    #[test]
    fn oldest_is_the_least_recently_touched() {
        let mut index = Index::with_capacity(0);
        for id in 1..=4 {
            index.insert(id, entry(id as u64, 10));
        }
        index.touch(1);
        index.touch(3);
        let order: Vec<ObjectId> = std::iter::from_fn(|| index.pop_oldest().map(|(id, _)| id))
            .take(10)
            .collect();
        assert_eq!(order, [2, 4, 1, 3]);
        assert_eq!(index.len(), 0);
        assert_eq!(index.used_bytes(), 0);
    }

    #[test]
    fn replacing_an_object_keeps_one_entry_and_moves_the_byte_count() {
        let mut index = Index::with_capacity(0);
        index.insert(1, entry(1, 100));
        index.insert(2, entry(2, 50));
        let displaced = index.insert(1, entry(3, 30));
        assert_eq!(displaced.replaced, Some(entry(1, 100)));
        assert_eq!(index.len(), 2);
        assert_eq!(index.used_bytes(), 80);
        assert_eq!(index.get(1), Some(entry(3, 30)));
        // The replacement counts as a use: 2 is now the oldest.
        assert_eq!(index.pop_oldest(), Some((2, entry(2, 50))));
    }

    #[test]
    fn removed_slots_are_reused_and_lookups_stay_right() {
        let mut index = Index::with_capacity(0);
        for id in 0..100u128 {
            index.insert(id << 64 | id, entry(id as u64, 1));
        }
        for id in (0..100u128).step_by(2) {
            assert_eq!(index.remove(id << 64 | id), Some(entry(id as u64, 1)));
        }
        assert_eq!(index.remove(0), None);
        for id in 100..150u128 {
            index.insert(id << 64 | id, entry(id as u64, 1));
        }
        assert_eq!(index.slots.len(), 100, "freed slots were reused");
        assert_eq!(index.len(), 100);
        for id in 0..150u128 {
            let present = id >= 100 || id % 2 == 1;
            assert_eq!(index.get(id << 64 | id).is_some(), present, "id {id}");
        }
    }

    #[test]
    fn full_index_pushes_out_the_least_recently_used() {
        let mut index = Index::with_capacity(0);
        index.max_slots = 2;
        index.insert(1, entry(1, 10));
        index.insert(2, entry(2, 10));
        index.touch(1);
        let displaced = index.insert(3, entry(3, 10));
        assert_eq!(displaced.pushed_out, Some((2, entry(2, 10))));
        assert_eq!(index.len(), 2);
        assert_eq!(index.used_bytes(), 20);
        assert!(index.get(1).is_some() && index.get(3).is_some());
    }
}

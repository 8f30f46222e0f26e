//! Keeps the disk tier's copy of each object in step with the memory tier's.
//!
//! A store or a removal changes the memory tier at once, on the request's thread, and the disk
//! tier later, on a blocking thread. Three things could then bring back what the memory tier
//! replaced or dropped, and each has its rule here:
//!
//! - **the disk work of two changes to one object running out of order** (blocking threads
//!   run in any order): a change's disk work runs only if no later change to the object was
//!   made, and one at a time per object ([`Ticket::apply`]);
//! - **a lookup reading the disk while a change is on its way there** (an invalidated object
//!   still on disk, or a new one evicted from memory before its write landed): while a change
//!   is pending the disk's copy is not looked at ([`WriteOrder::pending`]);
//! - **a promotion from disk landing after a change** (it read the old copy just before, or
//!   while the change was on its way): a promotion is put in memory only if no change touched
//!   its stripe since the read began and none is pending for it ([`WriteOrder::promote`]);
//!   otherwise the caller looks again.
//!
//! Objects are spread over [`STRIPES`] stripes by id; each holds the changes still pending for
//! its objects and a counter of changes made.

use crate::key::ObjectId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Stripes: with 256, a promotion is refused for a change to another object only when that
/// object shares its stripe, and the table costs a few KiB.
pub const STRIPES: usize = 256;

/// The changes in flight to the disk tier of one cache.
pub struct WriteOrder {
    stripes: Box<[Stripe]>,
}

#[derive(Default)]
struct Stripe {
    state: Mutex<StripeState>,
    /// Held (on a blocking thread) while a change's disk work runs, so the disk work of one
    /// object's changes never overlaps. Never taken by the async threads.
    disk_work: Mutex<()>,
}

#[derive(Default)]
struct StripeState {
    /// Changes made to objects of this stripe: the sequence number of the last one.
    changes: u64,
    /// Objects whose latest change has not reached the disk yet: that change's number.
    pending: HashMap<ObjectId, u64>,
}

/// A change made to the memory tier whose disk part is still to run. Dropping it unused
/// (no runtime to run it on, a write abandoned) ends it as if it ran.
pub struct Ticket {
    order: Arc<WriteOrder>,
    id: ObjectId,
    seq: u64,
}

impl Default for WriteOrder {
    fn default() -> WriteOrder {
        WriteOrder {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }
}

impl WriteOrder {
    fn stripe(&self, id: ObjectId) -> &Stripe {
        // Ids are hashes already: their low bits are as good as any.
        &self.stripes[(id as usize) % STRIPES]
    }

    /// Records a change to `id`: `memory` (its memory-tier part) runs under the stripe's lock,
    /// so a promotion cannot slip in between; the ticket carries the disk part's turn.
    pub fn change(self: &Arc<Self>, id: ObjectId, memory: impl FnOnce()) -> Ticket {
        let mut state = self.stripe(id).state.lock();
        memory();
        state.changes += 1;
        let seq = state.changes;
        state.pending.insert(id, seq);
        Ticket {
            order: Arc::clone(self),
            id,
            seq,
        }
    }

    /// Whether a change to `id` is still on its way to the disk: the disk's copy is outdated.
    pub fn pending(&self, id: ObjectId) -> bool {
        self.stripe(id).state.lock().pending.contains_key(&id)
    }

    /// Whether any change is still on its way to the disk.
    pub fn any_pending(&self) -> bool {
        self.stripes
            .iter()
            .any(|stripe| !stripe.state.lock().pending.is_empty())
    }

    /// Where `id`'s stripe stands, taken before reading `id` from disk for [`Self::promote`].
    pub fn mark(&self, id: ObjectId) -> u64 {
        self.stripe(id).state.lock().changes
    }

    /// Runs `insert` (putting what was read from disk into memory) unless a change touched
    /// `id`'s stripe since `mark` or one to `id` is still on its way to disk (what was read is
    /// what it replaces); returns whether it ran.
    pub fn promote(&self, id: ObjectId, mark: u64, insert: impl FnOnce()) -> bool {
        let state = self.stripe(id).state.lock();
        if state.changes != mark || state.pending.contains_key(&id) {
            return false;
        }
        insert();
        true
    }
}

impl Ticket {
    /// The object changed.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// Runs `work` (the change's disk part; blocking) unless a later change to the object was
    /// made, in which case that change's work is the one that counts. `None`: superseded.
    pub fn apply<R>(self, work: impl FnOnce() -> R) -> Option<R> {
        let stripe = self.order.stripe(self.id);
        let _turn = stripe.disk_work.lock();
        if stripe.state.lock().pending.get(&self.id) != Some(&self.seq) {
            return None;
        }
        Some(work())
        // The ticket drops after the turn is released: the change is done.
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.order.stripe(self.id).state.lock();
        // Only the latest change clears the mark: an earlier one's end says nothing of it.
        if state.pending.get(&self.id) == Some(&self.seq) {
            state.pending.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_superseded_change_does_no_disk_work_and_the_latest_does() {
        let order = Arc::new(WriteOrder::default());
        let first = order.change(7, || {});
        let second = order.change(7, || {});
        assert_eq!(first.apply(|| "old"), None, "a later change was made");
        assert!(
            order.pending(7),
            "the later change has not reached the disk"
        );
        assert_eq!(second.apply(|| "new"), Some("new"));
        assert!(!order.pending(7));
    }

    #[test]
    fn the_earlier_change_ending_late_does_not_clear_the_later_ones_mark() {
        let order = Arc::new(WriteOrder::default());
        let first = order.change(7, || {});
        let second = order.change(7, || {});
        drop(first);
        assert!(order.pending(7));
        drop(second);
        assert!(!order.pending(7), "a ticket dropped unused ends its change");
    }

    #[test]
    fn a_promotion_read_before_a_change_is_refused_and_one_after_is_kept() {
        let order = Arc::new(WriteOrder::default());
        let before = order.mark(7);
        drop(order.change(7 + STRIPES as u128, || {}));
        assert!(
            !order.promote(7, before, || panic!("must not insert")),
            "a change on the stripe since the read"
        );
        let pending = order.change(7, || {});
        let during = order.mark(7);
        assert!(
            !order.promote(7, during, || panic!("must not insert")),
            "the disk copy read is the one the pending change replaces"
        );
        drop(pending);
        let after = order.mark(7);
        let mut inserted = false;
        assert!(order.promote(7, after, || inserted = true));
        assert!(inserted);
        let other = order.mark(8);
        drop(order.change(7, || {}));
        assert!(
            order.promote(8, other, || {}),
            "other stripes are not held up"
        );
    }

    #[test]
    fn disk_work_of_one_object_never_overlaps() {
        let order = Arc::new(WriteOrder::default());
        let running = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                // Each thread's change is the latest when it is applied: made and applied in turn.
                let (order, running, ran) = (order.clone(), running.clone(), ran.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let ticket = order.change(1, || {});
                        ticket.apply(|| {
                            assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                            std::hint::spin_loop();
                            running.fetch_sub(1, Ordering::SeqCst);
                            ran.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(ran.load(Ordering::SeqCst) > 0);
        assert!(!order.pending(1));
    }
}

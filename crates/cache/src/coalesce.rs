//! Request coalescing: concurrent misses for one object make one origin request.
//!
//! The first miss takes the object's fill lock and fetches; later misses wait on it, each for
//! at most the site's `lock_timeout`, and then look the object up again (it is stored: a hit) or
//! go to the origin themselves (it turned out uncacheable, the fill failed, or the wait timed
//! out). Varnish's waiting list taught the two rules here: waiters are released the moment the
//! filler knows the response cannot be stored (not after its body), and a stuck fill never holds
//! anyone longer than the timeout.

use crate::key::ObjectId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a fill ended, as its waiters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// The fill is still under way.
    Pending,
    /// Stored: look it up again.
    Stored,
    /// Not storable, failed, or abandoned: go to the origin.
    NotStored,
}

/// The fill locks of one cache.
#[derive(Default)]
pub struct FillLocks {
    fills: Mutex<HashMap<ObjectId, watch::Receiver<FillOutcome>>>,
}

/// What a miss gets from [`FillLocks::lock`].
pub enum Lock {
    /// Fetch and store; tell the waiters how it went through the guard.
    Filler(FillGuard),
    /// Another request is fetching this object.
    Waiter(watch::Receiver<FillOutcome>),
}

/// Held by the request that fills an object. Dropping it without [`FillGuard::finish`] (the
/// request was cancelled, the origin failed) releases the waiters as `NotStored`.
pub struct FillGuard {
    locks: Arc<FillLocks>,
    id: ObjectId,
    sender: Option<watch::Sender<FillOutcome>>,
}

impl FillLocks {
    /// Takes the fill lock for `id`, or joins the fill in progress.
    pub fn lock(self: &Arc<Self>, id: ObjectId) -> Lock {
        let mut fills = self.fills.lock();
        if let Some(receiver) = fills.get(&id) {
            return Lock::Waiter(receiver.clone());
        }
        let (sender, receiver) = watch::channel(FillOutcome::Pending);
        fills.insert(id, receiver);
        Lock::Filler(FillGuard {
            locks: Arc::clone(self),
            id,
            sender: Some(sender),
        })
    }

    /// Fills in progress (for metrics and tests).
    pub fn len(&self) -> usize {
        self.fills.lock().len()
    }

    /// True when no fill is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FillGuard {
    /// Releases the waiters with `outcome` and the lock with them.
    pub fn finish(mut self, outcome: FillOutcome) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: FillOutcome) {
        if let Some(sender) = self.sender.take() {
            // Remove first: a waiter that wakes and misses again must not find this fill.
            self.locks.fills.lock().remove(&self.id);
            let _ = sender.send(outcome);
        }
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.release(FillOutcome::NotStored);
    }
}

/// Waits for a fill to end, at most `timeout`. A timeout counts as `NotStored`: the waiter goes
/// to the origin itself rather than wait longer on a stuck fill.
pub async fn wait(mut receiver: watch::Receiver<FillOutcome>, timeout: Duration) -> FillOutcome {
    let ended =
        tokio::time::timeout(timeout, receiver.wait_for(|o| *o != FillOutcome::Pending)).await;
    match ended {
        Ok(Ok(outcome)) => *outcome,
        // Timed out, or the sender vanished without a word.
        _ => FillOutcome::NotStored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_filler_and_every_other_miss_waits_for_it() {
        let locks = Arc::new(FillLocks::default());
        let Lock::Filler(guard) = locks.lock(1) else {
            panic!("the first miss fills")
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| match locks.lock(1) {
                Lock::Waiter(rx) => tokio::spawn(wait(rx, Duration::from_secs(5))),
                Lock::Filler(_) => panic!("only one filler"),
            })
            .collect();
        assert!(
            matches!(locks.lock(2), Lock::Filler(_)),
            "other objects are not held up"
        );
        guard.finish(FillOutcome::Stored);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), FillOutcome::Stored);
        }
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_fill_releases_its_waiters_as_not_stored() {
        let locks = Arc::new(FillLocks::default());
        let guard = locks.lock(1);
        let Lock::Waiter(rx) = locks.lock(1) else {
            panic!("second miss waits")
        };
        drop(guard);
        assert_eq!(
            wait(rx, Duration::from_secs(5)).await,
            FillOutcome::NotStored
        );
        assert!(matches!(locks.lock(1), Lock::Filler(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_fill_holds_a_waiter_only_until_the_timeout() {
        let locks = Arc::new(FillLocks::default());
        let _stuck = locks.lock(1);
        let Lock::Waiter(rx) = locks.lock(1) else {
            panic!("second miss waits")
        };
        let started = tokio::time::Instant::now();
        assert_eq!(
            wait(rx, Duration::from_secs(3)).await,
            FillOutcome::NotStored
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}

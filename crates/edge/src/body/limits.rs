//! What a client's request body may cost: its size against the site's `max_body_bytes`
//! ([`BodyMeter`]), its pace against `min_request_body_rate` ([`BodyPace`]), and the memory of
//! bodies read ahead against `body_buffer_memory` ([`BodyBuffers`]).

use crate::metrics::{CutReason, Metrics};
use model::ServerLimits;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts a client's request body and notices when it passes the site's limit.
#[derive(Debug, Default)]
pub struct BodyMeter {
    bytes: AtomicU64,
    too_large: AtomicBool,
}

impl BodyMeter {
    /// A meter for a body the edge read itself (`bytes` of it).
    pub fn read(bytes: u64) -> BodyMeter {
        BodyMeter {
            bytes: AtomicU64::new(bytes),
            too_large: AtomicBool::new(false),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub fn too_large(&self) -> bool {
        self.too_large.load(Ordering::Relaxed)
    }

    /// Counts `len` more bytes; false (and too large from now on) once past `limit`.
    pub(super) fn count(&self, len: u64, limit: u64) -> bool {
        let total = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
        if total > limit {
            self.too_large.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// The bytes of request bodies the edge holds while it reads them whole before asking for an
/// origin slot (`origin_body_buffer`), every site together, bounded by `[server]
/// body_buffer_memory`. Over the bound a body is not refused: it streams, as every body did
/// before read-ahead.
#[derive(Debug, Default)]
pub struct BodyBuffers {
    held: AtomicU64,
    /// Bodies that streamed because the bound was reached.
    overflowed: AtomicU64,
}

impl BodyBuffers {
    /// An empty reservation, to [`BufferReservation::grow`] as bytes arrive.
    pub fn reservation(self: &Arc<Self>) -> BufferReservation {
        BufferReservation {
            buffers: Arc::clone(self),
            bytes: 0,
        }
    }

    /// Counts `bytes` more if the edge then holds at most `bound`.
    fn take(&self, bytes: u64, bound: u64) -> bool {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let Some(after) = held.checked_add(bytes).filter(|after| *after <= bound) else {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self
                .held
                .compare_exchange_weak(held, after, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    /// Bytes reserved now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Bodies that streamed (part read, the rest not) because `body_buffer_memory` was
    /// reached, since start.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// Memory held for one body read ahead, counted as its bytes arrive; given back when dropped.
#[derive(Debug)]
pub struct BufferReservation {
    buffers: Arc<BodyBuffers>,
    bytes: u64,
}

impl BufferReservation {
    /// Counts `more` bytes held, if the edge then holds at most `bound` in all; false (and
    /// nothing counted) otherwise.
    pub fn grow(&mut self, more: u64, bound: u64) -> bool {
        let taken = self.buffers.take(more, bound);
        if taken {
            self.bytes += more;
        }
        taken
    }
}

impl Drop for BufferReservation {
    fn drop(&mut self) {
        self.buffers.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The request body was longer than the site allows.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the site's max_body_bytes")]
pub struct BodyTooLarge;

/// The request body came slower than `min_request_body_rate` (slow POST).
#[derive(Debug, thiserror::Error)]
#[error("request body slower than min_request_body_rate")]
pub struct BodyTooSlow;

/// The slow-POST guard. The rate is judged over the time the edge spends *waiting for the
/// client*, in windows of `request_body_timeout`: in each, at least `min_request_body_rate`
/// bytes per second of it must arrive, else the body fails with [`BodyTooSlow`]. Time the
/// origin spends not reading (the edge then does not ask the client for more) never counts
/// against the client, and a body that arrives at once is never judged. The first window is
/// the grace a client gets to get going.
///
/// Costs nothing while bytes are ready; a clock read when the body has to wait for the client,
/// and a timer made once the first wait begins and moved at most once per window.
pub struct BodyPace {
    /// Bytes per second.
    min_rate: u64,
    window: Duration,
    /// Bytes received in the current window.
    window_bytes: u64,
    /// Time spent waiting for the client in the current window, spans that have ended.
    waited: Duration,
    /// When the current wait for the client began.
    waiting_since: Option<Instant>,
    /// Fires at or before the current window's waiting time runs out.
    timer: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
}

impl BodyPace {
    pub fn new(limits: &ServerLimits, metrics: Arc<Metrics>) -> BodyPace {
        BodyPace {
            min_rate: limits.min_request_body_rate,
            window: limits.request_body_timeout,
            window_bytes: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
            metrics,
        }
    }

    /// `bytes` arrived (after a wait or not); false when the window just ended too slow.
    pub(super) fn arrived(&mut self, bytes: u64) -> bool {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
            if self.waited >= self.window {
                return self.close_window(self.waited);
            }
        }
        true
    }

    /// The body has nothing ready: keeps the wait's clock and timer; false when the client has
    /// been too slow.
    pub(super) fn waiting(&mut self, cx: &mut Context<'_>) -> bool {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let due = since + self.window.saturating_sub(self.waited);
        let mut timer = self
            .timer
            .take()
            .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(due)));
        let in_time = loop {
            if timer.as_mut().poll(cx).is_pending() {
                break true;
            }
            let now = Instant::now();
            if timer.deadline() < due {
                // Set for an earlier wait; this one has longer to go.
                timer.as_mut().reset(due);
                continue;
            }
            let waited = self.waited + now.saturating_duration_since(since);
            if !self.close_window(waited) {
                break false;
            }
            // A new window, and this wait goes on in it.
            self.waiting_since = Some(now);
            timer.as_mut().reset(now + self.window);
        };
        self.timer = Some(timer);
        in_time
    }

    /// Judges a window in which the client was waited for `waited`; starts the next.
    fn close_window(&mut self, waited: Duration) -> bool {
        let owed = u128::from(self.min_rate) * waited.as_millis();
        if u128::from(self.window_bytes) * 1000 < owed {
            self.metrics.connection_cut(CutReason::BodyRate);
            return false;
        }
        self.window_bytes = 0;
        self.waited = Duration::ZERO;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A pace of 500 bytes/s judged over 10 s windows, the defaults.
    fn pace() -> BodyPace {
        BodyPace::new(&ServerLimits::default(), Metrics::new())
    }

    fn wait(pace: &mut BodyPace) -> bool {
        pace.waiting(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn body_buffers_hold_at_most_their_bound_and_give_memory_back() {
        let buffers = Arc::new(BodyBuffers::default());
        let mut first = buffers.reservation();
        assert!(first.grow(600, 1000));
        let mut second = buffers.reservation();
        assert!(!second.grow(500, 1000), "past the bound");
        assert_eq!(buffers.overflowed(), 1);
        assert!(second.grow(300, 1000));
        assert!(second.grow(100, 1000), "exactly at the bound");
        assert_eq!(buffers.held(), 1000);
        drop(first);
        drop(second);
        assert_eq!(buffers.held(), 0);
        let mut all = buffers.reservation();
        assert!(all.grow(u64::MAX, u64::MAX));
        assert!(
            !buffers.reservation().grow(1, u64::MAX),
            "no overflow of the count"
        );
        drop(all);
        assert_eq!(buffers.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_fails_once_a_window_of_waiting_falls_short() {
        let mut pace = pace();
        let mut failed_after = None;
        for second in 1..=30 {
            assert!(wait(&mut pace));
            tokio::time::advance(Duration::from_secs(1)).await;
            if !pace.arrived(100) {
                failed_after = Some(second);
                break;
            }
        }
        assert_eq!(failed_after, Some(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_goes_on() {
        let mut pace = pace();
        for _ in 0..60 {
            assert!(wait(&mut pace));
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(pace.arrived(500));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_when_its_timer_fires() {
        let mut pace = pace();
        assert!(wait(&mut pace));
        tokio::time::advance(Duration::from_millis(9_900)).await;
        assert!(wait(&mut pace));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!wait(&mut pace));
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_edge_does_not_wait_for_the_client_is_not_counted() {
        // The origin takes a minute to read each chunk: the edge never asks the client then.
        let mut pace = pace();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(60)).await;
            assert!(wait(&mut pace));
            tokio::time::advance(Duration::from_millis(100)).await;
            assert!(pace.arrived(100));
        }
    }
}

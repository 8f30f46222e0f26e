//! What the edge knows about one client connection, shared by the code that serves it (`conn`)
//! and every request on it: who the client is, which site its TLS name chose, the activity the
//! connection's watchdog judges timeouts by, and the interim responses waiting to be written.
//!
//! It sits below the pipeline and its phases, so that they can read it without depending on
//! the code that serves connections (which calls the pipeline).

use crate::clock;
use crate::conn_guard::ConnPermit;
use crate::http::client::ClientFacts;
use crate::http::framing::FramingError;
use crate::http::interim::InterimSink;
use model::ServerLimits;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

/// What the pipeline knows about the connection a request came on.
pub struct ConnContext {
    pub client: ClientFacts,
    /// On TLS: the site the SNI name routed to; requests must stay on it.
    pub sni_site: Option<Arc<str>>,
    pub activity: ConnActivity,
    /// Interim (1xx) responses from origins on their way to an HTTP/1.1 client.
    pub interim: InterimQueue,
    /// The client's visit is noted as history for the origin queue (`origin_gate`): once per
    /// connection, not once per request.
    pub visit_noted: AtomicBool,
    /// Held until the connection and any tunnel on it are gone.
    _permit: ConnPermit,
}

/// Interim (1xx) responses for an HTTP/1.1 client, encoded, waiting for the I/O wrapper to
/// write them between messages.
///
/// hyper's server cannot send a 1xx from a service, so the wrapper does: an interim is
/// written when hyper flushes, which it does only with its own write buffer empty. While a
/// request's service runs, the previous response has been written whole (hyper reads the
/// next request only then), so that point is between messages. The request then waits for
/// its interims to be written ([`InterimQueue::written`]) before handing hyper its final
/// response, so they always go first, even when the origin sent both in one segment.
#[derive(Default)]
pub struct InterimQueue {
    /// Interims queued or being written: the one thing the hot path reads.
    busy: AtomicBool,
    state: std::sync::Mutex<InterimState>,
}

#[derive(Default)]
struct InterimState {
    /// Encoded, not yet taken by the wrapper.
    queued: Vec<u8>,
    /// The wrapper took bytes and has not finished writing them.
    writing: bool,
    /// The request waiting for them to be written.
    waiter: Option<std::task::Waker>,
}

/// Most interim bytes waiting at once for one connection; more are dropped (1xx are advice).
const MAX_INTERIM_QUEUED: usize = 16 * 1024;

impl InterimQueue {
    /// Ready once every interim queued so far has been written to the client (at once when
    /// there are none). The connection closing drops the request's future with it.
    pub fn written(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if !self.busy.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            let mut state = self.lock();
            if state.queued.is_empty() && !state.writing {
                self.busy.store(false, Ordering::Release);
                return Poll::Ready(());
            }
            state.waiter = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    /// Drops what has not begun to be written (a request that ends without waiting).
    pub fn discard_unsent(&self) {
        if self.busy.load(Ordering::Acquire) {
            let mut state = self.lock();
            state.queued.clear();
            if !state.writing {
                self.busy.store(false, Ordering::Release);
            }
        }
    }

    pub(crate) fn push(&self, encoded: &[u8]) {
        let mut state = self.lock();
        if state.queued.len() + encoded.len() <= MAX_INTERIM_QUEUED {
            state.queued.extend_from_slice(encoded);
            self.busy.store(true, Ordering::Release);
        }
    }

    /// Takes what waits, for the I/O wrapper to write.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        if !self.busy.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.lock();
        if state.queued.is_empty() {
            return None;
        }
        state.writing = true;
        Some(std::mem::take(&mut state.queued))
    }

    /// The wrapper wrote everything it took.
    pub(crate) fn finished_writing(&self) {
        let mut state = self.lock();
        state.writing = false;
        if state.queued.is_empty() {
            self.busy.store(false, Ordering::Release);
        }
        if let Some(waiter) = state.waiter.take() {
            waiter.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InterimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl InterimSink for ConnContext {
    fn interim(&self, status: http::StatusCode, headers: &http::HeaderMap) {
        let mut fields = headers.clone();
        crate::http::fields::strip_hop_by_hop(&mut fields);
        // A 1xx has no content: a length would only mislead.
        fields.remove(http::header::CONTENT_LENGTH);
        let mut encoded = Vec::with_capacity(64);
        encoded.extend_from_slice(b"HTTP/1.1 ");
        encoded.extend_from_slice(status.as_str().as_bytes());
        encoded.push(b' ');
        encoded.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        encoded.extend_from_slice(b"\r\n");
        for (name, value) in &fields {
            encoded.extend_from_slice(name.as_str().as_bytes());
            encoded.extend_from_slice(b": ");
            encoded.extend_from_slice(value.as_bytes());
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"\r\n");
        self.interim.push(&encoded);
    }
}

impl ConnContext {
    pub fn new(
        client: ClientFacts,
        sni_site: Option<Arc<str>>,
        h2: bool,
        permit: ConnPermit,
    ) -> ConnContext {
        ConnContext {
            client,
            sni_site,
            activity: ConnActivity::new(h2),
            interim: InterimQueue::default(),
            visit_noted: AtomicBool::new(false),
            _permit: permit,
        }
    }
}

/// Timestamps (clock ms) and counters the watchdog reads; the I/O wrapper and the pipeline
/// write them. All on one connection, so relaxed orderings would do; acquire/release keeps the
/// reasoning simple.
pub struct ConnActivity {
    in_flight: AtomicU32,
    /// When the header clock started (accept, or the first byte after an idle spell); 0 = not running.
    header_clock_ms: AtomicU64,
    idle_since_ms: AtomicU64,
    /// HTTP/2 multiplexes and pings; only the idle timeout applies to it.
    h2: AtomicBool,
    /// Requests the pipeline has started on this connection.
    requests: AtomicU64,
    /// Request heads the framing tracker has read completely.
    heads_read: AtomicU64,
    /// The tracker is inside a message (a partial head or a body), or can no longer follow.
    mid_message: AtomicBool,
    /// 1 + the index of the first request whose head the framing tracker found ambiguous.
    ambiguous_request: AtomicU64,
    ambiguous_reason: AtomicU8,
    /// Set while hyper is being told to let go of the socket so it can be parked.
    parking: AtomicBool,
    /// Responses (heads) and response data frames handed to hyper with more of the body to
    /// come, and how many times hyper then asked for the next frame: more handed than asked
    /// means a response waits on the client, its socket or (on HTTP/2) its flow-control window.
    frames_handed: AtomicU64,
    frames_asked: AtomicU64,
    /// The watchdog's last look at `frames_asked`, and since when (clock ms) a response has
    /// waited without one more frame asked for; 0 = none waits.
    stall_seen_asked: AtomicU64,
    stall_since_ms: AtomicU64,
}

pub(crate) enum Verdict {
    /// Look again at this clock instant.
    Keep(u64),
    HeaderTimeout,
    /// A response has waited on the client for `send_timeout` (slow read, HTTP/2 included).
    SendTimeout,
    Idle,
    /// Idle long enough at a message boundary: release hyper's buffers, keep the socket.
    Park,
}

impl ConnActivity {
    fn new(h2: bool) -> ConnActivity {
        let now = clock::now_ms();
        ConnActivity {
            in_flight: AtomicU32::new(0),
            header_clock_ms: AtomicU64::new(if h2 { 0 } else { now }),
            idle_since_ms: AtomicU64::new(now),
            h2: AtomicBool::new(h2),
            requests: AtomicU64::new(0),
            heads_read: AtomicU64::new(0),
            mid_message: AtomicBool::new(false),
            ambiguous_request: AtomicU64::new(0),
            ambiguous_reason: AtomicU8::new(0),
            parking: AtomicBool::new(false),
            frames_handed: AtomicU64::new(0),
            frames_asked: AtomicU64::new(0),
            stall_seen_asked: AtomicU64::new(0),
            stall_since_ms: AtomicU64::new(0),
        }
    }

    /// The connection turned out to be HTTP/2: only the idle timeout applies from now on.
    pub(crate) fn serving_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
        self.header_clock_ms.store(0, Ordering::Release);
    }

    /// A fresh hyper instance starts reading at a message boundary, and so does the framing
    /// tracker: returns the request count the tracker's head indexes start from.
    pub(crate) fn tracking_from_a_message_boundary(&self) -> u64 {
        let heads_base = self.requests.load(Ordering::Acquire);
        self.heads_read.store(heads_base, Ordering::Release);
        self.mid_message.store(false, Ordering::Release);
        heads_base
    }

    /// What the framing tracker has read: `heads` request heads in all, and whether it stands
    /// at the start of a message.
    pub(crate) fn tracker_read(&self, heads: u64, at_message_start: bool) {
        self.heads_read.store(heads, Ordering::Release);
        self.mid_message.store(!at_message_start, Ordering::Release);
    }

    /// Whether hyper is being told to let go of the socket so it can be parked.
    pub(crate) fn parking(&self) -> bool {
        self.parking.load(Ordering::Acquire)
    }

    pub(crate) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Release);
    }

    /// A response, or a data frame of its body, went to hyper and the body has more to send.
    pub fn response_frame_handed(&self) {
        self.frames_handed.fetch_add(1, Ordering::Relaxed);
    }

    /// hyper asked that body for its next frame (or the body ended).
    pub fn response_frame_asked(&self) {
        self.frames_asked.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a response has waited on the client for `send_timeout`: more frames handed than
    /// asked for, and not one more asked for since the stall was first seen. Called by the
    /// watchdog only, at least every quarter of `send_timeout` while requests are in flight,
    /// so a stall is cut between 1 and 1.5 times `send_timeout` after it began.
    fn response_stalled(&self, now: u64, send_timeout: Duration) -> bool {
        let asked = self.frames_asked.load(Ordering::Relaxed);
        let waiting = self.frames_handed.load(Ordering::Relaxed) > asked;
        let progressed = self.stall_seen_asked.swap(asked, Ordering::Relaxed) != asked;
        if !waiting || progressed {
            self.stall_since_ms.store(0, Ordering::Relaxed);
            return false;
        }
        let since = self.stall_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            self.stall_since_ms.store(now, Ordering::Relaxed);
            return false;
        }
        now.saturating_sub(since) >= send_timeout.as_millis() as u64
    }

    /// Marks a request as started; returns the framing error its head had on the wire, if any.
    pub fn request_started(&self) -> Option<FramingError> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.header_clock_ms.store(0, Ordering::Release);
        let index = self.requests.fetch_add(1, Ordering::AcqRel);
        if self.ambiguous_request.load(Ordering::Acquire) == index + 1 {
            return Some(FramingError::from_code(
                self.ambiguous_reason.load(Ordering::Acquire),
            ));
        }
        None
    }

    pub(crate) fn record_ambiguous(&self, index: u64, error: FramingError) {
        self.ambiguous_reason.store(error as u8, Ordering::Release);
        let _ = self.ambiguous_request.compare_exchange(
            0,
            index + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Marks a request as finished at `now_ms` (the `clock`).
    pub fn request_finished(&self, now_ms: u64) {
        self.idle_since_ms.store(now_ms, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Called by the I/O wrapper when bytes arrive.
    pub(crate) fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.header_clock_ms.load(Ordering::Acquire) == 0
            && !self.h2.load(Ordering::Relaxed)
        {
            self.header_clock_ms
                .store(clock::now_ms(), Ordering::Release);
        }
    }

    /// Whether the header clock runs: a request header has been started (or, on a fresh
    /// connection, is awaited) and is not complete.
    pub(crate) fn header_clock_running(&self) -> bool {
        self.header_clock_ms.load(Ordering::Acquire) != 0
    }

    /// Whether every byte read so far belongs to a request the pipeline has already taken, so
    /// hyper holds nothing that would be lost if it let go of the socket now.
    fn at_message_boundary(&self) -> bool {
        !self.mid_message.load(Ordering::Acquire)
            && self.heads_read.load(Ordering::Acquire) == self.requests.load(Ordering::Acquire)
    }

    /// The deadline while parked: the header clock if it runs (a fresh connection that has
    /// sent nothing yet), else the idle timeout.
    pub(crate) fn parked_deadline(&self, limits: &ServerLimits) -> u64 {
        let header_clock = self.header_clock_ms.load(Ordering::Acquire);
        if header_clock != 0 {
            header_clock + limits.header_read_timeout.as_millis() as u64
        } else {
            self.idle_since_ms.load(Ordering::Acquire) + limits.idle_timeout.as_millis() as u64
        }
    }

    pub(crate) fn verdict(&self, limits: &ServerLimits, parkable: bool) -> Verdict {
        let now = clock::now_ms();
        // Whatever else it waits for, the watchdog looks again within a quarter of
        // `send_timeout`: a request that starts after this look (on HTTP/2 at any time, on a
        // TLS HTTP/1.1 connection while the header clock runs) must still have its stalls
        // seen in time, and nothing wakes the watchdog when a request starts.
        let stall_check = now + (limits.send_timeout.as_millis() as u64 / 4).max(1);
        match self.verdict_at(now, limits, parkable) {
            Verdict::Keep(at) => Verdict::Keep(at.min(stall_check)),
            decided => decided,
        }
    }

    fn verdict_at(&self, now: u64, limits: &ServerLimits, parkable: bool) -> Verdict {
        let park_after = PARK_AFTER.as_millis() as u64;
        if self.in_flight.load(Ordering::Acquire) > 0 {
            if self.response_stalled(now, limits.send_timeout) {
                return Verdict::SendTimeout;
            }
            let recheck = if parkable {
                park_after
            } else {
                limits.idle_timeout.as_millis() as u64
            };
            return Verdict::Keep(now + recheck);
        }
        let header_clock = self.header_clock_ms.load(Ordering::Acquire);
        if header_clock != 0 {
            let deadline = header_clock + limits.header_read_timeout.as_millis() as u64;
            return if now >= deadline {
                Verdict::HeaderTimeout
            } else if parkable {
                // The request this header starts may finish long before the deadline; look
                // again soon so the connection can be parked once it is idle.
                Verdict::Keep(deadline.min(now + park_after))
            } else {
                Verdict::Keep(deadline)
            };
        }
        let idle_since = self.idle_since_ms.load(Ordering::Acquire);
        let deadline = idle_since + limits.idle_timeout.as_millis() as u64;
        if now >= deadline {
            return Verdict::Idle;
        }
        if parkable && !self.h2.load(Ordering::Relaxed) && self.at_message_boundary() {
            let park_at = idle_since + park_after;
            if now >= park_at {
                return Verdict::Park;
            }
            return Verdict::Keep(park_at.min(deadline));
        }
        Verdict::Keep(deadline)
    }
}

/// How long a cleartext HTTP/1.1 connection sits idle before it is parked: hyper's read and
/// write buffers (about 10 KiB) are freed and only the socket is kept, so ten thousand idle
/// keep-alive connections cost little more than their sockets. A busy connection is never
/// parked, so parking costs nothing on the hot path.
pub(crate) const PARK_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_waiting_on_the_client_is_stalled_after_send_timeout_unless_it_moves() {
        let activity = ConnActivity::new(true);
        let timeout = Duration::from_secs(60);
        // Nothing handed: nothing can stall.
        assert!(!activity.response_stalled(1_000, timeout));
        activity.response_frame_handed();
        // First seen waiting at 2 s: counted from there, never from an earlier look.
        assert!(!activity.response_stalled(2_000, timeout));
        assert!(!activity.response_stalled(61_999, timeout));
        // hyper asked for more and got another frame: a new wait starts at the next look.
        activity.response_frame_asked();
        activity.response_frame_handed();
        assert!(!activity.response_stalled(62_000, timeout));
        assert!(!activity.response_stalled(63_000, timeout));
        assert!(!activity.response_stalled(122_999, timeout));
        assert!(activity.response_stalled(123_000, timeout));
        // Once the body ends, nothing waits.
        activity.response_frame_asked();
        assert!(!activity.response_stalled(200_000, timeout));
    }

    #[test]
    fn the_watchdog_looks_again_within_a_quarter_of_send_timeout_even_when_idle() {
        // Nothing wakes the watchdog when a request starts: an idle HTTP/2 connection (or a
        // TLS HTTP/1.1 one waiting for a header) must not sleep until its idle or header
        // deadline, or a request that starts meanwhile stalls unseen until then.
        let limits = ServerLimits {
            send_timeout: Duration::from_secs(4),
            ..ServerLimits::default()
        };
        for (h2, parkable) in [(true, false), (false, false), (true, true)] {
            let activity = ConnActivity::new(h2);
            let now = clock::now_ms();
            match activity.verdict(&limits, parkable) {
                Verdict::Keep(at) => assert!(
                    at <= now + 1_000 + 50,
                    "h2 {h2}, parkable {parkable}: next look in {} ms",
                    at.saturating_sub(now)
                ),
                _ => panic!("h2 {h2}: a fresh connection was decided on"),
            }
        }
    }
}

//! One client connection: HTTP/1.1 or HTTP/2 served by hyper, watched for the two timeouts
//! hyper does not split the way an edge needs, and WebSocket tunnels after an upgrade.
//!
//! - `header_read_timeout`: from accept (or from the first byte of a later request) to a
//!   complete request header. Stops slowloris: a client trickling header bytes is cut off.
//!   It is an absolute cap rather than a rate, so it is also the header rate guard: a header
//!   section of at most `max_header_bytes` must arrive within it.
//! - `idle_timeout`: how long a connection with no request in progress stays open.
//! - `send_timeout`: how long a response may wait for the client to take more (slow read).
//!   The I/O wrapper times writes that wait on a full socket; the watchdog notices responses
//!   that wait on hyper asking for more, which on HTTP/2 is also a flow-control window the
//!   client keeps shut.
//!
//! hyper's own h1 header timer starts as soon as a keep-alive connection goes idle, which would
//! make the two the same number; so hyper's is off and a small per-connection watchdog decides
//! from [`ConnActivity`], which the I/O wrapper and the pipeline update.
//!
//! On HTTP/2 the wrapper also walks the client's frame headers for floods h2 does not bound in
//! rate (see `h2_flood`).

use crate::body::ClientBody;
use crate::clock;
use crate::conn_guard::ConnPermit;
use crate::h2_conn::{self, H2Connection};
use crate::h2_flood::{H2Abuse, H2FloodGuard};
use crate::http::client::ClientFacts;
use crate::http::framing::{FramingError, FramingTracker};
use crate::metrics::{CutReason, Metrics};
use crate::origin::InterimSink;
use crate::pipeline;
use crate::state::EdgeState;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use model::ServerLimits;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Sleep;

/// What the pipeline knows about the connection a request came on.
pub struct ConnContext {
    pub client: ClientFacts,
    /// On TLS: the site the SNI name routed to; requests must stay on it.
    pub sni_site: Option<Arc<str>>,
    pub activity: ConnActivity,
    /// Interim (1xx) responses from origins on their way to an HTTP/1.1 client.
    pub interim: InterimQueue,
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

    fn push(&self, encoded: &[u8]) {
        let mut state = self.lock();
        if state.queued.len() + encoded.len() <= MAX_INTERIM_QUEUED {
            state.queued.extend_from_slice(encoded);
            self.busy.store(true, Ordering::Release);
        }
    }

    /// Takes what waits, for the I/O wrapper to write.
    fn take(&self) -> Option<Vec<u8>> {
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
    fn finished_writing(&self) {
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

enum Verdict {
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

    fn record_ambiguous(&self, index: u64, error: FramingError) {
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
    fn bytes_arrived(&self) {
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
    fn header_clock_running(&self) -> bool {
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
    fn parked_deadline(&self, limits: &ServerLimits) -> u64 {
        let header_clock = self.header_clock_ms.load(Ordering::Acquire);
        if header_clock != 0 {
            header_clock + limits.header_read_timeout.as_millis() as u64
        } else {
            self.idle_since_ms.load(Ordering::Acquire) + limits.idle_timeout.as_millis() as u64
        }
    }

    fn verdict(&self, limits: &ServerLimits, parkable: bool) -> Verdict {
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
const PARK_AFTER: Duration = Duration::from_secs(1);

/// Reports arriving bytes to [`ConnActivity`], runs the HTTP/1.x framing tracker (or on
/// HTTP/2 the flood guard) over what the client sends, cuts writes the client leaves waiting
/// past `send_timeout`, and hands the socket back when parking.
struct WatchedIo<I> {
    inner: Option<I>,
    /// Bytes read before hyper started, to tell the protocol; reads return them first.
    replay: Replay,
    ctx: Arc<ConnContext>,
    framing: Option<Box<FramingTracker>>,
    h2_flood: Option<Box<H2FloodGuard>>,
    /// Requests already taken on this connection before this hyper instance started.
    heads_base: u64,
    give_back: Option<oneshot::Sender<I>>,
    send: SendWatch,
    metrics: Arc<Metrics>,
    /// Interim responses being written; once begun, they are finished before anything else.
    interim_out: Vec<u8>,
}

/// The slow-read guard: when a write (or flush) cannot proceed because the client is not
/// reading, the time is noted; if no write has progressed `send_timeout` later, the write
/// fails and hyper closes the connection. A client that reads costs nothing: the clock is only
/// read when a write has to wait, and the timer is made and moved only while writes wait.
struct SendWatch {
    timeout: Duration,
    /// When the current wait for the client began.
    waiting_since: Option<tokio::time::Instant>,
    /// Made on the first wait; fires at or before `waiting_since + timeout`.
    timer: Option<Pin<Box<Sleep>>>,
    /// The last check failed a write for waiting too long.
    fired: bool,
}

impl SendWatch {
    fn new(timeout: Duration) -> SendWatch {
        SendWatch {
            timeout,
            waiting_since: None,
            timer: None,
            fired: false,
        }
    }

    /// Passes a write's outcome through; a write still waiting past the timeout becomes an
    /// error.
    fn check<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting_since = None;
            return polled;
        }
        let since = *self
            .waiting_since
            .get_or_insert_with(tokio::time::Instant::now);
        let deadline = since + self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer was set for an earlier wait that ended; this one has longer to go.
            if timer.deadline() < deadline {
                timer.as_mut().reset(deadline);
                continue;
            }
            self.fired = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for send_timeout",
            )));
        }
    }
}

impl<I> WatchedIo<I> {
    fn inner(&mut self) -> Pin<&mut I>
    where
        I: Unpin,
    {
        Pin::new(
            self.inner
                .as_mut()
                .expect("the socket is only taken on drop"),
        )
    }
}

impl<I> Drop for WatchedIo<I> {
    fn drop(&mut self) {
        // Handed back when parking, or when the client is still sending a body the edge no
        // longer reads (an early answer: 413, a refusal), to be drained (`linger`).
        let parking = self.ctx.activity.parking.load(Ordering::Acquire);
        let mid_body = self.framing.as_ref().is_some_and(|t| t.in_body());
        if (parking || mid_body)
            && let (Some(io), Some(back)) = (self.inner.take(), self.give_back.take())
        {
            let _ = back.send(io);
        }
    }
}

/// How long the edge keeps reading (and discarding) a request body it answered early before
/// closing, in all and between two reads, like nginx's `lingering_time` and
/// `lingering_timeout`. Closing a socket with unread bytes sends a TCP reset, which can
/// destroy the answer (a 413 for a body over `max_body_bytes`) before the client reads it.
const LINGER_TOTAL: Duration = Duration::from_secs(5);
const LINGER_IDLE: Duration = Duration::from_secs(2);

/// Drains what the client still sends after the edge closed its side, within the bounds above;
/// the connection's permit is held meanwhile, so it still counts against the client's caps.
async fn linger<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    let _ = tokio::time::timeout(LINGER_IDLE, io.shutdown()).await;
    let mut sink = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER_TOTAL, async {
        while let Ok(Ok(n)) = tokio::time::timeout(LINGER_IDLE, io.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = if this.replay.is_empty() {
            this.inner().poll_read(cx, buf)
        } else {
            this.replay.take_into(buf);
            Poll::Ready(Ok(()))
        };
        let got = &buf.filled()[before..];
        if matches!(polled, Poll::Ready(Ok(()))) && !got.is_empty() {
            let activity = &this.ctx.activity;
            if let Some(guard) = this.h2_flood.as_mut()
                && let Err(abuse) = guard.feed(got)
            {
                let reason = match abuse {
                    H2Abuse::ControlFlood => CutReason::H2ControlFlood,
                    H2Abuse::ResetFlood => CutReason::H2ResetFlood,
                };
                this.metrics.connection_cut(reason);
                tracing::debug!(peer = %this.ctx.client.peer, reason = reason.label(), "HTTP/2 flood; closing");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    reason.label(),
                )));
            }
            activity.bytes_arrived();
            if let Some(tracker) = this.framing.as_mut() {
                if let Some((index, error)) = tracker.feed(got) {
                    activity.record_ambiguous(index, error);
                }
                activity
                    .heads_read
                    .store(this.heads_base + tracker.heads(), Ordering::Release);
                activity
                    .mid_message
                    .store(!tracker.at_message_start(), Ordering::Release);
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> WatchedIo<I> {
    /// Writes the interim responses already begun, if any.
    fn poll_finish_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.interim_out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while !self.interim_out.is_empty() {
            let inner = Pin::new(
                self.inner
                    .as_mut()
                    .expect("the socket is only taken on drop"),
            );
            let polled = inner.poll_write(cx, &self.interim_out);
            match ready!(self.watch_send(polled, cx)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.interim_out.drain(..n);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.ctx.interim.finished_writing();
        Poll::Ready(Ok(()))
    }
}

impl<I> WatchedIo<I> {
    fn watch_send<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        let checked = self.send.check(polled, cx);
        if std::mem::take(&mut self.send.fired) {
            self.metrics.connection_cut(CutReason::SendTimeout);
            tracing::debug!(peer = %self.ctx.client.peer, "client stopped reading; closing");
        }
        checked
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_finish_interim(cx))?;
        let polled = self.inner().poll_write(cx, buf);
        self.watch_send(polled, cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_finish_interim(cx))?;
        let polled = self.inner().poll_write_vectored(cx, bufs);
        self.watch_send(polled, cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes with its own buffer empty: between messages, the one place an
        // interim response may go (see `InterimQueue`).
        if self.interim_out.is_empty()
            && let Some(waiting) = self.ctx.interim.take()
        {
            self.interim_out = waiting;
        }
        ready!(self.poll_finish_interim(cx))?;
        // A TLS stream takes writes into its buffer and waits in flush.
        let polled = self.inner().poll_flush(cx);
        self.watch_send(polled, cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ctx.activity.parking.load(Ordering::Acquire) {
            // Parking: hyper is done with the socket, the connection is not.
            return self.inner().poll_flush(cx);
        }
        let polled = self.inner().poll_shutdown(cx);
        self.watch_send(polled, cx)
    }
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first bytes of a connection, read to tell which HTTP it speaks, returned to hyper's
/// first reads. At most the preface's length is read, as hyper-util's detection did: an
/// HTTP/1.1 request usually differs at its first byte.
#[derive(Default)]
struct Replay {
    buf: [u8; H2_PREFACE.len()],
    start: usize,
    end: usize,
}

impl Replay {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn take_into(&mut self, out: &mut ReadBuf<'_>) {
        let n = (self.end - self.start).min(out.remaining());
        out.put_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
    }
}

/// Reads the first bytes of a connection until they show whether it starts with the HTTP/2
/// preface (`Some(true)`) or not (`Some(false)`), within `timeout`; `None` if the client
/// closes or stays silent. What was read is in `replay`.
async fn starts_with_h2_preface<I>(
    io: &mut I,
    replay: &mut Replay,
    timeout: Duration,
) -> Option<bool>
where
    I: AsyncRead + Unpin,
{
    tokio::time::timeout(timeout, async {
        loop {
            let n = io.read(&mut replay.buf[replay.end..]).await.ok()?;
            if n == 0 {
                return None;
            }
            replay.end += n;
            if replay.buf[..replay.end] != H2_PREFACE[..replay.end] {
                return Some(false);
            }
            if replay.end == H2_PREFACE.len() {
                return Some(true);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Which HTTP a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// Cleartext: HTTP/1.1, or HTTP/2 with prior knowledge when the first bytes are its
    /// preface (h2c).
    Detect,
    /// TLS that negotiated `http/1.1` by ALPN, or no protocol at all (RFC 9113 §3.3: HTTP/2
    /// over TLS is chosen by ALPN only), and a cleartext connection that already spoke
    /// HTTP/1.1 before it was parked.
    Http1,
    /// TLS that negotiated `h2`: anything but the preface is a connection error.
    Http2,
}

/// The server's side of a refused HTTP/2 connection: its connection preface (an empty
/// SETTINGS frame), then GOAWAY with last stream 0 and PROTOCOL_ERROR, as RFC 9113 §3.4 asks
/// for a client preface that is not one (h2 itself closes without a word).
const H2_BAD_PREFACE_GOAWAY: &[u8] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, empty
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes, stream 0
    0, 0, 0, 0, // last stream id 0
    0, 0, 0, 0x1, // PROTOCOL_ERROR
];

/// hyper's HTTP/1.1 settings for client connections, from the server limits.
fn http1_builder(limits: &ServerLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Our watchdog runs the header timer; see the module docs.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
}

pin_project_lite::pin_project! {
    /// A connection served in the protocol the edge chose for it: HTTP/1.1 by hyper, HTTP/2
    /// on h2 (`h2_conn`).
    #[project = HttpConnProj]
    enum HttpConn<I, S>
    where
        I: hyper::rt::Read,
        I: hyper::rt::Write,
        I: Unpin,
        S: hyper::service::HttpService<Incoming>,
    {
        Http1 { #[pin] conn: http1::UpgradeableConnection<I, S> },
        Http2 { conn: H2Connection },
    }
}

impl<I, S, B> HttpConn<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            HttpConnProj::Http1 { conn } => conn.graceful_shutdown(),
            HttpConnProj::Http2 { conn } => conn.graceful_shutdown(),
        }
    }
}

impl<I, S, B> Future for HttpConn<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), crate::body::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HttpConnProj::Http1 { conn } => conn.poll(cx).map_err(Into::into),
            HttpConnProj::Http2 { conn } => Pin::new(conn).poll(cx).map_err(Into::into),
        }
    }
}

/// Serves a cleartext connection: parked (socket only) while idle, handed to hyper when bytes
/// arrive, parked again after a quiet second at a message boundary.
pub async fn serve_parkable(
    mut stream: TcpStream,
    ctx: Arc<ConnContext>,
    state: Arc<EdgeState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut known_http1 = false;
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let deadline = ctx.activity.parked_deadline(&state.snapshot.load().limits);
        tokio::select! {
            ready = stream.readable() => if ready.is_err() { return },
            () = tokio::time::sleep_until(instant_at(deadline)) => {
                if ctx.activity.header_clock_running() {
                    state.metrics.connection_cut(CutReason::HeaderTimeout);
                }
                return;
            }
            _ = shutdown.changed() => return,
        }
        // Boxed so that a parked connection's task does not reserve room for hyper's state.
        let served = Box::pin(serve(
            stream,
            Arc::clone(&ctx),
            Arc::clone(&state),
            shutdown.clone(),
            Serving {
                parkable: true,
                protocols: if known_http1 {
                    Protocols::Http1
                } else {
                    Protocols::Detect
                },
            },
        ))
        .await;
        match served {
            Some(back) => {
                tracing::trace!(peer = %ctx.client.peer, "connection parked");
                state
                    .metrics
                    .connections_parked
                    .fetch_add(1, Ordering::Relaxed);
                stream = back;
                known_http1 = true;
                ctx.activity.parking.store(false, Ordering::Release);
            }
            None => return,
        }
    }
}

/// How [`serve`] takes a connection.
#[derive(Debug, Clone, Copy)]
pub struct Serving {
    /// The socket may be handed back while idle (cleartext only).
    pub parkable: bool,
    pub protocols: Protocols,
}

/// Serves a connection with hyper until it closes, times out, shutdown completes, or (when
/// parkable) it is parked, in which case the socket is returned.
pub async fn serve<I>(
    mut io: I,
    ctx: Arc<ConnContext>,
    state: Arc<EdgeState>,
    mut shutdown: watch::Receiver<bool>,
    serving: Serving,
) -> Option<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Serving {
        parkable,
        protocols,
    } = serving;
    let limits = state.snapshot.load().limits.clone();
    let mut replay = Replay::default();
    let h2 = match protocols {
        Protocols::Http1 => false,
        Protocols::Detect => {
            starts_with_h2_preface(&mut io, &mut replay, limits.header_read_timeout).await?
        }
        Protocols::Http2 => {
            // Checked here, not left to h2, which closes on a bad preface without the GOAWAY
            // RFC 9113 §3.4 asks for.
            match starts_with_h2_preface(&mut io, &mut replay, limits.header_read_timeout).await {
                Some(true) => true,
                Some(false) => {
                    tracing::debug!(peer = %ctx.client.peer, "no HTTP/2 preface after ALPN h2; closing");
                    // Best effort: the client may already be gone.
                    let _ = tokio::time::timeout(limits.header_read_timeout, async {
                        let _ = io.write_all(H2_BAD_PREFACE_GOAWAY).await;
                        let _ = io.shutdown().await;
                    })
                    .await;
                    return None;
                }
                None => return None,
            }
        }
    };
    if h2 {
        ctx.activity.h2.store(true, Ordering::Relaxed);
        ctx.activity.header_clock_ms.store(0, Ordering::Release);
    }
    let (give_back, mut taken_back) = {
        let (tx, rx) = oneshot::channel();
        (Some(tx), rx)
    };
    // A fresh hyper instance starts reading at a message boundary; so does its tracker.
    let heads_base = ctx.activity.requests.load(Ordering::Acquire);
    ctx.activity.heads_read.store(heads_base, Ordering::Release);
    ctx.activity.mid_message.store(false, Ordering::Release);
    let metrics = Arc::clone(&state.metrics);
    let io = WatchedIo {
        inner: Some(io),
        replay,
        heads_base,
        ctx: Arc::clone(&ctx),
        framing: (!h2).then(|| Box::new(FramingTracker::new(limits.max_header_bytes.max(8192)))),
        // The replayed preface comes first.
        h2_flood: h2.then(|| Box::new(H2FloodGuard::after_preface_bytes(0))),
        give_back,
        send: SendWatch::new(limits.send_timeout),
        metrics: Arc::clone(&metrics),
        interim_out: Vec::new(),
    };
    let service_ctx = Arc::clone(&ctx);
    let parked = {
        // The pipeline's future is made inside the future each request's task polls, not
        // beside it and then moved in: it is the largest thing a request has, and a copy of
        // it per request showed in profiles.
        let conn = if h2 {
            let handle = move |request: Request<ClientBody>, interim: Arc<dyn InterimSink>| {
                let state = Arc::clone(&state);
                let ctx = Arc::clone(&service_ctx);
                async move { pipeline::handle(&state, &ctx, request, Some(interim)).await }
            };
            HttpConn::Http2 {
                conn: H2Connection::new(io, h2_conn::builder(&limits), handle),
            }
        } else {
            let service = service_fn(move |request: Request<Incoming>| {
                let state = Arc::clone(&state);
                let ctx = Arc::clone(&service_ctx);
                async move {
                    let request = request.map(ClientBody::Http1);
                    Ok::<_, Infallible>(pipeline::handle(&state, &ctx, request, None).await)
                }
            });
            HttpConn::Http1 {
                conn: http1_builder(&limits)
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            }
        };
        tokio::pin!(conn);
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut draining = false;
        let mut parking = false;
        // Made once: a fresh `changed()` per wake-up would re-register with the channel on
        // every poll of a busy connection.
        let shutdown_signal = shutdown.changed();
        tokio::pin!(shutdown_signal);
        loop {
            tokio::select! {
                // The connection first: it is what almost every wake-up is for.
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %ctx.client.peer, error = %e, "connection ended with an error");
                    }
                    break parking;
                }
                () = &mut sleep => match ctx.activity.verdict(&limits, parkable && !draining) {
                    Verdict::Keep(at) => sleep.as_mut().reset(instant_at(at)),
                    Verdict::HeaderTimeout => {
                        metrics.connection_cut(CutReason::HeaderTimeout);
                        tracing::debug!(peer = %ctx.client.peer, "request header not received in time; closing");
                        break false;
                    }
                    Verdict::SendTimeout => {
                        metrics.connection_cut(CutReason::SendTimeout);
                        tracing::debug!(peer = %ctx.client.peer, "a response waited on the client for send_timeout; closing");
                        break false;
                    }
                    Verdict::Idle if draining || parking => break false,
                    Verdict::Idle => {
                        conn.as_mut().graceful_shutdown();
                        draining = true;
                        // A connection that does not wind down by itself is dropped at the next look.
                        sleep.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    Verdict::Park => {
                        ctx.activity.parking.store(true, Ordering::Release);
                        conn.as_mut().graceful_shutdown();
                        parking = true;
                        sleep.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                },
                _ = &mut shutdown_signal, if !draining => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    };
    // `conn` is dropped here, and with it the wrapper, which sends the socket back if parking
    // or if a request body was left unread.
    let back = taken_back.try_recv().ok();
    if parked {
        return back;
    }
    ctx.activity.parking.store(false, Ordering::Release);
    if let Some(io) = back {
        linger(io).await;
    }
    None
}

fn instant_at(clock_ms: u64) -> tokio::time::Instant {
    let now = clock::now_ms();
    tokio::time::Instant::now() + Duration::from_millis(clock_ms.saturating_sub(now))
}

/// After a 101, copies bytes both ways until either side closes or nothing moves for
/// `idle_timeout`. The tunnel holds the connection's permit, so it still counts against the
/// client's connection cap.
/// `origin_early`: bytes the origin sent right behind its 101, already in the new protocol.
pub fn spawn_tunnel(
    ctx: Arc<ConnContext>,
    client: hyper::upgrade::OnUpgrade,
    mut origin: TcpStream,
    origin_early: bytes::Bytes,
    idle_timeout: Duration,
) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(peer = %ctx.client.peer, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        if !origin_early.is_empty() && client.write_all(&origin_early).await.is_err() {
            return;
        }
        let last = AtomicU64::new(clock::now_ms());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut origin_read, mut origin_write) = origin.split();
        let up = pump(&mut client_read, &mut origin_write, &last);
        let down = pump(&mut origin_read, &mut client_write, &last);
        let watchdog = async {
            loop {
                tokio::time::sleep(idle_timeout / 4).await;
                let idle = clock::now_ms().saturating_sub(last.load(Ordering::Relaxed));
                if idle >= idle_timeout.as_millis() as u64 {
                    return;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(up, down) } => {}
            () = watchdog => tracing::debug!(peer = %ctx.client.peer, "tunnel idle; closing"),
        }
    });
}

async fn pump<R, W>(from: &mut R, to: &mut W, last: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Pass the half-close on; the other direction may still be talking.
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        last.store(clock::now_ms(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn check(watch: &mut SendWatch, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        watch.check(polled, &mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn the_first_bytes_tell_the_protocol_and_are_replayed_whole() {
        let timeout = Duration::from_secs(5);
        // An HTTP/1.1 request is told at its first byte that differs; POST shares the `P`.
        for head in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST / HTTP/1.1\r\n",
            b"PRI-ish",
        ] {
            let (mut client, mut server) = tokio::io::duplex(64);
            client.write_all(head).await.unwrap();
            let mut replay = Replay::default();
            let h2 = starts_with_h2_preface(&mut server, &mut replay, timeout).await;
            assert_eq!(h2, Some(false), "{}", head.escape_ascii());
            assert_eq!(&replay.buf[..replay.end], &head[..replay.end]);
        }
        // The preface split across writes.
        let (mut client, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move {
            for piece in H2_PREFACE.chunks(5) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let mut replay = Replay::default();
        let h2 = starts_with_h2_preface(&mut server, &mut replay, timeout).await;
        assert_eq!(h2, Some(true));
        let mut out = [0u8; 64];
        let mut read = ReadBuf::new(&mut out);
        replay.take_into(&mut read);
        assert_eq!(read.filled(), H2_PREFACE);
        assert!(replay.is_empty());
        drop(task.await);
        // A client that closes before saying anything.
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let mut replay = Replay::default();
        assert_eq!(
            starts_with_h2_preface(&mut server, &mut replay, timeout).await,
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_waiting_past_send_timeout_fails_and_progress_restarts_the_clock() {
        let mut watch = SendWatch::new(Duration::from_secs(60));
        assert!(check(&mut watch, Poll::Pending).is_pending());
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(check(&mut watch, Poll::Pending).is_pending());
        // The client read something: the next wait gets a full send_timeout.
        assert!(matches!(
            check(&mut watch, Poll::Ready(Ok(10))),
            Poll::Ready(Ok(10))
        ));
        assert!(check(&mut watch, Poll::Pending).is_pending());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(check(&mut watch, Poll::Pending).is_pending());
        tokio::time::advance(Duration::from_secs(2)).await;
        let polled = check(&mut watch, Poll::Pending);
        assert!(
            watch.fired
                && matches!(&polled, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut),
            "{polled:?}"
        );
    }

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

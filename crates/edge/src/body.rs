//! Bodies that cross the edge: streamed both ways frame by frame, never collected in memory.
//!
//! - [`OriginBody`]: what is sent to an origin, the client's body metered against the site's
//!   `max_body_bytes` and paced against `min_request_body_rate` ([`BodyPace`]).
//! - [`EdgeBody`]: what is sent to a client, which finishes the request's log record when the
//!   last frame leaves (or the client goes away).

use crate::conn::ConnContext;
use crate::metrics::{CutReason, Metrics};
use crate::origin::OriginResponseBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use model::ServerLimits;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
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
    fn arrived(&mut self, bytes: u64) -> bool {
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
    fn waiting(&mut self, cx: &mut Context<'_>) -> bool {
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

/// A client's request body, as the connection's protocol delivers it.
pub enum ClientBody {
    /// HTTP/1.1, read by hyper.
    Http1(Incoming),
    /// HTTP/2, read from h2 (see `h2_conn`).
    Http2(crate::h2_conn::H2RequestBody),
    /// Nothing (left behind when a phase takes the request's body away).
    Taken,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Http1(inner) => Pin::new(inner)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
            ClientBody::Http2(inner) => Pin::new(inner)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
            ClientBody::Taken => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http1(inner) => inner.is_end_stream(),
            ClientBody::Http2(inner) => inner.is_end_stream(),
            ClientBody::Taken => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http1(inner) => inner.size_hint(),
            ClientBody::Http2(inner) => inner.size_hint(),
            ClientBody::Taken => SizeHint::with_exact(0),
        }
    }
}

/// The body of a request forwarded to an origin.
pub enum OriginBody {
    Empty,
    Client {
        inner: ClientBody,
        meter: Arc<BodyMeter>,
        limit: u64,
        pace: Box<BodyPace>,
    },
}

impl OriginBody {
    /// The client's body, counted into `meter`, failing past `limit` bytes or when it comes
    /// too slowly for `pace`.
    pub fn client(
        inner: ClientBody,
        meter: Arc<BodyMeter>,
        limit: u64,
        pace: BodyPace,
    ) -> OriginBody {
        OriginBody::Client {
            inner,
            meter,
            limit,
            pace: Box::new(pace),
        }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            OriginBody::Empty => Poll::Ready(None),
            OriginBody::Client {
                inner,
                meter,
                limit,
                pace,
            } => {
                let frame = match Pin::new(inner).poll_frame(cx) {
                    Poll::Pending if !pace.waiting(cx) => {
                        return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
                    }
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(Some(Ok(frame))) => frame,
                };
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > 0 {
                    let total = meter.bytes.fetch_add(len, Ordering::Relaxed) + len;
                    if total > *limit {
                        meter.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                if !pace.arrived(len) {
                    return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OriginBody::Empty => true,
            OriginBody::Client { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OriginBody::Empty => SizeHint::with_exact(0),
            OriginBody::Client { inner, .. } => inner.size_hint(),
        }
    }
}

/// Runs once when a response has been sent completely, or abandoned.
pub trait Finish: Send + Sync {
    fn finish(self: Box<Self>, bytes_out: u64, complete: bool);
}

/// Sees a response body's data on its way to the client (the cache storing it as it streams).
pub trait Tee: Send + Sync {
    /// A chunk went by; `false` stops the tee (it is dropped, nothing more is shown to it).
    fn data(&mut self, chunk: &Bytes) -> bool;
    /// The body ended cleanly. A body that breaks off or is abandoned drops the tee instead.
    fn end(self: Box<Self>);
}

/// What a client receives.
pub struct EdgeBody {
    source: Source,
    bytes_out: u64,
    finish: Option<Box<dyn Finish>>,
    /// The connection whose watchdog is told when a frame waits on the client (slow read).
    sends: Option<Arc<ConnContext>>,
    /// The response or a data frame was handed to hyper and the body has more: the next poll
    /// is progress.
    handed: bool,
}

enum Source {
    Origin(OriginResponseBody, Option<Box<dyn Tee>>),
    Fixed(Option<Bytes>),
    /// Chunks produced elsewhere (a stored body read from disk); `u64`: bytes still to come.
    Channel(tokio::sync::mpsc::Receiver<Result<Bytes, String>>, u64),
}

impl EdgeBody {
    pub fn origin(body: OriginResponseBody) -> EdgeBody {
        EdgeBody {
            source: Source::Origin(body, None),
            bytes_out: 0,
            finish: None,
            sends: None,
            handed: false,
        }
    }

    /// An origin's body that `tee` also sees.
    pub fn origin_with_tee(body: OriginResponseBody, tee: Box<dyn Tee>) -> EdgeBody {
        // An empty body (a 204, a 304, `Content-Length: 0`) is complete before anyone reads it,
        // and hyper never polls a body that says it has ended: the tee learns it here, or never.
        if body.is_end_stream() {
            tee.end();
            return EdgeBody::origin(body);
        }
        EdgeBody {
            source: Source::Origin(body, Some(tee)),
            bytes_out: 0,
            finish: None,
            sends: None,
            handed: false,
        }
    }

    pub fn fixed(bytes: impl Into<Bytes>) -> EdgeBody {
        let bytes = bytes.into();
        EdgeBody {
            source: Source::Fixed((!bytes.is_empty()).then_some(bytes)),
            bytes_out: 0,
            finish: None,
            sends: None,
            handed: false,
        }
    }

    /// A body of exactly `len` bytes arriving on `receiver`; an `Err` ends it broken.
    pub fn channel(
        receiver: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
        len: u64,
    ) -> EdgeBody {
        EdgeBody {
            source: Source::Channel(receiver, len),
            bytes_out: 0,
            finish: None,
            sends: None,
            handed: false,
        }
    }

    pub fn empty() -> EdgeBody {
        EdgeBody::fixed(Bytes::new())
    }

    /// Attaches what runs when the body is done.
    pub fn on_finish(&mut self, finish: Box<dyn Finish>) {
        self.finish = Some(finish);
    }

    /// Reports to `conn`'s watchdog the response handed to hyper, each frame after it, and each
    /// time hyper asks for the next one, so a response the client does not take (its socket
    /// full, or its HTTP/2 window closed, even before the first byte of the body) is cut after
    /// `send_timeout`. Two relaxed counter increments per frame.
    pub fn watch_sends(&mut self, conn: Arc<ConnContext>) {
        if !self.is_end_stream() {
            self.handed = true;
            conn.activity.response_frame_handed();
        }
        self.sends = Some(conn);
    }

    fn done(&mut self, complete: bool) {
        if let Some(finish) = self.finish.take() {
            finish.finish(self.bytes_out, complete);
        }
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.handed)
            && let Some(conn) = &this.sends
        {
            conn.activity.response_frame_asked();
        }
        let polled = match &mut this.source {
            Source::Fixed(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Source::Channel(receiver, left) => {
                if *left == 0 {
                    None
                } else {
                    match ready!(receiver.poll_recv(cx)) {
                        Some(Ok(chunk)) => {
                            *left = left.saturating_sub(chunk.len() as u64);
                            Some(Ok(Frame::data(chunk)))
                        }
                        Some(Err(why)) => {
                            this.done(false);
                            return Poll::Ready(Some(Err(why.into())));
                        }
                        None => {
                            this.done(false);
                            return Poll::Ready(Some(Err("stored body ended early".into())));
                        }
                    }
                }
            }
            Source::Origin(body, tee) => match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => {
                    if let Some(tee) = tee.take() {
                        tee.end();
                    }
                    None
                }
                Some(Ok(frame)) => {
                    if let (Some(t), Some(data)) = (tee.as_mut(), frame.data_ref())
                        && !t.data(data)
                    {
                        *tee = None;
                    }
                    // hyper stops polling a body that says it has ended, so the last frame
                    // of a sized body is where the tee learns it is complete.
                    if body.is_end_stream()
                        && let Some(tee) = tee.take()
                    {
                        tee.end();
                    }
                    Some(Ok(frame))
                }
                Some(Err(e)) => {
                    *tee = None;
                    // The origin broke off mid-body; the client sees a truncated response
                    // (hyper resets the stream or closes the connection), never a forged end.
                    this.done(false);
                    return Poll::Ready(Some(Err(e)));
                }
            },
        };
        match polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes_out += data.len() as u64;
                    if let Some(conn) = &this.sends
                        && !this.is_end_stream()
                    {
                        this.handed = true;
                        conn.activity.response_frame_handed();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                this.done(true);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Fixed(bytes) => bytes.is_none(),
            Source::Channel(_, left) => *left == 0,
            Source::Origin(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Fixed(None) => SizeHint::with_exact(0),
            Source::Fixed(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Source::Channel(_, left) => SizeHint::with_exact(*left),
            Source::Origin(body, _) => body.size_hint(),
        }
    }
}

impl Drop for EdgeBody {
    fn drop(&mut self) {
        if self.handed
            && let Some(conn) = &self.sends
        {
            conn.activity.response_frame_asked();
        }
        // hyper drops a body it did not read to the end when the client went away.
        let complete = self.is_end_stream();
        self.done(complete);
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

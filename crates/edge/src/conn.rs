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
//! rate (see `h2_flood`), and reads the client's opening SETTINGS into the connection's HTTP/2
//! fingerprint (`fingerprint::h2`) before h2 is handed any request.

use crate::body::ClientBody;
use crate::clock;
use crate::conn_context::{ConnContext, Verdict};
use crate::fingerprint::{self, H2SettingsReader};
use crate::h2_conn::{self, H2Connection};
use crate::h2_flood::{H2Abuse, H2FloodGuard};
use crate::http::framing::FramingTracker;
use crate::http::interim::InterimSink;
use crate::metrics::{CutReason, Metrics};
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
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Sleep;

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
    /// On HTTP/2, until the client's opening SETTINGS settles its fingerprint.
    h2_fingerprint: Option<Box<H2SettingsReader>>,
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
        let parking = self.ctx.activity.parking();
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
            if let Some(reader) = this.h2_fingerprint.as_mut() {
                let progress = reader.feed(got);
                if progress != fingerprint::Progress::NeedMore {
                    if let Some(text) = reader.fingerprint() {
                        let traits = &this.ctx.client.traits;
                        traits.set_h2(text.into());
                        tracing::debug!(
                            target: "edge::fingerprint",
                            peer = %this.ctx.client.peer,
                            ja4 = traits.ja4.as_deref().unwrap_or(""),
                            h2 = text,
                            "HTTP/2 client fingerprint"
                        );
                    }
                    this.h2_fingerprint = None;
                }
            }
            activity.bytes_arrived();
            if let Some(tracker) = this.framing.as_mut() {
                if let Some((index, error)) = tracker.feed(got) {
                    activity.record_ambiguous(index, error);
                }
                activity.tracker_read(
                    this.heads_base + tracker.heads(),
                    tracker.at_message_start(),
                );
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
        if self.ctx.activity.parking() {
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
                ctx.activity.set_parking(false);
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
        ctx.activity.serving_h2();
    }
    let (give_back, mut taken_back) = {
        let (tx, rx) = oneshot::channel();
        (Some(tx), rx)
    };
    // A fresh hyper instance starts reading at a message boundary; so does its tracker.
    let heads_base = ctx.activity.tracking_from_a_message_boundary();
    let metrics = Arc::clone(&state.metrics);
    let io = WatchedIo {
        inner: Some(io),
        replay,
        heads_base,
        ctx: Arc::clone(&ctx),
        framing: (!h2).then(|| Box::new(FramingTracker::new(limits.max_header_bytes.max(8192)))),
        // The replayed preface comes first.
        h2_flood: h2.then(|| Box::new(H2FloodGuard::after_preface_bytes(0))),
        // Also fed from the replayed preface on.
        h2_fingerprint: h2.then(|| Box::new(H2SettingsReader::new())),
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
                        ctx.activity.set_parking(true);
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
    ctx.activity.set_parking(false);
    if let Some(io) = back {
        linger(io).await;
    }
    None
}

fn instant_at(clock_ms: u64) -> tokio::time::Instant {
    let now = clock::now_ms();
    tokio::time::Instant::now() + Duration::from_millis(clock_ms.saturating_sub(now))
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
}

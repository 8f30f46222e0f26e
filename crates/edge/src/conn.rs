//! One client connection: HTTP/1.1 or HTTP/2 served by hyper, watched for the two timeouts
//! hyper does not split the way an edge needs, and WebSocket tunnels after an upgrade.
//!
//! - `header_read_timeout`: from accept (or from the first byte of a later request) to a
//!   complete request header. Stops slowloris: a client trickling header bytes is cut off.
//! - `idle_timeout`: how long a connection with no request in progress stays open.
//!
//! hyper's own h1 header timer starts as soon as a keep-alive connection goes idle, which would
//! make the two the same number; so hyper's is off and a small per-connection watchdog decides
//! from [`ConnActivity`], which the I/O wrapper and the pipeline update.

use crate::clock;
use crate::conn_guard::ConnPermit;
use crate::phases::forward::ClientFacts;
use crate::phases::framing::{FramingError, FramingTracker};
use crate::pipeline::{self, EdgeState};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use model::ServerLimits;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

/// What the pipeline knows about the connection a request came on.
pub struct ConnContext {
    pub client: ClientFacts,
    /// On TLS: the site the SNI name routed to; requests must stay on it.
    pub sni_site: Option<Arc<str>>,
    pub activity: ConnActivity,
    /// Held until the connection and any tunnel on it are gone.
    _permit: ConnPermit,
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
            _permit: permit,
        }
    }
}

/// Timestamps (clock ms) the watchdog reads.
pub struct ConnActivity {
    in_flight: AtomicU32,
    /// When the header clock started (accept, or the first byte after an idle spell); 0 = not running.
    header_clock_ms: AtomicU64,
    idle_since_ms: AtomicU64,
    /// HTTP/2 multiplexes and pings; only the idle timeout applies to it.
    h2: AtomicBool,
    /// Requests the pipeline has started on this connection.
    requests: AtomicU64,
    /// 1 + the index of the first request whose head the framing tracker found ambiguous.
    ambiguous_request: AtomicU64,
    ambiguous_reason: AtomicU8,
}

enum Verdict {
    /// Look again at this clock instant.
    Keep(u64),
    HeaderTimeout,
    Idle,
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
            ambiguous_request: AtomicU64::new(0),
            ambiguous_reason: AtomicU8::new(0),
        }
    }

    /// Marks a request as started; returns the framing error its head had on the wire, if any.
    pub fn request_started(&self) -> Option<FramingError> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.header_clock_ms.store(0, Ordering::Release);
        let index = self.requests.fetch_add(1, Ordering::AcqRel);
        if self.ambiguous_request.load(Ordering::Acquire) == index + 1 {
            return Some(match self.ambiguous_reason.load(Ordering::Acquire) {
                0 => FramingError::LengthAndChunked,
                1 => FramingError::RepeatedLength,
                _ => FramingError::ChunkedInHttp10,
            });
        }
        None
    }

    fn record_ambiguous(&self, index: u64, error: FramingError) {
        let reason = match error {
            FramingError::LengthAndChunked => 0,
            FramingError::RepeatedLength => 1,
            FramingError::ChunkedInHttp10 => 2,
        };
        self.ambiguous_reason.store(reason, Ordering::Release);
        let _ = self.ambiguous_request.compare_exchange(
            0,
            index + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub fn request_finished(&self) {
        self.idle_since_ms.store(clock::now_ms(), Ordering::Release);
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

    fn verdict(&self, limits: &ServerLimits) -> Verdict {
        let now = clock::now_ms();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Keep(now + limits.idle_timeout.as_millis() as u64);
        }
        let header_clock = self.header_clock_ms.load(Ordering::Acquire);
        if header_clock != 0 {
            let deadline = header_clock + limits.header_read_timeout.as_millis() as u64;
            return if now >= deadline {
                Verdict::HeaderTimeout
            } else {
                Verdict::Keep(deadline)
            };
        }
        let deadline =
            self.idle_since_ms.load(Ordering::Acquire) + limits.idle_timeout.as_millis() as u64;
        if now >= deadline {
            Verdict::Idle
        } else {
            Verdict::Keep(deadline)
        }
    }
}

/// Reports arriving bytes to [`ConnActivity`], notices the HTTP/2 preface, and runs the
/// HTTP/1.x framing tracker over what the client sends.
struct WatchedIo<I> {
    inner: I,
    ctx: Arc<ConnContext>,
    first_read: bool,
    framing: Option<Box<FramingTracker>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if matches!(polled, Poll::Ready(Ok(()))) && !got.is_empty() {
            if self.first_read {
                self.first_read = false;
                if got.starts_with(b"PRI * HTTP/2.0") {
                    self.ctx.activity.h2.store(true, Ordering::Relaxed);
                    self.ctx
                        .activity
                        .header_clock_ms
                        .store(0, Ordering::Release);
                    self.framing = None;
                }
            }
            self.ctx.activity.bytes_arrived();
            let got = &buf.filled()[before..];
            if let Some(tracker) = self.framing.as_mut()
                && let Some((index, error)) = tracker.feed(got)
            {
                self.ctx.activity.record_ambiguous(index, error);
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's settings for client connections, from the server limits.
pub fn http_builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Our watchdog runs the header timer; see the module docs.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(128);
    builder
}

/// Serves one connection until it closes, times out, or shutdown completes.
pub async fn serve<I>(
    io: I,
    ctx: Arc<ConnContext>,
    state: Arc<EdgeState>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = state.snapshot.load().limits.clone();
    let builder = http_builder(&limits);
    let h2 = ctx.activity.h2.load(Ordering::Relaxed);
    let io = WatchedIo {
        inner: io,
        ctx: Arc::clone(&ctx),
        first_read: true,
        framing: (!h2).then(|| Box::new(FramingTracker::new(limits.max_header_bytes.max(8192)))),
    };
    let service_ctx = Arc::clone(&ctx);
    let service = service_fn(move |request| {
        let state = Arc::clone(&state);
        let ctx = Arc::clone(&service_ctx);
        async move { Ok::<_, Infallible>(pipeline::handle(&state, &ctx, request).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let sleep = tokio::time::sleep(limits.header_read_timeout.min(limits.idle_timeout));
    tokio::pin!(sleep);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %ctx.client.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut sleep => match ctx.activity.verdict(&limits) {
                Verdict::Keep(at) => sleep.as_mut().reset(instant_at(at)),
                Verdict::HeaderTimeout => {
                    tracing::debug!(peer = %ctx.client.peer, "request header not received in time; closing");
                    return;
                }
                Verdict::Idle if draining => return,
                Verdict::Idle => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                    // A connection that does not wind down by itself is dropped at the next look.
                    sleep.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            },
            _ = shutdown.changed(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

fn instant_at(clock_ms: u64) -> tokio::time::Instant {
    let now = clock::now_ms();
    tokio::time::Instant::now() + Duration::from_millis(clock_ms.saturating_sub(now))
}

/// After a 101, copies bytes both ways until either side closes or nothing moves for
/// `idle_timeout`. The tunnel holds the connection's permit, so it still counts against the
/// client's connection cap.
pub fn spawn_tunnel(
    ctx: Arc<ConnContext>,
    client: hyper::upgrade::OnUpgrade,
    origin: hyper::upgrade::OnUpgrade,
    idle_timeout: Duration,
) {
    tokio::spawn(async move {
        let (client, origin) = match tokio::try_join!(client, origin) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(peer = %ctx.client.peer, error = %e, "upgrade failed");
                return;
            }
        };
        let last = AtomicU64::new(clock::now_ms());
        let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
        let (mut origin_read, mut origin_write) = tokio::io::split(TokioIo::new(origin));
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

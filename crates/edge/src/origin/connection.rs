//! One HTTP/1.1 connection to an origin, driven from the request's own task.
//!
//! The edge writes the request head, streams the client's body (see [`Upload`]) while
//! watching for the response head, and hands the connection to the response body, which reads
//! and decodes it as the client takes it. No task, channel or wake-up sits between the
//! client's request and the origin's socket: hyper's client, which did this before, spawned a
//! task per connection and passed every request, response and body chunk through channels,
//! about 15,000 instructions per proxied request (callgrind, see `bench/README.md`).

use super::InterimSink;
use super::codec::{self, HeadError, RequestFraming, ResponseHead};
use crate::body::limits::{BodyTooLarge, BodyTooSlow, BoxError};
use crate::body::to_origin::OriginBody;
use bytes::{Bytes, BytesMut};
use http::Method;
use http_body::Body;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read buffer for a response head: a head and a small body arrive in one read.
const HEAD_READ_BYTES: usize = 8 * 1024;

/// Largest single read of a response body.
const BODY_READ_BYTES: usize = 64 * 1024;

/// Reads ask for at least this much room, so a nearly full buffer does not turn into many
/// tiny reads.
const MIN_READ_ROOM: usize = 2 * 1024;

/// Most interim (1xx) responses an origin may send before its final one: a handful is what
/// 102 Processing and 103 Early Hints are used for; an endless stream of them would keep the
/// edge parsing heads within `response_timeout`. Past it the response is refused (502).
const MAX_INTERIM_RESPONSES: usize = 32;

/// A TCP connection to an origin with what has been read from it and not consumed yet.
pub struct OriginConn {
    io: TcpStream,
    buf: BytesMut,
}

/// How an exchange failed before a usable response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Not one byte of a response: the origin closed or reset the connection. On a pooled
    /// connection that is the keep-alive race, not a verdict on the origin.
    #[error("the origin closed the connection without answering")]
    NoResponse,
    #[error("origin connection: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    BadHead(#[from] HeadError),
    #[error("the request body passed max_body_bytes")]
    BodyTooLarge,
    #[error("the request body came slower than min_request_body_rate")]
    BodyTooSlow,
    #[error("the client's request body failed: {0}")]
    ClientBody(BoxError),
}

impl OriginConn {
    pub fn new(io: TcpStream) -> OriginConn {
        OriginConn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can take a request: the origin has not closed it and has
    /// sent nothing unasked. Costs no system call unless the reactor saw the socket become
    /// readable, which for an idle connection means one of those two.
    pub fn is_reusable_after_idle(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes a request head (and, for a bodiless request, the whole request).
    pub async fn write_head(&mut self, head: &[u8]) -> io::Result<()> {
        self.io.write_all(head).await
    }

    /// Sends the body (if any) while waiting for the response head, handing interim 1xx
    /// responses to `interim` (a 101 is final; a 100 answers an `Expect` the edge never
    /// forwards, so it is skipped). Returns the head and the upload when the origin answered
    /// before the whole body was sent: the caller keeps streaming it (an origin may echo a
    /// body as it reads it).
    pub async fn read_response(
        &mut self,
        mut upload: Option<Box<Upload>>,
        method: &Method,
        interim: Option<&dyn InterimSink>,
    ) -> Result<(ResponseHead, Option<Box<Upload>>), ExchangeError> {
        let mut received = false;
        let mut interims = 0;
        let mut scan = codec::HeadScan::default();
        poll_fn(|cx| {
            if let Some(sending) = upload.as_mut().filter(|u| !u.failed) {
                match sending.poll_send(&mut self.io, cx) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => upload = None,
                    Poll::Ready(Err(UploadError::Client(e))) => {
                        return Poll::Ready(Err(client_body_error(e)));
                    }
                    // The origin stopped reading; it may still have answered (a 413, say),
                    // and the read below will tell.
                    Poll::Ready(Err(UploadError::Origin(e))) => {
                        tracing::debug!(error = %e, "origin stopped taking the request body");
                        sending.failed = true;
                    }
                }
            }
            loop {
                if !self.buf.is_empty() {
                    received = true;
                    if scan.worth_parsing(&self.buf)
                        && let Some(head) = codec::parse_response_head(&mut self.buf, method)?
                    {
                        if head.status.is_informational()
                            && head.status != http::StatusCode::SWITCHING_PROTOCOLS
                        {
                            interims += 1;
                            if interims > MAX_INTERIM_RESPONSES {
                                return Poll::Ready(Err(HeadError::Malformed(
                                    "too many interim responses",
                                )
                                .into()));
                            }
                            if let Some(sink) = interim
                                && head.status != http::StatusCode::CONTINUE
                            {
                                sink.interim(head.status, &head.headers);
                            }
                            scan.restart();
                            continue;
                        }
                        return Poll::Ready(Ok(head));
                    }
                }
                match ready!(self.poll_fill(cx, HEAD_READ_BYTES)) {
                    Ok(0) if received => {
                        return Poll::Ready(Err(
                            io::Error::from(io::ErrorKind::UnexpectedEof).into()
                        ));
                    }
                    Ok(0) => return Poll::Ready(Err(ExchangeError::NoResponse)),
                    Ok(_) => {}
                    Err(e) if !received && is_reset(&e) => {
                        return Poll::Ready(Err(ExchangeError::NoResponse));
                    }
                    Err(e) => return Poll::Ready(Err(e.into())),
                }
            }
        })
        .await
        .map(|mut head| {
            // The origin stopped taking the body: what it thinks comes next on this
            // connection is no longer known.
            if upload.as_ref().is_some_and(|u| u.failed) {
                head.keep_alive = false;
                upload = None;
            }
            (head, upload)
        })
    }

    /// Reads more into the buffer, asking for room for about `want` bytes. `Ok(0)` is the end
    /// of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.reserve(want.clamp(MIN_READ_ROOM, BODY_READ_BYTES));
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn io_mut(&mut self) -> &mut TcpStream {
        &mut self.io
    }

    /// The socket and the bytes already read past the response head: after a 101, the first
    /// bytes of the new protocol.
    pub fn into_parts(self) -> (TcpStream, Bytes) {
        (self.io, self.buf.freeze())
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn client_body_error(e: BoxError) -> ExchangeError {
    if e.is::<BodyTooLarge>() {
        ExchangeError::BodyTooLarge
    } else if e.is::<BodyTooSlow>() {
        ExchangeError::BodyTooSlow
    } else {
        ExchangeError::ClientBody(e)
    }
}

/// Why an upload stopped.
#[derive(Debug)]
pub enum UploadError {
    /// The client's body failed (it went away, passed `max_body_bytes`, or came too slowly).
    Client(BoxError),
    /// The origin's socket failed.
    Origin(io::Error),
}

/// A client's request body on its way to an origin, sent as fast as the client sends it and the
/// origin takes it. Polled from whichever future is waiting on the origin: the exchange before
/// the response head, then the response body.
pub struct Upload {
    body: OriginBody,
    chunked: bool,
    /// With Content-Length framing, the bytes the origin still expects: the body must bring
    /// exactly these, or the exchange fails (and the connection is not reused) rather than
    /// leave the origin reading the next request from the wrong place.
    remaining: Option<u64>,
    /// Encoded bytes not yet written (a chunk's size line, its data, its CRLF).
    pending: VecDeque<Bytes>,
    ended: bool,
    failed: bool,
}

impl Upload {
    pub fn new(body: OriginBody, framing: RequestFraming) -> Upload {
        Upload {
            body,
            chunked: framing == RequestFraming::Chunked,
            remaining: match framing {
                RequestFraming::Length(n) => Some(n),
                RequestFraming::None => Some(0),
                RequestFraming::Chunked => None,
            },
            pending: VecDeque::with_capacity(3),
            ended: false,
            failed: false,
        }
    }

    /// Drives the upload; `Ready(Ok)` once the whole body (and the last chunk) is written.
    pub fn poll_send(
        &mut self,
        io: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            if !self.pending.is_empty() {
                ready!(self.poll_write_pending(io, cx)).map_err(UploadError::Origin)?;
                continue;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None if self.remaining.is_some_and(|n| n > 0) => {
                    return Poll::Ready(Err(UploadError::Client(
                        "the request body ended before its Content-Length".into(),
                    )));
                }
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending.push_back(codec::last_chunk(None));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(UploadError::Client(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) if self.remaining.is_some_and(|n| (data.len() as u64) > n) => {
                        return Poll::Ready(Err(UploadError::Client(
                            "the request body is longer than its Content-Length".into(),
                        )));
                    }
                    Ok(data) if self.chunked => {
                        self.pending.push_back(codec::chunk_size_line(data.len()));
                        self.pending.push_back(data);
                        self.pending.push_back(Bytes::from_static(b"\r\n"));
                    }
                    Ok(data) => {
                        if let Some(n) = self.remaining.as_mut() {
                            *n -= data.len() as u64;
                        }
                        self.pending.push_back(data);
                    }
                    Err(frame) => {
                        // Trailers end the body; only chunked framing can carry them.
                        if let (Ok(trailers), true) = (frame.into_trailers(), self.chunked) {
                            self.pending.push_back(codec::last_chunk(Some(&trailers)));
                            self.ended = true;
                        }
                    }
                },
            }
        }
    }

    fn poll_write_pending(
        &mut self,
        io: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let slices: [IoSlice<'_>; 3] = std::array::from_fn(|i| {
                IoSlice::new(self.pending.get(i).map_or(&[][..], |b| &b[..]))
            });
            let mut written = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let front = self
                    .pending
                    .front_mut()
                    .expect("written bytes came from the queue");
                if written >= front.len() {
                    written -= front.len();
                    self.pending.pop_front();
                } else {
                    let _ = front.split_to(written);
                    written = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

//! An origin's response body, read from its connection as the client takes it.
//!
//! The body owns the connection: once the last byte has been read (and the request body, if
//! any, fully sent) a keep-alive connection goes back to its pool at once, before the client
//! has even received the last frame. A body that ends early, breaks a framing rule, or is
//! dropped unread takes its connection with it.
//!
//! An origin that stops sending in the middle of a body is cut off after `response_timeout`
//! without a byte (nginx's `proxy_read_timeout`); without that a stalled origin would hold the
//! client's connection forever. The clock runs only while the edge is waiting on the origin:
//! not while a slow client is being written to, nor while the client's own body is still
//! being uploaded (the origin may be waiting for it).
//!
//! A client whose upload, still going on behind the response, comes slower than
//! `min_request_body_rate` has its response cut short too: the response has begun, so closing
//! the connection is the only way left to tell it.

use super::chunked::{ChunkedDecoder, Decoded};
use super::codec::ResponseFraming;
use super::connection::{Upload, UploadError};
use super::pool::PooledConn;
use crate::body::limits::{BodyTooSlow, BoxError};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Bytes read for a body of unknown length.
const UNKNOWN_LENGTH_READ_BYTES: usize = 16 * 1024;

enum Reading {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    /// A 101: the connection now carries another protocol; see [`OriginResponseBody::take_upgraded`].
    Switched,
    Done,
}

pub struct OriginResponseBody {
    conn: Option<PooledConn>,
    reading: Reading,
    /// The rest of the client's body, when the origin answered before it was all sent.
    upload: Option<Box<Upload>>,
    keep_alive: bool,
    /// Longest wait for the origin's next bytes.
    stall_timeout: Duration,
    /// Armed when a read finds nothing; re-armed after each frame that made progress.
    stall: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

/// The origin broke the body's framing or closed early; the client's response is cut short.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("origin closed the connection {0} bytes before the declared end of the body")]
    Truncated(u64),
    #[error("origin closed the connection inside a chunked body")]
    ChunkedTruncated,
    #[error("origin sent a malformed chunked body: {0}")]
    Chunked(#[from] super::chunked::ChunkError),
    #[error("reading the origin's body: {0}")]
    Io(#[from] io::Error),
    #[error("origin sent nothing for {0:?} in the middle of a body")]
    Stalled(Duration),
}

impl OriginResponseBody {
    pub(super) fn new(
        conn: PooledConn,
        framing: ResponseFraming,
        switched: bool,
        keep_alive: bool,
        upload: Option<Box<Upload>>,
        stall_timeout: Duration,
    ) -> OriginResponseBody {
        let reading = match framing {
            _ if switched => Reading::Switched,
            ResponseFraming::Empty | ResponseFraming::Length(0) => Reading::Done,
            ResponseFraming::Length(n) => Reading::Length(n),
            ResponseFraming::Chunked => Reading::Chunked(ChunkedDecoder::default()),
            ResponseFraming::UntilClose => Reading::UntilClose,
        };
        let mut body = OriginResponseBody {
            conn: Some(conn),
            reading,
            upload,
            keep_alive,
            stall_timeout,
            stall: None,
            progressed: true,
        };
        if matches!(body.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// After a 101: the origin's socket and the bytes it already sent in the new protocol.
    pub fn take_upgraded(&mut self) -> Option<(TcpStream, Bytes)> {
        if !matches!(self.reading, Reading::Switched) {
            return None;
        }
        self.reading = Reading::Done;
        self.conn.take().map(PooledConn::into_parts)
    }

    /// The body has been read to its end: the connection goes back to the pool when nothing
    /// about it is in doubt.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        if let Some(mut conn) = self.conn.take()
            && self.keep_alive
            && self.upload.is_none()
            && conn.connection().buffer().is_empty()
        {
            conn.release();
        }
    }

    /// The origin has nothing for us: true once it has been silent too long.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if self.upload.is_some() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + self.stall_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if std::mem::take(&mut self.progressed) {
            stall.as_mut().reset(deadline);
        }
        stall.as_mut().poll(cx).is_ready()
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.reading = Reading::Done;
        self.conn = None;
        Poll::Ready(Some(Err(Box::new(error))))
    }

    /// Keeps the rest of the client's body flowing to the origin; the client's body error when
    /// it came too slowly.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        if let (Some(upload), Some(conn)) = (&mut self.upload, &mut self.conn) {
            match upload.poll_send(conn.connection().io_mut(), cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => self.upload = None,
                Poll::Ready(Err(UploadError::Client(e))) if e.is::<BodyTooSlow>() => {
                    self.upload = None;
                    self.keep_alive = false;
                    return Err(e);
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = ?e, "request body stopped after the origin answered");
                    self.upload = None;
                    self.keep_alive = false;
                }
            }
        }
        Ok(())
    }
}

impl Body for OriginResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Err(e) = this.poll_upload(cx) {
            this.reading = Reading::Done;
            this.conn = None;
            return Poll::Ready(Some(Err(e)));
        }
        let polled = this.poll_read(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.progressed = true,
            Poll::Pending if this.stalled(cx) => {
                return this.fail(BodyError::Stalled(this.stall_timeout));
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done | Reading::Switched)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(remaining) => SizeHint::with_exact(remaining),
            Reading::Done | Reading::Switched => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl OriginResponseBody {
    /// The next frame from what is buffered or can be read now.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let conn = conn.connection();
            let want = match &mut this.reading {
                Reading::Done | Reading::Switched => return Poll::Ready(None),
                Reading::Length(remaining) => {
                    let buf = conn.buffer();
                    if !buf.is_empty() {
                        let take = (*remaining).min(buf.len() as u64);
                        let data = buf.split_to(take as usize).freeze();
                        *remaining -= take;
                        if *remaining == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    usize::try_from(*remaining).unwrap_or(usize::MAX)
                }
                Reading::Chunked(decoder) => match decoder.decode(conn.buffer()) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => UNKNOWN_LENGTH_READ_BYTES,
                    Err(e) => return this.fail(e.into()),
                },
                Reading::UntilClose => {
                    let buf = conn.buffer();
                    if !buf.is_empty() {
                        let data = buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    UNKNOWN_LENGTH_READ_BYTES
                }
            };
            match ready!(conn.poll_fill(cx, want)) {
                Ok(0) => {
                    return match this.reading {
                        Reading::Length(remaining) => this.fail(BodyError::Truncated(remaining)),
                        Reading::Chunked(_) => this.fail(BodyError::ChunkedTruncated),
                        _ => {
                            // The end of a close-delimited body.
                            this.keep_alive = false;
                            this.finish();
                            Poll::Ready(None)
                        }
                    };
                }
                Ok(_) => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }
}

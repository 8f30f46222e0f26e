//! The body of a request forwarded to an origin: the client's body, metered and paced, either
//! streamed as it arrives or first read ahead (whole when it is small enough), so that a slow
//! sender never holds one of the origin's slots while it trickles.

use super::client::ClientBody;
use super::limits::{BodyMeter, BodyPace, BodyTooLarge, BodyTooSlow, BoxError, BufferReservation};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The body of a request forwarded to an origin.
pub enum OriginBody {
    Empty,
    Client {
        inner: ClientBody,
        meter: Arc<BodyMeter>,
        limit: u64,
        pace: Box<BodyPace>,
    },
    /// Read ahead before the origin was asked: sent first, then the rest of the client's body
    /// if it went on.
    Read(Box<ReadAhead>),
}

/// What was read of a body before the origin was asked (see [`OriginBody::read_ahead`]).
pub struct ReadAhead {
    /// The bytes read, sent first.
    read: Option<Bytes>,
    /// The frame that went past the read-ahead limit: sent next.
    over: Option<Bytes>,
    /// The rest of the client's body, when it did not end within the limit.
    rest: Option<OriginBody>,
    /// The body's trailers, when it ended with them.
    trailers: Option<HeaderMap>,
    /// The memory `read` holds, given back once it has gone to the origin.
    reservation: Option<BufferReservation>,
}

impl OriginBody {
    /// Reads this body ahead, up to `limit` bytes, under its own limits (size and pace: a
    /// client too slow or too large fails here as it would while streaming). Whole when it
    /// ends within `limit`; otherwise what was read (and the frame that went past `limit`) is
    /// sent first and the rest streams. The bytes held are counted into `reservation` as they
    /// arrive, up to `bound` for every body together; past it, reading stops there and the
    /// rest streams.
    pub async fn read_ahead(
        mut self,
        limit: u64,
        mut reservation: BufferReservation,
        bound: u64,
    ) -> Result<OriginBody, BoxError> {
        // Each frame copied at its size: a frame's bytes may hold a connection's whole read
        // buffer, which would then outlive what `body_buffer_memory` counts; and a trickled
        // body is held at the size that arrived, not the size it may reach.
        let mut read: Vec<Bytes> = Vec::new();
        let mut held = 0u64;
        let (over, rest, trailers) = loop {
            if held == limit && limit > 0 {
                // As much as may be read: the rest, if any, streams. (Not one poll more: a
                // client that sent exactly this much may be waiting for an answer.)
                break (None, Some(self), None);
            }
            let frame = match std::future::poll_fn(|cx| Pin::new(&mut self).poll_frame(cx)).await {
                None => break (None, None, None),
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data)
                    if held + data.len() as u64 <= limit
                        && reservation.grow(data.len() as u64, bound) =>
                {
                    held += data.len() as u64;
                    read.push(Bytes::copy_from_slice(&data));
                }
                Ok(data) => break (Some(data), Some(self), None),
                Err(frame) => break (None, None, frame.into_trailers().ok()),
            }
        };
        let read = match read.len() {
            0 | 1 => read.pop().unwrap_or_default(),
            _ => {
                let mut whole = BytesMut::with_capacity(held as usize);
                for part in read {
                    whole.extend_from_slice(&part);
                }
                whole.freeze()
            }
        };
        Ok(OriginBody::Read(Box::new(ReadAhead {
            read: Some(read),
            over,
            rest,
            trailers,
            reservation: Some(reservation),
        })))
    }

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
                if len > 0 && !meter.count(len, *limit) {
                    return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                }
                if !pace.arrived(len) {
                    return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            OriginBody::Read(ahead) => {
                if let Some(read) = ahead.read.take()
                    && !read.is_empty()
                {
                    return Poll::Ready(Some(Ok(Frame::data(read))));
                }
                // Asked again: what was read has been written to the origin.
                ahead.reservation = None;
                if let Some(over) = ahead.over.take() {
                    return Poll::Ready(Some(Ok(Frame::data(over))));
                }
                if let Some(rest) = &mut ahead.rest {
                    return Pin::new(rest).poll_frame(cx);
                }
                Poll::Ready(ahead.trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OriginBody::Empty => true,
            OriginBody::Client { inner, .. } => inner.is_end_stream(),
            OriginBody::Read(ahead) => {
                ahead.read.as_ref().is_none_or(Bytes::is_empty)
                    && ahead.over.is_none()
                    && ahead.trailers.is_none()
                    && ahead.rest.as_ref().is_none_or(Body::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OriginBody::Empty => SizeHint::with_exact(0),
            OriginBody::Client { inner, .. } => inner.size_hint(),
            OriginBody::Read(ahead) => {
                let held = ahead.read.as_ref().map_or(0, Bytes::len)
                    + ahead.over.as_ref().map_or(0, Bytes::len);
                let rest = ahead
                    .rest
                    .as_ref()
                    .map_or(SizeHint::with_exact(0), Body::size_hint);
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + held as u64);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + held as u64);
                }
                hint
            }
        }
    }
}

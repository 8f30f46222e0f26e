//! The body of a request forwarded to an origin: the client's body, metered and paced.

use super::client::ClientBody;
use super::limits::{BodyMeter, BodyPace, BodyTooLarge, BodyTooSlow, BoxError};
use bytes::Bytes;
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
                if len > 0 && !meter.count(len, *limit) {
                    return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
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

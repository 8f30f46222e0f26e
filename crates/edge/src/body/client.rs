//! A client's request body as its connection's protocol delivers it.

use super::limits::BoxError;
use bytes::Bytes;
use h2::{Reason, RecvStream};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// A client's request body, as the connection's protocol delivers it.
pub enum ClientBody {
    /// HTTP/1.1, read by hyper.
    Http1(Incoming),
    /// HTTP/2, read from h2 (see `h2_conn`).
    Http2(H2RequestBody),
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

/// An HTTP/2 request body: DATA frames as they come, each handed back to the connection's
/// flow-control window once taken, then the trailers.
pub struct H2RequestBody {
    recv: RecvStream,
    /// The declared content-length, which h2 holds the DATA frames to.
    length: Option<u64>,
    data_done: bool,
}

impl H2RequestBody {
    /// `length`: the declared content-length, if any.
    pub fn new(recv: RecvStream, length: Option<u64>) -> H2RequestBody {
        H2RequestBody {
            recv,
            length,
            data_done: false,
        }
    }
}

impl Body for H2RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = self.length.as_mut() {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                }
                // RFC 9113 §8.1: RST_STREAM(NO_ERROR) after an early response ends the body
                // without failing it.
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(http_body::Frame::trailers(t)))),
            Err(e) if e.reason() == Some(Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.length {
            Some(left) => http_body::SizeHint::with_exact(left),
            None => http_body::SizeHint::default(),
        }
    }
}

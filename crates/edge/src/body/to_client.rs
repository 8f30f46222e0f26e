//! What a client receives: a response body from the cache, an origin or the edge itself, which
//! finishes the request's log record when the last frame leaves (or the client goes away).

use super::limits::BoxError;
use crate::conn_context::ConnContext;
use crate::origin::OriginResponseBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

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

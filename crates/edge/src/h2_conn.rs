//! HTTP/2 client connections, served on the `h2` crate directly.
//!
//! hyper's HTTP/2 server keeps each stream's `SendResponse` to itself, so a service cannot
//! send an interim (1xx) response, which RFC 9110 §15.2 asks a proxy to forward (and browsers
//! act on 103 Early Hints over HTTP/2 only). This module does the part of hyper it replaces:
//! each stream runs the request through the pipeline, then sends the response head and pipes
//! its body under HTTP/2 flow control; a client's RST_STREAM drops the request's work. What it
//! adds: the origin's interim responses go out on the stream before its final head.
//!
//! Unlike hyper, the streams are polled on the connection's own task rather than spawned one
//! task each, and the connection's small writes wait for the end of the task's turn
//! (`h2_writes`): the answers of every stream ready in one turn leave in one socket write
//! (bench/h2.sh, 1 KiB hits: one `writev` per request before, about one per ten after).
//!
//! The protections h2 itself gives (header list size, CONTINUATION bounds, rapid reset,
//! local error resets, concurrent streams, send buffer) are set from the server limits in
//! [`builder`], as they were on hyper's builder; the connection's own guards (floods, slow
//! readers) stay in `conn`.

use crate::body::{ClientBody, EdgeBody, H2RequestBody};
use crate::h2_writes::{BatchedWrites, Turns};
use crate::http::interim::InterimSink;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h2::SendStream;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use model::ServerLimits;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

/// Streams one HTTP/2 connection may have open: enough for a browser page; bounds one
/// connection's share of the origins.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// h2's own default, stated: resets of streams not yet accepted before GOAWAY.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// hyper's default, stated.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
const MAX_SEND_BUF: usize = 128 * 1024;
const RECEIVE_WINDOW: u32 = 1024 * 1024;

/// h2's settings for client connections, from the server limits.
pub fn builder(limits: &ServerLimits) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        // HPACK bombs: the decoded header list is bounded like an HTTP/1.1 head. h2 answers a
        // larger list with 431 and sends GOAWAY (ENHANCE_YOUR_CALM) past four times the
        // limit; it also bounds CONTINUATION frames to what this size needs (about 5 frames).
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Rapid reset (CVE-2023-44487): streams the client resets before they are accepted.
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        // MadeYouReset (CVE-2025-8671) and stream errors on purpose: streams h2 has to reset
        // for the client's protocol errors, per connection.
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        // Response data h2 queues per stream beyond what the socket takes: with 128 streams a
        // connection that reads slowly holds at most 16 MiB.
        .max_send_buffer_size(MAX_SEND_BUF)
        // Request data a client may send ahead of the origin reading it: 1 MiB per connection.
        .initial_connection_window_size(RECEIVE_WINDOW)
        .initial_window_size(RECEIVE_WINDOW);
    builder
}

/// One HTTP/2 connection being served: a future that ends when the connection does.
pub struct H2Connection {
    run: Pin<Box<dyn Future<Output = Result<(), h2::Error>> + Send>>,
    shutdown: Arc<Notify>,
    /// Counted per poll: the socket's small writes wait for the end of a turn (`h2_writes`).
    turns: Arc<Turns>,
}

impl H2Connection {
    /// Serves `io` (whose first bytes are the client preface), running each request through
    /// `handle` on the connection's task.
    pub fn new<I, H, F>(io: I, builder: h2::server::Builder, handle: H) -> H2Connection
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<ClientBody>, Arc<dyn InterimSink>) -> F + Send + 'static,
        F: Future<Output = Response<EdgeBody>> + Send + 'static,
    {
        let shutdown = Arc::new(Notify::new());
        let turns = Arc::new(Turns::default());
        let io = BatchedWrites::new(io, Arc::clone(&turns));
        let run = Box::pin(run(io, builder, handle, Arc::clone(&shutdown)));
        H2Connection {
            run,
            shutdown,
            turns,
        }
    }

    /// Sends GOAWAY and lets the streams in flight finish; the future ends after them.
    pub fn graceful_shutdown(&self) {
        self.shutdown.notify_one();
    }
}

impl Future for H2Connection {
    type Output = Result<(), h2::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.turns.next_turn();
        self.run.as_mut().poll(cx)
    }
}

async fn run<I, H, F>(
    io: I,
    builder: h2::server::Builder,
    handle: H,
    shutdown: Arc<Notify>,
) -> Result<(), h2::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<ClientBody>, Arc<dyn InterimSink>) -> F + Send + 'static,
    F: Future<Output = Response<EdgeBody>> + Send + 'static,
{
    let mut conn = builder.handshake::<_, Bytes>(io).await?;
    // The streams run on this task, not one task each: what they send in a turn is written
    // in one go at its end (`h2_writes`), and no stream pays for a task of its own.
    let mut streams = FuturesUnordered::new();
    let mut closing = false;
    // Made once: a fresh `notified()` per turn would join and leave the Notify's waiter list
    // each time.
    let shutdown_signal = shutdown.notified();
    tokio::pin!(shutdown_signal);
    std::future::poll_fn(move |cx| {
        if !closing && shutdown_signal.as_mut().poll(cx).is_ready() {
            conn.graceful_shutdown();
            closing = true;
        }
        loop {
            // The streams first, so that what they send is queued before h2 next writes.
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    let interim = Arc::new(StreamInterim::default());
                    let request = into_edge_request(request);
                    let work = handle(request, Arc::clone(&interim) as Arc<dyn InterimSink>);
                    // Boxed where it is made: the pipeline's future (kilobytes) is copied
                    // once, into the box, not again into the stream's state.
                    streams.push(StreamTask::new(Box::pin(work), respond, interim));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // Closed: after GOAWAY once the streams in flight are done, or the client
                // went. Streams still here had no one left to answer.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// The stream's request as the pipeline takes it: its body readable under flow control.
fn into_edge_request(request: Request<RecvStream>) -> Request<ClientBody> {
    let (parts, recv) = request.into_parts();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = ClientBody::Http2(H2RequestBody::new(recv, length));
    Request::from_parts(parts, body)
}

/// Interim responses for one stream, handed over by the origin client while the request's
/// future runs on the stream's task, and sent by that task before it polls again.
#[derive(Default)]
struct StreamInterim {
    waiting: Mutex<Vec<Response<()>>>,
}

/// Most interim responses one stream passes on; more are dropped (1xx are advice).
const MAX_INTERIMS_PER_STREAM: usize = 16;

impl InterimSink for StreamInterim {
    fn interim(&self, status: StatusCode, headers: &HeaderMap) {
        let mut response = Response::new(());
        *response.status_mut() = status;
        let mut fields = headers.clone();
        crate::http::fields::strip_hop_by_hop(&mut fields);
        strip_connection_fields(&mut fields);
        fields.remove(header::CONTENT_LENGTH);
        *response.headers_mut() = fields;
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() < MAX_INTERIMS_PER_STREAM {
            waiting.push(response);
        }
    }
}

impl StreamInterim {
    fn send(&self, respond: &mut SendResponse<Bytes>) {
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        for response in waiting {
            // A stream the client already reset takes nothing more; the final send says so.
            let _ = respond.send_informational(response);
        }
    }
}

pin_project_lite::pin_project! {
    /// One stream's work, polled on the connection's task: the request through the pipeline
    /// (its interims and then its response head sent on the stream), then the response body.
    /// A hand-written future rather than an `async fn`, so that the pipeline's future (boxed
    /// where it is made) and the body being sent share their space: the stream stays small,
    /// and adding it to the connection's streams copies little.
    struct StreamTask<F> {
        respond: SendResponse<Bytes>,
        interim: Arc<StreamInterim>,
        #[pin]
        state: StreamState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StreamStateProj]
    enum StreamState<F> {
        Request { #[pin] work: F },
        Body { pipe: BodyPipe },
        Done,
    }
}

impl<F: Future<Output = Response<EdgeBody>>> StreamTask<F> {
    fn new(work: F, respond: SendResponse<Bytes>, interim: Arc<StreamInterim>) -> Self {
        StreamTask {
            respond,
            interim,
            state: StreamState::Request { work },
        }
    }
}

impl<F: Future<Output = Response<EdgeBody>>> Future for StreamTask<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A stream's panic ends that stream (h2 resets it when its handles drop), not the
        // connection's other streams, as when each stream had a task of its own.
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.as_mut().poll_stream(cx))) {
            Ok(polled) => polled,
            Err(_) => {
                tracing::error!("an HTTP/2 stream's work panicked; resetting the stream");
                self.project().state.set(StreamState::Done);
                Poll::Ready(())
            }
        }
    }
}

impl<F: Future<Output = Response<EdgeBody>>> StreamTask<F> {
    fn poll_stream(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StreamStateProj::Request { work } => {
                    let polled = work.poll(cx);
                    // Interims handed over during that poll go out before a final head it
                    // returned.
                    this.interim.send(this.respond);
                    let Poll::Ready(response) = polled else {
                        // The client's RST_STREAM abandons the request's work.
                        if this.respond.poll_reset(cx).is_ready() {
                            this.state.set(StreamState::Done);
                            return Poll::Ready(());
                        }
                        return Poll::Pending;
                    };
                    match send_head(this.respond, response) {
                        Some(pipe) => this.state.set(StreamState::Body { pipe }),
                        None => {
                            this.state.set(StreamState::Done);
                            return Poll::Ready(());
                        }
                    }
                }
                StreamStateProj::Body { pipe } => {
                    ready!(pipe.poll(cx));
                    this.state.set(StreamState::Done);
                    return Poll::Ready(());
                }
                StreamStateProj::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Sends the response head; the body still to send, if any.
fn send_head(respond: &mut SendResponse<Bytes>, response: Response<EdgeBody>) -> Option<BodyPipe> {
    let (mut head, body) = response.into_parts();
    strip_connection_fields(&mut head.headers);
    if !head.headers.contains_key(header::DATE) {
        head.headers.insert(header::DATE, crate::clock::http_date());
    }
    let end_of_stream = body.is_end_stream();
    if !end_of_stream
        && let Some(length) = body.size_hint().exact()
        && !head.headers.contains_key(header::CONTENT_LENGTH)
    {
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    match respond.send_response(Response::from_parts(head, ()), end_of_stream) {
        Ok(sending) if !end_of_stream => Some(BodyPipe {
            body,
            sending,
            waiting: None,
        }),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 response head not sent");
            None
        }
    }
}

/// Removes the fields HTTP/2 forbids in a message (RFC 9113 §8.2.2): connection-specific
/// ones, and TE in a response. Normally none are left by then; an edge page may carry
/// `Connection: close` meant for HTTP/1.1.
fn strip_connection_fields(headers: &mut HeaderMap) {
    // One scan of the names present first: removing each name would hash it every time.
    let present = headers.keys().any(|name| {
        matches!(
            name.as_str(),
            "connection"
                | "transfer-encoding"
                | "upgrade"
                | "te"
                | "keep-alive"
                | "proxy-connection"
        )
    });
    if !present {
        return;
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// A response body being sent under flow control: a chunk waits for stream capacity before
/// the next is read, so a client with a shut window holds at most one chunk (plus h2's send
/// buffer) of it. Ends on the client's RST_STREAM.
struct BodyPipe {
    body: EdgeBody,
    sending: SendStream<Bytes>,
    /// A chunk read from the body, waiting for capacity, and whether it ends the body.
    waiting: Option<(Bytes, bool)>,
}

impl BodyPipe {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.poll_send(cx) {
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 response body not sent whole");
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let sending = &mut self.sending;
        loop {
            if let Some((chunk, end)) = self.waiting.take() {
                if sending.capacity() == 0 {
                    match sending.poll_capacity(cx) {
                        Poll::Pending => {
                            self.waiting = Some((chunk, end));
                            return poll_reset_or_pending(sending, cx);
                        }
                        Poll::Ready(Some(Ok(_))) => {
                            self.waiting = Some((chunk, end));
                            continue;
                        }
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.to_string())),
                        Poll::Ready(None) => return Poll::Ready(Err("stream closed".into())),
                    }
                }
                // h2 takes the whole chunk and sends what the window allows, queueing the rest
                // within `max_send_buffer_size`.
                if let Err(e) = sending.send_data(chunk, end) {
                    return Poll::Ready(Err(e.to_string()));
                }
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) else {
                return poll_reset_or_pending(sending, cx);
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        let end = self.body.is_end_stream();
                        if chunk.is_empty() && !end {
                            continue;
                        }
                        // A minimal claim, not the chunk's length: claiming the whole of it
                        // up front makes every waiting stream a heavy claimant on the
                        // connection's window (hyper's #4003); h2 raises the claim to what is
                        // buffered when the data is sent. With the window open, h2 grants it
                        // at once.
                        sending.reserve_capacity(1);
                        self.waiting = Some((chunk, end));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            sending.reserve_capacity(0);
                            return Poll::Ready(
                                sending.send_trailers(trailers).map_err(|e| e.to_string()),
                            );
                        }
                    }
                },
                Some(Err(e)) => {
                    sending.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e.to_string()));
                }
                None => {
                    return Poll::Ready(
                        sending
                            .send_data(Bytes::new(), true)
                            .map_err(|e| e.to_string()),
                    );
                }
            }
        }
    }
}

/// While the body waits (for data or for the window), the client's RST_STREAM ends it: asked
/// only then, as each question takes h2's lock.
fn poll_reset_or_pending(
    sending: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), String>> {
    match sending.poll_reset(cx) {
        Poll::Ready(reason) => Poll::Ready(Err(format!("client reset the stream: {reason:?}"))),
        Poll::Pending => Poll::Pending,
    }
}

//! HTTP/1.x requests without a body, on cleartext connections, served without hyper.
//!
//! Most requests an edge sees are bodiless (GET, HEAD) and nothing about them needs a general
//! HTTP server: the head is parsed once into the pipeline's request, the response head is
//! written with its first body bytes in one `writev`, and between requests the connection
//! holds only its socket. hyper's server cost about 10,000 instructions per proxied request
//! here (callgrind, `bench/README.md`), most of it state machine and buffering this case does
//! not need.
//!
//! Anything else is handed to hyper together with the bytes already read, exactly as a parked
//! connection is: a request with a body (Content-Length, Transfer-Encoding), `Expect`, an
//! upgrade, the HTTP/2 preface, and any head this parser refuses or finds too large (hyper then
//! answers 400 or 431, and the framing tracker judges the bytes as before). hyper keeps the
//! connection until it goes idle and parks it; then it comes back here.

use crate::body::{EdgeBody, RequestBody};
use crate::conn::{ConnContext, instant_at};
use crate::pipeline::{self, EdgeState};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use model::ServerLimits;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Field slots for one request head; `max_headers` above this goes to hyper.
const MAX_FIELDS: usize = 256;

/// Fields the forward phase may add to a request.
const FORWARD_PHASE_FIELDS: usize = 8;

/// Room asked for by each read of a request head.
const READ_BYTES: usize = 4 * 1024;

/// A cleartext client connection and the bytes read from it that no request has taken yet.
pub struct ClientConn {
    pub io: TcpStream,
    pub buf: BytesMut,
}

/// How the fast path let go of a connection.
pub enum Outcome {
    /// Closed: the client left, a timeout, shutdown, or the response said so.
    Closed,
    /// The next request needs hyper; `http1` is false when it may be HTTP/2 (the preface).
    HandOver { http1: bool },
}

/// What the response needs to know about the request it answers.
struct RequestFacts {
    version: Version,
    head: bool,
    keep_alive: bool,
    trailers: bool,
}

// Returned once per request and matched at once: boxing the request would cost an allocation
// per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Request(Request<RequestBody>, RequestFacts),
    Partial,
    /// Not for this path: hyper takes the connection with the bytes as they are.
    NotSimple,
}

/// Serves requests until the connection closes or one needs hyper.
pub async fn serve(
    conn: &mut ClientConn,
    ctx: &Arc<ConnContext>,
    state: &Arc<EdgeState>,
    shutdown: &watch::Receiver<bool>,
    known_http1: &mut bool,
) -> Outcome {
    let limits = state.snapshot.load().limits.clone();
    // One timer for the connection's life, moved only when it fires: the header and idle
    // deadlines it enforces are read from the connection's activity then.
    let watchdog = tokio::time::sleep_until(instant_at(ctx.activity.parked_deadline(&limits)));
    tokio::pin!(watchdog);
    let mut stop_signal = shutdown.clone();
    let stop = stop_signal.changed();
    tokio::pin!(stop);
    loop {
        if !*known_http1 && !conn.buf.is_empty() {
            const PREFACE_START: &[u8] = b"PRI ";
            if conn.buf.len() < PREFACE_START.len() && PREFACE_START.starts_with(&conn.buf) {
                // Too short to tell yet.
            } else if conn.buf.starts_with(PREFACE_START) {
                return Outcome::HandOver { http1: false };
            } else {
                *known_http1 = true;
            }
        }
        if *known_http1 {
            match parse_request(&mut conn.buf, &limits) {
                Parsed::NotSimple => return Outcome::HandOver { http1: true },
                Parsed::Request(request, facts) => {
                    // Boxed: the request's state (the pipeline, the origin exchange) is large,
                    // and an idle connection's task must not keep room for it.
                    let exchange = Box::pin(async {
                        let response = pipeline::handle(state, ctx, request).await;
                        write_response(&mut conn.io, response, &facts).await
                    });
                    match exchange.await {
                        Ok(true) if !*shutdown.borrow() => continue,
                        Ok(_) => {
                            let _ = conn.io.shutdown().await;
                            return Outcome::Closed;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %ctx.client.peer, error = %e, "writing a response failed");
                            return Outcome::Closed;
                        }
                    }
                }
                Parsed::Partial => {}
            }
        }
        // Wait for bytes. An idle connection keeps no buffer.
        if conn.buf.is_empty() {
            conn.buf = BytesMut::new();
        }
        // The idle or header deadline may be nearer than the one the timer was set for.
        let deadline = instant_at(ctx.activity.parked_deadline(&limits));
        if deadline < watchdog.deadline() {
            watchdog.as_mut().reset(deadline);
        }
        loop {
            tokio::select! {
                biased;
                ready = conn.io.readable() => match ready {
                    Ok(()) => break,
                    Err(_) => return Outcome::Closed,
                },
                () = &mut watchdog => {
                    let deadline = ctx.activity.parked_deadline(&limits);
                    if crate::clock::now_ms() >= deadline {
                        tracing::debug!(peer = %ctx.client.peer, "connection timed out waiting for a request");
                        return Outcome::Closed;
                    }
                    watchdog.as_mut().reset(instant_at(deadline));
                }
                _ = &mut stop => return Outcome::Closed,
            }
        }
        let was_empty = conn.buf.is_empty();
        conn.buf.reserve(READ_BYTES);
        match conn.io.try_read_buf(&mut conn.buf) {
            Ok(0) => return Outcome::Closed,
            Ok(_) if was_empty => ctx.activity.bytes_arrived(),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Outcome::Closed,
        }
    }
}

/// Parses one request head from the front of `buf` if it is complete, bodiless and within the
/// limits. The bytes stay in `buf` unless a request is returned.
fn parse_request(buf: &mut BytesMut, limits: &ServerLimits) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let max_fields = limits.max_headers.min(MAX_FIELDS);
    let mut parsed = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots[..max_fields],
    ) {
        Ok(httparse::Status::Complete(length)) if length <= limits.max_header_bytes => length,
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_header_bytes => {
            return Parsed::Partial;
        }
        _ => return Parsed::NotSimple,
    };
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Parsed::NotSimple;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::NotSimple;
    };
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut facts = RequestFacts {
        version,
        head: method == Method::HEAD,
        keep_alive: version == Version::HTTP_11,
        trailers: false,
    };
    let base = buf.as_ptr() as usize;
    let target_span = (target.as_ptr() as usize - base, target.len());
    let mut fields: Vec<(HeaderName, usize, usize)> = Vec::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Parsed::NotSimple;
        };
        // A body, an interim response or a protocol switch: hyper's business.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
            || name == header::UPGRADE
        {
            return Parsed::NotSimple;
        }
        if name == header::CONNECTION {
            for token in field.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    facts.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    facts.keep_alive = true;
                }
            }
        } else if name == header::TE {
            facts.trailers |= field
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
        }
        fields.push((
            name,
            field.value.as_ptr() as usize - base,
            field.value.len(),
        ));
    }
    let head: Bytes = buf.split_to(length).freeze();
    match build_request(&head, method, version, target_span, fields) {
        Some(request) => Parsed::Request(request, facts),
        None => {
            // Refused after all (httparse and `http` disagree on a byte): give the bytes back.
            let mut restored = BytesMut::with_capacity(head.len() + buf.len());
            restored.extend_from_slice(&head);
            restored.extend_from_slice(buf);
            *buf = restored;
            Parsed::NotSimple
        }
    }
}

fn build_request(
    head: &Bytes,
    method: Method,
    version: Version,
    (target_start, target_len): (usize, usize),
    fields: Vec<(HeaderName, usize, usize)>,
) -> Option<Request<RequestBody>> {
    let uri = Uri::from_maybe_shared(head.slice(target_start..target_start + target_len)).ok()?;
    // Room for the fields the forward phase adds (X-Forwarded-*, Forwarded, Via): growing a
    // header map rehashes it.
    let mut headers = HeaderMap::with_capacity(fields.len() + FORWARD_PHASE_FIELDS);
    for (name, start, len) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + len)).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(RequestBody::None);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Some(request)
}

/// Writes a response; true when the connection may carry another request.
async fn write_response(
    io: &mut TcpStream,
    mut response: Response<EdgeBody>,
    request: &RequestFacts,
) -> io::Result<bool> {
    let status = response.status();
    let version = request.version;
    let bodiless = request.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let length = response.body().size_hint().exact();
    let headers = response.headers_mut();
    let mut keep_alive = request.keep_alive
        && !crate::phases::forward::has_token(headers, &header::CONNECTION, "close");
    let mut chunked = false;
    if !bodiless {
        match length {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None if version == Version::HTTP_11 => {
                headers.insert(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_static("chunked"),
                );
                chunked = true;
            }
            // An HTTP/1.0 client learns where the body ends from the close.
            None => keep_alive = false,
        }
    }
    if !keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if version == Version::HTTP_10 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date_value());
    }
    let mut head = encode_response_head(version, status, headers);
    let mut body = response.into_body();
    if bodiless {
        io.write_all(&head).await?;
        return Ok(keep_alive);
    }

    let mut sent = 0u64;
    let mut ended = false;
    loop {
        // The head waits for the first body bytes (one write for both) unless the body has
        // nothing ready: then the head goes out alone.
        let frame = if head.is_empty() {
            body.frame().await
        } else {
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    io.write_all(&head).await?;
                    head.clear();
                    body.frame().await
                }
            }
        };
        let frame = match frame {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(io::Error::other(e)),
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => {
                sent += data.len() as u64;
                if chunked {
                    let size_line = format!("{:x}\r\n", data.len());
                    write_all(io, &[&head, size_line.as_bytes(), &data, b"\r\n"]).await?;
                } else {
                    write_all(io, &[&head, &data]).await?;
                }
                head.clear();
            }
            Err(frame) => {
                if let (Ok(trailers), true, true) =
                    (frame.into_trailers(), chunked, request.trailers)
                {
                    let mut section = b"0\r\n".to_vec();
                    for (name, value) in &trailers {
                        section.extend_from_slice(name.as_str().as_bytes());
                        section.extend_from_slice(b": ");
                        section.extend_from_slice(value.as_bytes());
                        section.extend_from_slice(b"\r\n");
                    }
                    section.extend_from_slice(b"\r\n");
                    write_all(io, &[&head, &section]).await?;
                    head.clear();
                    ended = true;
                }
            }
        }
    }
    if chunked && !ended {
        write_all(io, &[&head, b"0\r\n\r\n"]).await?;
    } else if !head.is_empty() {
        io.write_all(&head).await?;
    }
    if length.is_some_and(|n| n != sent) {
        // The body did not match the length announced; the client cannot tell where the next
        // response starts.
        return Ok(false);
    }
    Ok(keep_alive)
}

fn encode_response_head(version: Version, status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let mut head = Vec::with_capacity(fields + 64);
    head.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes every byte of `parts`, in as few system calls as the socket allows.
async fn write_all(io: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// The `Date` field (RFC 9110 §6.6.1), formatted once a second per thread.
fn date_value() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            *cached = (
                second,
                HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("")),
            );
        }
        cached.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits::default()
    }

    fn parse(text: &str) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        let parsed = parse_request(&mut buf, &limits());
        (parsed, buf)
    }

    #[test]
    fn bodiless_request_is_parsed_and_taken_from_the_buffer() {
        let (parsed, rest) =
            parse("GET /a?b=1 HTTP/1.1\r\nHost: blog.example\r\nTE: trailers\r\n\r\nGET /next");
        let Parsed::Request(request, facts) = parsed else {
            panic!("not parsed")
        };
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/a?b=1");
        assert_eq!(request.headers()["host"], "blog.example");
        assert!(facts.keep_alive && facts.trailers && !facts.head);
        assert_eq!(
            &rest[..],
            b"GET /next",
            "a pipelined request stays for later"
        );
    }

    #[test]
    fn requests_with_a_body_or_an_upgrade_go_to_hyper_untouched() {
        for text in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nBad Name: b\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
        ] {
            let (parsed, rest) = parse(text);
            assert!(matches!(parsed, Parsed::NotSimple), "{text:?}");
            assert_eq!(&rest[..], text.as_bytes(), "bytes kept for hyper: {text:?}");
        }
    }

    #[test]
    fn heads_over_the_limits_go_to_hyper_which_answers_431() {
        let mut long = String::from("GET / HTTP/1.1\r\nHost: a\r\nX: ");
        long.push_str(&"a".repeat(limits().max_header_bytes));
        assert!(matches!(parse(&long).0, Parsed::NotSimple));
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..limits().max_headers {
            many.push_str(&format!("x-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert!(matches!(parse(&many).0, Parsed::NotSimple));
    }

    #[test]
    fn partial_head_waits_for_more() {
        let (parsed, rest) = parse("GET / HTTP/1.1\r\nHost: a\r\n");
        assert!(matches!(parsed, Parsed::Partial));
        assert_eq!(rest.len(), 25);
    }

    #[test]
    fn rfc9112_9_3_http10_keeps_alive_only_when_asked_and_http11_until_close() {
        let keep = |text: &str| match parse(text).0 {
            Parsed::Request(_, facts) => facts.keep_alive,
            _ => panic!("not parsed: {text:?}"),
        };
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(keep("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!keep(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn response_head_has_status_line_and_fields() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("2"));
        let head = encode_response_head(Version::HTTP_11, StatusCode::NOT_FOUND, &headers);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n"
        );
    }
}

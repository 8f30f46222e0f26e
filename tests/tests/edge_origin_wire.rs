//! How the proxy reads origins' HTTP/1.1 off the wire: interim responses, framing it must
//! refuse or follow (conflicting lengths, oversized heads, close-delimited and broken chunked
//! bodies), when an origin connection may be used again, and bodies flowing both ways at once.
//!
//! The origins here are [`ScriptedOrigin`]s writing exact bytes, except for the full-duplex
//! tests, which use the harness [`Origin`]'s `/mirror`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Version;
use hyper::body::Frame;
use hyper::header::{CONTENT_LENGTH, HeaderValue};
use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::raw::RawConn;
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Origin, Palisade, ScriptedOrigin, SiteConfig};

/// How long a raw exchange may take before the test calls it hung.
const WAIT: Duration = Duration::from_secs(3);

fn proxy_for(origin: &ScriptedOrigin) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).to_toml())
}

/// A response with `Content-Length: 2` and body `ok`, and the fields in `extra` (each ending
/// in CRLF), on HTTP/1.1.
fn ok_with(extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: 2\r\n\r\nok").into_bytes()
}

#[tokio::test]
async fn early_hints_before_the_final_response_leave_the_client_a_200() {
    let origin = ScriptedOrigin::start(|_| {
        let mut bytes =
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"
                .to_vec();
        bytes.extend_from_slice(&ok_with(""));
        Reply::keep_open(bytes)
    });
    let proxy = proxy_for(&origin);

    let reply = client::get(proxy.http_addr(), "blog.example", "/page").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.text(), "ok");
}

#[tokio::test]
async fn origin_response_with_two_different_content_lengths_gets_502() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"[..],
        )
    });
    let proxy = proxy_for(&origin);

    let reply = client::get(proxy.http_addr(), "blog.example", "/").await;

    assert_eq!(reply.status, 502, "body: {}", reply.text());
    assert!(!reply.text().contains("ok"), "body: {}", reply.text());
}

#[tokio::test]
async fn origin_response_head_over_64_kib_gets_502_that_hides_the_origin() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open(ok_with(&format!("X-Big: {}\r\n", "a".repeat(70 * 1024))))
    });
    let proxy = proxy_for(&origin);

    let reply = client::get(proxy.http_addr(), "blog.example", "/").await;

    assert_eq!(reply.status, 502, "body: {}", reply.text());
    assert!(reply.header("x-big").is_none());
    let body = reply.text();
    assert!(
        !body.contains("127.0.0.1") && !body.contains(&origin.addr().port().to_string()),
        "502 body reveals the origin: {body:?}"
    );
}

#[tokio::test]
async fn close_delimited_body_reaches_client_whole_and_the_next_request_uses_a_new_connection() {
    const LEN: usize = 100 * 1024;
    let body: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let wire = [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &body].concat();
    let origin = ScriptedOrigin::start(move |n| match n {
        0 => Reply::close(wire.clone()),
        _ => Reply::ok(),
    });
    let proxy = proxy_for(&origin);

    let first = client::get(proxy.http_addr(), "blog.example", "/big").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), LEN, "close-delimited body length");
    assert!(first.body == body, "close-delimited body content differs");

    let second = client::get(proxy.http_addr(), "blog.example", "/next").await;
    assert_eq!(second.status, 200, "body: {}", second.text());
    assert_eq!(second.text(), "ok");
    assert_eq!(origin.connections(), 2);
}

#[tokio::test]
async fn malformed_chunked_body_cuts_the_client_response_short_and_is_not_reused() {
    let origin = ScriptedOrigin::start(|n| match n {
        // Chunk data not followed by CRLF; the origin keeps the connection open after it.
        0 => Reply::keep_open(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXXXXXXXXXX\r\n"[..],
        ),
        _ => Reply::ok(),
    });
    let proxy = proxy_for(&origin);

    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(b"GET /broken HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .expect("send");
    let response = conn.read_response(WAIT).await;
    let closed = response.connection_closed || conn.closed_within(WAIT).await;

    // A complete response would be a 200 whose chunked body ended (dechunked into `body`);
    // a cut one leaves the raw, unterminated chunks in `body`, or no head at all.
    let complete = response.status() == Some(200) && response.body == b"hello";
    assert!(
        !complete,
        "the client got a well-terminated response: {response:?}"
    );
    assert!(
        closed,
        "the client connection stayed open after a broken body: {response:?}"
    );
    assert!(
        !response.body.ends_with(b"0\r\n\r\n"),
        "the cut body was terminated: {response:?}"
    );

    let next = client::get(proxy.http_addr(), "blog.example", "/next").await;
    assert_eq!(next.status, 200, "body: {}", next.text());
    assert_eq!(next.text(), "ok");
    assert_eq!(
        origin.connections(),
        2,
        "the connection with the broken body was used again"
    );
    assert_eq!(origin.requests(), 2, "the origin saw {:?}", origin.heads());
}

#[tokio::test]
async fn http10_origin_response_reaches_client_as_http11_and_its_connection_is_not_reused() {
    let origin = ScriptedOrigin::start(|_| {
        // No keep-alive: the connection ends with this response, though the socket stays open.
        Reply::keep_open(&b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..])
    });
    let proxy = proxy_for(&origin);
    let mut sender = client::h1_handshake(client::tcp(proxy.http_addr()).await.expect("connect"))
        .await
        .expect("handshake");

    for i in 0..2 {
        let reply = client::send_h1(
            &mut sender,
            h1_request("GET", "blog.example", "/old", client::empty()),
        )
        .await
        .unwrap_or_else(|e| panic!("request {i} on one client connection: {e}"));
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(reply.version, Version::HTTP_11, "request {i}");
        assert_eq!(reply.text(), "ok", "request {i}");
    }
    assert_eq!(
        origin.connections(),
        2,
        "an HTTP/1.0 connection without keep-alive was used again"
    );
}

#[tokio::test]
async fn pooled_connection_the_origin_closed_while_idle_is_not_used() {
    let origin =
        ScriptedOrigin::start(|_| Reply::close_after(ok_with(""), Duration::from_millis(100)));
    let proxy = proxy_for(&origin);

    let first = client::get(proxy.http_addr(), "blog.example", "/a").await;
    assert_eq!(first.status, 200, "body: {}", first.text());
    // Well past the origin's close, well short of the idle time after which the proxy resends
    // a GET that met a closed connection: only the check at checkout can save this one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = client::get(proxy.http_addr(), "blog.example", "/b").await;

    assert_eq!(second.status, 200, "body: {}", second.text());
    assert_eq!(second.text(), "ok");
    assert_eq!(origin.connections(), 2);
    assert_eq!(origin.requests(), 2, "the origin saw a request twice");
}

#[tokio::test]
async fn origin_413_sent_before_reading_the_body_reaches_the_client() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::lingering_close(
            &b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 9\r\n\r\ntoo large"
                [..],
        )
    });
    let proxy = proxy_for(&origin);
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'b'; 64 * 1024]);

    // The proxy may stop reading once it has its answer; that is not the test's failure.
    let _ = conn.send(&request).await;
    let response = conn.read_response(WAIT).await;

    assert_eq!(response.status(), Some(413), "{response:?}");
    assert_eq!(response.body_text(), "too large", "{response:?}");
}

/// `len` bytes that repeat every 251 bytes (a prime, so no chunk boundary lines up with the
/// pattern): a lost, repeated or reordered piece shows.
fn patterned(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Sends `data` to `/mirror` through the proxy on one HTTP/1.1 connection, in 64 KiB frames,
/// with `Content-Length` or chunked, and checks that exactly `data` came back.
async fn mirror_through_proxy(data: Bytes, chunked: bool) {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let frames: Vec<Result<Frame<Bytes>, client::BoxError>> = (0..data.len())
        .step_by(64 * 1024)
        .map(|at| {
            Ok(Frame::data(
                data.slice(at..(at + 64 * 1024).min(data.len())),
            ))
        })
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let mut request = h1_request("POST", "blog.example", "/mirror", body);
    if !chunked {
        request
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
    }

    let reply = client::try_send(proxy.http_addr(), request)
        .await
        .expect("full-duplex exchange through the proxy");

    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), data.len(), "mirrored body length");
    let first_difference = reply.body.iter().zip(data.iter()).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the mirrored body differs from the one sent"
    );
    assert_eq!(origin.body_bytes(), data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_mib_body_mirrored_by_the_origin_while_uploading_comes_back_whole() {
    mirror_through_proxy(patterned(8 << 20), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_mirrored_by_the_origin_while_uploading_comes_back_whole() {
    mirror_through_proxy(patterned(1 << 20), true).await;
}

#[tokio::test]
async fn origin_that_stalls_mid_body_is_cut_off_after_response_timeout() {
    // Ten bytes promised, five sent, then silence on an open connection.
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"[..])
    });
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site("response_timeout = \"1s\"")
            .to_toml(),
    );
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(b"GET /stall HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .expect("send");
    let started = std::time::Instant::now();
    let response = conn.read_response(Duration::from_secs(5)).await;
    let closed = response.connection_closed || conn.closed_within(Duration::from_secs(5)).await;
    assert!(
        closed,
        "the client still waits on an origin silent for 5 s past response_timeout: {response:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off only after {:?}",
        started.elapsed()
    );
    assert_ne!(
        response.body, b"hello\0\0\0\0\0",
        "the missing bytes must not be made up"
    );
    assert!(
        response.body.len() < 10,
        "a cut body reached its declared length: {response:?}"
    );
}

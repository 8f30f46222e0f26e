//! Ambiguous or malformed HTTP/1.1 framing is rejected before routing: 400, connection closed,
//! origin untouched. If two parsers could read one message two ways, one of them can be fooled
//! into seeing a second request (request smuggling, RFC 9112 §6.3 and §11.2).

use palisade_blackbox::raw::{READ_TIMEOUT, RawConn, RawResponse, raw_request};
use palisade_blackbox::recording_origin::{answer_body, parse_exact};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Origin, Palisade, RecordingOrigin, ScriptedOrigin, SiteConfig};
use std::time::Duration;

/// Sends `request` raw to a fresh proxy and asserts it was refused the safe way.
async fn assert_rejected(request: &[u8]) {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let response = raw_request(proxy.http_addr(), request).await;

    assert_eq!(
        response.status(),
        Some(400),
        "request {:?} got {response:?}",
        String::from_utf8_lossy(request)
    );
    assert!(
        response.connection_closed,
        "connection left open after {:?}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(origin.requests(), 0, "origin saw the request");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /echo HTTP/1.1\r\nHost: blog.example\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn duplicate_equal_content_length_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
}

#[tokio::test]
async fn duplicate_different_content_length_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    )
    .await;
}

#[tokio::test]
async fn content_length_with_plus_sign_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nContent-Length: +5\r\n\r\nhello",
    )
    .await;
}

#[tokio::test]
async fn content_length_with_trailing_letter_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 5a\r\n\r\nhello",
    )
    .await;
}

#[tokio::test]
async fn negative_content_length_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nContent-Length: -1\r\n\r\nhello",
    )
    .await;
}

#[tokio::test]
async fn obs_fold_header_continuation_is_rejected() {
    assert_rejected(
        b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nX-Folded: first\r\n second\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn nul_byte_in_header_value_is_rejected() {
    assert_rejected(b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nX-Bad: a\x00b\r\n\r\n").await;
}

#[tokio::test]
async fn control_byte_in_header_value_is_rejected() {
    assert_rejected(b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nX-Bad: a\x01b\r\n\r\n").await;
}

#[tokio::test]
async fn space_before_header_colon_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nContent-Length : 5\r\n\r\nhello",
    )
    .await;
}

#[tokio::test]
async fn transfer_encoding_other_than_chunked_is_rejected() {
    assert_rejected(
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    )
    .await;
}

/// A head over `max_header_bytes` is refused however it arrives, here a few bytes first and
/// the rest in one write. The framing tracker stops following a head once it outgrows the limit
/// unfinished, so this pins what makes that safe: hyper reads at most the limit less what it
/// holds, finds the head incomplete at the limit and answers 431, and this head's
/// Content-Length beside Transfer-Encoding never reaches an origin.
#[tokio::test]
async fn an_oversized_head_completed_by_one_late_read_is_refused() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_header_bytes = 8192")
            .to_toml(),
    );
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: blog.example\r\nX-Pad: {}\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "p".repeat(12_000)
    );
    let mut conn = RawConn::connect(proxy.http_addr()).await.unwrap();
    conn.send(&head.as_bytes()[..40]).await.unwrap();
    // Long enough for the edge to read the first piece on its own.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Refused early, the edge may close before taking every byte: that is its answer.
    let _ = conn.send(&head.as_bytes()[40..]).await;

    let response = conn.read_response(READ_TIMEOUT).await;
    assert_eq!(response.status(), Some(431), "{}", response.status_line);
    assert!(
        response.connection_closed || conn.closed_within(READ_TIMEOUT).await,
        "connection left open"
    );
    assert_eq!(origin.requests(), 0, "origin saw the request");
}

/// The body of the smuggling attempts below: the start of a request whose last field swallows
/// whatever the origin reads next (the next client's request line and cookie).
const SMUGGLED: &[u8] = b"GET /admin HTTP/1.1\r\nX-Ignore: ";

/// `POST /a` whose Connection field names `connection` (a framing or routing field the edge
/// must never drop), with [`SMUGGLED`] as its body, then a second client's `GET /victim` on a
/// fresh connection, which the pool sends over the same origin connection.
/// Returns the status the attacker got, the victim's answer, and the origin's bytes.
async fn smuggle_through_connection(connection: &str) -> (Option<u16>, String, RecordingOrigin) {
    let origin = RecordingOrigin::start();
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let attack = format!(
        "POST /a HTTP/1.1\r\nHost: blog.example\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        SMUGGLED.len()
    );
    let mut attack = attack.into_bytes();
    attack.extend_from_slice(SMUGGLED);
    let attacker = one_response(proxy.http_addr(), &attack).await;

    let victim = one_response(
        proxy.http_addr(),
        b"GET /victim HTTP/1.1\r\nHost: blog.example\r\nCookie: session=victim\r\n\r\n",
    )
    .await;
    (attacker.status(), victim.body_text(), origin)
}

/// Sends `request` on a new connection and reads one response (not waiting to see whether the
/// connection closes).
async fn one_response(addr: std::net::SocketAddr, request: &[u8]) -> RawResponse {
    let mut conn = RawConn::connect(addr).await.expect("connect");
    let _ = conn.send(request).await;
    conn.read_response(READ_TIMEOUT).await
}

/// Connection naming Content-Length (any case, beside other options) is refused with 400:
/// before, the edge dropped the length but still sent the body, which the pooled origin
/// connection read as the next request, answering a second client's request with `/admin`.
#[tokio::test]
async fn connection_naming_content_length_is_refused_and_smuggles_nothing_onto_a_pooled_connection()
{
    for connection in [
        "Content-Length",
        "close, Content-Length",
        "keep-alive,content-length",
        "CONTENT-LENGTH",
    ] {
        let (attacker, victim, origin) = smuggle_through_connection(connection).await;
        assert_eq!(attacker, Some(400), "Connection: {connection}");
        assert_eq!(
            victim,
            answer_body("GET", "/victim"),
            "Connection: {connection}: the victim got another request's answer; origin saw:\n{}",
            origin.all_text()
        );
        for bytes in origin.connections() {
            let requests = parse_exact(&bytes).unwrap_or_else(|e| {
                panic!("Connection: {connection}: origin bytes do not parse: {e}")
            });
            assert!(
                requests.iter().all(|r| r.target == "/victim"),
                "Connection: {connection}: origin got {requests:?}"
            );
        }
    }
}

/// Connection naming Host would send the origin an HTTP/1.1 request without one.
#[tokio::test]
async fn connection_naming_host_is_refused() {
    let (attacker, victim, origin) = smuggle_through_connection("Host").await;
    assert_eq!(attacker, Some(400));
    assert_eq!(victim, answer_body("GET", "/victim"));
    for bytes in origin.connections() {
        for request in parse_exact(&bytes).expect("origin bytes parse") {
            assert_eq!(request.all("host"), ["blog.example"], "{request:?}");
        }
    }
}

/// The fields the edge sets itself cannot be removed through Connection: the option is
/// ignored, and the origin gets the edge's values as always.
#[tokio::test]
async fn connection_cannot_remove_the_forwarding_fields_the_edge_sets() {
    let origin = RecordingOrigin::start();
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let response = one_response(
        proxy.http_addr(),
        b"GET /f HTTP/1.1\r\nHost: blog.example\r\nConnection: X-Forwarded-For, Forwarded, Via, \
          X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP, Transfer-Encoding\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    let requests = parse_exact(&origin.connections().concat()).expect("origin bytes parse");
    let [request] = &requests[..] else {
        panic!("origin got {requests:?}");
    };
    assert_eq!(request.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(request.all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(request.all("x-forwarded-proto"), ["http"]);
    assert_eq!(request.all("x-forwarded-host"), ["blog.example"]);
    assert_eq!(request.all("via"), ["1.1 palisade"]);
    assert_eq!(request.all("forwarded").len(), 1);
}

/// The origin's Content-Length is written from the body the edge forwards, never copied from
/// the client's field (here `005`, which a lenient parser takes as 5).
#[tokio::test]
async fn content_length_to_the_origin_is_written_by_the_edge() {
    let origin = RecordingOrigin::start();
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let response = one_response(
        proxy.http_addr(),
        b"POST /len HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 005\r\n\r\nhello",
    )
    .await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    let requests = parse_exact(&origin.connections().concat()).expect("origin bytes parse");
    let [request] = &requests[..] else {
        panic!("origin got {requests:?}");
    };
    assert_eq!(request.all("content-length"), ["5"]);
    assert_eq!(request.body, b"hello");
}

/// A coding list other than exactly `chunked` was decoded as chunked and forwarded as plain
/// chunked, silently dropping the other coding. Refused, like any other coding.
#[tokio::test]
async fn transfer_coding_lists_other_than_exactly_chunked_are_rejected() {
    for codings in [
        "gzip, chunked",
        "identity, chunked",
        "chunked, chunked",
        "chunked\r\nTransfer-Encoding: chunked",
    ] {
        assert_rejected(
            format!(
                "POST /echo HTTP/1.1\r\nHost: blog.example\r\nTransfer-Encoding: {codings}\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    }
}

/// Framing, routing and forwarding fields sent as chunked trailers are dropped (RFC 9110
/// §6.5.1), in both directions; other trailers pass.
#[tokio::test]
async fn framing_fields_in_trailers_are_dropped_both_ways() {
    let origin = RecordingOrigin::start();
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let response = one_response(
        proxy.http_addr(),
        b"POST /t HTTP/1.1\r\nHost: blog.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nHost: evil.example\r\n\
          X-Forwarded-For: 6.6.6.6\r\nX-Checksum: 42\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    let requests = parse_exact(&origin.connections().concat()).expect("origin bytes parse");
    let [request] = &requests[..] else {
        panic!("origin got {requests:?}");
    };
    assert_eq!(request.body, b"hello");
    assert_eq!(
        request.trailers,
        [("x-checksum".to_string(), "42".to_string())],
        "{request:?}"
    );

    let scripted = ScriptedOrigin::start(|_| {
        Reply::keep_open(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\n\
               Trailer: X-Sum, Content-Length, Transfer-Encoding\r\n\r\n\
               2\r\nok\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nX-Sum: 42\r\n\r\n"[..],
        )
    });
    let proxy = Palisade::start(&SiteConfig::blog(scripted.url()).to_toml());
    let response = one_response(
        proxy.http_addr(),
        b"GET /t HTTP/1.1\r\nHost: blog.example\r\nTE: trailers\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body, b"ok");
    let names: Vec<String> = response
        .trailers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    assert_eq!(names, ["x-sum"], "{response:?}");
}

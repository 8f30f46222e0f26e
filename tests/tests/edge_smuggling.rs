//! Ambiguous or malformed HTTP/1.1 framing is rejected before routing: 400, connection closed,
//! origin untouched. If two parsers could read one message two ways, one of them can be fooled
//! into seeing a second request (request smuggling, RFC 9112 §6.3 and §11.2).

use palisade_blackbox::raw::{READ_TIMEOUT, RawConn, raw_request};
use palisade_blackbox::{Origin, Palisade, SiteConfig};
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

//! Ambiguous or malformed HTTP/1.1 framing is rejected before routing: 400, connection closed,
//! origin untouched. If two parsers could read one message two ways, one of them can be fooled
//! into seeing a second request (request smuggling, RFC 9112 §6.3 and §11.2).

use palisade_blackbox::raw::raw_request;
use palisade_blackbox::{Origin, Palisade, SiteConfig};

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

//! The cache through the real binary: what is stored and answered without the origin, what
//! always reaches it, and the `Cache-Status` a client sees (RFC 9111, RFC 9211).
//!
//! The origins are [`ScriptedOrigin`]s that count the requests they get and number their
//! answers, so a test can tell a stored copy from a fresh one.

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig};

/// An origin answering request `n` with body `v{n}` and the fields in `extra` (CRLF-ended).
fn numbered_origin(extra: &'static str) -> ScriptedOrigin {
    ScriptedOrigin::start(move |n| {
        let body = format!("v{n}");
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
}

fn proxy_for(origin: &ScriptedOrigin) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).to_toml())
}

#[tokio::test]
async fn s3_fresh_response_is_stored_and_answered_without_the_origin() {
    let origin = numbered_origin("Cache-Control: max-age=60\r\n");
    let proxy = proxy_for(&origin);

    let first = client::get(proxy.http_addr(), "blog.example", "/page").await;
    let second = client::get(proxy.http_addr(), "blog.example", "/page").await;

    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "v0");
    let status = first.header("cache-status").unwrap_or_default();
    assert!(
        status.contains("fwd=miss") && status.contains("stored"),
        "{status}"
    );
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), "v0");
    let status = second.header("cache-status").unwrap_or_default();
    assert!(status.starts_with("palisade; hit"), "{status}");
    assert!(
        second.header("age").is_some(),
        "§5.1: a stored response carries Age"
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn s5_2_2_5_no_store_response_always_reaches_the_origin() {
    let origin = numbered_origin("Cache-Control: max-age=60, no-store\r\n");
    let proxy = proxy_for(&origin);

    let first = client::get(proxy.http_addr(), "blog.example", "/").await;
    let second = client::get(proxy.http_addr(), "blog.example", "/").await;

    assert_eq!(
        (first.text().as_str(), second.text().as_str()),
        ("v0", "v1")
    );
    assert_eq!(origin.requests(), 2);
    let status = second.header("cache-status").unwrap_or_default();
    assert!(
        !status.contains("stored") && !status.contains("hit"),
        "{status}"
    );
}

#[tokio::test]
async fn s3_response_without_freshness_or_validator_is_not_stored() {
    let origin = numbered_origin("");
    let proxy = proxy_for(&origin);

    client::get(proxy.http_addr(), "blog.example", "/").await;
    let second = client::get(proxy.http_addr(), "blog.example", "/").await;

    assert_eq!(second.text(), "v1");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let origin = numbered_origin("Cache-Control: max-age=60\r\n");
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/doc").await;

    let head = client::try_send(
        proxy.http_addr(),
        h1_request("HEAD", "blog.example", "/doc", client::empty()),
    )
    .await
    .expect("HEAD through the proxy");

    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("2"));
    assert!(head.text().is_empty());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn s4_3_2_a_clients_if_none_match_is_answered_304_from_the_cache() {
    let origin = numbered_origin("Cache-Control: max-age=60\r\nETag: \"abc\"\r\n");
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/img").await;

    let mut request = h1_request("GET", "blog.example", "/img", client::empty());
    request
        .headers_mut()
        .insert("if-none-match", "\"abc\"".parse().unwrap());
    let reply = client::try_send(proxy.http_addr(), request)
        .await
        .expect("conditional GET");

    assert_eq!(reply.status, 304);
    assert_eq!(reply.header("etag"), Some("\"abc\""));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn s4_4_a_successful_post_invalidates_the_stored_url() {
    let origin = numbered_origin("Cache-Control: max-age=60\r\n");
    let proxy = proxy_for(&origin);
    let before = client::get(proxy.http_addr(), "blog.example", "/cart").await;

    let post = client::try_send(
        proxy.http_addr(),
        h1_request("POST", "blog.example", "/cart", client::empty()),
    )
    .await
    .expect("POST through the proxy");
    let after = client::get(proxy.http_addr(), "blog.example", "/cart").await;

    assert_eq!(before.text(), "v0");
    assert_eq!(post.status, 200);
    assert_eq!(
        after.text(),
        "v2",
        "the stored v0 was invalidated by the POST"
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn set_cookie_responses_are_not_handed_to_other_clients() {
    let origin = numbered_origin("Cache-Control: max-age=60\r\nSet-Cookie: session=secret\r\n");
    let proxy = proxy_for(&origin);

    client::get(proxy.http_addr(), "blog.example", "/account").await;
    let second = client::get(proxy.http_addr(), "blog.example", "/account").await;

    assert_eq!(second.text(), "v1");
    assert_eq!(origin.requests(), 2);
}

//! The cache through the real binary: what is stored and answered without the origin, what
//! always reaches it, and the `Cache-Status` a client sees (RFC 9111, RFC 9211).
//!
//! The origins are [`ScriptedOrigin`]s that count the requests they get and number their
//! answers, so a test can tell a stored copy from a fresh one.

use std::time::Duration;

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig, metrics};

fn proxy_for(origin: &ScriptedOrigin) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).to_toml())
}

#[tokio::test]
async fn s3_fresh_response_is_stored_and_answered_without_the_origin() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let proxy = proxy_for(&origin);

    let first = client::get(proxy.http_addr(), "blog.example", "/page").await;
    let second = client::get(proxy.http_addr(), "blog.example", "/page").await;

    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "v0");
    let status = first.header("cache-status").unwrap_or_default();
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
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
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60, no-store\r\n");
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
    let origin = ScriptedOrigin::numbered("");
    let proxy = proxy_for(&origin);

    client::get(proxy.http_addr(), "blog.example", "/").await;
    let second = client::get(proxy.http_addr(), "blog.example", "/").await;

    assert_eq!(second.text(), "v1");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
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
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\nETag: \"abc\"\r\n");
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
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
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
    let origin =
        ScriptedOrigin::numbered("Cache-Control: max-age=60\r\nSet-Cookie: session=secret\r\n");
    let proxy = proxy_for(&origin);

    client::get(proxy.http_addr(), "blog.example", "/account").await;
    let second = client::get(proxy.http_addr(), "blog.example", "/account").await;

    assert_eq!(second.text(), "v1");
    assert_eq!(origin.requests(), 2);
}

/// Waits until `done` holds, checking every 20 ms, for at most 5 s.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if done() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    done()
}

/// Long enough for a response stored with `max-age=1` to be stale: ages are whole seconds.
const PAST_ONE_SECOND: std::time::Duration = std::time::Duration::from_millis(2100);

#[tokio::test]
async fn s4_3_stale_response_is_revalidated_and_a_304_refreshes_it() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => "HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\nETag: \"a\"\r\nX-Version: 1\r\nContent-Length: 2\r\n\r\nv0".to_string(),
            _ => "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\nETag: \"a\"\r\nX-Version: 2\r\n\r\n".to_string(),
        })
    });
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/r").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let revalidated = client::get(proxy.http_addr(), "blog.example", "/r").await;
    let after = client::get(proxy.http_addr(), "blog.example", "/r").await;

    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.text(), "v0", "the stored body, refreshed");
    assert_eq!(
        revalidated.header("x-version"),
        Some("2"),
        "§3.2: the 304's fields replace the stored ones"
    );
    let status = revalidated.header("cache-status").unwrap_or_default();
    assert!(
        status.contains("fwd=stale") && status.contains("fwd-status=304"),
        "{status}"
    );
    let heads = origin.heads();
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("if-none-match: \"a\""),
        "§4.3.1: the validator is sent: {}",
        heads[1]
    );
    assert_eq!(after.text(), "v0");
    assert!(
        after
            .header("cache-status")
            .unwrap_or_default()
            .contains("hit")
    );
    assert_eq!(origin.requests(), 2, "the refreshed copy is fresh for 60 s");
}

#[tokio::test]
async fn rfc5861_stale_while_revalidate_serves_stale_and_refreshes_exactly_once() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => "HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=60\r\nContent-Length: 2\r\n\r\nv0".to_string(),
            _ => format!("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nv{}", n.min(9)),
        })
        // The refresh takes a while, so every stale request below arrives while it runs.
        .delayed(if n == 0 { Duration::ZERO } else { Duration::from_millis(500) })
    });
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/swr").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let stale: Vec<_> = futures_util::future::join_all(
        (0..8).map(|_| client::get(proxy.http_addr(), "blog.example", "/swr")),
    )
    .await;
    assert!(
        eventually(|| origin.requests() >= 2).await,
        "a background refresh happened"
    );
    // The refresh lands once the origin's delayed answer is stored.
    let mut refreshed = None;
    for _ in 0..100 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/swr").await;
        if reply.text() != "v0" {
            refreshed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refreshed = refreshed.expect("the refreshed copy is served within 5 s");

    for reply in &stale {
        assert_eq!(reply.text(), "v0", "served stale at once");
        let status = reply.header("cache-status").unwrap_or_default();
        assert!(
            status.contains("hit") && status.contains("stale-while-revalidate"),
            "{status}"
        );
    }
    assert_eq!(refreshed.text(), "v1");
    assert_eq!(origin.requests(), 2, "exactly one background refresh");
}

#[tokio::test]
async fn rfc5861_stale_if_error_serves_the_stored_copy_when_the_origin_fails() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => {
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-if-error=60\r\nContent-Length: 2\r\n\r\nv0"
            }
            _ => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
        })
    });
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/sie").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let reply = client::get(proxy.http_addr(), "blog.example", "/sie").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "v0");
    let status = reply.header("cache-status").unwrap_or_default();
    assert!(
        status.contains("fwd-status=503") && status.contains("stale-if-error"),
        "{status}"
    );
}

#[tokio::test]
async fn stale_if_error_serves_the_cached_copy_when_the_origin_is_down() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=1, stale-if-error=60\r\n");
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/down").await;
    drop(origin);
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let reply = client::get(proxy.http_addr(), "blog.example", "/down").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.text(), "v0");
}

#[tokio::test]
async fn s4_2_4_must_revalidate_forbids_serving_stale_on_error() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => {
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=1, must-revalidate, stale-if-error=60\r\nContent-Length: 2\r\n\r\nv0"
            }
            _ => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
        })
    });
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/mr").await;
    tokio::time::sleep(PAST_ONE_SECOND).await;

    let reply = client::get(proxy.http_addr(), "blog.example", "/mr").await;

    assert_eq!(reply.status, 503);
    assert_eq!(reply.text(), "down");
}

/// GET `path` with `Range: range` on a fresh connection.
async fn get_range(proxy: &Palisade, path: &str, range: &'static str) -> client::Reply {
    let mut request = h1_request("GET", "blog.example", path, client::empty());
    request
        .headers_mut()
        .insert("range", range.parse().unwrap());
    client::try_send(proxy.http_addr(), request)
        .await
        .expect("ranged GET")
}

#[tokio::test]
async fn rfc9110_14_ranges_are_answered_from_the_stored_full_response() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open(
            &b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789"[..],
        )
    });
    let proxy = proxy_for(&origin);

    // A miss with a Range: the origin is asked for the whole response (no Range passed on).
    let first = get_range(&proxy, "/digits", "bytes=2-4").await;
    let single = get_range(&proxy, "/digits", "bytes=2-4").await;
    let suffix = get_range(&proxy, "/digits", "bytes=-3").await;
    let multi = get_range(&proxy, "/digits", "bytes=0-1,8-9").await;
    let beyond = get_range(&proxy, "/digits", "bytes=50-").await;

    assert!(
        first.status == 200 || first.status == 206,
        "{}",
        first.status
    );
    assert!(
        !origin.heads()[0].to_ascii_lowercase().contains("range:"),
        "{}",
        origin.heads()[0]
    );
    assert_eq!(single.status, 206);
    assert_eq!(single.text(), "234");
    assert_eq!(single.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(single.header("content-length"), Some("3"));
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.text(), "789");
    assert_eq!(multi.status, 206);
    let content_type = multi.header("content-type").unwrap_or_default().to_string();
    assert!(
        content_type.starts_with("multipart/byteranges; boundary="),
        "{content_type}"
    );
    let text = multi.text();
    assert!(
        text.contains("Content-Range: bytes 0-1/10\r\n\r\n01\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Range: bytes 8-9/10\r\n\r\n89\r\n"),
        "{text}"
    );
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */10"));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn metrics_count_cache_outcomes_and_show_the_tiers() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let proxy = proxy_for(&origin);
    client::get(proxy.http_addr(), "blog.example", "/m").await;
    client::get(proxy.http_addr(), "blog.example", "/m").await;
    client::get(proxy.http_addr(), "blog.example", "/m").await;

    let metrics = metrics::scrape(proxy.admin_addr()).await;

    assert!(
        metrics.contains("palisade_cache_requests_total{site=\"blog\",outcome=\"hit\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("palisade_cache_requests_total{site=\"blog\",outcome=\"miss\"} 1"),
        "{metrics}"
    );
    let entries = metrics
        .lines()
        .find_map(|l| l.strip_prefix("palisade_cache_memory_entries "))
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(entries, Some(1), "{metrics}");
}

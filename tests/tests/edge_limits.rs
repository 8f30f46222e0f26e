//! Resource limits from `[server]` and `[[site]]` hold against clients that push them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::raw::{RawConn, raw_request};
use palisade_blackbox::{Origin, Palisade, SiteConfig};

const KEEP_ALIVE_GET: &[u8] = b"GET /echo HTTP/1.1\r\nHost: blog.example\r\n\r\n";

/// A connection that has been served one request and stays open.
async fn served_connection(proxy: &Palisade) -> RawConn {
    served_connection_from(proxy, Ipv4Addr::LOCALHOST).await
}

/// [`served_connection`] from another loopback address, `127.0.0.N`.
async fn served_connection_from(proxy: &Palisade, source: Ipv4Addr) -> RawConn {
    let mut conn = RawConn::connect_from(IpAddr::V4(source), proxy.http_addr())
        .await
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    conn.send(KEEP_ALIVE_GET).await.expect("send");
    let response = conn.read_response(Duration::from_secs(5)).await;
    assert_eq!(response.status(), Some(200), "from {source}: {response:?}");
    conn
}

#[tokio::test]
async fn third_concurrent_connection_from_one_ip_is_refused_when_limit_is_two() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_connections_per_ip = 2")
            .to_toml(),
    );
    let first = served_connection(&proxy).await;
    let _second = served_connection(&proxy).await;

    let refused = match RawConn::connect(proxy.http_addr()).await {
        Err(_) => true,
        Ok(mut third) => {
            let _ = third.send(KEEP_ALIVE_GET).await;
            let response = third.read_response(Duration::from_secs(3)).await;
            let status = response.status().unwrap_or(0);
            assert!(
                !(200..300).contains(&status),
                "a third connection was served: {response:?}"
            );
            response.connection_closed || status >= 400
        }
    };
    assert!(
        refused,
        "the third connection was neither closed nor answered with an error"
    );

    // The limit counts open connections, not connections ever made.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = served_connection(&proxy).await;
}

#[tokio::test]
async fn connection_beyond_max_connections_is_closed_without_a_response() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_connections = 3")
            .to_toml(),
    );
    // Three source addresses, so the per-address cap (256) cannot be what refuses the fourth.
    let first = served_connection_from(&proxy, Ipv4Addr::new(127, 0, 0, 1)).await;
    let _second = served_connection_from(&proxy, Ipv4Addr::new(127, 0, 0, 2)).await;
    let _third = served_connection_from(&proxy, Ipv4Addr::new(127, 0, 0, 3)).await;

    let fourth_source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
    if let Ok(mut fourth) = RawConn::connect_from(fourth_source, proxy.http_addr()).await {
        // Closed at accept: the request may not even be taken.
        let _ = fourth.send(KEEP_ALIVE_GET).await;
        let response = fourth.read_response(Duration::from_secs(3)).await;
        assert!(
            response.status_line.is_empty(),
            "a fourth connection got a response: {response:?}"
        );
        assert!(
            response.connection_closed,
            "a fourth connection was left open and silent"
        );
    }
    assert_eq!(
        origin.requests(),
        3,
        "the fourth request reached the origin"
    );

    // The cap counts open connections: once one closes, a new one is served. The proxy
    // learns of the close asynchronously, so give it a bounded moment.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut conn = RawConn::connect_from(fourth_source, proxy.http_addr())
            .await
            .expect("connect after one closed");
        let _ = conn.send(KEEP_ALIVE_GET).await;
        let response = conn.read_response(Duration::from_secs(3)).await;
        if response.status() == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused 3 s after one of the three connections closed: {response:?}"
        );
    }
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"idle_timeout = "1s""#)
            .to_toml(),
    );
    let mut conn = served_connection(&proxy).await;
    let started = Instant::now();

    let closed = conn.closed_within(Duration::from_secs(3)).await;
    let waited = started.elapsed();

    assert!(
        closed,
        "an idle keep-alive connection was still open 3 s into a 1 s idle timeout"
    );
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {waited:?}, before the 1 s idle timeout could have run"
    );
}

#[tokio::test]
async fn keep_alive_connection_in_steady_use_outlives_idle_timeout() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"idle_timeout = "1s""#)
            .to_toml(),
    );
    let mut conn = served_connection(&proxy).await;
    let started = Instant::now();

    let mut served = 1;
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at = started.elapsed();
        conn.send(KEEP_ALIVE_GET)
            .await
            .unwrap_or_else(|e| panic!("send at {at:?} on the kept-alive connection: {e}"));
        let response = conn.read_response(Duration::from_secs(5)).await;
        assert_eq!(
            response.status(),
            Some(200),
            "request {served} at {at:?} on the same connection: {response:?}"
        );
        assert!(
            !response.connection_closed,
            "closed after request {served} at {at:?}"
        );
        served += 1;
    }

    assert!(
        served >= 8,
        "only {served} requests in 3 s at one per 300 ms"
    );
    assert_eq!(origin.requests(), served);
}

#[tokio::test]
async fn client_stalling_mid_headers_is_disconnected_after_header_read_timeout() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"header_read_timeout = "1s""#)
            .to_toml(),
    );
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(b"GET /echo HTTP/1.1\r\nHost: blog.ex")
        .await
        .expect("send half a head");
    let started = Instant::now();

    let closed = conn.closed_within(Duration::from_secs(3)).await;
    let waited = started.elapsed();

    assert!(
        closed,
        "a client stalled mid-headers was still connected after 3 s"
    );
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}, before the 1 s header timeout could have run"
    );
    assert_eq!(origin.requests(), 0);
}

/// POSTs a `len`-byte body with Content-Length to a site whose `max_body_bytes` is 1024.
async fn post_to_1_kib_limit(len: usize) -> (Origin, palisade_blackbox::raw::RawResponse) {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site("max_body_bytes = 1024")
            .to_toml(),
    );
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: blog.example\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'b', len));
    let response = raw_request(proxy.http_addr(), &request).await;
    (origin, response)
}

#[tokio::test]
async fn body_over_max_body_bytes_by_content_length_gets_413() {
    let (origin, response) = post_to_1_kib_limit(4096).await;
    assert_eq!(response.status(), Some(413), "{response:?}");
    assert_eq!(origin.requests(), 0, "the origin saw an over-limit body");
}

#[tokio::test]
async fn body_within_max_body_bytes_is_proxied() {
    let (_origin, response) = post_to_1_kib_limit(1024).await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), r#"{"bytes":1024}"#);
}

#[tokio::test]
async fn chunked_body_growing_past_max_body_bytes_gets_413_and_origin_never_gets_it_whole() {
    const LIMIT: u64 = 1 << 20;
    const SENT: u64 = 4 << 20;
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site(&format!("max_body_bytes = {LIMIT}"))
            .to_toml(),
    );
    let request = h1_request(
        "POST",
        "blog.example",
        "/upload",
        client::generated_chunked(SENT),
    );

    // /upload answers only after the whole body, so the only response before the body ends
    // can be the proxy's.
    let reply = client::try_send(proxy.http_addr(), request)
        .await
        .unwrap_or_else(|e| panic!("no response to a 4 MiB chunked body over a 1 MiB limit: {e}"));

    assert_eq!(reply.status, 413, "body: {}", reply.text());
    // Let whatever the proxy forwarded land before counting it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = origin.body_bytes();
    assert!(
        received < SENT,
        "the origin received the whole {SENT}-byte body"
    );
    assert!(
        received <= LIMIT,
        "the origin received {received} body bytes, over max_body_bytes = {LIMIT}"
    );
}

#[tokio::test]
async fn more_headers_than_max_headers_gets_431() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_headers = 10")
            .to_toml(),
    );
    let mut request = b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nConnection: close\r\n".to_vec();
    for i in 0..20 {
        request.extend_from_slice(format!("X-Extra-{i}: {i}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");

    let response = raw_request(proxy.http_addr(), &request).await;

    let status = response.status().unwrap_or(0);
    assert!(status == 431 || status == 400, "{response:?}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn header_section_over_max_header_bytes_gets_431() {
    let origin = Origin::start("a");
    // 8 KiB is the smallest limit palisade accepts (browsers send several KiB of headers).
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_header_bytes = 8192")
            .to_toml(),
    );
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: blog.example\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "v".repeat(16 * 1024)
    );

    let response = raw_request(proxy.http_addr(), request.as_bytes()).await;

    let status = response.status().unwrap_or(0);
    assert!(status == 431 || status == 400, "{response:?}");
    assert_eq!(origin.requests(), 0);
}

/// An idle HTTP/1.1 connection is parked after about a second (hyper's buffers freed, socket
/// kept). Parking must be invisible to the client: the same connection keeps serving plain,
/// body-carrying and pipelined requests afterwards.
#[tokio::test]
async fn parked_keep_alive_connection_keeps_serving_gets_posts_and_pipelines() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = served_connection(&proxy).await;

    for round in 0..2 {
        // Long enough for the connection to be parked.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        conn.send(b"POST /upload HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap_or_else(|e| panic!("round {round}: send after parking: {e}"));
        let response = conn.read_response(Duration::from_secs(5)).await;
        assert_eq!(response.status(), Some(200), "round {round}: {response:?}");
        assert!(
            response.body_text().contains("\"bytes\":5"),
            "round {round}: origin did not get the body: {}",
            response.body_text()
        );
        assert!(
            !response.connection_closed,
            "round {round}: closed after parking"
        );
    }
    let metrics = palisade_blackbox::client::get(proxy.admin_addr(), "admin", "/metrics").await;
    let parked = palisade_blackbox::metrics::sample(
        &metrics.text(),
        "palisade_connections_parked_total",
        &[],
    );
    assert!(
        parked.is_some_and(|n| n >= 2.0),
        "the connection was not parked while idle: {parked:?}"
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut pipelined = Vec::new();
    for _ in 0..3 {
        pipelined.extend_from_slice(KEEP_ALIVE_GET);
    }
    conn.send(&pipelined)
        .await
        .expect("send pipelined requests");
    for i in 0..3 {
        let response = conn.read_response(Duration::from_secs(5)).await;
        assert_eq!(
            response.status(),
            Some(200),
            "pipelined request {i}: {response:?}"
        );
    }
}

//! Resource limits from `[server]` and `[[site]]` hold against clients that push them.

use std::time::{Duration, Instant};

use palisade_blackbox::raw::{RawConn, raw_request};
use palisade_blackbox::{Origin, Palisade};

fn config(origin: &Origin, server_extra: &str, site_extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
{server_extra}

[[site]]
name = "blog"
hosts = ["blog.example"]
origins = ["{}"]
{site_extra}
"#,
        origin.url()
    )
}

const KEEP_ALIVE_GET: &[u8] = b"GET /echo HTTP/1.1\r\nHost: blog.example\r\n\r\n";

/// A connection that has been served one request and stays open.
async fn served_connection(proxy: &Palisade) -> RawConn {
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(KEEP_ALIVE_GET).await.expect("send");
    let response = conn.read_response(Duration::from_secs(5)).await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    conn
}

#[tokio::test]
async fn third_concurrent_connection_from_one_ip_is_refused_when_limit_is_two() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&config(&origin, "max_connections_per_ip = 2", ""));
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
async fn client_stalling_mid_headers_is_disconnected_after_header_read_timeout() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&config(&origin, r#"header_read_timeout = "1s""#, ""));
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

#[tokio::test]
async fn body_over_max_body_bytes_by_content_length_gets_413() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&config(&origin, "", "max_body_bytes = 1024"));
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n"
            .to_vec();
    request.extend_from_slice(&[b'b'; 4096]);

    let response = raw_request(proxy.http_addr(), &request).await;

    assert_eq!(response.status(), Some(413), "{response:?}");
    assert_eq!(origin.requests(), 0, "the origin saw an over-limit body");
}

#[tokio::test]
async fn body_within_max_body_bytes_is_proxied() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&config(&origin, "", "max_body_bytes = 1024"));
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n"
            .to_vec();
    request.extend_from_slice(&[b'b'; 1024]);

    let response = raw_request(proxy.http_addr(), &request).await;

    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), r#"{"bytes":1024}"#);
}

#[tokio::test]
async fn more_headers_than_max_headers_gets_431() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&config(&origin, "max_headers = 10", ""));
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
    let proxy = Palisade::start(&config(&origin, "max_header_bytes = 8192", ""));
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: blog.example\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "v".repeat(16 * 1024)
    );

    let response = raw_request(proxy.http_addr(), request.as_bytes()).await;

    let status = response.status().unwrap_or(0);
    assert!(status == 431 || status == 400, "{response:?}");
    assert_eq!(origin.requests(), 0);
}

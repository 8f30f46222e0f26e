//! What HTTP/1.x clients get from the edge's own handling of bodiless requests, and from the
//! hand-over to hyper for the rest on the same connection: HEAD, HTTP/1.0 with and without
//! keep-alive, pipelining, `Date`, and a connection switching between the two.

use std::time::Duration;

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::raw::RawConn;
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Origin, Palisade, ScriptedOrigin, SiteConfig};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn head_response_keeps_the_origin_length_sends_no_body_and_the_connection_goes_on() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut sender = client::h1_handshake(client::tcp(proxy.http_addr()).await.expect("connect"))
        .await
        .expect("handshake");
    let head = client::send_h1(
        &mut sender,
        h1_request("HEAD", "blog.example", "/bytes/1000", client::empty()),
    )
    .await
    .expect("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert!(head.body.is_empty());
    // Had body bytes followed the HEAD response, this would read them as its response.
    let next = client::send_h1(
        &mut sender,
        h1_request("GET", "blog.example", "/bytes/3", client::empty()),
    )
    .await
    .expect("GET after HEAD on the same connection");
    assert_eq!(next.status, 200);
    assert_eq!(next.body.len(), 3);
}

#[tokio::test]
async fn http10_client_without_keep_alive_gets_a_1_0_response_and_a_close() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(b"GET /bytes/10 HTTP/1.0\r\nHost: blog.example\r\n\r\n")
        .await
        .expect("send");
    let response = conn.read_response(WAIT).await;
    assert!(
        response.status_line.starts_with("HTTP/1.0 200"),
        "{response:?}"
    );
    assert_eq!(response.body.len(), 10);
    assert!(
        response.connection_closed || conn.closed_within(WAIT).await,
        "an HTTP/1.0 request without keep-alive must end the connection"
    );
}

#[tokio::test]
async fn http10_client_asking_keep_alive_keeps_its_connection() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    for round in 0..2 {
        conn.send(b"GET /bytes/4 HTTP/1.0\r\nHost: blog.example\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let response = conn.read_response(WAIT).await;
        assert_eq!(response.status(), Some(200), "round {round}: {response:?}");
        assert_eq!(
            response
                .header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive"),
            "round {round}: {response:?}"
        );
        assert_eq!(response.body.len(), 4);
        assert!(!response.connection_closed, "round {round}");
    }
}

#[tokio::test]
async fn chunked_origin_body_reaches_an_http10_client_ended_by_the_close() {
    let origin = ScriptedOrigin::start(|_| {
        Reply::keep_open(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..],
        )
    });
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(b"GET /c HTTP/1.0\r\nHost: blog.example\r\nConnection: keep-alive\r\n\r\n")
        .await
        .expect("send");
    let response = conn.read_response(WAIT).await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    assert!(
        response.header("transfer-encoding").is_none(),
        "chunked sent to an HTTP/1.0 client: {response:?}"
    );
    assert_eq!(response.body_text(), "hello world");
    assert!(
        response.connection_closed,
        "without a length, only the close can end the body: {response:?}"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(
        b"GET /bytes/1 HTTP/1.1\r\nHost: blog.example\r\n\r\n\
          GET /bytes/2 HTTP/1.1\r\nHost: blog.example\r\n\r\n\
          GET /bytes/3 HTTP/1.1\r\nHost: blog.example\r\n\r\n",
    )
    .await
    .expect("send");
    for expected in 1..=3 {
        let response = conn.read_response(WAIT).await;
        assert_eq!(
            response.status(),
            Some(200),
            "response {expected}: {response:?}"
        );
        assert_eq!(
            response.body.len(),
            expected,
            "response {expected} out of order"
        );
    }
}

#[tokio::test]
async fn responses_carry_a_date() {
    let origin = ScriptedOrigin::start(|_| Reply::ok());
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let reply = client::get(proxy.http_addr(), "blog.example", "/").await;
    let date = reply
        .header("date")
        .expect("a Date field (RFC 9110 §6.6.1)");
    assert!(date.ends_with(" GMT"), "{date}");
}

#[tokio::test]
async fn one_connection_moves_between_bodiless_and_body_requests() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut sender = client::h1_handshake(client::tcp(proxy.http_addr()).await.expect("connect"))
        .await
        .expect("handshake");
    for (i, (method, path, body)) in [
        ("GET", "/bytes/5", ""),
        ("POST", "/upload", "hello"),
        ("GET", "/bytes/6", ""),
        ("POST", "/upload", "again!"),
        ("GET", "/bytes/7", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let request = h1_request(method, "blog.example", path, client::full(body));
        let reply = client::send_h1(&mut sender, request)
            .await
            .unwrap_or_else(|e| panic!("request {i} ({method} {path}): {e}"));
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        if method == "POST" {
            assert!(
                reply.text().contains(&format!("\"bytes\":{}", body.len())),
                "request {i}: {}",
                reply.text()
            );
        } else {
            assert_eq!(reply.body.len(), path[7..].parse::<usize>().unwrap());
        }
    }
    assert_eq!(origin.requests(), 5);
}

//! Requests reach the origin over every client protocol Palisade speaks in cleartext:
//! HTTP/1.1, h2c with prior knowledge, and WebSocket upgrades; bodies, trailers and
//! `Expect: 100-continue` make it through, over origin connections that are kept alive.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palisade_blackbox::client::{self, h1_request, h2_request};
use palisade_blackbox::h2raw::{self, H2Conn};
use palisade_blackbox::raw::{READ_TIMEOUT, RawConn, raw_request};
use palisade_blackbox::recording_origin::{answer_body, parse_exact};
use palisade_blackbox::{Echo, Origin, Palisade, RecordingOrigin, SiteConfig};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn http1_request_reaches_origin_with_original_host() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let reply = client::get(proxy.http_addr(), "blog.example", "/echo?q=1").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.origin_id(), Some("a"));
    let echo = reply.echo();
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.path, "/echo?q=1");
    assert_eq!(echo.header("host"), Some("blog.example"));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn http1_request_body_reaches_origin_whole() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let request = client::h1_request(
        "POST",
        "blog.example",
        "/echo",
        client::full("x".repeat(10_000)),
    );
    let reply = client::try_send(proxy.http_addr(), request)
        .await
        .expect("POST through the proxy");

    let echo = reply.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.body_len, 10_000);
}

#[tokio::test]
async fn h2c_prior_knowledge_request_reaches_origin_as_http1_with_host_from_authority() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let tcp = client::tcp(proxy.http_addr()).await.expect("connect");
    let mut h2 = client::h2_handshake(tcp)
        .await
        .expect("h2c prior-knowledge handshake");
    let reply = client::send_h2(
        &mut h2,
        h2_request("GET", "http", "blog.example", "/echo?via=h2c"),
    )
    .await
    .expect("h2c request");

    assert_eq!(reply.version, hyper::Version::HTTP_2);
    assert_eq!(reply.status, 200, "body: {}", reply.text());
    let echo = reply.echo();
    assert_eq!(echo.version, "HTTP/1.1");
    assert_eq!(echo.path, "/echo?via=h2c");
    assert_eq!(echo.header("host"), Some("blog.example"));
}

#[tokio::test]
async fn h2c_connection_carries_concurrent_streams() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let tcp = client::tcp(proxy.http_addr()).await.expect("connect");
    let h2 = client::h2_handshake(tcp).await.expect("h2c handshake");
    let mut streams = Vec::new();
    for i in 0..8 {
        let mut sender = h2.clone();
        streams.push(tokio::spawn(async move {
            let path = format!("/slow/{}", 100 + i * 10);
            client::send_h2(
                &mut sender,
                h2_request("GET", "http", "blog.example", &path),
            )
            .await
        }));
    }
    for stream in streams {
        let reply = stream.await.expect("task").expect("h2c stream");
        assert_eq!(reply.status, 200);
    }
    assert_eq!(origin.requests(), 8);
}

#[tokio::test]
async fn websocket_text_and_binary_messages_round_trip_through_proxy() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let mut ws = client::websocket(proxy.http_addr(), "blog.example", "/ws")
        .await
        .expect("websocket upgrade through the proxy");
    ws.send(Message::text("hello through palisade"))
        .await
        .expect("send text");
    let echoed = ws.next().await.expect("an echo").expect("no error");
    assert_eq!(echoed, Message::text("hello through palisade"));

    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let echoed = ws.next().await.expect("an echo").expect("no error");
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
}

#[tokio::test]
async fn response_trailers_reach_http1_client_that_accepts_them() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let response = raw_request(
        proxy.http_addr(),
        b"GET /trailers HTTP/1.1\r\nHost: blog.example\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), "first part, second part");
    assert_eq!(
        response.trailers,
        vec![("x-checksum".to_owned(), "abc".to_owned())],
        "{response:?}"
    );
}

#[tokio::test]
async fn expect_100_continue_gets_interim_response_before_body_is_sent() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 5000\r\n\
          Expect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("send the head alone");

    // A client that waits for 100 Continue sends nothing more until it comes.
    let interim = conn.read_interim_or_response(Duration::from_secs(3)).await;
    assert_eq!(
        interim.status(),
        Some(100),
        "instead of 100 Continue: {interim:?}"
    );
    assert!(interim.status_line.starts_with("HTTP/1.1 "), "{interim:?}");
    conn.send(&[b'e'; 5000]).await.expect("send the body");
    let response = conn.read_response(Duration::from_secs(5)).await;

    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), r#"{"bytes":5000}"#);
}

#[tokio::test]
async fn chunked_request_trailers_reach_origin() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let response = raw_request(
        proxy.http_addr(),
        b"POST /echo HTTP/1.1\r\nHost: blog.example\r\nTransfer-Encoding: chunked\r\n\
          TE: trailers\r\nTrailer: x-sum\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n",
    )
    .await;

    assert_eq!(response.status(), Some(200), "{response:?}");
    let echo = Echo::parse(&response.body);
    assert_eq!(echo.body_len, 11);
    assert_eq!(echo.trailer("x-sum"), Some("42"), "origin saw {echo:?}");
}

#[tokio::test]
async fn sequential_requests_on_one_client_connection_reuse_origin_connections() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let mut sender = client::h1_handshake(client::tcp(proxy.http_addr()).await.expect("connect"))
        .await
        .expect("handshake");

    for i in 0..20 {
        let reply = client::send_h1(
            &mut sender,
            h1_request("GET", "blog.example", "/echo", client::empty()),
        )
        .await
        .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
    }

    assert_eq!(origin.requests(), 20);
    assert!(
        origin.connections() <= 2,
        "20 sequential requests took {} origin connections",
        origin.connections()
    );
}

#[tokio::test]
async fn sequential_requests_on_fresh_client_connections_reuse_origin_connections() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    for i in 0..20 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
    }

    assert_eq!(origin.requests(), 20);
    assert!(
        origin.connections() <= 2,
        "20 sequential requests from 20 client connections took {} origin connections",
        origin.connections()
    );
}

#[tokio::test]
async fn serve_with_origin_flag_proxies_any_host() {
    let origin = Origin::start("a");
    let proxy = Palisade::serve_origin(&origin.url());

    let reply = client::get(proxy.http_addr(), "anything.example", "/echo").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.echo().header("host"), Some("anything.example"));
}

/// `GET http://host?x=1` names the path `/` (RFC 9112 §3.2.1): the origin gets `/?x=1`,
/// never the request line `GET ?x=1`.
#[tokio::test]
async fn absolute_form_with_an_empty_path_reaches_the_origin_as_slash() {
    let origin = RecordingOrigin::start();
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let mut conn = RawConn::connect(proxy.http_addr()).await.unwrap();
    conn.send(b"GET http://blog.example?x=1 HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();
    let response = conn.read_response(READ_TIMEOUT).await;

    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), answer_body("GET", "/?x=1"));
}

/// The asterisk form is for a server-wide OPTIONS only (RFC 9112 §3.2.4, RFC 9113 §8.3.1):
/// any other method with `*` gets 400 on HTTP/1.1 and HTTP/2, and `OPTIONS *` is forwarded.
#[tokio::test]
async fn asterisk_target_is_refused_except_for_options() {
    let origin = RecordingOrigin::start();
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    for method in ["GET", "POST", "DELETE"] {
        let response = raw_request(
            proxy.http_addr(),
            format!("{method} * HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(response.status(), Some(400), "{method} *: {response:?}");
    }
    let mut conn = RawConn::connect(proxy.http_addr()).await.unwrap();
    conn.send(b"OPTIONS * HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();
    let response = conn.read_response(READ_TIMEOUT).await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), answer_body("OPTIONS", "*"));

    // HTTP/2: `:path *` with GET.
    let mut h2 = H2Conn::connect(proxy.http_addr()).await.unwrap();
    h2.send(&h2raw::headers(
        1,
        &h2raw::get_block("blog.example", "*"),
        true,
    ))
    .await
    .unwrap();
    let status = loop {
        let frame = h2
            .read_frame(READ_TIMEOUT)
            .await
            .expect("a response to :path *");
        if frame.kind == h2raw::HEADERS && frame.stream == 1 {
            break frame.payload.first().copied();
        }
    };
    // HPACK static table index 12 is `:status 400`.
    assert_eq!(status, Some(0x8c), ":path * with GET");

    let requests: Vec<String> = origin
        .connections()
        .iter()
        .flat_map(|c| parse_exact(c).expect("origin bytes parse"))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(requests, ["OPTIONS *"]);
}

//! The harness's own origin and clients, talked to directly (no proxy in between).
//!
//! The edge tests lean on these: when an edge test fails, these passing says the proxy, not the
//! origin or the client, did it.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::raw::{RawConn, raw_request};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Echo, Origin, ScriptedOrigin, TestCa, negotiated_alpn, peer_leaf};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn origin_echo_reports_method_path_headers_and_body_length() {
    let origin = Origin::start("a");
    let request = h1_request("PUT", "blog.example", "/echo?x=1", client::full("hello"));
    let reply = client::try_send(origin.addr(), request)
        .await
        .expect("echo");
    assert_eq!(reply.origin_id(), Some("a"));
    let echo = reply.echo();
    assert_eq!(echo.method, "PUT");
    assert_eq!(echo.path, "/echo?x=1");
    assert_eq!(echo.version, "HTTP/1.1");
    assert_eq!(echo.header("host"), Some("blog.example"));
    assert_eq!(echo.body_len, 5);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn origin_hop_route_sends_hop_by_hop_headers() {
    let origin = Origin::start("a");
    let response = raw_request(
        origin.addr(),
        b"GET /hop HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.header("x-secret"), Some("1"));
    assert_eq!(response.header("keep-alive"), Some("timeout=5"));
    assert_eq!(response.header("proxy-connection"), Some("keep-alive"));
    assert_eq!(response.header("x-normal"), Some("1"));
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.contains("x-secret")),
        "{response:?}"
    );
}

#[tokio::test]
async fn origin_trailers_route_sends_trailer_when_asked() {
    let origin = Origin::start("a");
    let response = raw_request(
        origin.addr(),
        b"GET /trailers HTTP/1.1\r\nHost: o\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), "first part, second part");
    assert_eq!(
        response.trailers,
        vec![("x-checksum".to_owned(), "abc".to_owned())]
    );
}

#[tokio::test]
async fn origin_streams_bytes_and_counts_uploads() {
    let origin = Origin::start("a");
    let response = client::try_get(origin.addr(), "o", "/bytes/200000")
        .await
        .expect("bytes");
    assert_eq!(response.body.len(), 200_000);
    let upload = h1_request("POST", "o", "/upload", client::generated(300_000));
    let reply = client::try_send(origin.addr(), upload)
        .await
        .expect("upload");
    assert_eq!(reply.text(), r#"{"bytes":300000}"#);
}

#[tokio::test]
async fn origin_counts_accepted_connections_and_request_body_bytes() {
    let origin = Origin::start("a");
    let mut sender = client::h1_handshake(client::tcp(origin.addr()).await.expect("connect"))
        .await
        .expect("handshake");
    for body in ["12345", "678"] {
        let reply = client::send_h1(
            &mut sender,
            h1_request("POST", "o", "/upload", client::full(body)),
        )
        .await
        .expect("upload on a kept-alive connection");
        assert_eq!(reply.status, 200);
    }
    assert_eq!(origin.connections(), 1, "two requests on one connection");
    let reply = client::try_send(
        origin.addr(),
        h1_request("POST", "o", "/echo", client::full("90")),
    )
    .await
    .expect("echo on a second connection");
    assert_eq!(reply.status, 200);
    assert_eq!(origin.connections(), 2);
    assert_eq!(origin.body_bytes(), 10, "body bytes of /upload and /echo");
}

#[tokio::test]
async fn origin_echo_reports_request_trailers() {
    let origin = Origin::start("a");
    let response = raw_request(
        origin.addr(),
        b"POST /echo HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\
          Connection: close\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    let echo = Echo::parse(&response.body);
    assert_eq!(echo.body_len, 5);
    assert_eq!(echo.trailer("x-sum"), Some("42"), "{echo:?}");
}

#[tokio::test]
async fn origin_answers_expect_100_continue_before_reading_the_body() {
    let origin = Origin::start("a");
    let mut conn = RawConn::connect(origin.addr()).await.expect("connect");
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: o\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\
          Connection: close\r\n\r\n",
    )
    .await
    .expect("send head");
    let interim = conn.read_interim_or_response(Duration::from_secs(3)).await;
    assert_eq!(interim.status(), Some(100), "{interim:?}");
    conn.send(b"abc").await.expect("send body");
    let response = conn.read_response(Duration::from_secs(3)).await;
    assert_eq!(response.body_text(), r#"{"bytes":3}"#, "{response:?}");
}

#[tokio::test]
async fn origin_status_slow_and_health_routes_answer_as_scripted() {
    let origin = Origin::start("a");
    let reply = client::get(origin.addr(), "o", "/status/418").await;
    assert_eq!(reply.status, 418);
    let started = Instant::now();
    let reply = client::get(origin.addr(), "o", "/slow/300").await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(client::get(origin.addr(), "o", "/health").await.status, 200);
    origin.set_healthy(false);
    assert_eq!(client::get(origin.addr(), "o", "/health").await.status, 503);
    assert_eq!(origin.health_checks(), 2);
    assert_eq!(origin.requests(), 2, "/health is not counted as a request");
}

#[tokio::test]
async fn origin_mirror_streams_the_request_body_back() {
    let origin = Origin::start("a");
    let request = h1_request("POST", "o", "/mirror", client::generated_chunked(300_000));
    let reply = client::try_send(origin.addr(), request)
        .await
        .expect("mirror");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 300_000);
    assert!(reply.body.iter().all(|&b| b == b'u'));
    assert_eq!(origin.body_bytes(), 300_000);
}

#[tokio::test]
async fn scripted_origin_numbers_requests_across_connections_and_follows_the_script() {
    let origin = ScriptedOrigin::start(|n| match n {
        0 => Reply::ok(),
        _ => Reply::close(format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{n}")),
    });
    let mut conn = RawConn::connect(origin.addr()).await.expect("connect");
    for (path, body) in [("/a", "ok"), ("/b", "1")] {
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: o\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let response = conn.read_response(Duration::from_secs(2)).await;
        assert_eq!(response.body_text(), body, "{response:?}");
    }
    assert!(conn.closed_within(Duration::from_secs(2)).await, "Close");
    let third = raw_request(origin.addr(), b"GET /c HTTP/1.1\r\nHost: o\r\n\r\n").await;
    assert_eq!(third.body_text(), "2");
    assert_eq!(origin.connections(), 2);
    assert_eq!(origin.requests(), 3);
    let heads = origin.heads();
    assert!(heads[1].starts_with("GET /b HTTP/1.1\r\n"), "{heads:?}");
}

#[tokio::test]
async fn scripted_origin_closes_after_a_delay_or_lingering_after_an_early_answer() {
    let origin = ScriptedOrigin::start(|n| match n {
        0 => Reply::close_after(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            Duration::from_millis(100),
        ),
        _ => Reply::lingering_close(
            &b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"[..],
        ),
    });
    let mut conn = RawConn::connect(origin.addr()).await.expect("connect");
    conn.send(b"GET / HTTP/1.1\r\nHost: o\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(
        conn.read_response(Duration::from_secs(2)).await.status(),
        Some(200)
    );
    let started = Instant::now();
    assert!(conn.closed_within(Duration::from_secs(2)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "closed too early"
    );

    // The body is declared but never read: the 413 must still arrive whole.
    let mut conn = RawConn::connect(origin.addr()).await.expect("connect");
    let mut request = b"POST / HTTP/1.1\r\nHost: o\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'x'; 256 * 1024]);
    let _ = conn.send(&request).await;
    let response = conn.read_response(Duration::from_secs(2)).await;
    assert_eq!(response.status(), Some(413), "{response:?}");
}

#[tokio::test]
async fn origin_websocket_echoes_messages() {
    let origin = Origin::start("a");
    let mut ws = client::websocket(origin.addr(), "o", "/ws")
        .await
        .expect("websocket handshake");
    ws.send(Message::text("ping")).await.expect("send");
    let echoed = ws.next().await.expect("a message").expect("no error");
    assert_eq!(echoed, Message::text("ping"));
}

#[tokio::test]
async fn origin_stop_refuses_connections_and_start_on_takes_the_port_back() {
    let mut origin = Origin::start("a");
    let addr = origin.addr();
    // A keep-alive connection that must die with the origin.
    let mut sender = client::h1_handshake(client::tcp(addr).await.expect("connect"))
        .await
        .expect("handshake");
    let reply = client::send_h1(
        &mut sender,
        h1_request("GET", "o", "/echo", client::empty()),
    )
    .await
    .expect("first request");
    assert_eq!(reply.status, 200);
    origin.stop().await;
    assert!(client::tcp(addr).await.is_err(), "port still accepts");
    let again = client::send_h1(
        &mut sender,
        h1_request("GET", "o", "/echo", client::empty()),
    )
    .await;
    assert!(again.is_err(), "keep-alive connection survived stop");
    let back = Origin::start_on("b", addr);
    assert_eq!(client::get(addr, "o", "/echo").await.origin_id(), Some("b"));
    drop(back);
}

#[tokio::test]
async fn test_ca_leaf_verifies_for_its_names_only() {
    let ca = TestCa::new();
    let leaf = ca.issue(&["blog.example"]);
    let pem = std::fs::read_to_string(&leaf.cert_path).expect("chain file");
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf + CA");
    // A minimal TLS server with the leaf, to prove the client side verifies against the CA.
    let certs: Vec<_> = rustls_pem_certs(&pem);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
        pkcs8_from_pem(&std::fs::read_to_string(&leaf.key_path).expect("key file")).into(),
    );
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                }
            });
        }
    });
    let good = ca
        .connect(addr, "blog.example", &["h2"])
        .await
        .expect("valid name");
    assert_eq!(peer_leaf(&good).as_ref(), Some(&leaf.der));
    assert_eq!(negotiated_alpn(&good).as_deref(), Some("h2"));
    assert!(ca.connect(addr, "shop.example", &["h2"]).await.is_err());
}

fn rustls_pem_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.expect("PEM certificate"))
        .collect()
}

fn pkcs8_from_pem(pem: &str) -> Vec<u8> {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject;
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .expect("PKCS#8 key")
        .secret_pkcs8_der()
        .to_vec()
}

//! One TLS port serves several sites: SNI picks the certificate, ALPN picks the protocol, and a
//! request may only name the site its handshake was for.

use hyper::client::conn::http1::SendRequest;
use palisade_blackbox::client::{self, ClientBody, h1_request, h2_request};
use palisade_blackbox::h2raw;
use palisade_blackbox::raw::READ_TIMEOUT;
use palisade_blackbox::{LeafCert, Origin, Palisade, TestCa, negotiated_alpn, peer_leaf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Two sites on one TLS listener, each with its own certificate and origin.
struct TwoSites {
    blog_origin: Origin,
    shop_origin: Origin,
    blog_cert: LeafCert,
    shop_cert: LeafCert,
    ca: TestCa,
    proxy: Palisade,
}

impl TwoSites {
    /// An HTTP/1.1 connection over TLS with SNI `blog.example`, verified against the test CA.
    async fn h1_over_tls_to_blog(&self) -> SendRequest<ClientBody> {
        let tls = self
            .ca
            .connect(self.proxy.https_addr(), "blog.example", &["http/1.1"])
            .await
            .expect("TLS handshake for blog.example");
        client::h1_handshake(tls).await.expect("HTTP/1.1 over TLS")
    }
}

fn two_sites() -> TwoSites {
    let ca = TestCa::new();
    let blog_cert = ca.issue(&["blog.example"]);
    let shop_cert = ca.issue(&["shop.example"]);
    let blog_origin = Origin::start("blog-origin");
    let shop_origin = Origin::start("shop-origin");
    let proxy = Palisade::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
listen_tls = ["127.0.0.1:0"]

[[site]]
name = "blog"
hosts = ["blog.example"]
origins = ["{}"]
tls = {}

[[site]]
name = "shop"
hosts = ["shop.example"]
origins = ["{}"]
tls = {}
"#,
        blog_origin.url(),
        blog_cert.toml(),
        shop_origin.url(),
        shop_cert.toml()
    ));
    TwoSites {
        blog_origin,
        shop_origin,
        blog_cert,
        shop_cert,
        ca,
        proxy,
    }
}

#[tokio::test]
async fn sni_selects_each_sites_certificate_and_request_reaches_its_origin() {
    let sites = two_sites();
    for (name, cert, origin) in [
        ("blog.example", &sites.blog_cert, &sites.blog_origin),
        ("shop.example", &sites.shop_cert, &sites.shop_origin),
    ] {
        // The handshake itself verifies the chain against the test CA and the name against SNI.
        let tls = sites
            .ca
            .connect(sites.proxy.https_addr(), name, &["http/1.1"])
            .await
            .unwrap_or_else(|e| panic!("TLS handshake for {name}: {e}"));
        assert_eq!(
            peer_leaf(&tls).as_ref(),
            Some(&cert.der),
            "SNI {name} got another site's certificate"
        );
        let mut sender = client::h1_handshake(tls).await.expect("HTTP/1.1 over TLS");
        let reply = client::send_h1(
            &mut sender,
            h1_request("GET", name, "/echo", client::empty()),
        )
        .await
        .expect("request over TLS");
        assert_eq!(reply.status, 200, "body: {}", reply.text());
        assert_eq!(reply.origin_id(), Some(origin.id()));
        assert_eq!(reply.echo().header("host"), Some(name));
    }
    assert_eq!(sites.blog_origin.requests(), 1);
    assert_eq!(sites.shop_origin.requests(), 1);
}

#[tokio::test]
async fn host_naming_another_site_than_sni_gets_421() {
    let sites = two_sites();
    let mut sender = sites.h1_over_tls_to_blog().await;

    let reply = client::send_h1(
        &mut sender,
        h1_request("GET", "shop.example", "/echo", client::empty()),
    )
    .await
    .expect("a response");

    assert_eq!(reply.status, 421, "body: {}", reply.text());
    assert_eq!(sites.shop_origin.requests(), 0);
    assert_eq!(sites.blog_origin.requests(), 0);
}

#[tokio::test]
async fn h2_negotiated_by_alpn_reaches_the_origin_of_the_sni_site() {
    let sites = two_sites();
    let tls = sites
        .ca
        .connect(
            sites.proxy.https_addr(),
            "shop.example",
            &["h2", "http/1.1"],
        )
        .await
        .expect("TLS handshake for shop.example");
    assert_eq!(negotiated_alpn(&tls).as_deref(), Some("h2"));
    let mut h2 = client::h2_handshake(tls).await.expect("h2 over TLS");

    let reply = client::send_h2(&mut h2, h2_request("GET", "https", "shop.example", "/echo"))
        .await
        .expect("h2 request");

    assert_eq!(reply.version, hyper::Version::HTTP_2);
    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.origin_id(), Some("shop-origin"));
    let echo = reply.echo();
    assert_eq!(echo.version, "HTTP/1.1");
    assert_eq!(echo.header("host"), Some("shop.example"));
}

#[tokio::test]
async fn tls_request_reaches_origin_with_forwarded_proto_https() {
    let sites = two_sites();
    let mut sender = sites.h1_over_tls_to_blog().await;

    let reply = client::send_h1(
        &mut sender,
        h1_request("GET", "blog.example", "/echo", client::empty()),
    )
    .await
    .expect("request over TLS");

    assert_eq!(reply.echo().header("x-forwarded-proto"), Some("https"));
}

/// Reads what the server sends until it closes or `READ_TIMEOUT` passes.
async fn read_until_close(tls: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = tls.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    got
}

/// ALPN decides the protocol (RFC 9113 §3.3): a client that negotiated `h2` and sends an
/// HTTP/1.1 head gets the server preface and GOAWAY(PROTOCOL_ERROR) (§3.4), never an
/// HTTP/1.1 answer, and nothing reaches the origin.
#[tokio::test]
async fn an_http1_head_after_alpn_h2_gets_goaway_protocol_error() {
    let sites = two_sites();
    let mut tls = sites
        .ca
        .connect(sites.proxy.https_addr(), "blog.example", &["h2"])
        .await
        .expect("TLS handshake");
    assert_eq!(negotiated_alpn(&tls).as_deref(), Some("h2"));
    tls.write_all(b"GET /echo HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .unwrap();

    let got = read_until_close(&mut tls).await;
    assert!(
        !got.starts_with(b"HTTP/1.1"),
        "answered in HTTP/1.1: {:?}",
        got.escape_ascii().to_string()
    );
    let frames = h2raw::parse_frames(&got);
    let goaway = frames
        .iter()
        .find_map(h2raw::Frame::goaway_code)
        .unwrap_or_else(|| panic!("no GOAWAY among {frames:?}"));
    assert_eq!(goaway, h2raw::PROTOCOL_ERROR);
    assert_eq!(sites.blog_origin.requests(), 0);
}

/// A client that negotiated `http/1.1` is served HTTP/1.1 even when it sends the HTTP/2
/// preface: no SETTINGS frame comes back, and nothing reaches the origin.
#[tokio::test]
async fn the_h2_preface_after_alpn_http1_is_not_served_as_h2() {
    let sites = two_sites();
    for alpn in [&["http/1.1"][..], &[]] {
        let mut tls = sites
            .ca
            .connect(sites.proxy.https_addr(), "blog.example", alpn)
            .await
            .expect("TLS handshake");
        let mut preface = h2raw::PREFACE.to_vec();
        preface.extend_from_slice(&h2raw::settings(&[]));
        preface.extend_from_slice(&h2raw::headers(
            1,
            &h2raw::get_block("blog.example", "/echo"),
            true,
        ));
        tls.write_all(&preface).await.unwrap();

        let got = read_until_close(&mut tls).await;
        let settings = h2raw::parse_frames(&got)
            .iter()
            .any(|f| f.kind == h2raw::SETTINGS);
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 ") && !settings,
            "ALPN {alpn:?}: got {:?}",
            got.escape_ascii().to_string()
        );
    }
    assert_eq!(sites.blog_origin.requests(), 0);
}

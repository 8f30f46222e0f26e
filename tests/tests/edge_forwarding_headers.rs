//! Headers that describe a hop stay on that hop (RFC 9110 §7.6.1), and the forwarding headers
//! an origin trusts are written by Palisade, not by the client.

use palisade_blackbox::raw::{READ_TIMEOUT, RawConn};
use palisade_blackbox::{Echo, Origin, Palisade, SiteConfig, client};

/// Sends `request` as written on a keep-alive connection and reads the `/echo` report.
async fn echo_of_raw(proxy: &Palisade, request: &[u8]) -> Echo {
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    conn.send(request).await.expect("send");
    let response = conn.read_response(READ_TIMEOUT).await;
    assert_eq!(response.status(), Some(200), "{response:?}");
    Echo::parse(&response.body)
}

#[tokio::test]
async fn hop_by_hop_request_headers_do_not_reach_origin() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let echo = echo_of_raw(
        &proxy,
        b"GET /echo HTTP/1.1\r\n\
          Host: blog.example\r\n\
          Connection: x-foo\r\n\
          X-Foo: 1\r\n\
          Keep-Alive: 1\r\n\
          Proxy-Connection: x\r\n\
          TE: gzip\r\n\
          Upgrade: h2c\r\n\
          X-Kept: yes\r\n\
          \r\n",
    )
    .await;

    for name in ["x-foo", "keep-alive", "proxy-connection", "upgrade"] {
        assert!(
            !echo.has_header(name),
            "origin saw `{name}`: {:?}",
            echo.headers
        );
    }
    assert!(
        echo.headers_named("te").iter().all(|v| !v.contains("gzip")),
        "origin saw the client's TE: {:?}",
        echo.headers
    );
    assert!(
        echo.headers_named("connection")
            .iter()
            .all(|v| !v.contains("x-foo")),
        "origin saw the client's Connection: {:?}",
        echo.headers
    );
    assert_eq!(echo.header("x-kept"), Some("yes"), "end-to-end header lost");
}

#[tokio::test]
async fn hop_by_hop_response_headers_do_not_reach_client() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let reply = client::get(proxy.http_addr(), "blog.example", "/hop").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    for name in ["x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            reply.headers.get(name).is_none(),
            "client saw `{name}`: {:?}",
            reply.headers
        );
    }
    for value in reply.headers.get_all("connection") {
        let value = value.to_str().unwrap_or_default();
        assert!(
            !value.contains("x-secret"),
            "client saw the origin's Connection: {value}"
        );
    }
    assert_eq!(
        reply.header("x-normal"),
        Some("1"),
        "end-to-end header lost"
    );
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peer_are_replaced() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("trusted_proxies = []")
            .to_toml(),
    );

    let echo = echo_of_raw(
        &proxy,
        b"GET /echo HTTP/1.1\r\n\
          Host: blog.example\r\n\
          X-Forwarded-For: 6.6.6.6\r\n\
          Forwarded: for=6.6.6.6\r\n\
          X-Forwarded-Host: evil\r\n\
          X-Forwarded-Proto: https\r\n\
          X-Real-IP: 6.6.6.6\r\n\
          True-Client-IP: 6.6.6.6\r\n\
          CF-Connecting-IP: 6.6.6.6\r\n\
          \r\n",
    )
    .await;

    for other in ["true-client-ip", "cf-connecting-ip"] {
        assert!(
            !echo.has_header(other),
            "{other} from an untrusted client reached the origin: {:?}",
            echo.headers
        );
    }
    assert_eq!(
        echo.headers_named("x-real-ip"),
        vec!["127.0.0.1"],
        "{:?}",
        echo.headers
    );
    assert_eq!(
        echo.headers_named("x-forwarded-for"),
        vec!["127.0.0.1"],
        "{:?}",
        echo.headers
    );
    assert_eq!(
        echo.headers_named("x-forwarded-proto"),
        vec!["http"],
        "{:?}",
        echo.headers
    );
    assert_eq!(
        echo.headers_named("x-forwarded-host"),
        vec!["blog.example"],
        "{:?}",
        echo.headers
    );
    let forwarded = echo.headers_named("forwarded").join(", ");
    assert!(
        forwarded.contains("for=127.0.0.1"),
        "Forwarded: {forwarded:?}"
    );
    assert!(
        !forwarded.contains("6.6.6.6"),
        "Forwarded kept the spoofed hop: {forwarded:?}"
    );
    let via = echo.headers_named("via").join(", ");
    assert!(via.contains("palisade"), "Via: {via:?}");
}

#[tokio::test]
async fn forwarded_for_from_trusted_peer_is_kept_and_peer_appended() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"trusted_proxies = ["127.0.0.0/8"]"#)
            .to_toml(),
    );

    let echo = echo_of_raw(
        &proxy,
        b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
    )
    .await;

    assert_eq!(
        echo.headers_named("x-forwarded-for"),
        vec!["6.6.6.6, 127.0.0.1"],
        "{:?}",
        echo.headers
    );
}

#[tokio::test]
async fn x_real_ip_from_a_trusted_peer_is_kept_and_otherwise_names_its_client() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"trusted_proxies = ["127.0.0.0/8"]"#)
            .to_toml(),
    );

    let kept = echo_of_raw(
        &proxy,
        b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nX-Real-IP: 203.0.113.9\r\n\r\n",
    )
    .await;
    assert_eq!(kept.headers_named("x-real-ip"), vec!["203.0.113.9"]);

    let resolved = echo_of_raw(
        &proxy,
        b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nX-Forwarded-For: 203.0.113.10\r\n\r\n",
    )
    .await;
    assert_eq!(resolved.headers_named("x-real-ip"), vec!["203.0.113.10"]);
}

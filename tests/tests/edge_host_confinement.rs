//! A request reaches an origin only when it names a configured site; Palisade is not an open
//! proxy.

use palisade_blackbox::client::{self, h2_request};
use palisade_blackbox::raw::raw_request;
use palisade_blackbox::{Origin, Palisade, SiteConfig};

fn blog_config(origin: &Origin) -> String {
    SiteConfig::blog(origin.url())
        .hosts(&["blog.example", "*.blog.example"])
        .to_toml()
}

#[tokio::test]
async fn unknown_host_gets_421_and_origin_sees_nothing() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));

    let reply = client::get(proxy.http_addr(), "unknown.example", "/echo").await;

    assert_eq!(reply.status, 421, "body: {}", reply.text());
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn h2c_request_for_unknown_authority_gets_421_and_origin_sees_nothing() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));
    let tcp = client::tcp(proxy.http_addr()).await.expect("connect");
    let mut h2 = client::h2_handshake(tcp).await.expect("h2c handshake");

    let reply = client::send_h2(
        &mut h2,
        h2_request("GET", "http", "unknown.example", "/echo"),
    )
    .await
    .expect("h2c request");

    assert_eq!(reply.status, 421, "body: {}", reply.text());
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn http10_request_without_host_is_not_forwarded_to_exact_host_sites() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));

    let response = raw_request(proxy.http_addr(), b"GET /echo HTTP/1.0\r\n\r\n").await;

    let status = response.status().unwrap_or(0);
    assert!(status == 400 || status == 421, "{response:?}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn http10_request_without_host_reaches_catch_all_site() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::new("any")
            .hosts(&["*"])
            .origin(origin.url())
            .to_toml(),
    );

    let response = raw_request(proxy.http_addr(), b"GET /echo HTTP/1.0\r\n\r\n").await;

    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn wildcard_host_matches_subdomain() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));

    let reply = client::get(proxy.http_addr(), "www.blog.example", "/echo").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.echo().header("host"), Some("www.blog.example"));
}

#[tokio::test]
async fn host_with_port_matches_site() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));

    let reply = client::get(proxy.http_addr(), "blog.example:8080", "/echo").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
}

#[tokio::test]
async fn absolute_form_naming_unknown_host_gets_421_despite_known_host_header() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));

    let response = raw_request(
        proxy.http_addr(),
        b"GET http://evil.example/echo HTTP/1.1\r\nHost: blog.example\r\nConnection: close\r\n\r\n",
    )
    .await;

    assert_eq!(response.status(), Some(421), "{response:?}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn connect_method_is_refused_and_origin_sees_nothing() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));

    let response = raw_request(
        proxy.http_addr(),
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
    )
    .await;

    // The edge does not tunnel: 405 Method Not Allowed, and the origin sees nothing, not even
    // a connection.
    assert_eq!(response.status(), Some(405), "{response:?}");
    assert_eq!(
        response.header("allow"),
        Some("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
        "RFC 9110 §15.5.6: a 405 says what is allowed"
    );
    assert_eq!(origin.requests(), 0);
    assert_eq!(origin.connections(), 0);
}

#[tokio::test]
async fn connect_to_a_configured_host_is_refused_too() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&blog_config(&origin));

    let response = raw_request(
        proxy.http_addr(),
        b"CONNECT blog.example:443 HTTP/1.1\r\nHost: blog.example:443\r\nConnection: close\r\n\r\n",
    )
    .await;

    // The edge does not tunnel: 405 Method Not Allowed, and the origin sees nothing, not even
    // a connection.
    assert_eq!(response.status(), Some(405), "{response:?}");
    assert_eq!(
        response.header("allow"),
        Some("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
        "RFC 9110 §15.5.6: a 405 says what is allowed"
    );
    assert_eq!(origin.requests(), 0);
    assert_eq!(origin.connections(), 0);
}

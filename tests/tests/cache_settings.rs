//! A site's `[site.cache]` settings and the request-side rules through the real binary: bypass
//! paths, edge TTL, query-string keys, clients' no-cache (honoured, or ignored on request), the
//! object size limit, Vary handling and Authorization.

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig};

fn proxy(origin: &ScriptedOrigin, cache_table: &str) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).cache(cache_table).to_toml())
}

async fn get_with(
    proxy: &Palisade,
    path: &str,
    fields: &[(&'static str, &'static str)],
) -> client::Reply {
    client::get_with(proxy.http_addr(), "blog.example", path, fields).await
}

async fn text(proxy: &Palisade, path: &str) -> String {
    client::get(proxy.http_addr(), "blog.example", path)
        .await
        .text()
}

#[tokio::test]
async fn bypass_paths_are_never_stored() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let proxy = proxy(&origin, "bypass = [\"/admin/*\"]");

    assert_eq!(text(&proxy, "/admin/x").await, "v0");
    assert_eq!(text(&proxy, "/admin/x").await, "v1");
    assert_eq!(text(&proxy, "/public").await, "v2");
    assert_eq!(text(&proxy, "/public").await, "v2");
}

#[tokio::test]
async fn edge_ttl_stores_what_the_origin_gave_no_freshness() {
    let origin = ScriptedOrigin::numbered("");
    let proxy = proxy(&origin, "ttl = \"10m\"");

    assert_eq!(text(&proxy, "/").await, "v0");
    let second = client::get(proxy.http_addr(), "blog.example", "/").await;

    assert_eq!(second.text(), "v0");
    let status = second.header("cache-status").unwrap_or_default();
    assert!(
        status.contains("ttl=599") || status.contains("ttl=600"),
        "{status}"
    );
}

#[tokio::test]
async fn an_ignored_query_string_makes_one_object() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let proxy = proxy(&origin, "query = \"ignore\"");

    assert_eq!(text(&proxy, "/q?utm=1").await, "v0");
    assert_eq!(text(&proxy, "/q?utm=2").await, "v0");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn s5_2_1_4_a_clients_no_cache_is_honoured_unless_the_site_ignores_it() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let honoured = proxy(&origin, "");
    text(&honoured, "/n").await;
    let again = get_with(&honoured, "/n", &[("cache-control", "no-cache")]).await;
    assert_eq!(again.text(), "v1", "no-cache reached the origin");

    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let shielded = proxy(&origin, "ignore_client_no_cache = true");
    text(&shielded, "/n").await;
    for _ in 0..5 {
        let flood = get_with(
            &shielded,
            "/n",
            &[("cache-control", "no-cache"), ("pragma", "no-cache")],
        )
        .await;
        assert_eq!(flood.text(), "v0");
    }
    assert_eq!(
        origin.requests(),
        1,
        "a no-cache flood does not reach the origin"
    );
}

#[tokio::test]
async fn responses_over_max_object_size_pass_through_unstored() {
    let origin = ScriptedOrigin::start(|n| {
        let body = format!("{n}{}", "x".repeat(2000));
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    });
    let proxy = proxy(&origin, "max_object_size = 1024");

    let first = text(&proxy, "/big").await;
    let second = text(&proxy, "/big").await;

    assert!(
        first.starts_with('0') && second.starts_with('1'),
        "both from the origin"
    );
    assert_eq!(second.len(), 2001);
}

#[tokio::test]
async fn s4_1_vary_accept_encoding_is_normalised_and_sent_normalised() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\nVary: Accept-Encoding\r\n");
    let proxy = proxy(&origin, "");

    let chrome = get_with(
        &proxy,
        "/v",
        &[("accept-encoding", "gzip, deflate, br, zstd")],
    )
    .await;
    let firefox = get_with(
        &proxy,
        "/v",
        &[("accept-encoding", "zstd, gzip, deflate, br")],
    )
    .await;
    let curl = get_with(&proxy, "/v", &[("accept-encoding", "gzip")]).await;

    assert_eq!(
        (chrome.text(), firefox.text()),
        ("v0".into(), "v0".into()),
        "one variant"
    );
    assert_eq!(curl.text(), "v1", "another variant");
    let heads = origin.heads();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("accept-encoding: zstd, br, gzip"),
        "the origin is asked for the variant's codings: {}",
        heads[0]
    );
}

#[tokio::test]
async fn s4_1_vary_star_is_never_served_from_the_cache() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\nVary: *\r\n");
    let proxy = proxy(&origin, "");

    assert_eq!(text(&proxy, "/star").await, "v0");
    assert_eq!(text(&proxy, "/star").await, "v1");
}

#[tokio::test]
async fn s3_5_a_response_to_an_authorized_request_is_not_shared_without_public() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let proxy = proxy(&origin, "");

    let alice = get_with(&proxy, "/me", &[("authorization", "Bearer alice")]).await;
    let bob = get_with(&proxy, "/me", &[("authorization", "Bearer bob")]).await;

    assert_eq!((alice.text(), bob.text()), ("v0".into(), "v1".into()));
}

#[tokio::test]
async fn rfc9211_passes_say_why_the_cache_forwarded() {
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=60\r\n");
    let proxy = proxy(&origin, "bypass = [\"/admin/*\"]");

    let bypassed = client::get(proxy.http_addr(), "blog.example", "/admin/").await;
    let posted = client::try_send(
        proxy.http_addr(),
        h1_request("POST", "blog.example", "/form", client::empty()),
    )
    .await
    .unwrap();

    assert_eq!(
        bypassed.header("cache-status"),
        Some("palisade; fwd=bypass")
    );
    assert_eq!(posted.header("cache-status"), Some("palisade; fwd=method"));
}

#[tokio::test]
async fn always_online_serves_the_stale_copy_when_the_origin_fails() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(match n {
            0 => "HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\nContent-Length: 2\r\n\r\nv0",
            _ => "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\ndown",
        })
    });
    let proxy = proxy(&origin, "always_online = true");
    text(&proxy, "/ao").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let reply = client::get(proxy.http_addr(), "blog.example", "/ao").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "v0");
}

#[tokio::test]
async fn s5_2_2_7_private_responses_are_not_stored() {
    let origin = ScriptedOrigin::numbered("Cache-Control: private, max-age=60\r\n");
    let proxy = proxy(&origin, "");

    assert_eq!(text(&proxy, "/p").await, "v0");
    assert_eq!(text(&proxy, "/p").await, "v1");
}

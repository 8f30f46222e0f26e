//! Purging through the real binary: `POST /api/sites/{site}/purge` on the admin listener and
//! `palisade purge`, by URL, prefix, host, tag and everything, hard and soft.

use palisade_blackbox::client;
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{ADMIN_TOKEN, binary_path};
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig};

/// Answers request `n` with body `v{n}`, fresh for a minute, tagged by its path's first
/// segment: `/red/...` gets `Cache-Tag: red`.
fn tagged_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(|n| {
        let body = format!("v{n}");
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"e{n}\"\r\nCache-Tag: shop, item-{n}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
}

fn proxy_for(origin: &ScriptedOrigin) -> Palisade {
    Palisade::start(
        &SiteConfig::blog(origin.url())
            .hosts(&["blog.example", "img.blog.example"])
            .to_toml(),
    )
}

async fn purge(proxy: &Palisade, site: &str, body: &str) -> client::Reply {
    client::admin_send(
        proxy.admin_addr(),
        "POST",
        &format!("/api/sites/{site}/purge"),
        Some(body),
    )
    .await
}

async fn body_of(proxy: &Palisade, host: &str, path: &str) -> String {
    client::get(proxy.http_addr(), host, path).await.text()
}

#[tokio::test]
async fn purge_by_url_removes_that_url_only() {
    let origin = tagged_origin();
    let proxy = proxy_for(&origin);
    assert_eq!(body_of(&proxy, "blog.example", "/a").await, "v0");
    assert_eq!(body_of(&proxy, "blog.example", "/b").await, "v1");

    let answer = purge(&proxy, "blog", r#"{"url": "https://blog.example/a"}"#).await;

    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("\"purge\""), "{}", answer.text());
    assert_eq!(
        body_of(&proxy, "blog.example", "/a").await,
        "v2",
        "fetched again"
    );
    assert_eq!(
        body_of(&proxy, "blog.example", "/b").await,
        "v1",
        "still stored"
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn purge_by_prefix_host_and_everything() {
    let origin = tagged_origin();
    let proxy = proxy_for(&origin);
    for (host, path) in [
        ("blog.example", "/dir/1"),
        ("blog.example", "/dir/2"),
        ("blog.example", "/other"),
        ("img.blog.example", "/logo"),
    ] {
        body_of(&proxy, host, path).await;
    }
    assert_eq!(origin.requests(), 4);

    purge(&proxy, "blog", r#"{"prefix": "http://blog.example/dir/"}"#).await;
    body_of(&proxy, "blog.example", "/dir/1").await;
    body_of(&proxy, "blog.example", "/dir/2").await;
    body_of(&proxy, "blog.example", "/other").await;
    assert_eq!(origin.requests(), 6, "the two /dir/ URLs only");

    purge(&proxy, "blog", r#"{"host": "img.blog.example"}"#).await;
    body_of(&proxy, "img.blog.example", "/logo").await;
    body_of(&proxy, "blog.example", "/other").await;
    assert_eq!(origin.requests(), 7, "the image host only");

    purge(&proxy, "blog", r#"{"everything": true}"#).await;
    body_of(&proxy, "blog.example", "/other").await;
    body_of(&proxy, "img.blog.example", "/logo").await;
    assert_eq!(origin.requests(), 9, "everything");
}

#[tokio::test]
async fn soft_purge_by_tag_revalidates_instead_of_refetching_blind() {
    let origin = tagged_origin();
    let proxy = proxy_for(&origin);
    body_of(&proxy, "blog.example", "/p").await;

    let answer = purge(&proxy, "blog", r#"{"tag": "shop", "soft": true}"#).await;
    let after = client::get(proxy.http_addr(), "blog.example", "/p").await;

    assert_eq!(answer.status, 200, "{}", answer.text());
    let status = after.header("cache-status").unwrap_or_default();
    assert!(
        status.contains("fwd=stale"),
        "soft-purged means stale: {status}"
    );
    assert!(
        origin.heads()[1]
            .to_ascii_lowercase()
            .contains("if-none-match: \"e0\""),
        "revalidated with the stored validator: {}",
        origin.heads()[1]
    );
}

#[tokio::test]
async fn purge_api_refuses_unknown_sites_bad_bodies_and_other_methods() {
    let origin = tagged_origin();
    let proxy = proxy_for(&origin);

    let unknown = purge(&proxy, "nope", r#"{"everything": true}"#).await;
    let bad = purge(&proxy, "blog", r#"{"url": "/relative"}"#).await;
    let two = purge(&proxy, "blog", r#"{"tag": "a", "host": "b"}"#).await;
    let get = client::admin_get(proxy.admin_addr(), "/api/sites/blog/purge").await;

    assert_eq!(unknown.status, 404);
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("absolute"), "{}", bad.text());
    assert_eq!(two.status, 400);
    assert_eq!(get.status, 405);
}

#[tokio::test]
async fn palisade_purge_command_purges_through_the_admin_listener() {
    let origin = tagged_origin();
    let proxy = proxy_for(&origin);
    body_of(&proxy, "blog.example", "/cli").await;

    let admin = proxy.admin_addr().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary_path())
            .args(["purge", "--site", "blog", "--everything", "--admin", &admin])
            .env("PALISADE_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("run palisade purge")
    })
    .await
    .unwrap();
    let refused = std::process::Command::new(binary_path())
        .args(["purge", "--site", "blog", "--admin", "127.0.0.1:9"])
        .output()
        .expect("run palisade purge");

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(body_of(&proxy, "blog.example", "/cli").await, "v1");
    assert!(!refused.status.success(), "no selector: refused by the CLI");
}

//! What clients see when origins are down, slow or unhealthy, and how traffic moves between
//! origins as they fail and recover.

use std::time::{Duration, Instant};

use palisade_blackbox::{Origin, Palisade, client, free_port};

fn config(origins: &[String], site_extra: &str) -> String {
    let origins = origins
        .iter()
        .map(|url| format!("\"{url}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[[site]]
name = "blog"
hosts = ["blog.example"]
origins = [{origins}]
{site_extra}
"#
    )
}

#[tokio::test]
async fn origin_down_gets_502_without_revealing_origin_address() {
    let port = free_port();
    let proxy = Palisade::start(&config(&[format!("http://127.0.0.1:{port}")], ""));

    let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;

    assert_eq!(reply.status, 502, "body: {}", reply.text());
    let body = reply.text();
    assert!(
        !body.contains("127.0.0.1"),
        "502 body reveals the origin: {body:?}"
    );
    assert!(
        !body.contains(&port.to_string()),
        "502 body reveals the origin port: {body:?}"
    );
}

#[tokio::test]
async fn slow_origin_beyond_response_timeout_gets_504() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&config(&[origin.url()], r#"response_timeout = "1s""#));

    let started = Instant::now();
    let reply = client::get(proxy.http_addr(), "blog.example", "/slow/3000").await;
    let waited = started.elapsed();

    assert_eq!(reply.status, 504, "body: {}", reply.text());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "504 came after {waited:?}, expected about 1 s"
    );
}

#[tokio::test]
async fn stopped_origin_fails_over_to_live_one() {
    let live = Origin::start("live");
    let mut dead = Origin::start("dead");
    let proxy = Palisade::start(&config(&[live.url(), dead.url()], ""));
    // Warm up while both are up, so the proxy may hold pooled connections to the one that dies.
    for _ in 0..4 {
        assert_eq!(
            client::get(proxy.http_addr(), "blog.example", "/echo")
                .await
                .status,
            200
        );
    }
    dead.stop().await;

    let mut served_by = Vec::new();
    for i in 0..20 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(
            reply.status,
            200,
            "request {i} after the stop: {}",
            reply.text()
        );
        served_by.push(reply.origin_id().unwrap_or_default().to_owned());
    }
    assert!(
        served_by.iter().all(|id| id == "live"),
        "served by {served_by:?}"
    );
}

/// Sends requests until `want` holds for the origin ids of `window` consecutive replies, or
/// `within` runs out. Returns how long it took.
async fn wait_for_traffic(
    proxy: &Palisade,
    within: Duration,
    window: usize,
    want: impl Fn(&[String]) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    let mut recent: Vec<String> = Vec::new();
    while started.elapsed() < within {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(reply.status, 200, "body: {}", reply.text());
        recent.push(reply.origin_id().unwrap_or_default().to_owned());
        if recent.len() > window {
            recent.remove(0);
        }
        if recent.len() == window && want(&recent) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn unhealthy_origin_leaves_rotation_and_returns_when_healthy() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let proxy = Palisade::start(&config(
        &[a.url(), b.url()],
        r#"
[site.health]
path = "/health"
interval = "200ms"
timeout = "1s"
rise = 2
fall = 2
"#,
    ));
    let both = |ids: &[String]| ids.iter().any(|id| id == "a") && ids.iter().any(|id| id == "b");
    let only_b = |ids: &[String]| ids.iter().all(|id| id == "b");
    assert!(
        wait_for_traffic(&proxy, Duration::from_secs(3), 10, both)
            .await
            .is_some(),
        "both healthy origins should share traffic"
    );

    a.set_healthy(false);
    let took = wait_for_traffic(&proxy, Duration::from_secs(3), 10, only_b).await;
    assert!(
        took.is_some(),
        "traffic still reaches `a` 3 s after it went unhealthy"
    );
    for _ in 0..20 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(
            reply.origin_id(),
            Some("b"),
            "unhealthy `a` served a request"
        );
    }
    assert!(
        a.health_checks() > 0,
        "the proxy never asked `a` for /health"
    );

    a.set_healthy(true);
    let back = wait_for_traffic(&proxy, Duration::from_secs(3), 1, |ids| ids[0] == "a").await;
    assert!(
        back.is_some(),
        "`a` got no traffic 3 s after it became healthy again"
    );
}

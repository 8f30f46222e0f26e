//! What clients see when origins are down, slow or unhealthy, and how traffic moves between
//! origins as they fail and recover.

use std::time::{Duration, Instant};

use palisade_blackbox::client::{self, Reply, h1_request};
use palisade_blackbox::{DeadPort, Origin, Palisade, SiteConfig, metrics};

#[tokio::test]
async fn origin_down_gets_502_without_revealing_origin_address() {
    let dead = DeadPort::new();
    let port = dead.port();
    let proxy = Palisade::start(&SiteConfig::blog(dead.url()).to_toml());

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

/// Asserts that a proxy error page is HTML that no cache may keep (a cached 502 would outlive
/// the outage).
fn assert_uncacheable_html(reply: &Reply) {
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.to_ascii_lowercase().starts_with("text/html"),
        "{} page has content-type {content_type:?}",
        reply.status
    );
    let cache_control = reply.header("cache-control").unwrap_or_default();
    assert!(
        cache_control
            .split(',')
            .any(|directive| directive.trim().eq_ignore_ascii_case("no-store")),
        "{} page has cache-control {cache_control:?}",
        reply.status
    );
}

#[tokio::test]
async fn bad_gateway_page_is_uncacheable_html() {
    let dead = DeadPort::new();
    let proxy = Palisade::start(&SiteConfig::blog(dead.url()).to_toml());

    let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;

    assert_eq!(reply.status, 502, "body: {}", reply.text());
    assert_uncacheable_html(&reply);
}

#[tokio::test]
async fn gateway_timeout_page_is_uncacheable_html() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site(r#"response_timeout = "300ms""#)
            .to_toml(),
    );

    let reply = client::get(proxy.http_addr(), "blog.example", "/slow/2000").await;

    assert_eq!(reply.status, 504, "body: {}", reply.text());
    assert_uncacheable_html(&reply);
}

/// Origin `live` and a dead origin (nothing listens on its port) behind site `blog`, with
/// `max_fails` so high that the dead one is never ejected.
fn live_and_never_ejected_dead() -> (Origin, DeadPort, Palisade) {
    let live = Origin::start("live");
    let dead = DeadPort::new();
    let proxy = Palisade::start(
        &SiteConfig::blog(live.url())
            .origin(dead.url())
            .site("max_fails = 1000")
            .to_toml(),
    );
    (live, dead, proxy)
}

/// POST number `i`: `/upload` with a 10-byte body on a fresh connection; panics on a
/// transport error.
async fn post_small_body(proxy: &Palisade, i: usize) -> Reply {
    let request = h1_request(
        "POST",
        "blog.example",
        "/upload",
        client::full("small body"),
    );
    client::try_send(proxy.http_addr(), request)
        .await
        .unwrap_or_else(|e| panic!("POST {i}: {e}"))
}

#[tokio::test]
async fn post_that_could_not_connect_is_not_retried_on_another_origin() {
    // Never eject the dead origin, so round robin keeps sending it every other request.
    let (live, _dead, proxy) = live_and_never_ejected_dead();

    let mut served = 0;
    let mut bad_gateway = 0;
    for i in 0..10 {
        let reply = post_small_body(&proxy, i).await;
        match reply.status.as_u16() {
            200 => {
                assert_eq!(reply.origin_id(), Some("live"));
                assert_eq!(reply.text(), r#"{"bytes":10}"#);
                served += 1;
            }
            502 => bad_gateway += 1,
            other => panic!("POST {i} got {other}: {}", reply.text()),
        }
    }

    assert!(
        bad_gateway >= 1,
        "all 10 POSTs succeeded: those that met the dead origin were replayed on the live one"
    );
    assert_eq!(
        live.requests(),
        served,
        "the live origin saw {} POSTs for {served} answered ones",
        live.requests()
    );
}

#[tokio::test]
async fn round_robin_moves_on_after_a_post_the_dead_origin_refused() {
    let (_live, _dead, proxy) = live_and_never_ejected_dead();

    let mut statuses = Vec::new();
    for i in 0..10 {
        let reply = post_small_body(&proxy, i).await;
        statuses.push(reply.status.as_u16());
    }

    // Equal weights alternate (L D L D ...): a failed, unretried attempt must still count as
    // the dead origin's turn, or the dead origin takes every request that follows.
    let served = statuses.iter().filter(|&&s| s == 200).count();
    assert!(
        (4..=6).contains(&served),
        "{served} of 10 POSTs reached the live origin of two equal-weight origins; statuses in \
         order: {statuses:?}"
    );
}

#[tokio::test]
async fn get_that_could_not_connect_is_retried_on_another_origin() {
    // Never eject the dead origin, so round robin keeps trying it first every other request.
    let (live, _dead, proxy) = live_and_never_ejected_dead();

    for i in 0..10 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(reply.status, 200, "GET {i}: {}", reply.text());
        assert_eq!(reply.origin_id(), Some("live"));
    }

    assert_eq!(live.requests(), 10, "a GET reached the live origin twice");
}

#[tokio::test]
async fn dead_origin_is_ejected_after_max_fails_and_reported_unhealthy() {
    let live = Origin::start("live");
    let dead_port = DeadPort::new();
    let dead = format!("127.0.0.1:{}", dead_port.port());
    // Defaults: max_fails = 3, fail_timeout = 10s; no active health check.
    let proxy = Palisade::start(
        &SiteConfig::blog(live.url())
            .origin(format!("http://{dead}"))
            .to_toml(),
    );
    for i in 0..10 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(reply.status, 200, "GET {i}: {}", reply.text());
    }
    let dead_health = [("site", "blog"), ("origin", dead.as_str())];
    let dead_connect_errors = [
        ("site", "blog"),
        ("origin", dead.as_str()),
        ("kind", "connect"),
    ];

    let scrape = metrics::scrape_until(proxy.admin_addr(), Duration::from_secs(3), |text| {
        metrics::sample(text, "palisade_origin_healthy", &dead_health) == Some(0.0)
    })
    .await;

    assert_eq!(
        metrics::sample(&scrape, "palisade_origin_healthy", &dead_health),
        Some(0.0),
        "/metrics said:\n{scrape}"
    );
    let live_addr = live.addr().to_string();
    assert_eq!(
        metrics::sample(
            &scrape,
            "palisade_origin_healthy",
            &[("site", "blog"), ("origin", live_addr.as_str())]
        ),
        Some(1.0),
        "/metrics said:\n{scrape}"
    );
    let errors = metrics::sample(
        &scrape,
        "palisade_origin_errors_total",
        &dead_connect_errors,
    );
    assert!(
        errors.is_some_and(|n| n > 0.0),
        "connect errors of the dead origin: {errors:?}; /metrics said:\n{scrape}"
    );

    // Ejected means not tried: more requests add no connect errors.
    for i in 0..10 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(
            reply.status,
            200,
            "GET {i} after the ejection: {}",
            reply.text()
        );
    }
    let later = metrics::scrape(proxy.admin_addr()).await;
    assert_eq!(
        metrics::sample(&later, "palisade_origin_errors_total", &dead_connect_errors),
        errors,
        "the ejected origin was still tried; /metrics said:\n{later}"
    );
}

/// A site whose only origin is dead still tries it (there is nothing else), so it fails
/// `max_fails` times again every few requests. The ejection is logged when it happens, not at
/// every renewed failure: under load that would be thousands of lines a second.
#[tokio::test]
async fn a_dead_only_origin_logs_its_ejection_once() {
    let dead = DeadPort::new();
    let proxy = Palisade::start(&SiteConfig::blog(dead.url()).to_toml());
    for i in 0..30 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(reply.status, 502, "GET {i}: {}", reply.text());
    }
    // A reload logs a line after every line the requests wrote: once it is read, they are.
    proxy.sighup();
    let reloaded = proxy.wait_for_stderr(Duration::from_secs(5), |line| {
        line.contains("configuration reloaded")
    });
    assert!(
        reloaded.is_some(),
        "no reload line; stderr:\n{}",
        proxy.stderr_text()
    );
    let stderr = proxy.stderr_text();
    let ejections = stderr
        .lines()
        .filter(|line| line.contains("origin ejected after consecutive failures"))
        .count();
    assert_eq!(ejections, 1, "stderr:\n{stderr}");
}

#[tokio::test]
async fn slow_origin_beyond_response_timeout_gets_504() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site(r#"response_timeout = "1s""#)
            .to_toml(),
    );

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
    let proxy = Palisade::start(&SiteConfig::blog(live.url()).origin(dead.url()).to_toml());
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
    let proxy = Palisade::start(
        &SiteConfig::blog(a.url())
            .origin(b.url())
            .site(
                r#"
[site.health]
path = "/health"
interval = "200ms"
timeout = "1s"
rise = 2
fall = 2
"#,
            )
            .to_toml(),
    );
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

/// An origin that answers the first request on each connection, keeps the connection open,
/// and then reads the second request and closes without answering: what a client sees when
/// an origin's keep-alive timeout fires just as a request is written.
async fn origin_closing_on_second_request() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                let mut answered = 0;
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if answered == 1 {
                            return; // drop the connection without a response
                        }
                        answered += 1;
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn get_on_a_pooled_connection_the_origin_closed_is_resent_on_a_new_one() {
    let (addr, origin) = origin_closing_on_second_request().await;
    let proxy = Palisade::start(&SiteConfig::blog(format!("http://{addr}")).to_toml());
    let first = client::get(proxy.http_addr(), "blog.example", "/a").await;
    assert_eq!(first.status, 200, "{}", first.text());
    // Past the point where a pooled connection counts as at risk of a keep-alive race.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = client::get(proxy.http_addr(), "blog.example", "/b").await;
    assert_eq!(
        second.status,
        200,
        "a GET that met a connection the origin closed was not resent: {}",
        second.text()
    );
    origin.abort();
}

#[tokio::test]
async fn post_on_a_pooled_connection_the_origin_closed_is_not_resent() {
    let (addr, origin) = origin_closing_on_second_request().await;
    let proxy = Palisade::start(&SiteConfig::blog(format!("http://{addr}")).to_toml());
    let first = client::get(proxy.http_addr(), "blog.example", "/a").await;
    assert_eq!(first.status, 200, "{}", first.text());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let request = h1_request("POST", "blog.example", "/b", client::full("x=1"));
    let second = client::try_send(proxy.http_addr(), request)
        .await
        .expect("the proxy answers");
    assert_eq!(
        second.status,
        502,
        "a POST the origin may have seen must not be sent twice: {}",
        second.text()
    );
    origin.abort();
}

//! What an operator sees: Prometheus metrics and a health probe on the admin listener, and one
//! JSON access-log line per request.

use std::time::{Duration, Instant};

use palisade_blackbox::{Origin, Palisade, SiteConfig, client, metrics};

#[tokio::test]
async fn metrics_count_requests_by_site_and_status_class() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    assert_eq!(
        client::get(proxy.http_addr(), "blog.example", "/echo")
            .await
            .status,
        200
    );

    let labels = [("site", "blog"), ("class", "2xx")];
    let metrics = metrics::scrape_until(proxy.admin_addr(), Duration::from_secs(3), |text| {
        metrics::sample(text, "palisade_requests_total", &labels).is_some_and(|n| n > 0.0)
    })
    .await;

    let count = metrics::sample(&metrics, "palisade_requests_total", &labels);
    assert!(
        count.is_some_and(|n| n >= 1.0),
        "palisade_requests_total{labels:?} is {count:?} after a 200; /metrics said:\n{metrics}"
    );
}

#[tokio::test]
async fn healthz_on_admin_listener_returns_200_ok() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let reply = client::admin_get(proxy.admin_addr(), "/healthz").await;

    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.text().trim_end(), "ok");
}

#[tokio::test]
async fn unknown_path_on_admin_listener_gets_404() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let reply = client::admin_get(proxy.admin_addr(), "/nope").await;

    assert_eq!(reply.status, 404, "body: {}", reply.text());
    assert_eq!(
        origin.requests(),
        0,
        "the admin listener forwarded to an origin"
    );
}

#[tokio::test]
async fn access_log_has_a_json_line_describing_each_request() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"access_log = "stdout""#)
            .to_toml(),
    );
    let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
    assert_eq!(reply.status, 200);

    let deadline = Instant::now() + Duration::from_secs(3);
    let entry = loop {
        let found = proxy
            .access_log_entries()
            .into_iter()
            .find(|e| e["path"].as_str().is_some_and(|p| p.starts_with("/echo")));
        if found.is_some() || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let entry = entry.unwrap_or_else(|| {
        panic!(
            "no JSON access-log line for GET /echo; stdout was:\n{}",
            proxy.access_log_lines().join("\n")
        )
    });
    assert_eq!(entry["site"], "blog", "{entry}");
    assert_eq!(entry["status"], 200, "{entry}");
    assert_eq!(entry["method"], "GET", "{entry}");
    assert_eq!(entry["path"], "/echo", "{entry}");
    assert_eq!(entry["client_ip"], "127.0.0.1", "{entry}");
    for field in [
        "time",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "origin",
        "upstream_ms",
    ] {
        assert!(
            entry.get(field).is_some(),
            "access-log line lacks `{field}`: {entry}"
        );
    }
    // Every request is logged by default, and the line says so.
    assert_eq!(entry["sample_rate"], 1.0, "{entry}");
}

//! Real clients that look heavy from one address, on the defaults a newcomer meets: a crawler
//! fetching new URLs all minute, a scanner opening a connection per request, an office NAT
//! holding hundreds of keep-alive connections. None of them may be refused while the origin
//! copes. And the other side: once the origin is under pressure (its concurrency near the cap,
//! or its latency rising), the per-address miss limit bites again, with the challenge for a
//! browser and 429 for a client that cannot take one.
//!
//! Each client is a loopback address of its own (127.0.0.0/8 is loopback on Linux), so the
//! tests here do not share per-address counts and run side by side. Every loop is bounded in
//! requests and in time.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_blackbox::control::events;
use palisade_blackbox::metrics::{sample, scrape, scrape_until};
use palisade_blackbox::raw::{RawConn, RawResponse};
use palisade_blackbox::{Origin, Palisade, SiteConfig};
use tokio::sync::Semaphore;

/// What a browser sends when it navigates.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
/// How long one exchange may take before the test counts it as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// `GET path` on `conn` (kept alive) with `extra` header lines; the response, or `None` when
/// the connection failed or closed without one.
async fn get_on(conn: &mut RawConn, host: &str, path: &str, extra: &str) -> Option<RawResponse> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
    conn.send(request.as_bytes()).await.ok()?;
    let response = conn.read_response(RESPONSE_TIMEOUT).await;
    response.status().is_some().then_some(response)
}

/// `GET path` from `source` on a fresh connection.
async fn get_from(proxy: &Palisade, source: IpAddr, path: &str, extra: &str) -> RawResponse {
    let mut conn = RawConn::connect_from(source, proxy.http_addr())
        .await
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    get_on(&mut conn, "blog.example", path, extra)
        .await
        .unwrap_or_else(|| panic!("no response to GET {path} from {source}"))
}

/// Connections closed at accept, for every reason.
fn refused_connections(metrics: &str) -> f64 {
    [
        "max_connections",
        "max_connections_per_ip",
        "max_new_connections_per_ip",
    ]
    .iter()
    .filter_map(|reason| {
        sample(
            metrics,
            "palisade_connections_refused_total",
            &[("reason", reason)],
        )
    })
    .sum()
}

/// Statuses by count (`0`: no response at all), for assertion messages.
fn tally(statuses: &[u16]) -> BTreeMap<u16, usize> {
    let mut by_status = BTreeMap::new();
    for status in statuses {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    by_status
}

// ---- Heavy clients against a healthy origin -------------------------------------------------

const CRAWL_CONNECTIONS: u32 = 4;
/// Each connection's pace: 4 × 5 = 20 new URLs a second from the one address.
const CRAWL_EVERY: Duration = Duration::from_millis(200);
const CRAWL_TIME: Duration = Duration::from_secs(60);

/// A search crawler (or a feed reader, or an office behind one NAT) on the newcomer's setup,
/// `palisade serve --origin URL`: one address asks for 20 URLs nobody asked for before, every
/// second for a minute, over four keep-alive connections. That is 1,200 cache misses in a
/// minute, twice the old `max_misses_per_ip` of 600, against an origin that answers in a
/// millisecond: every one is served, and the shield records nothing.
#[tokio::test]
async fn a_crawler_fetching_twenty_new_urls_a_second_for_a_minute_from_one_address_is_never_refused()
 {
    let origin = Origin::start("a");
    let proxy = Palisade::serve_origin(&origin.url());
    let addr = proxy.http_addr();
    let crawler = v4(127, 0, 16, 1);
    let requests_per_connection = (CRAWL_TIME.as_millis() / CRAWL_EVERY.as_millis()) as u32;

    let started = Instant::now();
    let connections: Vec<_> = (0..CRAWL_CONNECTIONS)
        .map(|c| {
            tokio::spawn(async move {
                // The connections ask in turn, not in step.
                tokio::time::sleep(CRAWL_EVERY * c / CRAWL_CONNECTIONS).await;
                let mut tick = tokio::time::interval(CRAWL_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut conn = None;
                let mut statuses = Vec::new();
                for n in 0..requests_per_connection {
                    tick.tick().await;
                    if conn.is_none() {
                        conn = RawConn::connect_from(crawler, addr).await.ok();
                    }
                    let path = format!("/echo/crawl/{c}/{n}?page={n}");
                    let response = match conn.as_mut() {
                        Some(live) => get_on(live, "www.example", &path, "Accept: */*\r\n").await,
                        None => None,
                    };
                    match response {
                        Some(response) => {
                            if response.connection_closed {
                                conn = None;
                            }
                            statuses.push(response.status().unwrap_or(0));
                        }
                        None => {
                            conn = None;
                            statuses.push(0);
                        }
                    }
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for connection in connections {
        statuses.extend(connection.await.expect("crawler connection"));
    }
    let took = started.elapsed();
    let metrics = scrape(proxy.admin_addr()).await;
    let recorded = events(&proxy, "?site=default&limit=10000").await;
    eprintln!(
        "crawler: {} requests in {took:.1?}, statuses {:?}; the origin saw {}; shield events {}",
        statuses.len(),
        tally(&statuses),
        origin.requests_from("127.0.16.1"),
        recorded.len()
    );

    let expected = (CRAWL_CONNECTIONS * requests_per_connection) as usize;
    assert_eq!(statuses.len(), expected);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the crawler was refused: {:?}",
        tally(&statuses)
    );
    assert_eq!(origin.requests_from("127.0.16.1"), expected as u64);
    assert!(recorded.is_empty(), "the shield acted: {recorded:?}");
    assert_eq!(refused_connections(&metrics), 0.0, "{metrics}");
    // The pace held: this was 20 a second for a minute, not a slower test.
    assert!(took < CRAWL_TIME + Duration::from_secs(15), "took {took:?}");
}

const SCAN_EVERY: Duration = Duration::from_millis(10);
const SCAN_REQUESTS: usize = 1000;

/// A scanner (or a script without keep-alive) opens a new connection for every request: 100 a
/// second for 10 s from one address, each for a URL of its own. That is 1,000 new connections
/// in the 10 s window, twice the old `max_new_connections_per_ip` of 500: all are accepted and
/// answered.
#[tokio::test]
async fn a_scanner_opening_a_connection_per_request_at_a_hundred_a_second_is_never_refused() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let addr = proxy.http_addr();
    let scanner = v4(127, 0, 17, 1);

    let started = Instant::now();
    let mut tick = tokio::time::interval(SCAN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut requests = Vec::with_capacity(SCAN_REQUESTS);
    for n in 0..SCAN_REQUESTS {
        tick.tick().await;
        requests.push(tokio::spawn(async move {
            let Ok(mut conn) = RawConn::connect_from(scanner, addr).await else {
                return 0;
            };
            let path = format!("/echo/scan/{n}");
            get_on(&mut conn, "blog.example", &path, "Connection: close\r\n")
                .await
                .and_then(|r| r.status())
                .unwrap_or(0)
        }));
    }
    let mut statuses = Vec::with_capacity(SCAN_REQUESTS);
    for request in requests {
        statuses.push(request.await.expect("scanner request"));
    }
    let took = started.elapsed();
    let metrics = scrape(proxy.admin_addr()).await;
    eprintln!(
        "scanner: {SCAN_REQUESTS} connections in {took:.1?}, statuses {:?}; refused at accept {}",
        tally(&statuses),
        refused_connections(&metrics)
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the scanner was refused: {:?}",
        tally(&statuses)
    );
    assert_eq!(refused_connections(&metrics), 0.0, "{metrics}");
    assert_eq!(origin.requests_from("127.0.17.1"), SCAN_REQUESTS as u64);
    assert!(
        took < Duration::from_secs(20),
        "the scan was not a scan: {took:?}"
    );
}

/// Keep-alive connections an office NAT holds open at once: some 120 browsers with HTTP/1.1's
/// six connections each (or 700 with HTTP/2's one).
const NAT_CONNECTIONS: usize = 700;

/// An office behind one NAT address holds 700 keep-alive connections open at once (the old
/// `max_connections_per_ip` was 256), opened within a second or two (the old
/// `max_new_connections_per_ip` was 500 per 10 s): every one is accepted, answered, and still
/// usable for a second request while all the others stay open.
#[tokio::test]
async fn an_office_nat_holding_seven_hundred_keep_alive_connections_from_one_address_is_served() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"off\"")
            .site("[site.cache]\nttl = \"1m\"")
            .to_toml(),
    );
    let addr = proxy.http_addr();
    let office = v4(127, 0, 18, 1);
    // Opened a few dozen at a time, as browsers coming and going would, not as one SYN burst.
    let opening = Arc::new(Semaphore::new(32));

    let browsers: Vec<_> = (0..NAT_CONNECTIONS)
        .map(|n| {
            let opening = opening.clone();
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await.expect("semaphore");
                let mut conn = RawConn::connect_from(office, addr).await.ok()?;
                let first = get_on(
                    &mut conn,
                    "blog.example",
                    &format!("/echo/page/{}", n % 50),
                    "",
                )
                .await?;
                drop(permit);
                Some((conn, first.status().unwrap_or(0)))
            })
        })
        .collect();
    let mut open = Vec::with_capacity(NAT_CONNECTIONS);
    let mut statuses = Vec::with_capacity(2 * NAT_CONNECTIONS);
    for browser in browsers {
        match browser.await.expect("browser task") {
            Some((conn, status)) => {
                open.push(conn);
                statuses.push(status);
            }
            None => statuses.push(0),
        }
    }
    let metrics = scrape(proxy.admin_addr()).await;
    let open_now = sample(&metrics, "palisade_open_connections", &[]).unwrap_or(0.0);
    // Every connection asks again while all of them are open.
    for (n, conn) in open.iter_mut().enumerate() {
        let again = get_on(conn, "blog.example", &format!("/echo/page/{}", n % 50), "").await;
        statuses.push(again.and_then(|r| r.status()).unwrap_or(0));
    }
    let metrics = scrape(proxy.admin_addr()).await;
    eprintln!(
        "office NAT: {} connections open ({open_now} by the proxy's count), statuses {:?}, \
         refused at accept {}",
        open.len(),
        tally(&statuses),
        refused_connections(&metrics)
    );
    assert_eq!(open.len(), NAT_CONNECTIONS, "{:?}", tally(&statuses));
    assert!(
        open_now >= NAT_CONNECTIONS as f64,
        "only {open_now} connections open at once"
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the office was refused: {:?}",
        tally(&statuses)
    );
    assert_eq!(refused_connections(&metrics), 0.0, "{metrics}");
}

// ---- The miss limit while the origin is under pressure -------------------------------------

/// Waits until `palisade_origin_pressure{site="blog"}` reads `want`; panics after `within`.
async fn wait_for_pressure(proxy: &Palisade, want: f64, within: Duration) {
    let text = scrape_until(proxy.admin_addr(), within, |text| {
        sample(text, "palisade_origin_pressure", &[("site", "blog")]) == Some(want)
    })
    .await;
    assert_eq!(
        sample(&text, "palisade_origin_pressure", &[("site", "blog")]),
        Some(want),
        "palisade_origin_pressure did not reach {want} within {within:?}"
    );
}

/// A client past `max_misses_per_ip` is served while the origin is healthy. Once the origin's
/// requests in flight reach half its `max_origin_concurrency`, the same client's next miss gets
/// the challenge when it navigates like a browser, and 429 with `Retry-After` when it cannot
/// take a challenge (it asks for JSON, or for an exempt feed). Another address is served
/// throughout, and what was refused never reached the origin. When the pressure has been gone
/// for the hold time, the client is served again.
#[tokio::test]
async fn with_its_origin_near_the_concurrency_cap_a_client_past_its_miss_limit_is_challenged_or_refused()
 {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site(
                r#"
[site.shield]
max_origin_concurrency = 8
max_misses_per_ip = 20
"#,
            )
            .to_toml(),
    );
    let (heavy, visitor, slow) = (v4(127, 0, 19, 1), v4(127, 0, 19, 2), v4(127, 0, 19, 3));
    let navigate = format!("Accept: {BROWSER_ACCEPT}\r\n");

    // A healthy origin: twice the limit, all served.
    for n in 0..40 {
        let reply = get_from(&proxy, heavy, &format!("/echo/heavy/{n}"), &navigate).await;
        assert_eq!(reply.status(), Some(200), "miss {n}: {}", reply.body_text());
    }
    assert!(events(&proxy, "?site=blog&limit=10000").await.is_empty());

    // Six slow requests hold six of the origin's eight slots for 4 s.
    let addr = proxy.http_addr();
    let busy: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(async move {
                let mut conn = RawConn::connect_from(slow, addr).await.expect("connect");
                get_on(&mut conn, "blog.example", &format!("/slow/4000?n={n}"), "")
                    .await
                    .and_then(|r| r.status())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin.requests_from("127.0.19.3") < 6 {
        assert!(Instant::now() < deadline, "the slow requests never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_origin = origin.requests_from("127.0.19.1");

    let challenged = get_from(&proxy, heavy, "/echo/heavy/40", &navigate).await;
    assert_eq!(challenged.status(), Some(503), "{}", challenged.body_text());
    assert!(
        challenged.body_text().contains("Checking your browser"),
        "{}",
        challenged.body_text()
    );
    let api = get_from(
        &proxy,
        heavy,
        "/echo/heavy/41",
        "Accept: application/json\r\n",
    )
    .await;
    assert_eq!(api.status(), Some(429), "{}", api.body_text());
    assert_eq!(api.header("retry-after"), Some("60"));
    let feed = get_from(&proxy, heavy, "/feed?page=2", &navigate).await;
    assert_eq!(feed.status(), Some(429), "an exempt feed is not challenged");
    assert_eq!(origin.requests_from("127.0.19.1"), at_origin);

    let other = get_from(&proxy, visitor, "/echo/visitor", &navigate).await;
    assert_eq!(other.status(), Some(200), "{}", other.body_text());
    wait_for_pressure(&proxy, 1.0, Duration::from_secs(3)).await;

    let recorded = events(&proxy, "?site=blog&limit=10000").await;
    let by_heavy: Vec<_> = recorded
        .iter()
        .filter(|e| e["client_ip"] == "127.0.19.1")
        .map(|e| (e["action"].as_str(), e["reason"].as_str()))
        .collect();
    assert_eq!(
        by_heavy,
        [
            (Some("rate_limit"), Some("cache_misses")),
            (Some("rate_limit"), Some("cache_misses")),
            (Some("challenge"), Some("cache_misses")),
        ],
        "{recorded:?}"
    );
    assert_eq!(recorded.len(), 3, "only the heavy client met the limit");

    for request in busy {
        assert_eq!(request.await.expect("slow request"), Some(200));
    }
    // The pressure is over once the hold time has passed without it.
    wait_for_pressure(&proxy, 0.0, Duration::from_secs(15)).await;
    let served = get_from(&proxy, heavy, "/echo/heavy/42", &navigate).await;
    assert_eq!(served.status(), Some(200), "{}", served.body_text());
}

/// With no concurrency cap, rising latency alone is pressure: after a few seconds of an
/// origin answering in milliseconds, most of its answers start taking 600 ms. Within a few
/// seconds the site is under pressure, and a client past its miss limit that was served
/// before gets 429; another address is still served.
#[tokio::test]
async fn with_its_origin_latency_rising_a_client_past_its_miss_limit_gets_429() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"off\"")
            .site(
                r#"
[site.shield]
max_origin_concurrency = 0
max_misses_per_ip = 20
"#,
            )
            .to_toml(),
    );
    let (heavy, visitor, slow) = (v4(127, 0, 20, 1), v4(127, 0, 20, 2), v4(127, 0, 20, 3));
    let json = "Accept: application/json\r\n";

    // Six seconds of a healthy origin, from which the baseline is learned; the heavy client
    // goes past its limit meanwhile and is served.
    for n in 0..60 {
        let path = if n % 2 == 0 {
            format!("/echo/heavy/{n}")
        } else {
            format!("/slow/5?n={n}")
        };
        let reply = get_from(&proxy, heavy, &path, json).await;
        assert_eq!(reply.status(), Some(200), "miss {n}: {}", reply.body_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(events(&proxy, "?site=blog&limit=10000").await.is_empty());

    // Then the origin slows down: eight clients' requests take 600 ms each.
    let addr = proxy.http_addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slowed: Vec<_> = (0..8)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = RawConn::connect_from(slow, addr).await else {
                    return;
                };
                for n in 0..20 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let path = format!("/slow/600?c={c}&n={n}");
                    if get_on(&mut conn, "blog.example", &path, "").await.is_none() {
                        return;
                    }
                }
            })
        })
        .collect();
    wait_for_pressure(&proxy, 1.0, Duration::from_secs(8)).await;

    let refused = get_from(&proxy, heavy, "/echo/heavy/late", json).await;
    assert_eq!(refused.status(), Some(429), "{}", refused.body_text());
    let other = get_from(&proxy, visitor, "/echo/visitor", json).await;
    assert_eq!(other.status(), Some(200), "{}", other.body_text());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in slowed {
        task.await.expect("slow client");
    }
    let recorded = events(&proxy, "?site=blog&limit=10000").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["client_ip"], "127.0.20.1");
    assert_eq!(recorded[0]["reason"], "cache_misses");
}

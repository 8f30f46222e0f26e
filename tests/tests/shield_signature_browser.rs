//! A real browser against an attack signature: while a Rust tool floods a TLS site over HTTP/2
//! with a copy of headless Chromium's own User-Agent and `Accept` headers, the mitigation the
//! edge derives must single out the tool (its TLS and HTTP/2 stacks, its header order), and
//! Chromium, browsing the same site and the very path the tool floods, must never meet it.
//!
//! Runs headless Chromium through chromedriver (`palisade_blackbox::browser`); the flood is one
//! TLS connection with 16 concurrent HTTP/2 streams, bounded in time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palisade_blackbox::browser::Driver;
use palisade_blackbox::client::{self, h2_request};
use palisade_blackbox::control::events;
use palisade_blackbox::{LeafCert, Origin, Palisade, SiteConfig, TestCa};

const HOST: &str = "blog.test";
/// The longest the flood runs.
const FLOOD_TIME: Duration = Duration::from_secs(25);

/// The text of the page the browser shows.
async fn page_text(browser: &fantoccini::Client) -> String {
    let value = browser
        .execute(
            "return document.body ? document.body.innerText : '';",
            Vec::new(),
        )
        .await
        .expect("read the page");
    value.as_str().unwrap_or_default().to_owned()
}

/// Navigates to `path` and returns the page's text.
async fn visit(browser: &fantoccini::Client, port: u16, path: &str) -> String {
    browser
        .goto(&format!("https://{HOST}:{port}{path}"))
        .await
        .expect("navigate");
    page_text(browser).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_never_matches_the_signature_of_a_tool_that_copies_its_headers() {
    let ca = TestCa::new();
    let cert: LeafCert = ca.issue(&[HOST]);
    let origin = Origin::start("shop");
    // Detection as it ships, but quick to learn and with a floor a single test connection
    // can pass (the defaults are 30 s and 200 requests/s).
    let config = SiteConfig::blog(origin.url())
        .hosts(&[HOST])
        .server(r#"listen_tls = ["127.0.0.1:0"]"#)
        .server("access_log = \"off\"")
        .site(&format!("tls = {}", cert.toml()))
        .site(
            "[site.shield]\nattack_learning = \"3s\"\nattack_min_rps = 40.0\nattack_hold = \"5s\"",
        )
        .to_toml();
    let proxy = Palisade::start(&config);
    let port = proxy.https_addr().port();

    let driver = Driver::start();
    let browser = driver.session().await;
    // The baseline: the browser reads a few pages, its own User-Agent read from it.
    let agent = browser
        .execute("return navigator.userAgent;", Vec::new())
        .await
        .expect("read the User-Agent");
    let agent = agent.as_str().unwrap_or_default().to_owned();
    assert!(agent.contains("Chrome"), "{agent}");
    let started = Instant::now();
    let mut page = 0;
    while started.elapsed() < Duration::from_secs(6) {
        page += 1;
        let text = visit(&browser, port, &format!("/echo/page-{page}")).await;
        assert!(text.contains(&format!("/echo/page-{page}")), "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_id = events(&proxy, "?limit=10000")
        .await
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .max()
        .unwrap_or(0);

    // The tool: Chromium's User-Agent and Accept headers, its own TLS and HTTP/2 stacks
    // (rustls and hyper), its own header order, a random query on the search page.
    let tls = ca
        .connect(proxy.https_addr(), HOST, &["h2"])
        .await
        .expect("TLS handshake");
    let sender = client::h2_handshake(tls).await.expect("HTTP/2 handshake");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for stream in 0..16u64 {
        let (mut sender, stop, sent, agent) =
            (sender.clone(), stop.clone(), sent.clone(), agent.clone());
        streams.push(tokio::spawn(async move {
            let until = Instant::now() + FLOOD_TIME;
            let mut i = stream << 32;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                i += 1;
                let mut request = h2_request(
                    "GET",
                    "https",
                    HOST,
                    &format!("/search?q={:x}k{}", i * 7919, i % 9),
                );
                let headers = request.headers_mut();
                headers.insert("user-agent", agent.parse().expect("agent"));
                headers.insert(
                    "accept",
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
                        .parse()
                        .expect("accept"),
                );
                headers.insert(
                    "accept-language",
                    "en-US,en;q=0.9".parse().expect("language"),
                );
                sent.fetch_add(1, Ordering::Relaxed);
                if client::send_h2(&mut sender, request).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    // The mitigation.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mitigation = loop {
        let found = events(&proxy, &format!("?after={after_id}&limit=10000"))
            .await
            .into_iter()
            .find(|e| e["action"] == "mitigation_on");
        if let Some(event) = found {
            break event["mitigation"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no mitigation after {} flood requests; events: {:?}",
            sent.load(Ordering::Relaxed),
            events(&proxy, "?limit=20").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rule = mitigation["rule"].as_str().unwrap_or_default().to_owned();
    println!("the tool's signature: {mitigation}");
    assert!(
        rule.contains("tls.ja4")
            || rule.contains("http2.fingerprint")
            || rule.contains("header_names"),
        "a signature of a tool that copies the browser's headers names its stacks: {rule}"
    );

    // Chromium, while the flood and its mitigation go on: every page is the origin's, the
    // flooded path included; none is the challenge or a refusal.
    for path in [
        "/echo/during-1",
        "/search?q=shoes",
        "/echo/during-2",
        "/search?q=a8f3k2q9x",
    ] {
        let text = visit(&browser, port, path).await;
        assert!(
            !text.contains("Checking your browser") && !text.contains("security settings"),
            "Chromium met the mitigation `{rule}` at {path}: {text}"
        );
    }
    let answered = events(&proxy, &format!("?after={after_id}&limit=10000"))
        .await
        .into_iter()
        .filter(|e| {
            e["reason"] == "signature"
                && e["client_ip"] == "127.0.0.1"
                && e["action"] != "mitigation_on"
        })
        .count();
    stop.store(true, Ordering::Relaxed);
    for stream in streams {
        let _ = stream.await;
    }
    println!(
        "flood: {} requests; Chromium browsed during it without meeting the mitigation",
        sent.load(Ordering::Relaxed)
    );
    // The tool and the browser share 127.0.0.1 here: the events cannot tell them apart by
    // address, so the pages above are the proof; the events show the tool was answered.
    assert!(answered > 0, "the mitigation answered nothing");
    browser.close().await.expect("close the browser");
}

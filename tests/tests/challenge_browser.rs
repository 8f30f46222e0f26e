//! Under-attack mode in a real browser. Headless Chromium, driven through chromedriver, asks a
//! site in under-attack mode for a page: it gets the challenge, solves it, and lands on the
//! origin's page at the URL it asked for; the clearance it earned lets its next visit straight
//! through. Over plain http on a host name the page hashes with its own JavaScript SHA-256
//! (browsers give no `crypto.subtle` outside secure contexts); over https, with WebCrypto.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`,
//! which scripts/test.sh does when they are missing). Without them these tests fail, saying so.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::Client;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use palisade_blackbox::browser::Driver;
use palisade_blackbox::{Palisade, SiteConfig, TestCa};

/// What only the origin's pages contain.
const MARKER: &str = "origin-page-5c1e";
/// The challenge page's heading for blog.test.
const CHALLENGE_TEXT: &str = "Checking your browser before accessing blog.test";
/// From navigation to the origin's page, at the default difficulty (issue 5).
const SOLVE_BUDGET: Duration = Duration::from_secs(2);
/// How long the test waits for the landing before it gives up.
const LANDING_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_over_http_solves_with_pure_js_sha256_and_then_goes_straight_through() {
    let origin = HtmlOrigin::start().await;
    let proxy = Palisade::start(&under_attack_blog(&origin).to_toml());
    let base = format!("http://blog.test:{}", proxy.http_addr().port());
    challenge_then_straight_through(&origin, &base, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_over_https_solves_with_webcrypto_and_then_goes_straight_through() {
    let origin = HtmlOrigin::start().await;
    let ca = TestCa::new();
    let cert = ca.issue(&["blog.test"]);
    let config = under_attack_blog(&origin)
        .server(r#"listen_tls = ["127.0.0.1:0"]"#)
        .site(&format!("tls = {}", cert.toml()));
    let proxy = Palisade::start(&config.to_toml());
    let base = format!("https://blog.test:{}", proxy.https_addr().port());
    challenge_then_straight_through(&origin, &base, true).await;
}

/// Site `blog` for `blog.test` in front of `origin`, under attack, at the default difficulty.
fn under_attack_blog(origin: &HtmlOrigin) -> SiteConfig {
    SiteConfig::blog(format!("http://{}", origin.addr))
        .hosts(&["blog.test"])
        .site(r#"state = "under_attack""#)
}

/// The whole visit: challenge, solve, land on the origin's page, then a second page without a
/// challenge. `secure`: the page is a secure context (https), so it hashes with WebCrypto.
async fn challenge_then_straight_through(origin: &HtmlOrigin, base: &str, secure: bool) {
    let driver = Driver::start();
    let browser = driver.session().await;
    let first_url = format!("{base}/some/page?x=1");

    // First visit: the interstitial, not the origin's page.
    let navigated = Instant::now();
    browser
        .goto(&first_url)
        .await
        .expect("navigate to the site");
    let challenge = Snapshot::take(&browser)
        .await
        .expect("the first page after navigation");
    assert!(
        challenge.text.contains(CHALLENGE_TEXT) && !challenge.text.contains(MARKER),
        "expected the challenge page first, got: {challenge:?}"
    );
    assert!(
        challenge.title.contains("Checking your browser"),
        "{challenge:?}"
    );
    assert_eq!(challenge.secure, secure, "{challenge:?}");
    assert_eq!(challenge.subtle, secure, "crypto.subtle: {challenge:?}");

    // The page solves it and replaces itself with the origin's page at the same URL.
    let landed = wait_for_origin_page(&browser, LANDING_TIMEOUT).await;
    let wall = navigated.elapsed();
    let solve_ms = landed.ready_at - challenge.started_at;
    println!(
        "solve time ({}): {solve_ms:.0} ms in the browser from navigation to the origin's page \
         ({} ms by the test's clock, WebDriver round trips included)",
        if secure {
            "https, WebCrypto"
        } else {
            "http, pure-JS SHA-256"
        },
        wall.as_millis()
    );
    assert_eq!(landed.url, first_url, "landed elsewhere: {landed:?}");
    assert_eq!(landed.title, "Blog", "{landed:?}");
    assert!(
        solve_ms < SOLVE_BUDGET.as_secs_f64() * 1000.0,
        "solving took {solve_ms:.0} ms, over the {SOLVE_BUDGET:?} budget"
    );
    assert_eq!(
        origin.requests_for("/some/page?x=1"),
        1,
        "the origin saw the page once, after the challenge"
    );

    // The clearance is a cookie scripts cannot read, Secure over TLS.
    let cookie = browser
        .get_named_cookie("palisade_clearance")
        .await
        .expect("the clearance cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(cookie.secure().unwrap_or(false), secure, "{cookie:?}");

    // Second visit: straight to the origin, the first paint is its page.
    let second_url = format!("{base}/another/page");
    browser.goto(&second_url).await.expect("navigate again");
    let second = Snapshot::take(&browser).await.expect("the second page");
    assert!(
        second.text.contains(MARKER) && !second.text.contains(CHALLENGE_TEXT),
        "expected the origin's page at once, got: {second:?}"
    );
    assert_eq!(second.url, second_url);
    assert_eq!(origin.requests_for("/another/page"), 1);

    browser.close().await.expect("close the browser");
}

/// Polls until the browser shows the origin's page.
async fn wait_for_origin_page(browser: &Client, timeout: Duration) -> Snapshot {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        // A snapshot taken while the page replaces itself may fail: try again.
        if let Ok(snapshot) = Snapshot::take(browser).await {
            if snapshot.text.contains(MARKER) {
                return snapshot;
            }
            last = Some(snapshot);
        }
        assert!(
            Instant::now() < deadline,
            "not on the origin's page after {timeout:?}; last seen: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the browser shows, read in one script so it all comes from one document.
#[derive(Debug)]
struct Snapshot {
    title: String,
    text: String,
    url: String,
    /// `performance.timeOrigin`: when navigation to this document started (ms since the epoch).
    started_at: f64,
    /// When this document became interactive, on the same clock.
    ready_at: f64,
    /// `isSecureContext`, and whether `crypto.subtle` exists (it does only in secure contexts).
    secure: bool,
    subtle: bool,
}

impl Snapshot {
    const SCRIPT: &str = r#"
        const nav = performance.getEntriesByType("navigation")[0];
        return {
            title: document.title,
            text: document.body ? document.body.innerText : "",
            url: location.href,
            started_at: performance.timeOrigin,
            ready_at: performance.timeOrigin + (nav ? nav.domInteractive : performance.now()),
            secure: isSecureContext,
            subtle: !!(self.crypto && crypto.subtle),
        };"#;

    async fn take(browser: &Client) -> Result<Snapshot, fantoccini::error::CmdError> {
        let v = browser.execute(Self::SCRIPT, Vec::new()).await?;
        let text = |key: &str| v[key].as_str().unwrap_or_default().to_owned();
        Ok(Snapshot {
            title: text("title"),
            text: text("text"),
            url: text("url"),
            started_at: v["started_at"].as_f64().unwrap_or(f64::NAN),
            ready_at: v["ready_at"].as_f64().unwrap_or(f64::NAN),
            secure: v["secure"].as_bool().unwrap_or(false),
            subtle: v["subtle"].as_bool().unwrap_or(false),
        })
    }
}

/// An origin whose every page is a small HTML page with [`MARKER`]; it records the path and
/// query of each request it gets.
struct HtmlOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl HtmlOrigin {
    /// Serves on a free port of 127.0.0.1, on the test's runtime (it stops with the test).
    async fn start() -> HtmlOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the origin");
        let addr = listener.local_addr().expect("origin address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let target = request
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    log.lock().expect("origin log").push(target);
                    let page = format!(
                        "<!doctype html><html lang=\"en\"><title>Blog</title><p>{MARKER}</p></html>"
                    );
                    async move {
                        let response = Response::builder()
                            .header("content-type", "text/html; charset=utf-8")
                            .body(Full::new(Bytes::from(page)))
                            .expect("response");
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        HtmlOrigin { addr, seen }
    }

    fn requests_for(&self, target: &str) -> usize {
        let seen = self.seen.lock().expect("origin log");
        seen.iter().filter(|t| *t == target).count()
    }
}

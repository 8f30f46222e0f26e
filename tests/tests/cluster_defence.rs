//! Defence shared across a cluster: a visitor cleared at one edge passes at every edge (the
//! control node's challenge keys travel, sealed, to all of them), seen from a real browser.

use palisade_blackbox::browser::Driver;
use palisade_blackbox::cluster::TestCluster;
use palisade_blackbox::{Origin, SiteConfig, client};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(10);
const CHALLENGE_TEXT: &str = "Checking your browser";

/// What the page shows: its title and text.
async fn page(browser: &fantoccini::Client) -> (String, String) {
    let v = browser
        .execute(
            "return [document.title, document.body ? document.body.innerText : ''];",
            Vec::new(),
        )
        .await
        .unwrap_or_default();
    let text = |i: usize| v[i].as_str().unwrap_or_default().to_owned();
    (text(0), text(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_cleared_at_one_edge_is_served_at_the_others_without_a_new_challenge() {
    let origin = Origin::start("o");
    let control = SiteConfig::blog(origin.url())
        .hosts(&["blog.test"])
        .site(r#"state = "under_attack""#)
        .to_toml();
    let cluster = TestCluster::start(&control, 3);
    cluster
        .until_every_edge_answers("blog.test", 503, WITHIN)
        .await;

    let driver = Driver::start();
    let browser = driver.session().await;
    let at = |edge: usize, path: &str| {
        format!(
            "http://blog.test:{}{path}",
            cluster.edges[edge].http_addr().port()
        )
    };
    // At edge A: the challenge, solved by the page itself, then the origin's answer.
    browser.goto(&at(0, "/echo/first")).await.expect("navigate");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = page(&browser).await;
        if text.contains("/echo/first") && !text.contains(CHALLENGE_TEXT) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never got past the challenge at edge A: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // (The browser asks for a favicon too: the origin's count is no measure of pages.)

    // At edges B and C (the same host name, so the same cookie): straight to the origin.
    for (edge, path) in [(1, "/echo/second"), (2, "/echo/third")] {
        browser.goto(&at(edge, path)).await.expect("navigate");
        let (title, text) = page(&browser).await;
        assert!(
            text.contains(path)
                && !title.contains(CHALLENGE_TEXT)
                && !text.contains(CHALLENGE_TEXT),
            "edge {edge} challenged again: {title} {text}"
        );
    }
    browser.close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_one_edge_puts_the_site_under_attack_at_every_edge_until_it_ends() {
    let origin = Origin::start("o");
    let control = SiteConfig::blog(origin.url())
        .server("access_log = \"off\"")
        .site(
            "[site.shield]\nattack_hold = \"2s\"\nattack_learning = \"1s\"\nattack_min_rps = 20.0",
        )
        .to_toml();
    let cluster = std::sync::Arc::new(TestCluster::start(&control, 3));
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    // Edge A learns a quiet baseline; B and C see no traffic at all.
    let a = cluster.edges[0].http_addr();
    for _ in 0..3 {
        client::get(a, "blog.example", "/echo").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A flood at A, bounded in time.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut flood = Vec::new();
    for _ in 0..8 {
        let flooding = std::sync::Arc::clone(&flooding);
        flood.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            while flooding.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let _ = client::try_get(a, "blog.example", "/echo").await;
            }
        }));
    }
    let started = Instant::now();
    let challenged = cluster
        .until_every_edge_answers("blog.example", 503, WITHIN)
        .await;
    println!("every edge challenged {challenged:?} after the flood at edge A began");
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let trip_to_all = started.elapsed();
    assert!(trip_to_all < WITHIN);
    // The flood over, A's hold ends, and with it the others'. (Asking A meanwhile would keep
    // its attack on: the mitigation it derived matches this client.)
    let deadline = Instant::now() + Duration::from_secs(20);
    for edge in &cluster.edges[1..] {
        loop {
            let reply = client::get(edge.http_addr(), "blog.example", "/echo").await;
            if reply.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "still held: {}", reply.status);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

//! Defence shared across a cluster: a visitor cleared at one edge passes at every edge (the
//! control node's challenge keys travel, sealed, to all of them), seen from a real browser.

use palisade_blackbox::browser::Driver;
use palisade_blackbox::cluster::TestCluster;
use palisade_blackbox::{Origin, SiteConfig};
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
        assert!(Instant::now() < deadline, "never got past the challenge at edge A: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // (The browser asks for a favicon too: the origin's count is no measure of pages.)

    // At edges B and C (the same host name, so the same cookie): straight to the origin.
    for (edge, path) in [(1, "/echo/second"), (2, "/echo/third")] {
        browser.goto(&at(edge, path)).await.expect("navigate");
        let (title, text) = page(&browser).await;
        assert!(
            text.contains(path) && !title.contains(CHALLENGE_TEXT) && !text.contains(CHALLENGE_TEXT),
            "edge {edge} challenged again: {title} {text}"
        );
    }
    browser.close().await.expect("close the browser");
}

//! A site's state as the operator's switch (`PUT /api/sites/{site}/state`, `palisade site
//! state`) for every site: the `--origin` flag's and a file's, kept in the store over what
//! the file says, audited, and kept across a restart; the API's sites through their document.

use std::time::Duration;

use palisade_blackbox::cli::palisade;
use palisade_blackbox::client::{self, Reply};
use palisade_blackbox::control::api;
use palisade_blackbox::{Origin, Palisade, SiteConfig};
use serde_json::json;

/// The challenge page: 503, HTML, not stored, with the challenge's parameters.
fn is_challenge_page(reply: &Reply) -> bool {
    reply.status == 503
        && reply.header("cache-control") == Some("no-store")
        && reply.text().contains(r#"id="palisade-challenge""#)
}

/// `GET path` as a browser asks for a page, with a fresh query so no cached copy answers.
async fn page(proxy: &Palisade, host: &str, poll: &mut u32) -> Reply {
    *poll += 1;
    client::get(proxy.http_addr(), host, &format!("/echo?poll={poll}")).await
}

#[tokio::test]
async fn the_origin_flags_site_is_put_under_attack_and_back_from_the_cli_audited_and_kept_across_a_restart()
 {
    let origin = Origin::start("o");
    let mut proxy = Palisade::serve_origin(&origin.url());
    let mut poll = 0;
    assert_eq!(page(&proxy, "any.example", &mut poll).await.status, 200);

    let said = palisade(
        &proxy,
        &[
            "site",
            "state",
            "default",
            "under_attack",
            "--reason",
            "flood",
        ],
    )
    .ok();
    assert_eq!(said.trim(), "site default is under_attack");
    // In force before the command returned: the very next request is challenged.
    let challenged = page(&proxy, "any.example", &mut poll).await;
    assert!(is_challenge_page(&challenged), "{}", challenged.text());
    let shown = palisade(&proxy, &["site", "show", "default", "--json"]).json();
    assert_eq!(shown["state"], "under_attack");
    assert_eq!(shown["source"], "file");
    assert_eq!(shown["operator_state"]["configured"], "active");
    assert!(
        shown["operator_state"]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("tok_"))
    );

    // The store keeps it: a crash and a restart still challenge.
    proxy.kill_and_restart();
    let challenged = page(&proxy, "any.example", &mut poll).await;
    assert!(is_challenge_page(&challenged), "{}", challenged.text());

    palisade(&proxy, &["site", "state", "default", "active"]).ok();
    assert_eq!(page(&proxy, "any.example", &mut poll).await.status, 200);
    let shown = palisade(&proxy, &["site", "show", "default", "--json"]).json();
    assert_eq!(shown["state"], "active");
    assert!(
        shown.get("operator_state").is_none(),
        "back to what the flag says, nothing is kept: {shown}"
    );
    // Switching to the state it runs changes nothing and records nothing.
    palisade(&proxy, &["site", "state", "default", "active"]).ok();

    let log = palisade(&proxy, &["audit", "list", "--target", "site:default"]).ok();
    let lines: Vec<&str> = log.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "two switches, newest first:\n{log}");
    assert!(
        lines[0].contains("site.state") && lines[0].contains("under_attack -> active"),
        "{log}"
    );
    assert!(
        lines[1].contains("active -> under_attack") && lines[1].ends_with("flood"),
        "{log}"
    );

    // Its configuration still comes from the flag, and the refusal says where to go.
    let refused = palisade(
        &proxy,
        &["site", "patch", "default", "--set", "cache.ttl=5m"],
    )
    .refused();
    assert!(
        refused.contains("(409)")
            && refused.contains("--origin flag")
            && !refused.contains("file:")
            && refused.contains("palisade site state default"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_file_sites_switched_state_wins_over_the_file_until_switched_back_to_what_it_says() {
    let origin = Origin::start("o");
    let config = SiteConfig::blog(origin.url()).site("state = \"paused\"");
    let proxy = Palisade::start(&config.to_toml());
    let mut poll = 0;

    let (status, body) = api(
        &proxy,
        "PUT",
        "/api/sites/blog/state",
        Some(json!({"state": "under_attack"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "under_attack");
    assert_eq!(body["operator_state"]["configured"], "paused");
    assert!(is_challenge_page(
        &page(&proxy, "blog.example", &mut poll).await
    ));

    // The file changes (a reload): its other settings apply, the switch stays.
    proxy.rewrite_config(
        &config
            .clone()
            .hosts(&["blog.example", "www.blog.example"])
            .to_toml(),
    );
    proxy.sighup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = page(&proxy, "www.blog.example", &mut poll).await;
        if reply.status != 421 {
            assert!(is_challenge_page(&reply), "{}", reply.text());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Refusals: suspension has its own route; no such site; not a state.
    let (status, body) = api(
        &proxy,
        "PUT",
        "/api/sites/blog/state",
        Some(json!({"state": "suspended"})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("state")),
        "{body}"
    );
    let (status, _) = api(
        &proxy,
        "PUT",
        "/api/sites/nope/state",
        Some(json!({"state": "paused"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api(
        &proxy,
        "PUT",
        "/api/sites/blog/state",
        Some(json!({"state": "sleeping"})),
    )
    .await;
    assert_eq!(status, 400);

    // Back to what the file says: nothing is kept over it any more.
    let (status, body) = api(
        &proxy,
        "PUT",
        "/api/sites/blog/state",
        Some(json!({"state": "paused"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "paused");
    assert!(body.get("operator_state").is_none(), "{body}");
    let reply = page(&proxy, "blog.example", &mut poll).await;
    assert_eq!(reply.status, 200, "paused: a plain proxy");
    assert!(
        reply
            .header("cache-status")
            .is_none_or(|s| !s.contains("hit"))
    );
}

#[tokio::test]
async fn an_api_sites_state_switch_is_its_documents_state_and_audited() {
    let origin = Origin::start("o");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let (status, _) = api(
        &proxy,
        "POST",
        "/api/sites",
        Some(json!({"name": "shop", "hosts": ["shop.example"], "origins": [origin.url()]})),
    )
    .await;
    assert_eq!(status, 201);

    let said = palisade(&proxy, &["site", "state", "shop", "paused"]).ok();
    assert_eq!(said.trim(), "site shop is paused");
    let (_, shown) = api(&proxy, "GET", "/api/sites/shop", None).await;
    assert_eq!(shown["state"], "paused");
    assert!(shown.get("operator_state").is_none(), "{shown}");
    palisade(&proxy, &["site", "state", "shop", "active"]).ok();
    let (_, shown) = api(&proxy, "GET", "/api/sites/shop", None).await;
    assert_eq!(shown["state"], "active");

    let (_, log) = api(&proxy, "GET", "/api/audit?target=site:shop", None).await;
    let switches: Vec<(String, String)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "site.state")
        .map(|e| {
            (
                e["before"]["state"].as_str().unwrap_or("").to_string(),
                e["after"]["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        switches,
        [
            ("paused".to_string(), "active".to_string()),
            ("active".to_string(), "paused".to_string())
        ]
    );
}

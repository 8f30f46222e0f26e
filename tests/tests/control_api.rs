//! The admin API over real HTTP against the real binary: sites created, read, changed and
//! deleted; every route's refusal of missing, invalid, revoked and out-of-scope tokens (walked
//! from the OpenAPI document, so a new route cannot skip it); a change reaching the edge within
//! a second; suspension and reinstatement of a live site under load; an abuse report cited by
//! a suspension in the audit log; and a `kill -9` in the middle of a burst of writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palisade_blackbox::ADMIN_TOKEN;
use palisade_blackbox::client::{self, Reply};
use palisade_blackbox::control::{api, api_as, json_of, make_token};
use palisade_blackbox::scripted_origin::ScriptedOrigin;
use palisade_blackbox::{Origin, Palisade, SiteConfig};
use serde_json::{Value, json};

/// A file with one site (`blog`), so the API has a file site beside the ones it makes.
fn proxy_with_file_site(origin: &Origin) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).to_toml())
}

fn shop(origin_url: &str) -> Value {
    json!({
        "name": "shop",
        "hosts": ["shop.example", "www.shop.example"],
        "origins": [origin_url],
        "cache": {"ttl": "5m"},
        "rule": [{"id": "no-admin", "expr": "http.request.uri.path starts_with \"/admin\"", "action": "block"}]
    })
}

/// Polls `host/path` through the edge until `check` holds, for at most `limit`; returns the
/// time it took, or panics with the last reply.
async fn within(
    proxy: &Palisade,
    host: &str,
    path: &str,
    limit: Duration,
    check: impl Fn(&Reply) -> bool,
) -> Duration {
    let start = Instant::now();
    for poll in 0u64.. {
        // A new query each time: a cached answer must not hide the change.
        let reply = client::get(proxy.http_addr(), host, &format!("{path}?poll={poll}")).await;
        if check(&reply) {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!(
                "{host}{path} did not change within {limit:?}: {} {}",
                reply.status,
                reply.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!("the loop ends by returning or panicking")
}

// ---- Sites ---------------------------------------------------------------------------------

#[tokio::test]
async fn sites_round_trip_through_the_api_with_the_fields_of_their_toml_table() {
    let origin = Origin::start("file");
    let proxy = proxy_with_file_site(&origin);

    let (status, created) = api(&proxy, "POST", "/api/sites", Some(shop(&origin.url()))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["source"], "api");
    assert_eq!(created["state"], "active");
    for (key, value) in shop(&origin.url()).as_object().unwrap() {
        assert_eq!(&created[key], value, "field {key} round-trips");
    }

    let (status, listed) = api(&proxy, "GET", "/api/sites", None).await;
    assert_eq!(status, 200);
    let names: Vec<(&str, &str)> = listed["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, vec![("blog", "file"), ("shop", "api")]);

    let (status, patched) = api(
        &proxy,
        "PATCH",
        "/api/sites/shop",
        Some(json!({"cache": {"ttl": "10m"}, "rule": null, "state": "under_attack"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["cache"]["ttl"], "10m");
    assert!(
        patched.get("rule").is_none(),
        "null removes a key: {patched}"
    );
    assert_eq!(patched["state"], "under_attack");

    // What GET shows can be sent back as it is (read-only keys are ignored).
    let (_, shown) = api(&proxy, "GET", "/api/sites/shop", None).await;
    let (status, replaced) = api(&proxy, "PUT", "/api/sites/shop", Some(shown.clone())).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["hosts"], shown["hosts"]);

    let (status, _) = api(&proxy, "DELETE", "/api/sites/shop", None).await;
    assert_eq!(status, 200);
    let (status, gone) = api(&proxy, "GET", "/api/sites/shop", None).await;
    assert_eq!(status, 404, "{gone}");
    let (status, _) = api(&proxy, "DELETE", "/api/sites/shop", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_site_list_comes_in_pages_the_files_first_and_a_limited_token_pages_its_own() {
    let origin = Origin::start("file");
    let proxy = proxy_with_file_site(&origin);
    for name in ["e", "a", "d", "c", "b"] {
        let document =
            json!({"name": name, "hosts": [format!("{name}.example")], "origins": [origin.url()]});
        let (status, body) = api(&proxy, "POST", "/api/sites", Some(document)).await;
        assert_eq!(status, 201, "{body}");
    }
    let names = |page: &Value| -> Vec<String> {
        page["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Followed page by page, the pages hold every site once, in the one-page order.
    let (status, whole) = api(&proxy, "GET", "/api/sites", None).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(names(&whole), ["blog", "a", "b", "c", "d", "e"]);
    assert!(
        whole.get("next").is_none(),
        "one page holds six sites: {whole}"
    );
    let mut paged = Vec::new();
    let mut pages = Vec::new();
    let mut path = "/api/sites?limit=2".to_string();
    loop {
        let (status, page) = api(&proxy, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages.push(names(&page));
        paged.extend(names(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/sites?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, [["blog", "a"], ["b", "c"], ["d", "e"]]);
    assert_eq!(paged, names(&whole));
    // A limited token's pages hold its sites only.
    let token = make_token(&proxy, &["read"], Some(&["d", "blog", "b"])).await;
    let reply = api_as(
        &proxy,
        Some(&token.secret),
        "GET",
        "/api/sites?limit=2",
        None,
    )
    .await;
    let first = json_of(&reply);
    assert_eq!(names(&first), ["blog", "b"]);
    assert_eq!(first["next"], "b");
    let reply = api_as(
        &proxy,
        Some(&token.secret),
        "GET",
        "/api/sites?limit=2&after=b",
        None,
    )
    .await;
    let second = json_of(&reply);
    assert_eq!(names(&second), ["d"]);
    assert!(second.get("next").is_none(), "{second}");
    // Limits out of range name the parameter.
    for bad in [
        "/api/sites?limit=0",
        "/api/sites?limit=10001",
        "/api/sites?limit=x",
    ] {
        let (status, body) = api(&proxy, "GET", bad, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().contains("limit"), "{bad}: {body}");
    }
}

#[tokio::test]
async fn invalid_documents_are_refused_naming_the_field_and_file_sites_are_read_only() {
    let origin = Origin::start("file");
    let proxy = proxy_with_file_site(&origin);
    let cases = [
        (
            json!({"name": "x", "hosts": ["x.example"], "origins": ["ftp://nope"]}),
            422,
            "origins",
        ),
        (
            json!({"name": "x", "hosts": [], "origins": [origin.url()]}),
            422,
            "hosts",
        ),
        (
            json!({"name": "x", "hosts": ["x.example"], "origins": [origin.url()], "cache": {"ttl": "soon"}}),
            422,
            "cache.ttl",
        ),
        (
            json!({"name": "x", "hosts": ["x.example"], "origins": [origin.url()], "rule": [{"id": "r", "expr": "http.nope eq 1", "action": "block"}]}),
            422,
            "",
        ),
        (
            json!({"name": "Bad Name", "hosts": ["x.example"], "origins": [origin.url()]}),
            422,
            "name",
        ),
        (
            json!({"hosts": ["x.example"], "origins": [origin.url()]}),
            422,
            "name",
        ),
        // blog.example belongs to the file's site.
        (
            json!({"name": "x", "hosts": ["blog.example"], "origins": [origin.url()]}),
            409,
            "",
        ),
        (
            json!({"name": "blog", "hosts": ["other.example"], "origins": [origin.url()]}),
            409,
            "",
        ),
    ];
    for (document, status, field) in cases {
        let (got, body) = api(&proxy, "POST", "/api/sites", Some(document.clone())).await;
        assert_eq!(got, status, "{document} -> {body}");
        assert!(body["error"].is_string(), "{body}");
        if !field.is_empty() {
            let named = body["field"].as_str().unwrap_or("");
            assert!(named.starts_with(field), "{document} -> {body}");
        }
    }
    let (status, body) = api(
        &proxy,
        "PATCH",
        "/api/sites/blog",
        Some(json!({"state": "paused"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("palisade.toml"),
        "{body}"
    );
    let (status, _) = api(&proxy, "DELETE", "/api/sites/blog", None).await;
    assert_eq!(status, 409);
    let (status, body) = api(&proxy, "POST", "/api/sites", Some(json!([1, 2]))).await;
    assert_eq!(status, 400, "{body}");
    // The edge still serves the file's site: nothing was half-applied.
    let reply = client::get(proxy.http_addr(), "blog.example", "/status/200").await;
    assert_eq!(reply.status, 200);
    let (_, listed) = api(&proxy, "GET", "/api/sites", None).await;
    assert_eq!(listed["sites"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_site_change_reaches_the_edge_within_one_second_without_a_restart() {
    let first = Origin::start("first");
    let second = Origin::start("second");
    let proxy = proxy_with_file_site(&first);
    let pid = proxy.pid();

    let before = client::get(proxy.http_addr(), "shop.example", "/status/200").await;
    assert_eq!(before.status, 421, "an unknown host until the site exists");
    let (status, body) = api(&proxy, "POST", "/api/sites", Some(shop(&first.url()))).await;
    assert_eq!(status, 201, "{body}");
    let took = within(
        &proxy,
        "shop.example",
        "/status/200",
        Duration::from_secs(1),
        |r| r.status == 200 && r.origin_id() == Some("first"),
    )
    .await;
    assert!(took <= Duration::from_secs(1));

    let (status, body) = api(
        &proxy,
        "PATCH",
        "/api/sites/shop",
        Some(json!({"origins": [second.url()]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    within(
        &proxy,
        "shop.example",
        "/status/200",
        Duration::from_secs(1),
        |r| r.origin_id() == Some("second"),
    )
    .await;
    // The new rule set applies too: the site's rule blocks /admin.
    let admin = client::get(proxy.http_addr(), "shop.example", "/admin/x").await;
    assert_eq!(admin.status, 403);

    let (status, _) = api(
        &proxy,
        "PATCH",
        "/api/sites/shop",
        Some(json!({"state": "paused"})),
    )
    .await;
    assert_eq!(status, 200);
    // Paused: a plain proxy, the shield's rules step aside.
    within(
        &proxy,
        "shop.example",
        "/admin/x",
        Duration::from_secs(1),
        |r| r.status == 404,
    )
    .await;

    let (status, _) = api(&proxy, "DELETE", "/api/sites/shop", None).await;
    assert_eq!(status, 200);
    within(
        &proxy,
        "shop.example",
        "/status/200",
        Duration::from_secs(1),
        |r| r.status == 421,
    )
    .await;
    assert_eq!(proxy.pid(), pid, "no restart");
}

// ---- Tokens and scopes ---------------------------------------------------------------------

/// What to put in a route's path parameters.
fn fill(path: &str, token_id: &str) -> String {
    let id = if path.starts_with("/api/reports/") {
        "1"
    } else {
        token_id
    };
    path.replace("{site}", "shop").replace("{id}", id)
}

#[tokio::test]
async fn every_route_refuses_missing_invalid_revoked_and_out_of_scope_tokens() {
    let origin = Origin::start("o");
    let proxy = proxy_with_file_site(&origin);
    let (status, _) = api(&proxy, "POST", "/api/sites", Some(shop(&origin.url()))).await;
    assert_eq!(status, 201);

    let make = |scopes: Value, sites: Option<Value>| {
        let mut body = json!({"name": "t", "scopes": scopes});
        if let Some(sites) = sites {
            body["sites"] = sites;
        }
        body
    };
    let mut tokens = std::collections::HashMap::new();
    for (label, body) in [
        ("read", make(json!(["read"]), None)),
        ("edit", make(json!(["edit"]), None)),
        ("purge", make(json!(["purge"]), None)),
        ("suspend", make(json!(["suspend"]), None)),
        (
            "all-for-blog",
            make(
                json!(["read", "edit", "purge", "suspend"]),
                Some(json!(["blog"])),
            ),
        ),
        (
            "revoked",
            make(json!(["read", "edit", "purge", "suspend"]), None),
        ),
    ] {
        let (status, token) = api(&proxy, "POST", "/api/tokens", Some(body)).await;
        assert_eq!(status, 201, "{token}");
        tokens.insert(
            label,
            (
                token["id"].as_str().unwrap().to_string(),
                token["secret"].as_str().unwrap().to_string(),
            ),
        );
    }
    let revoked = tokens["revoked"].clone();
    let (status, _) = api(
        &proxy,
        "DELETE",
        &format!("/api/tokens/{}", revoked.0),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, document) = api(&proxy, "GET", "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let Some(scope) = operation.get("x-palisade-scope").and_then(Value::as_str) else {
                continue; // `parameters`
            };
            let method = method.to_uppercase();
            let target = fill(path, &tokens["read"].0);
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            let refusals: Vec<(&str, Option<&str>, u16)> = {
                let mut cases = vec![
                    ("missing", None, 401),
                    ("invalid", Some("pal_not-a-token-anyone-has"), 401),
                    ("revoked", Some(revoked.1.as_str()), 401),
                ];
                if scope != "any" {
                    // A token with every scope but the one needed (admin routes: all four).
                    let other = ["read", "edit", "purge", "suspend"]
                        .into_iter()
                        .find(|s| *s != scope)
                        .unwrap();
                    cases.push(("out of scope", Some(tokens[other].1.as_str()), 403));
                }
                if path.contains("{site}") {
                    cases.push((
                        "another site's",
                        Some(tokens["all-for-blog"].1.as_str()),
                        403,
                    ));
                }
                cases
            };
            for (what, token, expected) in refusals {
                let reply = api_as(&proxy, token, &method, &target, body.clone()).await;
                assert_eq!(
                    reply.status,
                    expected,
                    "{method} {target} with a {what} token: {}",
                    reply.text()
                );
                if expected == 401 {
                    assert_eq!(
                        reply.header("www-authenticate"),
                        Some("Bearer realm=\"palisade\"")
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 60,
        "walked {checked} refusals: every route is in the document"
    );
    // Nothing a refused request asked for happened.
    let (_, site) = api(&proxy, "GET", "/api/sites/shop", None).await;
    assert_eq!(site["state"], "active");
    // And a token with the scope does get through.
    let read = api_as(
        &proxy,
        Some(&tokens["read"].1),
        "GET",
        "/api/sites/shop",
        None,
    )
    .await;
    assert_eq!(read.status, 200);
    let limited = api_as(
        &proxy,
        Some(&tokens["all-for-blog"].1),
        "GET",
        "/api/sites",
        None,
    )
    .await;
    let names: Vec<String> = json_of(&limited)["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["blog"], "a limited token lists its sites only");
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked_and_secrets_are_shown_once() {
    let origin = Origin::start("o");
    let proxy = proxy_with_file_site(&origin);
    let (_, listed) = api(&proxy, "GET", "/api/tokens", None).await;
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].get("secret").is_none() && tokens[0].get("hash").is_none());
    let admin_id = tokens[0]["id"].as_str().unwrap().to_string();
    let (status, body) = api(&proxy, "DELETE", &format!("/api/tokens/{admin_id}"), None).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api(
        &proxy,
        "POST",
        "/api/tokens",
        Some(json!({"name": "x", "scopes": ["root"]})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("scopes")),
        "{body}"
    );
}

#[tokio::test]
async fn the_first_start_prints_an_admin_token_once_and_keeps_only_its_hash() {
    let origin = Origin::start("o");
    let proxy = Palisade::start_without_bootstrap_token(&SiteConfig::blog(origin.url()).to_toml());
    let printed = proxy
        .access_log_lines()
        .iter()
        .find_map(|l| l.split("kept): ").nth(1).map(str::to_string))
        .expect("the admin token is printed");
    let reply = api_as(&proxy, Some(&printed), "GET", "/api/sites", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let suite = api_as(&proxy, Some(ADMIN_TOKEN), "GET", "/api/sites", None).await;
    assert_eq!(
        suite.status, 401,
        "no environment token: only the printed one works"
    );
    let db = std::fs::read(proxy.dir().join("data").join("palisade.db")).unwrap();
    let secret = printed.as_bytes();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret),
        "the secret is not stored"
    );
}

// ---- Suspension ----------------------------------------------------------------------------

#[tokio::test]
async fn a_suspended_site_under_load_never_reaches_its_origin_and_reinstating_restores_it() {
    // Cacheable answers, so the test also sees that nothing comes from the cache.
    let origin = ScriptedOrigin::numbered("Cache-Control: max-age=600\r\n");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let cached = client::get(proxy.http_addr(), "blog.example", "/page").await;
    assert_eq!(
        (cached.status.as_u16(), cached.text().as_str()),
        (200, "v0")
    );

    // Load: four clients asking for the cached page and uncached ones, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (stop, answered, addr) = (Arc::clone(&stop), Arc::clone(&answered), proxy.http_addr());
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut sender = None;
            let mut n = 0u64;
            // Bounded in count and time.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 20_000 {
                let path = if n.is_multiple_of(2) {
                    "/page".to_string()
                } else {
                    format!("/u/{c}/{n}")
                };
                // Keep-alive connections, as browsers use (a new connection per request
                // would run into the edge's per-address accept-rate guard).
                if sender.is_none() {
                    sender = match client::tcp(addr).await {
                        Ok(tcp) => client::h1_handshake(tcp).await.ok(),
                        Err(_) => None,
                    };
                }
                let Some(open) = sender.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let request = client::h1_request("GET", "blog.example", &path, client::empty());
                match client::send_h1(open, request).await {
                    Ok(reply) => {
                        statuses.push((Instant::now(), reply.status, reply.text()));
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => sender = None,
                }
                n += 1;
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, body) = api(
        &proxy,
        "POST",
        "/api/sites/blog/suspend",
        Some(json!({"reason": "credible threats of violence", "legal": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "suspended");
    let suspended_at = Instant::now();
    // Requests already past routing when the snapshot changed may still finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let origin_then = origin.requests();
    let answered_then = answered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        answered.load(Ordering::Relaxed) > answered_then + 20,
        "the load kept going: {answered_then} then {}",
        answered.load(Ordering::Relaxed)
    );
    assert_eq!(
        origin.requests(),
        origin_then,
        "no request reached the origin while suspended"
    );
    let notice = client::get(proxy.http_addr(), "blog.example", "/page").await;
    assert_eq!(notice.status, 403);
    assert!(notice.text().contains("suspended"), "{}", notice.text());
    assert!(!notice.text().contains("v0"));
    assert_eq!(notice.header("cache-control"), Some("no-store"));

    // Answers that arrive after this may be the reinstated site's.
    let reinstated_at = Instant::now();
    let (status, body) = api(
        &proxy,
        "POST",
        "/api/sites/blog/reinstate",
        Some(json!({"reason": "threat removed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "active");
    let before = origin.requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        origin.requests() > before,
        "service is back: the origin gets requests again"
    );
    let page = client::get(proxy.http_addr(), "blog.example", "/page").await;
    assert_eq!(
        (page.status.as_u16(), page.text().as_str()),
        (200, "v0"),
        "the cache is back too"
    );

    for client in clients {
        for (at, status, text) in client.await.unwrap() {
            let settled = at > suspended_at + Duration::from_millis(200) && at < reinstated_at;
            if settled {
                assert_eq!(status, 403, "while suspended: {text}");
            }
        }
    }
}

#[tokio::test]
async fn a_legal_suspension_answers_451_and_a_reason_is_required() {
    let origin = Origin::start("o");
    let proxy = proxy_with_file_site(&origin);
    let (status, body) = api(
        &proxy,
        "POST",
        "/api/sites/blog/suspend",
        Some(json!({"reason": "  "})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("reason")),
        "{body}"
    );
    let (status, body) = api(&proxy, "POST", "/api/sites/blog/suspend", Some(json!({}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api(
        &proxy,
        "POST",
        "/api/sites/nope/suspend",
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, _) = api(
        &proxy,
        "POST",
        "/api/sites/blog/suspend",
        Some(json!({"reason": "court order 12/345", "legal": true})),
    )
    .await;
    assert_eq!(status, 200);
    let reply = within(
        &proxy,
        "blog.example",
        "/status/200",
        Duration::from_secs(1),
        |r| r.status == 451,
    )
    .await;
    assert!(reply <= Duration::from_secs(1));
    let mut request = client::h1_request("GET", "blog.example", "/status/200", client::empty());
    request
        .headers_mut()
        .insert("accept", "application/json".parse().unwrap());
    let json_notice = client::try_send(proxy.http_addr(), request).await.unwrap();
    assert_eq!(json_of(&json_notice)["error"], "site_suspended");
    assert_eq!(origin.requests(), 0);
    let (status, _) = api(&proxy, "POST", "/api/sites/blog/reinstate", None).await;
    assert_eq!(status, 200);
    let (status, body) = api(&proxy, "POST", "/api/sites/blog/reinstate", None).await;
    assert_eq!(status, 409, "not suspended any more: {body}");
    within(
        &proxy,
        "blog.example",
        "/status/200",
        Duration::from_secs(1),
        |r| r.status == 200,
    )
    .await;
}

#[tokio::test]
async fn an_abuse_report_leads_to_a_suspension_that_cites_it_in_the_audit_log() {
    let origin = Origin::start("o");
    let proxy = proxy_with_file_site(&origin);
    let report = |category: &str| {
        json!({
            "category": category,
            "urls": ["http://blog.example/post/1"],
            "description": "a post gives a named person's home address and says to go there",
        })
        .to_string()
    };
    let mut ids = Vec::new();
    for (i, category) in ["copyright", "personal_information"]
        .into_iter()
        .enumerate()
    {
        // Two reporters: the intake limits reports per address.
        let mut request = client::h1_request(
            "POST",
            "blog.example",
            "/.well-known/palisade/abuse",
            client::full(report(category)),
        );
        request
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        let reply = client::try_send(proxy.http_addr(), request).await.unwrap();
        assert_eq!(reply.status, 201, "report {i}: {}", reply.text());
        ids.push(json_of(&reply)["id"].as_i64().unwrap());
    }
    assert_eq!(origin.requests(), 0, "reports never reach the origin");

    let (status, queue) = api(&proxy, "GET", "/api/reports", None).await;
    assert_eq!(status, 200);
    let queue = queue["reports"].as_array().unwrap();
    assert_eq!(queue[0]["id"], ids[1], "doxxing is urgent and listed first");
    assert_eq!(queue[0]["urgent"], true);
    assert_eq!(queue[0]["status"], "new");
    assert_eq!(queue[0]["site"], "blog");

    let (status, body) = api(
        &proxy,
        "POST",
        "/api/sites/blog/suspend",
        Some(json!({"reason": "doxxing", "reports": [ids[1], 999_999]})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("reports")),
        "{body}"
    );
    let (status, body) = api(
        &proxy,
        "POST",
        "/api/sites/blog/suspend",
        Some(json!({"reason": "doxxing: home address posted", "reports": [ids[1]]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["suspension"]["reports"], json!([ids[1]]));

    let (_, report) = api(&proxy, "GET", &format!("/api/reports/{}", ids[1]), None).await;
    assert_eq!(report["status"], "actioned");
    let (status, report) = api(
        &proxy,
        "PATCH",
        &format!("/api/reports/{}", ids[0]),
        Some(json!({"status": "dismissed", "notes": "not ours"})),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["status"].as_str(), report["notes"].as_str()),
        (Some("dismissed"), Some("not ours"))
    );

    let (_, audit) = api(&proxy, "GET", "/api/audit?target=site:blog", None).await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "site.suspend");
    assert_eq!(entry["reason"], "doxxing: home address posted");
    assert_eq!(entry["after"]["suspension"]["reports"], json!([ids[1]]));
    assert!(entry["actor"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(entry["hash"].as_str().unwrap().len(), 64);
    let (_, all) = api(&proxy, "GET", "/api/audit?limit=100", None).await;
    let actions: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"report.update"), "{actions:?}");
    // The chain links every entry to the one before it.
    let entries = all["entries"].as_array().unwrap();
    for pair in entries.windows(2) {
        assert_eq!(
            pair[0]["prev_hash"], pair[1]["hash"],
            "newest first, each pointing at the next older"
        );
    }
    // No route changes or removes an entry.
    for method in ["PATCH", "PUT", "DELETE", "POST"] {
        let (status, _) = api(&proxy, method, "/api/audit", Some(json!({}))).await;
        assert_eq!(status, 405, "{method} /api/audit");
    }
}

// ---- Crash safety --------------------------------------------------------------------------

#[tokio::test]
async fn kill_9_during_a_burst_of_writes_leaves_a_consistent_store() {
    let origin = Origin::start("o");
    let mut proxy = proxy_with_file_site(&origin);
    let admin = proxy.admin_addr();
    let url = origin.url();
    let mut writers = Vec::new();
    for w in 0..4 {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let name = format!("w{w}-{i}");
                let body =
                    json!({"name": name, "hosts": [format!("{name}.example")], "origins": [url]})
                        .to_string();
                let mut request = client::h1_request(
                    "POST",
                    &admin.to_string(),
                    "/api/sites",
                    client::full(body),
                );
                request.headers_mut().insert(
                    "authorization",
                    format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
                );
                request
                    .headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                match client::try_send(admin, request).await {
                    Ok(reply) if reply.status == 201 => acknowledged.push(name),
                    Ok(reply) => panic!("write refused: {} {}", reply.status, reply.text()),
                    Err(_) => break, // the process is gone
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.kill_and_restart();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty(),
        "some writes landed before the kill"
    );

    let (status, listed) = api(&proxy, "GET", "/api/sites", None).await;
    assert_eq!(status, 200);
    let stored: Vec<String> = listed["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "api")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    for name in &acknowledged {
        assert!(
            stored.contains(name),
            "acknowledged write {name} survived the kill"
        );
    }
    assert!(
        stored.len() <= acknowledged.len() + 4,
        "at most the writes in flight landed unacknowledged"
    );
    // Every stored site has its audit entry and every create entry its site: one transaction.
    let (_, audit) = api(&proxy, "GET", "/api/audit?limit=10000", None).await;
    let mut created: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "site.create")
        .map(|e| {
            e["target"]
                .as_str()
                .unwrap()
                .trim_start_matches("site:")
                .to_string()
        })
        .collect();
    let mut sorted = stored.clone();
    created.sort();
    sorted.sort();
    assert_eq!(created, sorted);
    // The restarted edge serves a site written before the kill.
    let host = format!("{}.example", stored[0]);
    let reply = client::get(proxy.http_addr(), &host, "/status/200").await;
    assert_eq!(reply.status, 200);
    // And the audit chain the kill cut into still verifies, end to end.
    let verify = std::process::Command::new(palisade_blackbox::binary_path())
        .args(["audit", "verify", "--data"])
        .arg(proxy.dir().join("data"))
        .output()
        .expect("run palisade audit verify");
    assert!(
        verify.status.success(),
        "audit verify after kill -9: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

// ---- Certificates --------------------------------------------------------------------------

#[tokio::test]
async fn a_certificate_uploaded_with_a_site_is_served_by_sni_and_never_shown_back() {
    use palisade_blackbox::{TestCa, peer_leaf};
    let ca = TestCa::new();
    let blog_cert = ca.issue(&["blog.example"]);
    let shop_cert = ca.issue(&["shop.example"]);
    let blog = Origin::start("blog");
    let shop_origin = Origin::start("shop");
    let proxy = Palisade::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]\n\n\
         [[site]]\nname = \"blog\"\nhosts = [\"blog.example\"]\norigins = [\"{}\"]\ntls = {}\n",
        blog.url(),
        blog_cert.toml()
    ));
    let cert_pem = std::fs::read_to_string(&shop_cert.cert_path).unwrap();
    let key_pem = std::fs::read_to_string(&shop_cert.key_path).unwrap();

    // Paths elsewhere on the machine are refused: the API reads no file it did not write.
    let mut document = shop(&shop_origin.url());
    document["tls"] = json!({"cert": shop_cert.cert_path, "key": shop_cert.key_path});
    let (status, body) = api(&proxy, "POST", "/api/sites", Some(document.clone())).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("tls.cert")),
        "{body}"
    );
    document["tls"] = json!({"cert_pem": "not a certificate", "key_pem": key_pem});
    let (status, body) = api(&proxy, "POST", "/api/sites", Some(document.clone())).await;
    assert_eq!(status, 422, "{body}");
    // A certificate and key that do not load are refused by the snapshot check.
    document["tls"] = json!({"cert_pem": key_pem, "key_pem": key_pem});
    let (status, body) = api(&proxy, "POST", "/api/sites", Some(document.clone())).await;
    assert_eq!(status, 422, "{body}");

    document["tls"] = json!({"cert_pem": cert_pem, "key_pem": key_pem});
    let (status, body) = api(&proxy, "POST", "/api/sites", Some(document)).await;
    assert_eq!(status, 201, "{body}");
    let shown = body.to_string();
    assert!(
        !shown.contains("PRIVATE KEY") && !shown.contains("BEGIN"),
        "{shown}"
    );
    let key_path = body["tls"]["key"].as_str().unwrap().to_string();
    assert!(
        key_path.starts_with(
            &proxy
                .dir()
                .join("data")
                .join("certs")
                .join("shop")
                .display()
                .to_string()
        )
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");

    let tls = ca
        .connect(proxy.https_addr(), "shop.example", &["http/1.1"])
        .await
        .expect("TLS to shop.example");
    assert_eq!(
        peer_leaf(&tls).as_ref(),
        Some(&shop_cert.der),
        "SNI picks the uploaded certificate"
    );
    let mut sender = client::h1_handshake(tls).await.unwrap();
    let reply = client::send_h1(
        &mut sender,
        client::h1_request("GET", "shop.example", "/status/200", client::empty()),
    )
    .await
    .unwrap();
    assert_eq!(reply.origin_id(), Some("shop"));

    // Sent back as shown (paths inside the site's directory), the document is accepted.
    let (status, body) = api(&proxy, "PUT", "/api/sites/shop", Some(body)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api(&proxy, "DELETE", "/api/sites/shop", None).await;
    assert_eq!(status, 200);
    assert!(
        !std::path::Path::new(&key_path).exists(),
        "a deleted site's key goes with it"
    );
}

// ---- Analytics -----------------------------------------------------------------------------

/// Waits for the minute to end and the control plane to store it: up to 70 s, so this one test
/// is slow by nature (it runs beside the others).
#[tokio::test]
async fn analytics_count_a_sites_minute_with_its_top_paths_and_clients() {
    let origin = Origin::start("o");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site("[[site.rule]]\nid = \"no-admin\"\nexpr = 'http.request.uri.path starts_with \"/admin\"'\naction = \"block\"")
            .to_toml(),
    );
    for _ in 0..20 {
        assert_eq!(
            client::get(proxy.http_addr(), "blog.example", "/status/200")
                .await
                .status,
            200
        );
    }
    for _ in 0..5 {
        assert_eq!(
            client::get(proxy.http_addr(), "blog.example", "/status/404")
                .await
                .status,
            404
        );
    }
    assert_eq!(
        client::get(proxy.http_addr(), "blog.example", "/admin/x")
            .await
            .status,
        403
    );
    // Not a site's request: not counted per site.
    assert_eq!(
        client::get(proxy.http_addr(), "nobody.example", "/")
            .await
            .status,
        421
    );

    let deadline = Instant::now() + Duration::from_secs(75);
    let summary = loop {
        let (status, summary) =
            api(&proxy, "GET", "/api/sites/blog/analytics?since=10m", None).await;
        assert_eq!(status, 200, "{summary}");
        if summary["totals"]["requests"].as_u64().unwrap_or(0) >= 26 {
            break summary;
        }
        assert!(
            Instant::now() < deadline,
            "no minute stored within 75 s: {summary}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let totals = &summary["totals"];
    assert_eq!(totals["requests"], 26, "{summary}");
    assert_eq!(totals["status_2xx"], 20);
    assert_eq!(totals["status_4xx"], 6);
    assert_eq!(totals["blocked"]["rule"], 1);
    assert!(totals["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(
        summary["top_paths"][0],
        json!(["/status/200", 20]),
        "{summary}"
    );
    assert_eq!(
        summary["top_clients"][0],
        json!(["127.0.0.1", 26]),
        "{summary}"
    );
    assert!(!summary["minutes"].as_array().unwrap().is_empty());
    let (status, body) = api(&proxy, "GET", "/api/sites/blog/analytics?since=soon", None).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("since")));
}

#[tokio::test]
async fn a_suspended_site_shown_and_sent_back_keeps_its_suspension_and_the_state_it_resumes_with() {
    let origin = Origin::start("o");
    let proxy = proxy_with_file_site(&origin);
    let mut document = shop(&origin.url());
    document["state"] = json!("paused");
    let (status, _) = api(&proxy, "POST", "/api/sites", Some(document)).await;
    assert_eq!(status, 201);
    let (status, _) = api(
        &proxy,
        "POST",
        "/api/sites/shop/suspend",
        Some(json!({"reason": "phishing kit"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, shown) = api(&proxy, "GET", "/api/sites/shop", None).await;
    assert_eq!(shown["state"], "suspended");
    assert_eq!(shown["suspension"]["resumes_as"], "paused");

    let (status, body) = api(&proxy, "PUT", "/api/sites/shop", Some(shown)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["state"], "suspended",
        "a write cannot lift a suspension"
    );
    let (status, body) = api(
        &proxy,
        "PATCH",
        "/api/sites/blog",
        Some(json!({"state": "suspended"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = api(
        &proxy,
        "PATCH",
        "/api/sites/shop",
        Some(json!({"state": "active"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "suspended");
    assert_eq!(body["suspension"]["resumes_as"], "active");
    let (_, body) = api(&proxy, "POST", "/api/sites/shop/reinstate", None).await;
    assert_eq!(body["state"], "active");
    let (status, body) = api(
        &proxy,
        "PATCH",
        "/api/sites/shop",
        Some(json!({"state": "suspended"})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("state")),
        "{body}"
    );

    let (status, body) = api(&proxy, "GET", "/api/sites/nope/analytics", None).await;
    assert_eq!(status, 404, "a mistyped site is not a quiet one: {body}");
}

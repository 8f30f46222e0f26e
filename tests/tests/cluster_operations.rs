//! Operating a cluster through its control node: the nodes it lists (`GET /api/edges`,
//! `palisade edges`), writes that answer once every edge runs them (`?wait=applied`), purges
//! and suspensions that hold on every edge when the API answers.

use palisade_blackbox::cluster::TestCluster;
use palisade_blackbox::control::api;
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Origin, ScriptedOrigin, SiteConfig, cli, client};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_api_and_the_cli_list_every_node_with_the_version_it_runs() {
    let origin = Origin::start("o");
    let cluster = TestCluster::start(&SiteConfig::blog(origin.url()).to_toml(), 3);
    let version = cluster.until_caught_up(WITHIN).await;
    // Heartbeats go out every second and at once after a change.
    let deadline = Instant::now() + WITHIN;
    let nodes = loop {
        let (status, body) = api(&cluster.control, "GET", "/api/edges", None).await;
        assert_eq!(status, 200, "{body}");
        let nodes = body["edges"].as_array().cloned().unwrap_or_default();
        let all_current = nodes.len() == 4
            && nodes
                .iter()
                .all(|n| n["config_version"] == json!(version) && n["connected"] == json!(true));
        if all_current || Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(
        names,
        ["control-1", "edge-1", "edge-2", "edge-3"],
        "{nodes:?}"
    );
    for node in &nodes {
        assert_eq!(node["config_version"], json!(version), "{node}");
        assert_eq!(node["lag_versions"], json!(0), "{node}");
        assert_eq!(node["connected"], json!(true), "{node}");
        assert!(
            node["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{node}"
        );
        assert!(node["last_heartbeat"].as_u64().is_some(), "{node}");
        assert!(node["requests_per_second"].as_f64().is_some(), "{node}");
    }
    assert_eq!(nodes[0]["role"], "control");
    assert_eq!(nodes[1]["role"], "edge");

    let table = cli::palisade(&cluster.control, &["edges"]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NODE"), "{table}");
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[2].contains("edge-1") && lines[2].contains("yes"),
        "{table}"
    );
}

#[tokio::test]
async fn a_node_alone_lists_no_edges_and_wait_applied_answers_at_once() {
    let origin = Origin::start("o");
    let proxy = palisade_blackbox::Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    let (status, body) = api(&proxy, "GET", "/api/edges", None).await;
    assert_eq!(
        (status, body),
        (200, json!({"cluster": false, "edges": []}))
    );
    let (status, body) = api(
        &proxy,
        "POST",
        "/api/sites?wait=applied",
        Some(json!({"name": "shop", "hosts": ["shop.example"], "origins": [origin.url()]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["edges_applied"], json!(0));
    let (status, body) = api(&proxy, "DELETE", "/api/sites/shop?wait=soon", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "wait");
}

#[tokio::test]
async fn a_write_with_wait_applied_answers_once_every_edge_runs_it() {
    let origin = Origin::start("o");
    let cluster = TestCluster::start(&SiteConfig::blog(origin.url()).to_toml(), 3);
    cluster.until_caught_up(WITHIN).await;
    for i in 0..5 {
        let name = format!("w{i}");
        let (status, body) = api(
            &cluster.control,
            "POST",
            "/api/sites?wait=applied",
            Some(json!({"name": name, "hosts": [format!("{name}.example")], "origins": [origin.url()]})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["edges_applied"], json!(3), "{body}");
        assert_eq!(body["name"], json!(name), "the answer is the write's own");
        // No waiting here: every edge runs it already.
        for edge in &cluster.edges {
            let reply = client::get(edge.http_addr(), &format!("{name}.example"), "/echo").await;
            assert_eq!(reply.status, 200);
        }
    }
}

#[tokio::test]
async fn an_edge_that_hangs_is_named_in_a_504_and_catches_up_when_it_resumes() {
    let origin = Origin::start("o");
    let cluster = TestCluster::start(&SiteConfig::blog(origin.url()).to_toml(), 2);
    cluster.until_caught_up(WITHIN).await;
    // Its heartbeat is fresh, so it is waited for; it applies nothing while stopped.
    cluster.edges[1].pause();
    let (status, body) = api(
        &cluster.control,
        "POST",
        "/api/sites?wait=applied",
        Some(json!({"name": "late", "hosts": ["late.example"], "origins": [origin.url()]})),
    )
    .await;
    cluster.edges[1].resume();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["edges"], json!(["edge-2"]), "{body}");
    // Accepted all the same: the other edge runs it, and the hung one once it resumes.
    cluster
        .until_every_edge_answers("late.example", 200, WITHIN)
        .await;
}

/// Answers request `n` with body `v{n}`, fresh for a minute, tagged `shop`.
fn tagged_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(|n| {
        let body = format!("v{n}");
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nCache-Tag: shop\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
}

/// What each edge answers for `path`, twice (the second a hit when cached).
async fn bodies(cluster: &TestCluster, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for edge in &cluster.edges {
        out.push(
            client::get(edge.http_addr(), "blog.example", path)
                .await
                .text(),
        );
        let again = client::get(edge.http_addr(), "blog.example", path).await;
        assert_eq!(
            again.text(),
            out[out.len() - 1],
            "cached at {}",
            edge.http_addr()
        );
    }
    out
}

#[tokio::test]
async fn purges_by_url_and_by_tag_hold_on_every_edge_when_the_api_answers() {
    let origin = tagged_origin();
    let cluster = TestCluster::start(&SiteConfig::blog(origin.url()).to_toml(), 3);
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    let purge = |body: serde_json::Value| {
        let control = &cluster.control;
        async move {
            let (status, answer) = api(
                control,
                "POST",
                "/api/sites/blog/purge?wait=applied",
                Some(body),
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["edges_applied"], json!(3), "{answer}");
        }
    };

    let first = bodies(&cluster, "/a").await;
    let other = bodies(&cluster, "/b").await;
    purge(json!({"url": "http://blog.example/a"})).await;
    let after = bodies(&cluster, "/a").await;
    for (before, now) in first.iter().zip(&after) {
        assert_ne!(before, now, "no edge serves the purged object");
    }
    assert_eq!(bodies(&cluster, "/b").await, other, "another URL stays");

    purge(json!({"tag": "shop"})).await;
    let tagged = bodies(&cluster, "/b").await;
    for (before, now) in other.iter().zip(&tagged) {
        assert_ne!(before, now, "no edge serves an object of the purged tag");
    }
}

#[tokio::test]
async fn a_suspension_under_load_holds_on_every_edge_when_the_api_answers() {
    let origin = Origin::start("o");
    let cluster = Arc::new(TestCluster::start(
        &SiteConfig::blog(origin.url()).to_toml(),
        3,
    ));
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    // Load on every edge, from several clients each, bounded in time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for edge in 0..3 {
        for _ in 0..4 {
            let (cluster, stop) = (Arc::clone(&cluster), Arc::clone(&stop));
            load.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                let addr = cluster.edges[edge].http_addr();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let _ = client::try_get(addr, "blog.example", "/echo").await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(origin.requests() > 0, "the load reaches the origin");
    let (status, body) = api(
        &cluster.control,
        "POST",
        "/api/sites/blog/suspend?wait=applied",
        Some(json!({"reason": "credible threat", "legal": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["edges_applied"], json!(3), "{body}");
    // Requests an edge forwarded before it applied the suspension may still be arriving.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_answer = origin.requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = origin.requests();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        later, at_answer,
        "no request reached the origin after the answer"
    );
    for edge in &cluster.edges {
        let reply = client::get(edge.http_addr(), "blog.example", "/echo").await;
        assert_eq!(reply.status, 403, "suspended on every edge");
    }
}

#[tokio::test]
async fn an_abuse_report_taken_at_an_edge_is_stored_once_at_the_control_node() {
    let origin = Origin::start("o");
    let mut cluster = TestCluster::start(&SiteConfig::blog(origin.url()).to_toml(), 2);
    cluster.until_caught_up(WITHIN).await;
    let from = |n: u8| std::net::IpAddr::from([127, 0, 3, n]);

    // Redis up: the reporter gets the control node's number for it.
    let (status, answer) =
        palisade_blackbox::control::try_file_report(&cluster.edges[0], from(1), "blog.example")
            .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_i64().expect("the control node's number");
    let (status, report) = api(&cluster.control, "GET", &format!("/api/reports/{id}"), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["host"], "blog.example", "{report}");
    assert_eq!(report["site"], "blog", "{report}");

    // Redis away: taken all the same (202, on its way), and stored once it returns.
    cluster.redis.kill();
    let (status, answer) =
        palisade_blackbox::control::try_file_report(&cluster.edges[1], from(2), "blog.example")
            .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "queued", "{answer}");
    cluster.redis.start_again();
    let deadline = Instant::now() + WITHIN;
    let reports = loop {
        let (status, body) = api(&cluster.control, "GET", "/api/reports", None).await;
        assert_eq!(status, 200, "{body}");
        let reports = body["reports"].as_array().cloned().unwrap_or_default();
        if reports.len() >= 2 || Instant::now() > deadline {
            break reports;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reports.len(), 2, "each stored once: {reports:?}");
    let text = palisade_blackbox::metrics::scrape(cluster.edges[1].admin_addr()).await;
    assert_eq!(
        palisade_blackbox::metrics::sample(&text, "palisade_cluster_spooled", &[]),
        Some(0.0),
        "delivered"
    );
}

#[tokio::test]
async fn the_control_nodes_events_cover_every_edge_with_the_node_named() {
    let origin = Origin::start("o");
    let control = SiteConfig::blog(origin.url())
        .site("[[site.rule]]\nid = \"no-admin\"\nexpr = 'http.request.uri.path starts_with \"/wp-admin\"'\naction = \"block\"")
        .to_toml();
    let cluster = TestCluster::start(&control, 2);
    cluster.until_caught_up(WITHIN).await;
    for (i, edge) in cluster.edges.iter().enumerate() {
        let reply = client::get(edge.http_addr(), "blog.example", &format!("/wp-admin/{i}")).await;
        assert_eq!(reply.status, 403);
    }
    let reply = client::get(cluster.control.http_addr(), "blog.example", "/wp-admin/c").await;
    assert_eq!(reply.status, 403);
    let deadline = Instant::now() + WITHIN;
    let nodes = loop {
        let events = palisade_blackbox::control::events(&cluster.control, "?site=blog").await;
        let mut nodes: Vec<String> = events
            .iter()
            .filter(|e| e["action"] == "block" && e["rule_id"] == "no-admin")
            .filter_map(|e| e["node"].as_str().map(str::to_string))
            .collect();
        nodes.sort();
        if nodes.len() >= 3 || Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(nodes, ["control-1", "edge-1", "edge-2"]);
}

#[tokio::test]
async fn the_control_nodes_analytics_add_up_every_edge_and_show_each() {
    let origin = Origin::start("o");
    let cluster = TestCluster::start(&SiteConfig::blog(origin.url()).to_toml(), 2);
    cluster.until_caught_up(WITHIN).await;
    for (edge, count) in [(&cluster.edges[0], 3), (&cluster.edges[1], 5)] {
        for _ in 0..count {
            let reply = client::get(edge.http_addr(), "blog.example", "/echo").await;
            assert_eq!(reply.status, 200);
        }
    }
    // An edge sends a minute once it is over (and within 10 s of that).
    let deadline = Instant::now() + Duration::from_secs(90);
    let answer = loop {
        let (status, body) = api(&cluster.control, "GET", "/api/sites/blog/analytics", None).await;
        assert_eq!(status, 200, "{body}");
        let seen = |node: &str| body["edges"][node]["requests"].as_u64().unwrap_or(0);
        if (seen("edge-1") >= 3 && seen("edge-2") >= 5) || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(answer["edges"]["edge-1"]["requests"], 3, "{answer}");
    assert_eq!(answer["edges"]["edge-2"]["requests"], 5, "{answer}");
    let control_own = answer["edges"]["control-1"]["requests"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        answer["totals"]["requests"].as_u64(),
        Some(8 + control_own),
        "the cluster's totals add up every edge: {answer}"
    );
}

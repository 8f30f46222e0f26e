//! A cluster over a real `redis-server`: a control node and three edge nodes, all the real
//! binary. Changes made through the control node's API reach every edge, in order; a forged
//! message is refused; an outage loses nothing and stops no edge from serving.

use palisade_blackbox::cluster::{TestCluster, version};
use palisade_blackbox::control::api;
use palisade_blackbox::redis::Reply;
use palisade_blackbox::{Origin, Palisade, SiteConfig, client, metrics};
use serde_json::json;
use std::time::{Duration, Instant};

/// Generous for a debug build on a loaded 2-core machine; the benchmark measures the real
/// figures.
const WITHIN: Duration = Duration::from_secs(10);

fn control_config(origin: &Origin) -> String {
    SiteConfig::blog(origin.url()).to_toml()
}

async fn create_site(cluster: &TestCluster, name: &str, origin: &Origin) {
    let (status, body) = api(
        &cluster.control,
        "POST",
        "/api/sites",
        Some(
            json!({"name": name, "hosts": [format!("{name}.example")], "origins": [origin.url()]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn set_state(cluster: &TestCluster, name: &str, state: &str) {
    let (status, body) = api(
        &cluster.control,
        "PUT",
        &format!("/api/sites/{name}/state"),
        Some(json!({ "state": state })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test]
async fn site_changes_reach_every_edge_in_order() {
    let origin = Origin::start("o");
    let cluster = TestCluster::start(&control_config(&origin), 3);
    // The control node's file sites come with the first snapshot.
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;

    let mut took = Vec::new();
    for i in 0..50 {
        let name = format!("s{i}");
        create_site(&cluster, &name, &origin).await;
        took.push(
            cluster
                .until_every_edge_answers(&format!("{name}.example"), 200, WITHIN)
                .await,
        );
    }
    took.sort();
    println!(
        "50 site creations, API answer to all three edges serving: p50 {:?}, max {:?}",
        percentile(&took, 0.5),
        took[took.len() - 1]
    );

    // Changes one after another, without waiting: every edge ends where the control node is.
    for state in ["paused", "active", "paused", "under_attack"] {
        set_state(&cluster, "s0", state).await;
    }
    let version = cluster.until_caught_up(WITHIN).await;
    let expected = client::get(cluster.control.http_addr(), "s0.example", "/")
        .await
        .status;
    assert_eq!(expected, 503, "under attack: the challenge");
    for edge in &cluster.edges {
        let reply = client::get(edge.http_addr(), "s0.example", "/echo").await;
        assert_eq!(
            reply.status, expected,
            "an edge at version {version} runs the last state"
        );
    }
    // 50 creations and 4 switches, and the resync of the control node's start.
    assert!(version >= 55, "{version}");
}

#[tokio::test]
async fn a_deleted_site_is_gone_from_every_edge() {
    let origin = Origin::start("o");
    let cluster = TestCluster::start(&control_config(&origin), 2);
    create_site(&cluster, "shop", &origin).await;
    cluster
        .until_every_edge_answers("shop.example", 200, WITHIN)
        .await;
    let (status, body) = api(&cluster.control, "DELETE", "/api/sites/shop", None).await;
    assert!(status == 204 || status == 200, "{status} {body}");
    cluster
        .until_every_edge_answers("shop.example", 421, WITHIN)
        .await;
}

#[tokio::test]
async fn a_forged_change_written_into_redis_is_refused_and_counted() {
    let origin = Origin::start("o");
    let mut cluster = TestCluster::start(&control_config(&origin), 1);
    create_site(&cluster, "shop", &origin).await;
    cluster
        .until_every_edge_answers("shop.example", 200, WITHIN)
        .await;

    // A genuine message, its site renamed by someone who can write to Redis but has no secret.
    let entries = cluster
        .redis
        .command(&[b"XRANGE", b"palisade:changes", b"-", b"+"]);
    let genuine = entries
        .items()
        .iter()
        .filter_map(|entry| entry.items().get(1)?.items().get(1)?.bytes())
        .find(|m| m.windows(12).any(|w| w == b"shop.example"))
        .expect("the change that created shop")
        .to_vec();
    let mut forged = genuine.clone();
    let at = forged
        .windows(12)
        .position(|w| w == b"shop.example")
        .expect("the host in the message");
    forged[at..at + 4].copy_from_slice(b"evil");
    for message in [&forged[..], b"not a message at all"] {
        let added = cluster
            .redis
            .command(&[b"XADD", b"palisade:changes", b"*", b"m", message]);
        assert!(matches!(added, Reply::Bulk(Some(_))), "{added:?}");
    }
    // And a snapshot replaced wholesale.
    cluster
        .redis
        .command(&[b"SET", b"palisade:snapshot", b"PAL1 forged"]);

    let edge = &cluster.edges[0];
    let refused = |text: &str, reason: &str| {
        metrics::sample(
            text,
            "palisade_cluster_messages_refused_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let text = metrics::scrape_until(edge.admin_addr(), WITHIN, |text| {
        refused(text, "signature") >= 1.0 && refused(text, "malformed") >= 1.0
    })
    .await;
    assert!(refused(&text, "signature") >= 1.0, "{text}");
    let reply = client::get(edge.http_addr(), "evil.example", "/echo").await;
    assert_eq!(reply.status, 421, "the forged site is not served");

    // The cluster goes on: the next genuine change is applied; an edge that starts now
    // refuses the forged snapshot, asks for another, and gets the control node's.
    create_site(&cluster, "after", &origin).await;
    let late = cluster.start_edge();
    cluster.edges.push(late);
    cluster
        .until_every_edge_answers("after.example", 200, WITHIN)
        .await;
    cluster
        .until_every_edge_answers("shop.example", 200, WITHIN)
        .await;
    let text = metrics::scrape(cluster.edges[1].admin_addr()).await;
    assert!(
        refused(&text, "malformed") >= 1.0,
        "the forged snapshot: {text}"
    );
}

#[tokio::test]
async fn changes_made_while_redis_is_down_reach_every_edge_when_it_returns() {
    let origin = Origin::start("o");
    let mut cluster = TestCluster::start(&control_config(&origin), 2);
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    cluster.redis.kill();
    // The API takes writes all the same; the edges keep serving what they have.
    create_site(&cluster, "during", &origin).await;
    set_state(&cluster, "blog", "paused").await;
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    let reply = client::get(cluster.edges[0].http_addr(), "during.example", "/echo").await;
    assert_eq!(reply.status, 421, "not there before Redis returns");
    cluster.redis.start_again();
    cluster
        .until_every_edge_answers("during.example", 200, WITHIN)
        .await;
    cluster.until_caught_up(WITHIN).await;
}

#[tokio::test]
async fn an_edge_restarted_while_redis_is_down_serves_its_last_configuration() {
    let origin = Origin::start("o");
    let mut cluster = TestCluster::start(&control_config(&origin), 1);
    create_site(&cluster, "shop", &origin).await;
    cluster
        .until_every_edge_answers("shop.example", 200, WITHIN)
        .await;
    let before = version(&cluster.edges[0]).await;
    cluster.redis.kill();
    cluster.edges[0].kill_and_restart();
    for host in ["blog.example", "shop.example"] {
        let reply = client::get(cluster.edges[0].http_addr(), host, "/echo").await;
        assert_eq!(reply.status, 200, "{host} from the kept configuration");
    }
    assert_eq!(version(&cluster.edges[0]).await, before);
    let text = metrics::scrape(cluster.edges[0].admin_addr()).await;
    assert_eq!(
        metrics::sample(&text, "palisade_cluster_connected", &[]),
        Some(0.0)
    );
    cluster.redis.start_again();
    create_site(&cluster, "later", &origin).await;
    cluster
        .until_every_edge_answers("later.example", 200, WITHIN)
        .await;
}

#[tokio::test]
async fn a_stream_trimmed_past_an_edges_position_leads_to_a_resync() {
    let origin = Origin::start("o");
    let mut cluster = TestCluster::start(&control_config(&origin), 1);
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    // The edge stops; changes are made; the stream loses them (trimmed by hand).
    let edge_toml = cluster.edge_toml("edge-1");
    drop(cluster.edges.pop());
    create_site(&cluster, "missed", &origin).await;
    cluster.until_caught_up(WITHIN).await;
    cluster
        .redis
        .command(&[b"XTRIM", b"palisade:changes", b"MAXLEN", b"0"]);
    create_site(&cluster, "next", &origin).await;
    cluster.edges.push(Palisade::start(&edge_toml));
    cluster
        .until_every_edge_answers("missed.example", 200, WITHIN)
        .await;
    cluster
        .until_every_edge_answers("next.example", 200, WITHIN)
        .await;
}

#[tokio::test]
async fn a_cluster_node_without_its_secret_refuses_to_start() {
    let redis = palisade_blackbox::redis::RedisServer::start();
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[cluster]\nredis = \"{}\"\nrole = \"edge\"\nnode = \"e\"\nsecret_file = \"/nonexistent/cluster.key\"\n",
        redis.url()
    );
    let run = Palisade::check(&toml);
    assert!(
        run.status.success(),
        "the file itself is valid: {}",
        run.stderr
    );
    let mut serve = std::process::Command::new(palisade_blackbox::binary_path());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, toml).unwrap();
    let out = serve
        .args(["serve", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("palisade cluster init"), "{stderr}");
}

#[tokio::test]
async fn an_edge_that_missed_a_purge_drops_that_sites_cache_when_it_catches_up() {
    // Answers request `n` with body `v{n}`, fresh for a minute.
    let origin = palisade_blackbox::ScriptedOrigin::start(|n| {
        let body = format!("v{n}");
        palisade_blackbox::scripted_origin::Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    });
    let cluster = TestCluster::start(&SiteConfig::blog(origin.url()).to_toml(), 1);
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    let edge = &cluster.edges[0];
    let cached = client::get(edge.http_addr(), "blog.example", "/a")
        .await
        .text();
    let again = client::get(edge.http_addr(), "blog.example", "/a")
        .await
        .text();
    assert_eq!(cached, again, "cached");

    // While the edge hangs (its connections cut, so nothing reaches it), the purge goes out
    // and the stream loses it.
    edge.pause();
    cluster
        .redis
        .command(&[b"CLIENT", b"KILL", b"TYPE", b"normal"]);
    let (status, body) = api(
        &cluster.control,
        "POST",
        "/api/sites/blog/purge",
        Some(json!({"url": "http://blog.example/a"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Published (the control node reconnects first), then lost.
    let deadline = Instant::now() + WITHIN;
    while !cluster
        .redis
        .command(&[b"XRANGE", b"palisade:changes", b"-", b"+"])
        .items()
        .iter()
        .filter_map(|entry| entry.items().get(1)?.items().get(1)?.bytes())
        .any(|m| m.windows(5).any(|w| w == b"purge"))
    {
        assert!(Instant::now() < deadline, "the purge was never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster
        .redis
        .command(&[b"XTRIM", b"palisade:changes", b"MAXLEN", b"0"]);
    edge.resume();

    // It sees the control node ahead of it, loads a snapshot, and drops the site's cache.
    let deadline = Instant::now() + WITHIN;
    loop {
        let now = client::get(edge.http_addr(), "blog.example", "/a")
            .await
            .text();
        if now != cached {
            break;
        }
        assert!(Instant::now() < deadline, "still serving the purged {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        edge.stderr_text()
            .contains("cache dropped for a purge this edge missed"),
        "{}",
        edge.stderr_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_twenty_seconds_under_load_fails_no_request_at_the_edges() {
    let origin = Origin::start("o");
    let cluster = std::sync::Arc::new(tokio::sync::Mutex::new(TestCluster::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"off\"")
            .to_toml(),
        3,
    )));
    let addrs: Vec<_> = {
        let cluster = cluster.lock().await;
        cluster
            .until_every_edge_answers("blog.example", 200, WITHIN)
            .await;
        cluster.edges.iter().map(|e| e.http_addr()).collect()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for addr in addrs {
        for _ in 0..2 {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            load.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    match client::try_get(addr, "blog.example", "/echo").await {
                        Ok(reply) if reply.status == 200 => {
                            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        other => failed
                            .lock()
                            .unwrap()
                            .push(format!("{addr}: {:?}", other.map(|r| r.status))),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.lock().await.redis.kill();
    // The control node takes writes meanwhile.
    {
        let cluster = cluster.lock().await;
        let (status, body) = api(
            &cluster.control,
            "POST",
            "/api/sites",
            Some(json!({"name": "during", "hosts": ["during.example"], "origins": [origin.url()]})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    cluster.lock().await.redis.start_again();
    {
        let cluster = cluster.lock().await;
        cluster
            .until_every_edge_answers("during.example", 200, WITHIN)
            .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    let served = served.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{served} requests served at the edges across a 20 s Redis outage, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(served > 1_000, "the load ran: {served}");
}

#[tokio::test]
async fn a_new_control_node_from_a_copy_of_the_store_takes_every_edge_with_it() {
    let origin = Origin::start("o");
    let mut cluster = TestCluster::start(&control_config(&origin), 2);
    create_site(&cluster, "kept", &origin).await;
    // A copy of the store as it is now (`VACUUM INTO`: consistent while it runs).
    let copy_dir = tempfile::tempdir().unwrap();
    {
        let source =
            rusqlite::Connection::open(cluster.control.dir().join("data/palisade.db")).unwrap();
        let target = copy_dir.path().join("palisade.db");
        source
            .execute("VACUUM INTO ?1", [target.display().to_string()])
            .unwrap();
    }
    create_site(&cluster, "after-copy", &origin).await;
    cluster
        .until_every_edge_answers("after-copy.example", 200, WITHIN)
        .await;

    // The control node is lost; a new one starts from the copy. Its versions restart from
    // the copy's, lower than what the edges run: they follow it all the same.
    let toml = SiteConfig::blog(origin.url())
        .server(&format!("data_dir = \"{}\"", copy_dir.path().display()))
        .to_toml();
    cluster.replace_control(&toml);
    cluster
        .until_every_edge_answers("after-copy.example", 421, WITHIN)
        .await;
    cluster
        .until_every_edge_answers("kept.example", 200, WITHIN)
        .await;
    create_site(&cluster, "new", &origin).await;
    cluster
        .until_every_edge_answers("new.example", 200, WITHIN)
        .await;
}

#[tokio::test]
async fn files_a_site_names_on_the_control_node_reach_the_edges_as_their_contents() {
    let origin = Origin::start("o");
    let ca = palisade_blackbox::TestCa::new();
    let cert = ca.issue(&["blog.example"]);
    let lists = tempfile::tempdir().unwrap();
    let deny_file = lists.path().join("deny.txt");
    std::fs::write(&deny_file, "# from the abuse desk\n127.0.0.77\n").unwrap();
    let control = format!(
        "{}tls = {}\n[site.shield]\ndeny_files = [\"{}\"]\n\n[shield]\ndeny = [\"127.0.0.66/32\"]\n",
        SiteConfig::blog(origin.url()).to_toml(),
        cert.toml(),
        deny_file.display()
    );
    let mut cluster = TestCluster::start(&control, 0);
    // Once the control node has published, the files go: an edge never has them (it is
    // another machine), and the control node already read them.
    let deadline = std::time::Instant::now() + WITHIN;
    while version(&cluster.control).await == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(lists);
    std::fs::remove_file(&cert.cert_path).unwrap();
    std::fs::remove_file(&cert.key_path).unwrap();
    let edge_toml = cluster.edge_toml("edge-1").replacen(
        "listen = [\"127.0.0.1:0\"]\n",
        "listen = [\"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]\n",
        1,
    );
    cluster.edges.push(Palisade::start(&edge_toml));
    cluster
        .until_every_edge_answers("blog.example", 200, WITHIN)
        .await;
    let edge = &cluster.edges[0];

    // The certificate: the edge presents it for the site's name.
    let tls = ca
        .connect(edge.https_addr(), "blog.example", &["http/1.1"])
        .await
        .expect("a TLS handshake with the control node's certificate");
    let mut sender = client::h1_handshake(tls).await.unwrap();
    let reply = client::send_h1(
        &mut sender,
        client::h1_request("GET", "blog.example", "/echo", client::empty()),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let key_file = edge.dir().join("data/cluster/certs/blog/key.pem");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is the edge's own, owner-only");

    // The lists: the file's entry and the global one, refused at the edge.
    for (from, expected) in [
        ([127, 0, 0, 77], 403),
        ([127, 0, 0, 66], 403),
        ([127, 0, 0, 5], 200),
    ] {
        let mut conn = palisade_blackbox::raw::RawConn::connect_from(
            std::net::IpAddr::from(from),
            edge.http_addr(),
        )
        .await
        .unwrap();
        conn.send(b"GET /echo HTTP/1.1\r\nHost: blog.example\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let response = conn.read_response(Duration::from_secs(5)).await;
        assert_eq!(response.status(), Some(expected), "from {from:?}");
    }
}

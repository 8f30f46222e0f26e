//! `scope = "cluster"` rate limits: one client spread over three edges is held to the limit the
//! cluster as a whole allows, within the bound docs/cluster.md states; without Redis, each
//! edge still holds it to the limit on what that edge sees.

use palisade_blackbox::cluster::TestCluster;
use palisade_blackbox::redis::Reply;
use palisade_blackbox::{Origin, client, metrics};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WITHIN: Duration = Duration::from_secs(10);
/// How often the edges sync their counts (`cluster::limits::SYNC_INTERVAL`).
const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// A site whose `/echo/api/` requests are limited to `requests` per minute per address, counted in
/// `scope`. `/echo` (which the helpers poll) is not counted.
fn limited_site(name: &str, requests: u32, scope: &str, origin: &str) -> String {
    format!(
        "[[site]]\nname = \"{name}\"\nhosts = [\"{name}.test\"]\norigins = [\"{origin}\"]\n\
         [[site.rate_limit]]\nid = \"api\"\nexpr = 'http.request.uri.path starts_with \"/echo/api/\"'\n\
         requests = {requests}\nperiod = \"1m\"\nscope = \"{scope}\"\n"
    )
}

/// Waits until at least `room` is left before the wall clock's next minute: the cluster's
/// windows are the clock's minutes, and a request count that straddles two windows is an
/// estimate (the previous window weighted by how much of it the last minute still covers)
/// whose error is the sliding window's, not the sharing's this test measures.
async fn until_room_in_the_minute(room: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = Duration::from_millis((now.as_millis() % 60_000) as u64);
    let left = Duration::from_secs(60) - into;
    if left < room {
        tokio::time::sleep(left + Duration::from_millis(200)).await;
    }
}

/// Status codes of `requests` sent one every `1 / rate` seconds to `host`'s `/echo/api/` at the
/// edges in turn: how many were let through (200) and how many refused (429).
async fn send_in_turn(cluster: &TestCluster, host: &str, requests: usize, rate: f64) -> (u32, u32) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let (mut passed, mut refused) = (0, 0);
    for i in 0..requests {
        tick.tick().await;
        let edge = &cluster.edges[i % cluster.edges.len()];
        let reply = client::get(edge.http_addr(), host, &format!("/echo/api/{i}")).await;
        match reply.status.as_u16() {
            200 => passed += 1,
            429 => refused += 1,
            other => panic!("request {i} at edge {}: {other}", i % cluster.edges.len()),
        }
    }
    (passed, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_limit_of_n_per_minute_across_three_edges_admits_n_within_the_stated_bound() {
    const N: u32 = 60;
    // 150 requests at 20 a second: 50 at each edge, under N at each, 2.5 N in all.
    const RATE: f64 = 20.0;
    const SENT: usize = 150;
    until_room_in_the_minute(Duration::from_secs(25)).await;
    let origin = Origin::start("o");
    let control = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess_log = \"off\"\n\n{}\n{}",
        limited_site("shared", N, "cluster", &origin.url()),
        limited_site("apart", N, "edge", &origin.url())
    );
    let cluster = TestCluster::start(&control, 3);
    cluster
        .until_every_edge_answers("shared.test", 200, WITHIN)
        .await;
    cluster
        .until_every_edge_answers("apart.test", 200, WITHIN)
        .await;

    let started = Instant::now();
    let ((shared_passed, shared_refused), (apart_passed, _)) = tokio::join!(
        send_in_turn(&cluster, "shared.test", SENT, RATE),
        send_in_turn(&cluster, "apart.test", SENT, RATE),
    );
    let took = started.elapsed();
    eprintln!(
        "cluster scope: {shared_passed} of {SENT} passed (limit {N}); edge scope: {apart_passed}; in {took:?}"
    );

    // Counted on each edge alone, the limit lets all 150 through: each edge saw 50.
    assert_eq!(apart_passed, SENT as u32, "the edge-scoped limit");
    // Counted across the cluster: N, and beyond it at most what the whole cluster admits
    // while an edge's count reaches the others (two sync intervals and two syncs; a sync is
    // one pipelined round trip to Redis, allowed half an interval here on a loaded machine).
    let lag = 2 * SYNC_INTERVAL + 2 * (SYNC_INTERVAL / 2);
    let bound = N + (RATE * lag.as_secs_f64()).ceil() as u32;
    assert!(
        shared_passed >= N - 2 && shared_passed <= bound,
        "the cluster-scoped limit let {shared_passed} of {SENT} through (limit {N}, bound {bound}, \
         sent in {took:?})"
    );
    assert_eq!(shared_passed + shared_refused, SENT as u32);

    // Redis holds the window's total under a name that is not the client's address.
    let deadline = Instant::now() + WITHIN;
    let (keys, fields) = loop {
        let keys = cluster
            .redis
            .command(&[b"KEYS", b"palisade:rl:shared:api:*"])
            .items()
            .to_vec();
        let fields = match keys.first().and_then(Reply::bytes) {
            Some(key) => cluster.redis.command(&[b"HGETALL", key]).items().to_vec(),
            None => Vec::new(),
        };
        let total = fields
            .get(1)
            .and_then(Reply::bytes)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
        if total == Some(SENT) || Instant::now() > deadline {
            break (keys, fields);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(keys.len(), 1, "one window's hash: {keys:?}");
    assert_eq!(fields.len(), 2, "one key's field and total: {fields:?}");
    let field = String::from_utf8(fields[0].bytes().unwrap().to_vec()).unwrap();
    assert!(
        field.len() == 32 && field.bytes().all(|b| b.is_ascii_hexdigit()),
        "the key's name in Redis is a keyed digest, not the client: {field}"
    );
    assert_eq!(
        fields[1].bytes(),
        Some(SENT.to_string().as_bytes()),
        "every request counted once, passed or refused"
    );
    let ttl = cluster.redis.command(&[b"PTTL", keys[0].bytes().unwrap()]);
    assert!(
        matches!(ttl, Reply::Integer(ms) if ms > 60_000 && ms <= 130_000),
        "the window's totals expire two periods on: {ttl:?}"
    );
    for (i, edge) in cluster.edges.iter().enumerate() {
        let text = metrics::scrape(edge.admin_addr()).await;
        let synced = metrics::sample(
            &text,
            "palisade_cluster_rate_limit_syncs_total",
            &[("outcome", "ok")],
        );
        assert!(synced.is_some_and(|n| n > 0.0), "edge {i}: {synced:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_edge_still_holds_the_limit_on_what_it_sees() {
    const N: u32 = 10;
    let origin = Origin::start("o");
    let control = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\naccess_log = \"off\"\n\n{}",
        limited_site("shared", N, "cluster", &origin.url())
    );
    let mut cluster = TestCluster::start(&control, 3);
    cluster
        .until_every_edge_answers("shared.test", 200, WITHIN)
        .await;
    cluster.redis.kill();
    // 15 at each edge: each lets its first N through and refuses the rest.
    for (i, edge) in cluster.edges.iter().enumerate() {
        let mut passed = 0;
        for r in 0..15 {
            let reply =
                client::get(edge.http_addr(), "shared.test", &format!("/echo/api/{r}")).await;
            match reply.status.as_u16() {
                200 => passed += 1,
                429 => {}
                other => panic!("edge {i}, request {r}: {other}"),
            }
        }
        assert_eq!(passed, N, "edge {i} counted alone");
    }
    // The edge says its syncs fail meanwhile.
    let failed = |text: &str| {
        metrics::sample(
            text,
            "palisade_cluster_rate_limit_syncs_total",
            &[("outcome", "failed")],
        )
        .unwrap_or(0.0)
    };
    let text =
        metrics::scrape_until(cluster.edges[0].admin_addr(), WITHIN, |t| failed(t) > 0.0).await;
    assert!(failed(&text) > 0.0, "{text}");
    // Redis returns: what the edges counted meanwhile reaches it (their windows have not
    // passed), once each.
    cluster.redis.start_again();
    let deadline = Instant::now() + WITHIN;
    loop {
        let total = counted(&cluster, "palisade:rl:shared:api:*");
        if total == 45 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis holds {total} of the 45 counted during the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of every total in the hashes whose names match `pattern`.
fn counted(cluster: &TestCluster, pattern: &str) -> u64 {
    let keys = cluster
        .redis
        .command(&[b"KEYS", pattern.as_bytes()])
        .items()
        .to_vec();
    keys.iter()
        .filter_map(Reply::bytes)
        .flat_map(|key| cluster.redis.command(&[b"HVALS", key]).items().to_vec())
        .filter_map(|value| {
            std::str::from_utf8(value.bytes()?)
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

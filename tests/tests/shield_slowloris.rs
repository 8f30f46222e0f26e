//! The attack test #2: 5,000 slowloris connections from 50 addresses while browsers keep
//! being served, on the production defaults (`header_read_timeout = "10s"`, 1,024 connections
//! and 3,000 new connections per 10 s per address, 10,000 in all).
//!
//! Each attacking connection sends a partial request head and then one more header line a
//! second, never the blank line that ends the head. The header timeout must close every one of
//! them ten seconds after its first byte, while ten browsers on other addresses get their pages
//! as usual. The whole test runs in about 15 s.
//!
//! Slow attacks are the connection guard's: with attack detection armed, neither slowloris nor
//! 200 slow readers make the edge challenge, block or mitigate anyone.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_blackbox::control::events;
use palisade_blackbox::metrics::{sample, scrape, scrape_until};
use palisade_blackbox::open_files::raise_open_file_limit;
use palisade_blackbox::{Origin, Palisade, SiteConfig, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

const ATTACK_ADDRESSES: u8 = 50;
const CONNECTIONS_PER_ADDRESS: usize = 100;
const BROWSERS: u8 = 10;
/// The default `header_read_timeout`.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long browsers keep browsing: the attack is at full strength all along.
const BROWSING: Duration = Duration::from_secs(11);

/// What became of one slowloris connection.
enum Slowloris {
    /// The server closed it this long after its first byte.
    Closed(Duration),
    /// It could not be opened.
    NotOpened(std::io::Error),
    /// Still open when the attacker gave up.
    StillOpen,
}

/// One attacking connection: a partial head, then a header line a second until the server
/// closes the connection (or 20 s pass).
async fn slowloris(source: IpAddr, target: SocketAddr, opening: Arc<Semaphore>) -> Slowloris {
    let stream = {
        // Bounded bursts of SYNs, so the listen backlog is what is tested, not the kernel's
        // SYN queue.
        let _permit = opening.acquire().await.expect("semaphore open");
        let socket = match TcpSocket::new_v4() {
            Ok(socket) => socket,
            Err(e) => return Slowloris::NotOpened(e),
        };
        if let Err(e) = socket.bind(SocketAddr::new(source, 0)) {
            return Slowloris::NotOpened(e);
        }
        match socket.connect(target).await {
            Ok(stream) => stream,
            Err(e) => return Slowloris::NotOpened(e),
        }
    };
    let (mut read, mut write) = stream.into_split();
    if let Err(e) = write
        .write_all(b"GET / HTTP/1.1\r\nHost: blog.example\r\nUser-Agent: slow\r\n")
        .await
    {
        return Slowloris::NotOpened(e);
    }
    let first_byte = Instant::now();
    let trickle = async {
        for n in 0u32.. {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write
                .write_all(format!("X-Slow-{n}: still here\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        // Written off as closed; the read below says when.
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return first_byte.elapsed(),
                // A 408 or the like before the close is fine; keep reading to the close.
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        after = closed => Slowloris::Closed(after),
        () = trickle => unreachable!("the trickle never ends by itself"),
        () = tokio::time::sleep(Duration::from_secs(20)) => Slowloris::StillOpen,
    }
}

/// One browser: `/echo` over keep-alive connections (a new one every ten requests, as a
/// browser opens them), a request every 50 ms, until `until`. Returns each request's latency,
/// or `None` for a failure.
async fn browser(source: IpAddr, target: SocketAddr, until: Instant) -> Vec<Option<Duration>> {
    let mut results = Vec::new();
    while Instant::now() < until {
        let connected = async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            client::h1_handshake(stream).await
        };
        // The first request on a connection is timed from the connect, as a browser sees it.
        let mut sent = Instant::now();
        let mut sender = match connected.await {
            Ok(sender) => sender,
            Err(_) => {
                results.push(None);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        for _ in 0..10 {
            if Instant::now() >= until {
                break;
            }
            let request = client::h1_request("GET", "blog.example", "/echo", client::empty());
            match client::send_h1(&mut sender, request).await {
                Ok(reply) if reply.status == 200 => results.push(Some(sent.elapsed())),
                _ => {
                    results.push(None);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            sent = Instant::now();
        }
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_slowloris_connections_from_fifty_addresses_while_browsers_are_served() {
    let limit = raise_open_file_limit();
    let needed = (usize::from(ATTACK_ADDRESSES) * CONNECTIONS_PER_ADDRESS + 200) as u64;
    assert!(
        limit >= needed,
        "this test needs {needed} open files; the limit is {limit}"
    );
    let test_started = Instant::now();
    let origin = Origin::start("a");
    // Only the access log is turned off: 7,000 lines to a pipe would measure the pipe. Attack
    // detection learns for a second only, so that it is armed while the attack lasts: a slow
    // attack is the connection guard's to answer, and must not challenge the browsers.
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"off\"")
            .site("[site.shield]\nattack_learning = \"1s\"")
            .to_toml(),
    );
    let target = proxy.http_addr();

    let opening = Arc::new(Semaphore::new(256));
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS_PER_ADDRESS {
        for a in 0..ATTACK_ADDRESSES {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + a));
            attackers.spawn(slowloris(source, target, Arc::clone(&opening)));
        }
    }

    let until = Instant::now() + BROWSING;
    let browsers: Vec<_> = (0..BROWSERS)
        .map(|b| {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 60 + b));
            tokio::spawn(browser(source, target, until))
        })
        .collect();

    // While the browsers browse, the attack is at full strength: every connection open and
    // trickling (none is old enough for the header timeout yet).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = scrape(proxy.admin_addr()).await;
    let open_mid_attack = sample(&metrics, "palisade_open_connections", &[]).unwrap_or(0.0);

    let mut latencies = Vec::new();
    let mut failures = 0usize;
    for handle in browsers {
        for result in handle.await.expect("browser task") {
            match result {
                Some(latency) => latencies.push(latency),
                None => failures += 1,
            }
        }
    }

    let mut closed_after = Vec::new();
    let mut not_opened = Vec::new();
    let mut still_open = 0usize;
    while let Some(outcome) = attackers.join_next().await {
        match outcome.expect("slowloris task") {
            Slowloris::Closed(after) => closed_after.push(after),
            Slowloris::NotOpened(e) => not_opened.push(e),
            Slowloris::StillOpen => still_open += 1,
        }
    }
    let cut = scrape_until(proxy.admin_addr(), Duration::from_secs(2), |text| {
        sample(
            text,
            "palisade_connections_cut_total",
            &[("reason", "header_read_timeout")],
        )
        .is_some_and(|n| n >= 5000.0)
    })
    .await;
    let cut = sample(
        &cut,
        "palisade_connections_cut_total",
        &[("reason", "header_read_timeout")],
    );

    latencies.sort();
    let total = latencies.len() + failures;
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let (p50, p99, max) = (
        percentile(0.50),
        percentile(0.99),
        latencies[latencies.len() - 1],
    );
    closed_after.sort();
    eprintln!(
        "slowloris: {} connections closed after {:?}..{:?} (median {:?}), {} not opened, {} still open; \
         {open_mid_attack} open mid-attack; cut for header_read_timeout: {cut:?}\n\
         browsers: {total} requests, {failures} failed, p50 {p50:?}, p99 {p99:?}, max {max:?}; \
         test took {:?}",
        closed_after.len(),
        closed_after.first(),
        closed_after.last(),
        closed_after.get(closed_after.len() / 2),
        not_opened.len(),
        still_open,
        test_started.elapsed(),
    );

    assert!(
        not_opened.is_empty(),
        "{} slowloris connections could not be opened, e.g. {:?}",
        not_opened.len(),
        not_opened.first()
    );
    assert!(
        open_mid_attack >= 5000.0,
        "only {open_mid_attack} connections were open mid-attack"
    );
    assert_eq!(
        still_open, 0,
        "slowloris connections outlived the header timeout"
    );
    assert!(
        // The header clock starts at accept, a moment before the attacker's first byte.
        closed_after
            .first()
            .is_some_and(|d| *d >= HEADER_TIMEOUT - Duration::from_millis(500))
            && closed_after
                .last()
                .is_some_and(|d| *d <= HEADER_TIMEOUT + Duration::from_secs(3)),
        "slowloris connections closed between {:?} and {:?} after their first byte; the header \
         timeout is {HEADER_TIMEOUT:?}",
        closed_after.first(),
        closed_after.last()
    );
    assert!(
        cut.is_some_and(|n| n >= 5000.0),
        "header_read_timeout cuts counted: {cut:?}"
    );
    assert!(total >= 1000, "browsers made only {total} requests");
    assert!(
        failures * 100 <= total,
        "{failures} of {total} browser requests failed"
    );
    assert!(
        p99 < Duration::from_millis(200),
        "browser p99 latency {p99:?} (p50 {p50:?})"
    );
    assert!(
        test_started.elapsed() < Duration::from_secs(30),
        "the test took {:?}",
        test_started.elapsed()
    );
    let challenged = challenges_and_blocks(&proxy).await;
    assert!(
        challenged.is_empty(),
        "the slow attack challenged or blocked: {challenged:?}"
    );
}

/// The security events that challenged, blocked or mitigated anyone: a slow attack must make
/// none.
async fn challenges_and_blocks(proxy: &Palisade) -> Vec<serde_json::Value> {
    events(proxy, "?limit=10000")
        .await
        .into_iter()
        .filter(|e| {
            [
                "challenge",
                "challenge_everyone_on",
                "mitigation_on",
                "block",
            ]
            .contains(&e["action"].as_str().unwrap_or(""))
        })
        .collect()
}

/// A slow reader: asks for a large body from `source` and never reads it, holding the
/// connection until `until`.
async fn slow_reader(source: IpAddr, target: SocketAddr, until: Instant) -> bool {
    let Ok(socket) = TcpSocket::new_v4() else {
        return false;
    };
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return false;
    }
    // A small receive window, so the edge's writes stall at once.
    let _ = socket.set_recv_buffer_size(4096);
    let Ok(mut stream) = socket.connect(target).await else {
        return false;
    };
    let request = b"GET /bytes/8000000 HTTP/1.1\r\nHost: blog.example\r\nUser-Agent: slow\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    tokio::time::sleep_until(until.into()).await;
    drop(stream);
    true
}

/// Slow reads from 200 addresses (each asks for 8 MB and reads none of it) while browsers
/// browse, with attack detection armed: the browsers are served, and nothing is challenged,
/// blocked or mitigated. Slow attacks are the connection guard's (`send_timeout` cuts the
/// readers), not attack mitigation's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_from_two_hundred_addresses_challenge_no_browser() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"off\"")
            .site("[site.shield]\nattack_learning = \"1s\"")
            .to_toml(),
    );
    let target = proxy.http_addr();
    let until = Instant::now() + BROWSING;
    let readers: Vec<_> = (0..200u16)
        .map(|i| {
            let source = IpAddr::V4(Ipv4Addr::new(127, 3, (i / 200) as u8, (i % 200) as u8 + 1));
            tokio::spawn(slow_reader(source, target, until))
        })
        .collect();
    let browsers: Vec<_> = (0..BROWSERS)
        .map(|b| {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 60 + b));
            tokio::spawn(browser(source, target, until))
        })
        .collect();
    let (mut served, mut failed) = (0usize, 0usize);
    for handle in browsers {
        for result in handle.await.expect("browser task") {
            match result {
                Some(_) => served += 1,
                None => failed += 1,
            }
        }
    }
    let mut opened = 0;
    for reader in readers {
        opened += usize::from(reader.await.expect("reader task"));
    }
    let flagged = challenges_and_blocks(&proxy).await;
    eprintln!(
        "slow readers: {opened} of 200 held their download; browsers: {served} served, {failed} \
         failed; challenge, block and mitigation events: {}",
        flagged.len()
    );
    assert!(opened >= 190, "only {opened} slow readers got going");
    assert!(served >= 500, "browsers made only {served} requests");
    assert!(failed * 100 <= served, "{failed} browser requests failed");
    assert!(
        flagged.is_empty(),
        "the slow readers made the edge challenge: {flagged:?}"
    );
}

//! Request coalescing through the real binary: a herd of concurrent misses for one cold URL
//! reaches the origin once, and every waiter is answered as soon as the origin's answer is in
//! (nginx's cache lock makes waiters poll, about 600 ms here; Varnish about 360 ms).
//!
//! The timing bound here only catches a design that polls or serialises waiters; how fast they
//! are answered is a benchmark figure (`bench/herd.sh` runs this test against the release
//! binary and prints it: about 20 ms for 500 waiters on this machine, against the 50 ms).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_blackbox::client::{self, tcp};
use palisade_blackbox::scripted_origin::Reply;
use palisade_blackbox::{Palisade, ScriptedOrigin, SiteConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HERD: usize = 500;
const ORIGIN_THINKS: Duration = Duration::from_millis(200);
/// Waiters answered later than this after the origin's answer were polling or queued one behind
/// another (nginx's lock polls every 500 ms). The speed itself is measured by `bench/herd.sh`
/// on the release binary; this test also runs against the unoptimised debug build.
const WAITER_BOUND: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_of_500_misses_reaches_the_origin_once_and_waiters_get_the_answer_at_once() {
    let asked_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let asked = Arc::clone(&asked_at);
    let origin = ScriptedOrigin::start(move |n| {
        if n == 0 {
            *asked.lock().unwrap() = Some(Instant::now());
        }
        Reply::keep_open(
            &b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n\r\nherd"[..],
        )
        .delayed(ORIGIN_THINKS)
    });
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_connections = 5000\nmax_connections_per_ip = 5000")
            .to_toml(),
    );

    // Every client connected first, so the herd's requests leave together. Raw sockets: an
    // HTTP client library's own parsing in this (debug) test binary would be most of what the
    // timing measures.
    let mut sockets = Vec::with_capacity(HERD);
    for _ in 0..HERD {
        sockets.push(tcp(proxy.http_addr()).await.expect("connect"));
    }
    let requests = sockets.into_iter().map(|mut socket| {
        tokio::spawn(async move {
            let sent = Instant::now();
            socket
                .write_all(b"GET /cold HTTP/1.1\r\nHost: blog.example\r\n\r\n")
                .await
                .expect("send");
            let mut response = Vec::with_capacity(1024);
            let mut buf = [0u8; 4096];
            while !response.ends_with(b"\r\n\r\nherd") {
                let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
                    .await
                    .expect("reply within 10 s")
                    .expect("read");
                assert!(
                    n > 0,
                    "closed early: {}",
                    String::from_utf8_lossy(&response)
                );
                response.extend_from_slice(&buf[..n]);
            }
            (
                sent,
                Instant::now(),
                String::from_utf8_lossy(&response).into_owned(),
            )
        })
    });
    let results = futures_util::future::join_all(requests).await;

    assert_eq!(origin.requests(), 1, "the herd made one origin request");
    let answered_by_origin =
        asked_at.lock().unwrap().expect("the origin was asked") + ORIGIN_THINKS;
    let mut worst = Duration::ZERO;
    for result in results {
        let (sent, arrived, reply) = result.expect("client task");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        // A request sent after the origin answered was a plain hit; measure it from its send.
        let waited_from = sent.max(answered_by_origin);
        worst = worst.max(arrived.saturating_duration_since(waited_from));
    }
    eprintln!("slowest of {HERD} waiters: {worst:?} after the origin's answer");
    assert!(
        worst <= WAITER_BOUND,
        "slowest waiter answered {worst:?} after the origin's answer (bound {WAITER_BOUND:?})"
    );
}

#[tokio::test]
async fn waiters_on_an_uncacheable_response_go_to_the_origin_without_queueing() {
    let origin = ScriptedOrigin::start(|n| {
        Reply::keep_open(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\nv{}",
            n % 10
        ))
        .delayed(ORIGIN_THINKS)
    });
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let started = Instant::now();
    let replies = futures_util::future::join_all(
        (0..10).map(|_| client::get(proxy.http_addr(), "blog.example", "/private")),
    )
    .await;
    let took = started.elapsed();

    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(
        origin.requests(),
        10,
        "no-store: every request gets its own answer"
    );
    // Ten 200 ms answers one after another would take 2 s; released at the first one's
    // header, the rest run in parallel.
    assert!(
        took < ORIGIN_THINKS * 4,
        "took {took:?}: waiters were serialised"
    );
}

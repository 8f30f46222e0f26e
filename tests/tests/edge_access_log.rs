//! The access log under the operations a user runs it with: logrotate's rename and SIGUSR1,
//! a log reader that stops reading stdout, a `tail -f` waiting for a quiet edge's lines, a
//! graceful stop, and sampling.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palisade_blackbox::{Origin, Palisade, SiteConfig, client, metrics};

/// The lines of every file in `files` (a missing file has none).
fn lines_of(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn path_of(line: &str) -> String {
    let entry: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    entry["path"]
        .as_str()
        .unwrap_or_else(|| panic!("no path: {line}"))
        .to_string()
}

/// Keeps `clients` keep-alive connections sending `GET /echo/C/N` (each path once) until `stop`, counting
/// answered requests in `done`; every answer must be a 200 within 5 s.
fn load(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (stop, done) = (stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut sender = client::h1_handshake(client::tcp(addr).await.unwrap())
                    .await
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/echo/{c}/{i}");
                    let request = client::h1_request("GET", "blog.example", &path, client::empty());
                    let reply = tokio::time::timeout(
                        Duration::from_secs(5),
                        client::send_h1(&mut sender, request),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("GET {path} took more than 5 s"))
                    .unwrap_or_else(|e| panic!("GET {path}: {e}"));
                    assert_eq!(reply.status, 200, "GET {path}");
                    done.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect()
}

async fn wait_for(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// logrotate's way: rename the file, then SIGUSR1. Lines logged before the signal is handled
/// land in the renamed file, later ones in the new file; none may be lost or written twice.
#[tokio::test]
async fn rotation_by_sigusr1_under_load_loses_no_line_and_duplicates_none() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"access_log = "access.log""#)
            .to_toml(),
    );
    let log = proxy.dir().join("access.log");
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let clients = load(proxy.http_addr(), 8, stop.clone(), done.clone());

    let mut files = Vec::new();
    for rotation in 1..=2 {
        let target = done.load(Ordering::SeqCst) + 300;
        wait_for("300 more requests", Duration::from_secs(60), || {
            done.load(Ordering::SeqCst) >= target
        })
        .await;
        let renamed = proxy.dir().join(format!("access.log.{rotation}"));
        std::fs::rename(&log, &renamed).expect("rename the log as logrotate does");
        files.push(renamed);
        proxy.sigusr1();
        wait_for("the reopened file", Duration::from_secs(10), || {
            log.exists()
        })
        .await;
    }
    let target = done.load(Ordering::SeqCst) + 300;
    wait_for("300 more requests", Duration::from_secs(60), || {
        done.load(Ordering::SeqCst) >= target
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("load client");
    }
    files.push(log);
    let answered = done.load(Ordering::SeqCst) as usize;

    // Lines wait in buffers for at most the flush interval (1 s by default).
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines_of(&files).len() < answered && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for line in lines_of(&files) {
        *seen.entry(path_of(&line)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "lines written more than once: {twice:?}");
    assert_eq!(
        seen.len(),
        answered,
        "{answered} requests answered, {} logged",
        seen.len()
    );
    for file in &files {
        assert!(
            !lines_of(std::slice::from_ref(file)).is_empty(),
            "{} has no line: the log was not reopened while requests went on",
            file.display()
        );
    }
}

/// A log shipper that stops reading stdout: the pipe fills and every write to it blocks. The
/// writer thread waits on it; requests must not, and what cannot be written is counted.
#[tokio::test]
async fn a_blocked_stdout_pipe_never_slows_requests_and_dropped_lines_are_counted() {
    let origin = Origin::start("a");
    // Small buffers: the pipe (64 KiB) and the writer's queue fill after a thousand lines or so.
    let mut proxy = Palisade::start_with_stdout_unread(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"stdout\"\naccess_log_buffer = \"4KiB\"")
            .to_toml(),
    );
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let clients = load(proxy.http_addr(), 8, stop.clone(), done.clone());
    // Each request is answered within 5 s (the load asserts it) while thousands of lines find
    // no room.
    wait_for("4000 requests", Duration::from_secs(120), || {
        done.load(Ordering::SeqCst) >= 4000
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("load client");
    }

    let labels: [(&str, &str); 0] = [];
    let text = metrics::scrape_until(proxy.admin_addr(), Duration::from_secs(5), |text| {
        metrics::sample(text, "palisade_access_log_dropped_total", &labels)
            .is_some_and(|n| n >= 1000.0)
    })
    .await;
    let dropped = metrics::sample(&text, "palisade_access_log_dropped_total", &labels);
    assert!(
        dropped.is_some_and(|n| n >= 1000.0),
        "palisade_access_log_dropped_total is {dropped:?} after 4000 requests behind a blocked pipe"
    );
    assert!(
        proxy
            .wait_for_stderr(Duration::from_secs(3), |l| l.contains("lines dropped"))
            .is_some(),
        "no warning about dropped lines on stderr"
    );

    // Nor does it keep the process from stopping.
    proxy.sigterm();
    assert!(
        proxy.wait_exit(Duration::from_secs(15)).is_some(),
        "palisade did not exit after SIGTERM with its stdout blocked"
    );
}

/// A `tail -f` on a quiet edge: the one line of a lone request is written within the flush
/// interval, not when a buffer would fill.
#[tokio::test]
async fn a_line_reaches_the_file_within_the_flush_interval() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"access.log\"\naccess_log_flush = \"200ms\"")
            .to_toml(),
    );
    let log = [proxy.dir().join("access.log")];
    let reply = client::get(proxy.http_addr(), "blog.example", "/echo/lonely").await;
    assert_eq!(reply.status, 200);
    let answered = Instant::now();
    // The bound is the interval plus scheduling slack; the 64 KiB buffer is far from full.
    let within = Duration::from_millis(200) + Duration::from_millis(1300);
    while lines_of(&log).is_empty() && answered.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = answered.elapsed();
    let lines = lines_of(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(path_of(&lines[0]), "/echo/lonely");
    assert!(
        waited < within,
        "the line appeared {waited:?} after the response (flush interval 200ms)"
    );
}

/// Lines still in buffers when SIGTERM comes are written before the process exits.
#[tokio::test]
async fn a_graceful_stop_writes_every_buffered_line() {
    let origin = Origin::start("a");
    let mut proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"access.log\"\naccess_log_flush = \"60s\"")
            .to_toml(),
    );
    let log = [proxy.dir().join("access.log")];
    for i in 0..50 {
        let reply = client::get(proxy.http_addr(), "blog.example", &format!("/echo/{i}")).await;
        assert_eq!(reply.status, 200);
    }
    proxy.sigterm();
    assert!(proxy.wait_exit(Duration::from_secs(15)).is_some());
    let lines = lines_of(&log);
    assert_eq!(lines.len(), 50, "{lines:?}");
}

/// `access_log_sample` logs about that share of requests, each line saying the rate.
#[tokio::test]
async fn a_sampled_log_has_about_that_share_of_lines_each_with_its_rate() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("access_log = \"access.log\"\naccess_log_sample = 0.5")
            .to_toml(),
    );
    let log = [proxy.dir().join("access.log")];
    let mut sender = client::h1_handshake(client::tcp(proxy.http_addr()).await.unwrap())
        .await
        .unwrap();
    for i in 0..400 {
        let request = client::h1_request(
            "GET",
            "blog.example",
            &format!("/echo/{i}"),
            client::empty(),
        );
        let reply = client::send_h1(&mut sender, request).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    // Everything logged is written within the flush interval (1 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let lines = lines_of(&log);
    // 200 expected; a binomial spread of 10, so ten of them either side.
    assert!(
        (100..=300).contains(&lines.len()),
        "{} of 400 requests logged at a 0.5 sample rate",
        lines.len()
    );
    for line in &lines {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["sample_rate"], 0.5, "{line}");
    }
}

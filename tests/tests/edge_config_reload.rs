//! Config changes: `palisade check` explains a broken file, SIGHUP applies a good one without
//! dropping a request, and a broken one is refused while the old config keeps serving.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_blackbox::client::{self, h1_request};
use palisade_blackbox::{Origin, Palisade, SiteConfig};

/// The 1-based line of `path`'s file that contains `needle`.
fn line_of(path: &std::path::Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("read config back");
    text.lines()
        .position(|line| line.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in {}", path.display()))
}

/// Counts a 200 in `ok`; records any other status, or the error, in `failures`.
fn tally(
    outcome: Result<client::Reply, client::BoxError>,
    kind: &str,
    ok: &AtomicU64,
    failures: &Mutex<Vec<String>>,
) {
    match outcome {
        Ok(reply) if reply.status == 200 => {
            ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(reply) => failures
            .lock()
            .expect("lock")
            .push(format!("status {}", reply.status)),
        Err(e) => failures.lock().expect("lock").push(format!("{kind}: {e}")),
    }
}

async fn keep_alive_connection(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<client::ClientBody> {
    let tcp = client::tcp(addr).await.expect("connect");
    client::h1_handshake(tcp).await.expect("handshake")
}

#[test]
fn check_accepts_a_valid_config() {
    let run = Palisade::check(&SiteConfig::blog("http://127.0.0.1:3000").to_toml());
    assert!(
        run.status.success(),
        "check failed on a valid config: {run:?}"
    );
}

#[test]
fn check_names_file_line_and_key_of_a_bad_origin() {
    let broken = "[server]\n\
                  listen = [\"127.0.0.1:0\"]\n\
                  \n\
                  [[site]]\n\
                  name = \"blog\"\n\
                  hosts = [\"blog.example\"]\n\
                  origins = [\"not a url\"]\n";
    let run = Palisade::check(broken);
    let line = line_of(&run.config_path, "not a url");
    assert_eq!(line, 7);

    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let path = run.config_path.display().to_string();
    assert!(
        run.stderr.contains(&path),
        "stderr does not name {path}: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("line {line}")),
        "stderr does not say `line {line}`: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("origins"),
        "stderr does not name the key: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_switches_origins_without_failing_a_request() {
    let old = Origin::start("old");
    let new = Origin::start("new");
    // One address opening a connection per request, as fast as it can: a load generator, not
    // a visitor, so the new-connection rate allowed per address is raised.
    let config = |origin: &Origin| {
        SiteConfig::blog(origin.url())
            .server("max_new_connections_per_ip = 1000000")
            .to_toml()
    };
    let proxy = Palisade::start(&config(&old));
    let addr = proxy.http_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut loops = Vec::new();
    // One client opens a connection per request, one keeps a single connection alive across
    // the reload: both kinds must see no failure.
    {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tally(
                    client::try_get(addr, "blog.example", "/echo").await,
                    "new connection",
                    &ok,
                    &failures,
                );
            }
        }));
    }
    {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        loops.push(tokio::spawn(async move {
            let mut sender = keep_alive_connection(addr).await;
            while !stop.load(Ordering::Relaxed) {
                // A connection the proxy closed while idle, between requests, fails no request:
                // reconnect, as any client would. A request in flight must not fail.
                if sender.ready().await.is_err() {
                    sender = keep_alive_connection(addr).await;
                    continue;
                }
                let request = h1_request("GET", "blog.example", "/echo", client::empty());
                tally(
                    client::send_h1(&mut sender, request).await,
                    "keep-alive",
                    &ok,
                    &failures,
                );
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.rewrite_config(&config(&new));
    proxy.sighup();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await.expect("client loop");
    }

    let failures = failures.lock().expect("lock").clone();
    assert!(
        failures.is_empty(),
        "failed requests during reload: {failures:?}"
    );
    assert!(ok.load(Ordering::Relaxed) > 20, "the load loop barely ran");
    assert!(
        old.requests() > 0,
        "old origin never served before the reload"
    );
    let after: Vec<_> = {
        let mut ids = Vec::new();
        for _ in 0..10 {
            let reply = client::get(addr, "blog.example", "/echo").await;
            ids.push(reply.origin_id().unwrap_or_default().to_owned());
        }
        ids
    };
    assert!(
        after.iter().all(|id| id == "new"),
        "after the reload, served by {after:?}"
    );
}

#[tokio::test]
async fn broken_config_on_reload_is_rejected_and_old_config_keeps_serving() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    assert_eq!(
        client::get(proxy.http_addr(), "blog.example", "/echo")
            .await
            .status,
        200
    );

    proxy.rewrite_config(&SiteConfig::blog("not a url").to_toml());
    let line = line_of(proxy.config_path(), "not a url");
    proxy.sighup();

    let path = proxy.config_path().display().to_string();
    let complaint = proxy.wait_for_stderr(Duration::from_secs(5), |l| {
        l.contains(&path) && l.contains(&format!("line {line}"))
    });
    assert!(
        complaint.is_some(),
        "no stderr line names {path} and line {line} after a broken reload:\n{}",
        proxy.stderr_text()
    );
    for _ in 0..5 {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        assert_eq!(
            reply.status,
            200,
            "old config stopped serving: {}",
            reply.text()
        );
        assert_eq!(reply.origin_id(), Some("a"));
    }
}

/// Saving the file is enough: the edge notices the change without a signal.
#[tokio::test]
async fn saved_config_file_is_applied_without_a_signal() {
    let old = Origin::start("old");
    let new = Origin::start("new");
    let proxy = Palisade::start(&SiteConfig::blog(old.url()).to_toml());
    let before = client::get(proxy.http_addr(), "blog.example", "/echo").await;
    assert_eq!(before.origin_id(), Some("old"));

    proxy.rewrite_config(&SiteConfig::blog(new.url()).to_toml());
    // The file is checked once a second and loaded once it has held still for 250 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut served_by = String::new();
    while std::time::Instant::now() < deadline {
        let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
        served_by = reply.origin_id().unwrap_or_default().to_owned();
        if served_by == "new" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served_by, "new",
        "5 s after the file was saved, requests still went to the old origin"
    );
}

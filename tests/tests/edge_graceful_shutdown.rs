//! SIGTERM stops new work at once and lets work in flight finish within `shutdown_grace`.

use std::time::{Duration, Instant};

use palisade_blackbox::raw::RawConn;
use palisade_blackbox::{Origin, Palisade, SiteConfig, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_request_finish_refuses_new_ones_and_exits_zero() {
    let origin = Origin::start("a");
    let mut proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(r#"shutdown_grace = "5s""#)
            .to_toml(),
    );
    let addr = proxy.http_addr();

    let in_flight =
        tokio::spawn(async move { client::try_get(addr, "blog.example", "/slow/2000").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        origin.requests(),
        1,
        "the slow request had not reached the origin yet"
    );
    proxy.sigterm();
    let sigterm_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new connection must not be served: refused outright, or closed without a response.
    match RawConn::connect(addr).await {
        Err(_) => {}
        Ok(mut conn) => {
            let _ = conn
                .send(b"GET /echo HTTP/1.1\r\nHost: blog.example\r\n\r\n")
                .await;
            let response = conn.read_response(Duration::from_secs(2)).await;
            assert!(
                response.status_line.is_empty() && response.connection_closed,
                "a connection made after SIGTERM was served: {response:?}"
            );
        }
    }

    let reply = in_flight
        .await
        .expect("client task")
        .expect("the in-flight request failed during shutdown");
    assert_eq!(reply.status, 200, "body: {}", reply.text());
    assert_eq!(reply.text(), "slow response");

    // The grace period, plus a little for the process to wind down.
    let exit_by = sigterm_at + Duration::from_millis(5_500);
    let left = exit_by.saturating_duration_since(Instant::now());
    let status = tokio::task::block_in_place(|| proxy.wait_exit(left));
    let status = status.expect("palisade still running after the 5 s grace period");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert_eq!(
        origin.requests(),
        1,
        "a request after SIGTERM reached the origin"
    );
}

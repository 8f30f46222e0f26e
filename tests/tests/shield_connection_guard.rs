//! The shield's connection guard: the rate of new connections per address, slow request bodies,
//! slow readers, and HTTP/2 floods. Each abusive client is cut off while others keep being
//! served. Limits are made small so every test finishes in seconds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use palisade_blackbox::h2raw::{self, ENHANCE_YOUR_CALM, H2Conn};
use palisade_blackbox::metrics::{sample, scrape, scrape_until};
use palisade_blackbox::raw::RawConn;
use palisade_blackbox::{Origin, Palisade, SiteConfig, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const KEEP_ALIVE_GET: &[u8] = b"GET /echo HTTP/1.1\r\nHost: blog.example\r\n\r\n";

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Connects from `source` and asks for `/echo`: `Some(status)` when served, `None` when the
/// connection was closed (or refused) without a response.
async fn one_request_from(proxy: &Palisade, source: IpAddr) -> Option<u16> {
    let mut conn = RawConn::connect_from(source, proxy.http_addr())
        .await
        .ok()?;
    let _ = conn.send(KEEP_ALIVE_GET).await;
    let response = conn.read_response(Duration::from_secs(3)).await;
    response.status()
}

async fn cut_count(proxy: &Palisade, reason: &str) -> f64 {
    let text = scrape(proxy.admin_addr()).await;
    sample(
        &text,
        "palisade_connections_cut_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// Waits until the proxy has counted a connection cut for `reason`; returns when (from `since`).
async fn cut_within(proxy: &Palisade, reason: &str, since: Instant, within: Duration) -> Duration {
    let text = scrape_until(proxy.admin_addr(), within, |text| {
        sample(
            text,
            "palisade_connections_cut_total",
            &[("reason", reason)],
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    let seen = since.elapsed();
    let count = sample(
        &text,
        "palisade_connections_cut_total",
        &[("reason", reason)],
    );
    assert!(
        count.is_some_and(|n| n >= 1.0),
        "no connection cut for {reason} within {within:?}: {count:?}"
    );
    seen
}

// ---- 1. New connections per address ----------------------------------------------------------

/// A TLS listener serving blog.example (certificate from a fresh test CA) in front of an origin,
/// with `server_extra` lines added to `[server]`. The origin must live as long as the proxy.
fn tls_blog(server_extra: &str) -> (TestCa, Origin, Palisade) {
    let ca = TestCa::new();
    let cert = ca.issue(&["blog.example"]);
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server(&format!("listen_tls = [\"127.0.0.1:0\"]\n{server_extra}"))
            .site(&format!("tls = {}", cert.toml()))
            .to_toml(),
    );
    (ca, origin, proxy)
}

#[tokio::test]
async fn new_connections_over_the_rate_from_one_address_are_refused_while_another_connects() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_new_connections_per_ip = 5\nnew_connections_period = \"1s\"")
            .to_toml(),
    );
    let flooder = loopback(2);
    for i in 0..5 {
        assert_eq!(
            one_request_from(&proxy, flooder).await,
            Some(200),
            "connection {i} of 5 allowed in the period"
        );
    }
    assert_eq!(
        one_request_from(&proxy, flooder).await,
        None,
        "a sixth new connection within the period was served"
    );
    assert_eq!(
        one_request_from(&proxy, loopback(3)).await,
        Some(200),
        "another address was refused with the first"
    );
    assert_eq!(origin.requests(), 6);
    let text = scrape(proxy.admin_addr()).await;
    assert_eq!(
        sample(
            &text,
            "palisade_connections_refused_total",
            &[("reason", "max_new_connections_per_ip")]
        ),
        Some(1.0)
    );

    // The window slides on: two periods later the address starts afresh.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(one_request_from(&proxy, flooder).await, Some(200));
}

#[tokio::test]
async fn lowering_the_new_connection_rate_by_reload_applies_to_new_connections() {
    let origin = Origin::start("a");
    let config = |limit: u32| {
        SiteConfig::blog(origin.url())
            .server(&format!(
                "max_new_connections_per_ip = {limit}\nnew_connections_period = \"1m\""
            ))
            .to_toml()
    };
    let proxy = Palisade::start(&config(1000));
    for _ in 0..3 {
        assert_eq!(one_request_from(&proxy, loopback(4)).await, Some(200));
    }
    proxy.rewrite_config(&config(2));
    proxy.sighup();
    scrape_until(proxy.admin_addr(), Duration::from_secs(5), |text| {
        sample(text, "palisade_config_reloads_total", &[("result", "ok")]).is_some_and(|n| n >= 1.0)
    })
    .await;
    // The address has made 3 in this minute, over the new limit; another gets its 2.
    assert_eq!(one_request_from(&proxy, loopback(4)).await, None);
    assert_eq!(one_request_from(&proxy, loopback(5)).await, Some(200));
    assert_eq!(one_request_from(&proxy, loopback(5)).await, Some(200));
    assert_eq!(one_request_from(&proxy, loopback(5)).await, None);
}

// ---- 2. Slow request bodies ------------------------------------------------------------------

/// A proxy that wants 1000 bytes/s of a request body, judged every second of waiting.
fn slow_post_proxy(origin: &Origin) -> Palisade {
    Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("min_request_body_rate = 1000\nrequest_body_timeout = \"1s\"")
            .to_toml(),
    )
}

/// Sends `path` a POST declaring 100,000 bytes, then `chunk` bytes every `every` until a
/// response arrives or 6 s pass; returns the response and when it came.
async fn trickle_post(
    proxy: &Palisade,
    path: &str,
    chunk: usize,
    every: Duration,
    total: usize,
) -> (palisade_blackbox::raw::RawResponse, Duration, RawConn) {
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: blog.example\r\nContent-Length: {total}\r\n\r\n");
    conn.send(head.as_bytes()).await.expect("send head");
    let started = Instant::now();
    let mut sent = 0;
    loop {
        if sent < total {
            let n = chunk.min(total - sent);
            if conn.send(&vec![b'p'; n]).await.is_err() {
                // Cut off: the answer, if any, is waiting to be read.
                let response = conn.read_response(Duration::from_secs(2)).await;
                return (response, started.elapsed(), conn);
            }
            sent += n;
        }
        let response = conn.read_interim_or_response(every).await;
        if !response.status_line.is_empty() || response.connection_closed {
            return (response, started.elapsed(), conn);
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "no answer to a body trickled for 6 s"
        );
    }
}

#[tokio::test]
async fn slow_post_below_min_request_body_rate_gets_408_and_is_closed() {
    let origin = Origin::start("a");
    let proxy = slow_post_proxy(&origin);

    // 50 bytes every 250 ms: 200 bytes/s, a fifth of the minimum.
    let (response, after, mut conn) =
        trickle_post(&proxy, "/upload", 50, Duration::from_millis(250), 100_000).await;

    assert_eq!(response.status(), Some(408), "{response:?}");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "cut off after {after:?}; the window is 1 s"
    );
    assert!(
        response.connection_closed || conn.closed_within(Duration::from_secs(2)).await,
        "the connection stayed open after 408"
    );
    assert!(cut_count(&proxy, "min_request_body_rate").await >= 1.0);
}

#[tokio::test]
async fn post_above_min_request_body_rate_is_served_however_slowly_it_arrives() {
    let origin = Origin::start("a");
    let proxy = slow_post_proxy(&origin);

    // 400 bytes every 100 ms: 4000 bytes/s, four times the minimum, for about 2.5 s.
    let (response, after, _conn) =
        trickle_post(&proxy, "/upload", 400, Duration::from_millis(100), 10_000).await;

    assert_eq!(response.status(), Some(200), "{response:?}");
    assert_eq!(response.body_text(), r#"{"bytes":10000}"#);
    assert!(after >= Duration::from_secs(2), "{after:?}");
    assert_eq!(cut_count(&proxy, "min_request_body_rate").await, 0.0);
}

#[tokio::test]
async fn slow_post_behind_a_response_that_has_begun_closes_the_connection() {
    let origin = Origin::start("a");
    let proxy = slow_post_proxy(&origin);
    let mut conn = RawConn::connect(proxy.http_addr()).await.expect("connect");
    // /mirror answers at once and streams the body back as it comes.
    conn.send(
        b"POST /mirror HTTP/1.1\r\nHost: blog.example\r\nContent-Length: 100000\r\n\r\nfirst",
    )
    .await
    .expect("send head");
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if conn.send(b"drip").await.is_err() {
            closed = true;
            break;
        }
        if conn.closed_within(Duration::from_millis(250)).await {
            closed = true;
            break;
        }
    }
    let after = started.elapsed();
    assert!(
        closed,
        "the connection stayed open for 5 s of a 16 bytes/s body"
    );
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );
    assert!(cut_count(&proxy, "min_request_body_rate").await >= 1.0);
}

// ---- 2. Slow readers -------------------------------------------------------------------------

/// Connects with a small receive buffer and asks for `/bytes/{len}` without reading it.
async fn unread_download(proxy: &Palisade, len: u64) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let mut stream = socket.connect(proxy.http_addr()).await.expect("connect");
    stream
        .write_all(format!("GET /bytes/{len} HTTP/1.1\r\nHost: blog.example\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    stream
}

/// Reads until the server closes or `timeout` passes: the bytes read and whether it closed.
async fn drain(stream: &mut tokio::net::TcpStream, timeout: Duration) -> (u64, bool) {
    let deadline = Instant::now() + timeout;
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (total, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (total, true),
            Ok(Ok(n)) => total += n as u64,
        }
    }
}

#[tokio::test]
async fn client_that_stops_reading_is_disconnected_after_send_timeout() {
    const LEN: u64 = 256 << 20;
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("send_timeout = \"1s\"")
            .to_toml(),
    );
    let started = Instant::now();
    let mut stream = unread_download(&proxy, LEN).await;

    // The socket buffers fill within milliseconds; then the edge waits 1 s for the client.
    let cut_after = cut_within(&proxy, "send_timeout", started, Duration::from_secs(5)).await;
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(3),
        "cut after {cut_after:?} for a 1 s send_timeout"
    );
    let (read, closed) = drain(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "still open after the cut");
    assert!(read < LEN, "the whole body arrived ({read} bytes)");
}

#[tokio::test]
async fn tls_client_that_stops_reading_is_disconnected_after_send_timeout() {
    let (ca, _origin, proxy) = tls_blog("send_timeout = \"1s\"");
    let mut tls = ca
        .connect(proxy.https_addr(), "blog.example", &["http/1.1"])
        .await
        .expect("TLS handshake");
    let started = Instant::now();
    tls.write_all(b"GET /bytes/268435456 HTTP/1.1\r\nHost: blog.example\r\n\r\n")
        .await
        .expect("send request");
    let cut_after = cut_within(&proxy, "send_timeout", started, Duration::from_secs(5)).await;
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(3),
        "cut after {cut_after:?} for a 1 s send_timeout"
    );
}

#[tokio::test]
async fn client_reading_slowly_but_steadily_gets_the_whole_body() {
    const LEN: u64 = 8 << 20;
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("send_timeout = \"2s\"")
            .to_toml(),
    );
    let mut stream = tokio::net::TcpStream::connect(proxy.http_addr())
        .await
        .expect("connect");
    stream
        .write_all(format!("GET /bytes/{LEN} HTTP/1.1\r\nHost: blog.example\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    // At most 256 KiB every 100 ms. A write waits until the client has taken a third of the
    // socket's send buffer (a few MiB on loopback), well within the 2 s send_timeout.
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => total += n as u64,
        }
        if total > LEN {
            break;
        }
    }
    assert!(
        total > LEN,
        "only {total} bytes of a {LEN}-byte body (and its head)"
    );
    assert_eq!(cut_count(&proxy, "send_timeout").await, 0.0);
}

#[tokio::test]
async fn http2_client_that_never_opens_its_window_is_disconnected_after_send_timeout() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("send_timeout = \"1s\"")
            .to_toml(),
    );
    // SETTINGS_INITIAL_WINDOW_SIZE = 0, and never a WINDOW_UPDATE: the server may send the
    // response head but not one byte of the body. The socket never fills; the stream waits.
    let mut conn = H2Conn::connect_with_settings(proxy.http_addr(), &[(0x4, 0)])
        .await
        .expect("h2c connect");
    let block = h2raw::get_block("blog.example", "/bytes/1048576");
    conn.send(&h2raw::headers(1, &block, true))
        .await
        .expect("send");
    let started = Instant::now();
    let ending = conn.read_until_closed(Duration::from_secs(5)).await;
    let after = started.elapsed();
    assert!(
        ending.closed,
        "still open 5 s into a 1 s send_timeout: {ending:?}"
    );
    assert!(
        ending.frames.iter().any(|f| f.is_status_200()),
        "no response head: {ending:?}"
    );
    assert!(
        !ending
            .frames
            .iter()
            .any(|f| f.kind == h2raw::DATA && !f.payload.is_empty()),
        "data was sent into a closed window"
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?} for a 1 s send_timeout"
    );
    assert!(cut_count(&proxy, "send_timeout").await >= 1.0);
}

// ---- 3. HTTP/2 floods ------------------------------------------------------------------------

fn h2_proxy(origin: &Origin) -> Palisade {
    Palisade::start(&SiteConfig::blog(origin.url()).to_toml())
}

/// A normal client on another address gets `/echo` within a second, over HTTP/1.1.
async fn others_are_served(proxy: &Palisade) {
    let started = Instant::now();
    let status = one_request_from(proxy, loopback(9)).await;
    assert_eq!(status, Some(200), "another client was not served");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "another client waited {:?}",
        started.elapsed()
    );
}

/// Writes `frame` `count` times in batches while the server's frames are read; returns how
/// the server ended the connection.
async fn flood(addr: SocketAddr, frame: Vec<u8>, count: usize) -> h2raw::Ending {
    let conn = H2Conn::connect(addr).await.expect("h2c connect");
    let (mut reader, mut writer) = conn.into_split();
    let reading =
        tokio::spawn(async move { reader.read_until_closed(Duration::from_secs(10)).await });
    let batch: Vec<u8> = frame.repeat(100);
    for _ in 0..count / 100 {
        if writer.write_all(&batch).await.is_err() {
            break;
        }
    }
    reading.await.expect("reader task")
}

#[tokio::test]
async fn ping_flood_closes_the_connection_and_others_are_served() {
    let origin = Origin::start("a");
    let proxy = h2_proxy(&origin);
    let ending = flood(proxy.http_addr(), h2raw::ping(7), 100_000).await;
    assert!(ending.closed, "still open after 100,000 PINGs: {ending:?}");
    let pongs = ending
        .frames
        .iter()
        .filter(|f| f.kind == h2raw::PING && f.flags & h2raw::ACK != 0)
        .count();
    assert!(pongs <= 101, "{pongs} PING ACKs before the cut");
    assert!(cut_count(&proxy, "h2_control_flood").await >= 1.0);
    others_are_served(&proxy).await;
}

#[tokio::test]
async fn ping_flood_after_a_preface_split_across_writes_is_still_closed() {
    let origin = Origin::start("a");
    let proxy = h2_proxy(&origin);
    let mut stream = tokio::net::TcpStream::connect(proxy.http_addr())
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    // The preface a few bytes at a time, each in its own segment.
    for piece in h2raw::PREFACE.chunks(5) {
        stream.write_all(piece).await.expect("send preface");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut flood = h2raw::settings(&[]);
    flood.extend(h2raw::ping(7).repeat(1000));
    let _ = stream.write_all(&flood).await;
    let (read, closed) = drain(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "still open after 1000 PINGs ({read} bytes read)");
    assert!(cut_count(&proxy, "h2_control_flood").await >= 1.0);
}

#[tokio::test]
async fn ping_flood_over_tls_with_alpn_h2_closes_the_connection() {
    let (ca, _origin, proxy) = tls_blog("");
    let tls = ca
        .connect(proxy.https_addr(), "blog.example", &["h2"])
        .await
        .expect("TLS handshake");
    let (mut read, mut write) = tokio::io::split(tls);
    let reading = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    });
    let mut hello = h2raw::PREFACE.to_vec();
    hello.extend(h2raw::settings(&[]));
    let _ = write.write_all(&hello).await;
    let batch = h2raw::ping(7).repeat(100);
    for _ in 0..1000 {
        if write.write_all(&batch).await.is_err() {
            break;
        }
    }
    assert!(
        reading.await.expect("reader"),
        "still open after 100,000 PINGs over TLS"
    );
    assert!(cut_count(&proxy, "h2_control_flood").await >= 1.0);
}

#[tokio::test]
async fn settings_flood_closes_the_connection_and_others_are_served() {
    let origin = Origin::start("a");
    let proxy = h2_proxy(&origin);
    // SETTINGS_INITIAL_WINDOW_SIZE, which makes h2 walk every stream's window.
    let ending = flood(
        proxy.http_addr(),
        h2raw::settings(&[(0x4, 65_535)]),
        100_000,
    )
    .await;
    assert!(
        ending.closed,
        "still open after 100,000 SETTINGS: {ending:?}"
    );
    assert!(cut_count(&proxy, "h2_control_flood").await >= 1.0);
    others_are_served(&proxy).await;
}

#[tokio::test]
async fn rapid_reset_burst_is_closed_and_the_origin_sees_few_requests() {
    let origin = Origin::start("a");
    let proxy = h2_proxy(&origin);
    let mut conn = H2Conn::connect(proxy.http_addr())
        .await
        .expect("h2c connect");
    let block = h2raw::get_block("blog.example", "/echo");
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        burst.extend(h2raw::headers(stream, &block, true));
        burst.extend(h2raw::rst_stream(stream, h2raw::CANCEL));
    }
    let _ = conn.send(&burst).await;
    let ending = conn.read_until_closed(Duration::from_secs(5)).await;
    assert!(
        ending.closed,
        "still open after 1000 HEADERS+RST_STREAM: {ending:?}"
    );
    // h2 sends GOAWAY once 20 streams are reset before hyper accepts them; the edge's own
    // reset limit is the backstop.
    assert!(
        ending.goaway == Some(ENHANCE_YOUR_CALM)
            || cut_count(&proxy, "h2_reset_flood").await >= 1.0,
        "{ending:?}"
    );
    others_are_served(&proxy).await;
    assert!(
        origin.requests() < 200,
        "{} of the 1000 cancelled requests reached the origin",
        origin.requests()
    );
}

#[tokio::test]
async fn paced_rapid_reset_is_cut_by_the_reset_limit() {
    let origin = Origin::start("a");
    let proxy = h2_proxy(&origin);
    let mut conn = H2Conn::connect(proxy.http_addr())
        .await
        .expect("h2c connect");
    let block = h2raw::get_block("blog.example", "/echo");
    let started = Instant::now();
    let mut sent = 0;
    // One stream at a time, each reset a moment after it opened: hyper has accepted it, so
    // h2's limit on resets of streams not yet accepted does not see these.
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        if conn
            .send(&h2raw::headers(stream, &block, true))
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        if conn
            .send(&h2raw::rst_stream(stream, h2raw::CANCEL))
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let ending = conn.read_until_closed(Duration::from_secs(3)).await;
    assert!(
        ending.closed,
        "still open after {sent} paced resets: {ending:?}"
    );
    assert!(sent <= 260, "{sent} resets went through before the cut");
    assert!(cut_count(&proxy, "h2_reset_flood").await >= 1.0);
    others_are_served(&proxy).await;
}

#[tokio::test]
async fn continuation_flood_without_end_headers_is_closed_and_memory_stays_flat() {
    let origin = Origin::start("a");
    let proxy = h2_proxy(&origin);
    let before = proxy.rss_kib();
    let rss = proxy.sample_rss();
    let mut conn = H2Conn::connect(proxy.http_addr())
        .await
        .expect("h2c connect");
    let block = h2raw::get_block("blog.example", "/echo");
    let mut opening = h2raw::frame(h2raw::HEADERS, h2raw::END_STREAM, 1, &block);
    let mut field = Vec::new();
    h2raw::hpack_literal(&mut field, "x-flood", &[b'f'; 1000]);
    let continuation = h2raw::frame(h2raw::CONTINUATION, 0, 1, &field);
    for _ in 0..50 {
        opening.extend(&continuation);
    }
    let mut sent = 0usize;
    if conn.send(&opening).await.is_ok() {
        sent = 50;
        let batch = continuation.repeat(100);
        while sent < 20_000 && conn.send(&batch).await.is_ok() {
            sent += 100;
        }
    }
    let ending = conn.read_until_closed(Duration::from_secs(5)).await;
    let peak = rss.finish();
    assert!(
        ending.closed,
        "still open after {sent} CONTINUATION frames: {ending:?}"
    );
    assert_eq!(ending.goaway, Some(ENHANCE_YOUR_CALM), "{ending:?}");
    assert!(
        peak < before + 16 * 1024,
        "RSS grew from {before} KiB to a peak of {peak} KiB"
    );
    assert_eq!(origin.requests(), 0);
    others_are_served(&proxy).await;
}

#[tokio::test]
async fn hpack_bomb_over_max_header_bytes_is_refused() {
    let origin = Origin::start("a");
    let proxy = h2_proxy(&origin);
    let mut conn = H2Conn::connect(proxy.http_addr())
        .await
        .expect("h2c connect");
    // A 4000-byte field put in the dynamic table once, then named by its index (one byte)
    // 2000 times: 6 KiB on the wire, 8 MB of headers once decoded.
    let mut block = h2raw::get_block("blog.example", "/echo");
    h2raw::hpack_indexed_literal(&mut block, "x-bomb", &[b'b'; 4000]);
    block.extend(std::iter::repeat_n(0xbe, 2000));
    conn.send(&h2raw::headers(1, &block, true))
        .await
        .expect("send");
    let ending = conn.read_until_closed(Duration::from_secs(3)).await;
    let answered_200 = ending.frames.iter().any(|f| f.is_status_200());
    let refused = ending.goaway.is_some()
        || ending.frames.iter().any(|f| {
            f.kind == h2raw::RST_STREAM || (f.kind == h2raw::HEADERS && !f.is_status_200())
        });
    assert!(!answered_200, "the bomb was answered 200: {ending:?}");
    assert!(refused, "no refusal of the bomb: {ending:?}");
    assert_eq!(origin.requests(), 0);
    others_are_served(&proxy).await;
}

#[tokio::test]
async fn header_list_just_over_max_header_bytes_gets_431_on_http2() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("max_header_bytes = 8192")
            .to_toml(),
    );
    let mut conn = H2Conn::connect(proxy.http_addr())
        .await
        .expect("h2c connect");
    let mut block = h2raw::get_block("blog.example", "/echo");
    h2raw::hpack_literal(&mut block, "x-big", &[b'v'; 10_000]);
    conn.send(&h2raw::headers(1, &block, true))
        .await
        .expect("send");
    let response = loop {
        match conn.read_frame(Duration::from_secs(3)).await {
            Some(frame) if frame.kind == h2raw::HEADERS && frame.stream == 1 => break frame,
            Some(_) => continue,
            None => panic!("no response to a header list over the limit"),
        }
    };
    // `:status 431`: a literal with the static name `:status`, its value Huffman-coded as h2
    // codes every string: length 3 with the Huffman bit (0x83), then '4' '3' '1' as
    // 011010 011001 00001 and the padding ones.
    assert!(
        response
            .payload
            .windows(4)
            .any(|w| w == [0x83, 0x69, 0x90, 0xff]),
        "not a 431: {response:?}"
    );
    assert_eq!(origin.requests(), 0);
}

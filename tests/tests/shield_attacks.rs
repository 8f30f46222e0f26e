//! The shield under attack, driven from many loopback addresses (the whole of 127.0.0.0/8 is
//! loopback on Linux: a client socket bound to 127.0.0.N or 127.1.x.y before it connects is that
//! many distinct clients to the proxy).
//!
//! - one address flooding at full speed while twenty others browse: the browsers are served
//!   quickly and the origin sees no more of the flood than the rate limit lets through;
//! - attack signatures, with floods spread over 2,000 addresses (one per /24), each under any
//!   per-address limit, while twenty browsers browse: a tool's flood gets a mitigation naming
//!   the tool within 3 s and the browsers are never challenged; a legitimate surge (requests
//!   like the browsers') trips detection but is neither blocked nor challenged; a flood that
//!   copies the browsers falls back to challenging everyone, and browsers that solve are
//!   served; a flood whose bots solve challenges loses its clearances and raises the
//!   difficulty, while browsers are served; `palisade explain --live` judges a request by the
//!   mitigations in force;
//! - a million distinct rate-limit keys: the server's resident memory stays put;
//! - a cache-busting flood from one address on the default miss limit: once it presses the
//!   origin, the flooder gets the challenge, the origin sees little more of it, and browsers
//!   are served.
//!
//! These tests load the machine, so each must run alone: `.config/nextest.toml` gives them every
//! test thread under nextest, and under `cargo test` they take [`EXCLUSIVE`] in turn. Every load
//! loop is bounded in requests and in time, and every process and runtime is dropped (killed,
//! shut down) when a test ends, a failing one included.
//!
//! The clients here speak HTTP/1.1 by hand ([`Wire`]): the test binary is built without
//! optimisation like the proxy, and a hand-written client costs a fraction of a library's per
//! request, which leaves the CPU to the proxy under test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use palisade_blackbox::control::{api, events};
use palisade_blackbox::metrics::{sample, scrape};
use palisade_blackbox::{Origin, Palisade, SiteConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Taken by every test in this file, so that under `cargo test` (one process, many threads)
/// they do not load the machine at the same time.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long one response may take before a load loop counts it as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A runtime for the test's own requests, apart from the load's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
}

/// A load generator on a thread of its own (with its own single-threaded runtime, so its
/// timers and tasks never wait on the test's other work): `tasks` copies of a loop that runs
/// until the shared stop flag is set. Stopped and joined by [`Load::finish`], or when dropped
/// (a failing test included); every loop checks the flag between requests, and each request
/// gives up after [`RESPONSE_TIMEOUT`], so stopping is bounded.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    #[allow(unsafe_code)] // libc: setpriority, which std cannot
    fn start<F, Fut>(tasks: usize, task: F) -> Load
    where
        F: Fn(usize, Arc<AtomicBool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // On a real network the attacker's CPU is not the proxy's. Here the load shares two
            // cores with the proxy under test, so it runs at a lower priority (nice 10): it
            // takes every cycle the proxy leaves idle, but the kernel does not hand it the time
            // the proxy needs to answer (see the flood test's doc for what that changes).
            // SAFETY: gettid and setpriority only read and set this thread's scheduling value.
            unsafe {
                let tid = libc::gettid();
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
            }
            runtime().block_on(async move {
                let running: Vec<_> = (0..tasks)
                    .map(|i| tokio::spawn(task(i, flag.clone())))
                    .collect();
                for one in running {
                    let _ = one.await;
                }
            });
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One keep-alive HTTP/1.1 client connection from a chosen source address, reading responses
/// framed by `Content-Length` (every response in these tests has one).
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
}

impl Wire {
    async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<Wire> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = tokio::time::timeout(RESPONSE_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next response's status (its body skipped); an error on close, on a response this
    /// reader cannot frame, or after [`RESPONSE_TIMEOUT`].
    async fn response(&mut self) -> std::io::Result<u16> {
        loop {
            match frame(&self.buf[self.start..])? {
                Some((status, used)) => {
                    self.start += used;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(status);
                }
                None => {
                    if self.start > 0 {
                        self.buf.drain(..self.start);
                        self.start = 0;
                    }
                    self.buf.reserve(32 * 1024);
                    let read =
                        tokio::time::timeout(RESPONSE_TIMEOUT, self.stream.read_buf(&mut self.buf))
                            .await
                            .map_err(|_| std::io::Error::other("response timed out"))??;
                    if read == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }
}

impl Wire {
    /// The next response whole: its status, its head, its body as text.
    async fn full_response(&mut self) -> std::io::Result<(u16, String, String)> {
        loop {
            if let Some((status, used)) = frame(&self.buf[self.start..])? {
                let bytes = &self.buf[self.start..self.start + used];
                let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
                let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
                let body = String::from_utf8_lossy(&bytes[head_end + 4..]).into_owned();
                self.start += used;
                return Ok((status, head, body));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(32 * 1024);
            let read = tokio::time::timeout(RESPONSE_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| std::io::Error::other("response timed out"))??;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The next response's status and body.
    async fn exchange(&mut self) -> std::io::Result<(u16, String)> {
        let (status, _, body) = self.full_response().await?;
        Ok((status, body))
    }

    /// The next response's status and head.
    async fn head_and_body(&mut self) -> std::io::Result<(u16, String)> {
        let (status, head, _) = self.full_response().await?;
        Ok((status, head))
    }
}

/// Sends `request` on the keep-alive connection in `wire`, connecting from `source` first when
/// there is none; the response's status and body. On an error the caller drops the connection.
async fn exchange_on(
    wire: &mut Option<Wire>,
    (source, addr): (IpAddr, SocketAddr),
    request: &[u8],
) -> std::io::Result<(u16, String)> {
    if wire.is_none() {
        *wire = Some(Wire::connect_from(source, addr).await?);
    }
    let conn = wire.as_mut().expect("connected");
    conn.send(request).await?;
    conn.exchange().await
}

/// A complete response at the front of `bytes`: its status and its length on the wire.
fn frame(bytes: &[u8]) -> std::io::Result<Option<(u16, usize)>> {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &bytes[..head_end];
    let bad = |what: &str| {
        std::io::Error::other(format!(
            "{what}: {:?}",
            String::from_utf8_lossy(&head[..head.len().min(200)])
        ))
    };
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut length = None;
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            length = std::str::from_utf8(&line[15..])
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        }
    }
    let length = length.ok_or_else(|| bad("no Content-Length"))?;
    let total = head_end + 4 + length;
    Ok((bytes.len() >= total).then_some((status, total)))
}

/// The `q`-quantile of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// CPU time (user + system) process `pid` has used so far; `"self"` is this test.
#[allow(unsafe_code)] // libc: sysconf for the clock tick
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

// ---- a. One address floods, twenty browse ----------------------------------------------------

/// What one side of the flood test saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    by_status: Mutex<std::collections::BTreeMap<u16, u64>>,
    errors: AtomicU64,
}

impl Tally {
    fn count(&self, status: u16) {
        *self
            .by_status
            .lock()
            .expect("tally")
            .entry(status)
            .or_insert(0) += 1;
    }

    fn status(&self, status: u16) -> u64 {
        self.by_status
            .lock()
            .expect("tally")
            .get(&status)
            .copied()
            .unwrap_or(0)
    }
}

const FLOOD_CONNECTIONS: usize = 64;
const FLOOD_TIME: Duration = Duration::from_secs(11);
const BROWSERS: u8 = 20;
const BROWSE_TIME: Duration = Duration::from_secs(10);
/// How long the flood test's browsers browse before the flood, for the latency to compare with.
const QUIET_TIME: Duration = Duration::from_secs(4);
/// Between two requests of one browser: 5 per second.
const BROWSE_EVERY: Duration = Duration::from_millis(200);
const LIMIT: u64 = 100;
/// What the flood may add to the browsers' median latency (see the flood test's assertions).
const FLOOD_MEDIAN_DELAY: Duration = Duration::from_millis(20);
/// Under the browsers' p99 latency during the flood: a loose bound, for a loaded machine.
const FLOOD_TAIL: Duration = Duration::from_secs(1);

/// One flooding connection: request after request, as fast as the answers come, until `stop`.
async fn flood_connection(addr: SocketAddr, source: IpAddr, stop: &AtomicBool, tally: &Tally) {
    let request = b"GET /echo HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: flood\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut wire) = Wire::connect_from(source, addr).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            tally.sent.fetch_add(1, Ordering::Relaxed);
            if wire.send(request).await.is_err() {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            match wire.response().await {
                Ok(status) => tally.count(status),
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// One browser: a keep-alive connection from its own address, a request every
/// [`BROWSE_EVERY`] for `time`; returns each request's latency (`None`: failed).
async fn browse(addr: SocketAddr, source: IpAddr, n: u8, time: Duration) -> Vec<Option<Duration>> {
    let request = format!(
        "GET /echo?browser={n} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: browser\r\n\r\n"
    );
    let mut wire = None;
    let mut seen = Vec::new();
    // Browsers do not ask in step: each starts at its own point of the 200 ms cycle.
    tokio::time::sleep(BROWSE_EVERY * u32::from(n) / u32::from(BROWSERS)).await;
    let mut tick = tokio::time::interval(BROWSE_EVERY);
    // A late request is not made up for by a burst: each browser asks at its own pace.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + time;
    while Instant::now() < end {
        tick.tick().await;
        let started = Instant::now();
        let outcome = async {
            if wire.is_none() {
                wire = Some(Wire::connect_from(source, addr).await?);
            }
            let conn = wire.as_mut().expect("connected");
            conn.send(request.as_bytes()).await?;
            conn.response().await
        }
        .await;
        match outcome {
            Ok(200) => seen.push(Some(started.elapsed())),
            Ok(_) => seen.push(None),
            Err(_) => {
                wire = None;
                seen.push(None);
            }
        }
    }
    seen
}

/// [`BROWSERS`] browsers at once for `time`, browser `n` from 127.0.0.(10 + n); each one's
/// latencies, by browser.
fn browse_all(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    time: Duration,
) -> Vec<Vec<Option<Duration>>> {
    rt.block_on(async {
        let browsers: Vec<_> = (0..BROWSERS)
            .map(|n| tokio::spawn(browse(addr, v4(127, 0, 0, 10 + n), n, time)))
            .collect();
        let mut all = Vec::new();
        for browser in browsers {
            all.push(browser.await.expect("browser task"));
        }
        all
    })
}

/// The latencies of the requests answered 200, sorted, and how many requests were made.
fn served(latencies: &[Vec<Option<Duration>>]) -> (Vec<Duration>, usize) {
    let mut ok: Vec<Duration> = latencies.iter().flatten().filter_map(|l| *l).collect();
    ok.sort();
    (ok, latencies.iter().map(Vec::len).sum())
}

/// The rate limit is the flooder's problem alone: 20 browsers at 5 requests/s each keep being
/// answered quickly while one address floods over 64 keep-alive connections, and the origin
/// sees no more of the flood than the limit lets through. "Quickly" is measured against the
/// same browsers browsing for [`QUIET_TIME`] before the flood, so that what the machine's other
/// work costs them is not blamed on the flood.
///
/// The limit is 100 requests per 10 s sliding window with a 30 s penalty. The window is the
/// sketch's estimate `previous × (1 − elapsed fraction) + current`: when the previous window's
/// requests all came at its end, another `limit × fraction` fit in the current one, so up to 2 ×
/// `limit` requests can pass in one period-long stretch. The penalty (longer than the test) stops
/// the flooder at its first refusal, so it should get about `limit` through; the assertion
/// allows the 2 × `limit` the sliding window permits (and so also the few counts a conservative
/// update can lose to two connections racing on the same counter: 100 to 103 got through in
/// the runs so far).
///
/// The flood runs at nice 10 (see [`Load`]): the proxy answers it as fast as it can, but the
/// load generator does not take the cores the proxy needs. Measured with the debug build on this
/// 2-core machine: at equal priority the flood client took a core, the proxy got about 1.3
/// (80 to 100 µs of CPU per refused request, of which the shield's own work, the limit lookup,
/// the penalty check and the event, was under 2%: the rest is HTTP/1.1 parsing and writing,
/// TCP and the scheduler), and a browser's request waited behind up to 64 flooding ones at
/// each of its scheduler hops: p99 10 to 56 ms on a quiet machine, over 200 ms while other
/// builds ran. Niced, the flood still ran at 8,000 to 10,000 requests/s and the browsers' p99
/// was 7 to 11 ms (19 ms with `workers = 1`, where the browsers' requests share the one thread
/// with the flood's). The release build, at equal priority: 50,000 refusals/s, p99 4 to 8 ms.
#[test]
fn a_flood_from_one_address_leaves_twenty_browsers_served_and_the_origin_shielded() {
    let _alone = exclusive();
    let origin = Origin::start("shop");
    let proxy = Palisade::start(
        &SiteConfig::new("shop")
            .origin(origin.url())
            // Every request's access-log line would go to this test's memory through a pipe.
            .server("access_log = \"off\"")
            .site(
                r#"
[site.cache]
enabled = false

[[site.rate_limit]]
id = "per-ip"
key = "ip"
requests = 100
period = "10s"
action = "block"
penalty = "30s"
"#,
            )
            .to_toml(),
    );
    let addr = proxy.http_addr();
    let flooder = v4(127, 0, 0, 2);
    let rt = runtime();
    // The same browsers first browse without the flood: what the machine gives them right now,
    // for the latency under the flood to be measured against.
    let quiet = browse_all(&rt, addr, QUIET_TIME);

    let flood = Arc::new(Tally::default());
    let (server_cpu, test_cpu) = (cpu_time(&proxy.pid().to_string()), cpu_time("self"));
    let flood_started = Instant::now();
    let load = {
        let flood = flood.clone();
        Load::start(FLOOD_CONNECTIONS, move |_, stop| {
            let flood = flood.clone();
            async move { flood_connection(addr, flooder, &stop, &flood).await }
        })
    };
    // Browsing starts once the flood is in full swing.
    std::thread::sleep(Duration::from_millis(500));
    let latencies = browse_all(&rt, addr, BROWSE_TIME);
    std::thread::sleep(FLOOD_TIME.saturating_sub(flood_started.elapsed()));
    load.finish();
    let flood_time = flood_started.elapsed();
    let server_cpu = cpu_time(&proxy.pid().to_string()) - server_cpu;
    let test_cpu = cpu_time("self") - test_cpu;

    let sent = flood.sent.load(Ordering::Relaxed);
    let refused = flood.status(429);
    let passed = flood.status(200);
    let at_origin = origin.requests_from("127.0.0.2");
    let (ok, asked) = served(&latencies);
    let success = ok.len() as f64 / asked.max(1) as f64;
    let p50 = quantile(&ok, 0.50);
    let p99 = quantile(&ok, 0.99);
    let worst = ok.last().copied().unwrap_or_default();
    let (quiet_ok, quiet_asked) = served(&quiet);
    let (quiet_p50, quiet_p99) = (quantile(&quiet_ok, 0.50), quantile(&quiet_ok, 0.99));
    let metrics = rt.block_on(scrape(proxy.admin_addr()));
    eprintln!(
        "flooder: {sent} requests in {flood_time:.1?} ({:.0}/s) over {FLOOD_CONNECTIONS} connections: \
         {passed} × 200, {refused} × 429, {} errors; statuses {:?}; the origin saw {at_origin}\n\
         browsers without the flood: {} of {quiet_asked} answered 200, latency p50 \
         {quiet_p50:.1?}, p99 {quiet_p99:.1?}\n\
         browsers under the flood: {} of {asked} answered 200 ({:.2}%), latency p50 {p50:.1?}, \
         p99 {p99:.1?}, max {worst:.1?}; shield actions (rate_limit) {:?}\n\
         CPU over the flood: the proxy {server_cpu:.1?} ({:.0} µs per request), this test's \
         clients {test_cpu:.1?}, in {flood_time:.1?} on {} CPUs; load average {}",
        sent as f64 / flood_time.as_secs_f64(),
        flood.errors.load(Ordering::Relaxed),
        flood.by_status.lock().expect("tally"),
        quiet_ok.len(),
        ok.len(),
        success * 100.0,
        sample(
            &metrics,
            "palisade_shield_actions_total",
            &[("site", "shop"), ("action", "rate_limit")]
        ),
        server_cpu.as_secs_f64() * 1e6 / (sent as f64 + asked as f64).max(1.0),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
    );

    // It was a flood, and the limit turned it away.
    assert!(
        sent > 20 * LIMIT,
        "the flooder sent only {sent} requests in {flood_time:?}: not a flood"
    );
    assert!(
        refused as f64 > 0.9 * sent as f64,
        "only {refused} of the flooder's {sent} requests got 429"
    );
    // The origin saw the flooder within the limit's bound (see the doc comment), and at least
    // part of its allowance (it is rate-limited, not banned).
    assert!(
        at_origin <= 2 * LIMIT,
        "the origin saw {at_origin} of the flooder's requests (limit {LIMIT} per 10 s)"
    );
    assert!(
        at_origin >= LIMIT / 2,
        "the origin saw {at_origin} of the flooder's requests"
    );
    assert_eq!(
        at_origin, passed,
        "every request that passed reached the origin"
    );
    // The browsers did not notice.
    let expected =
        BROWSERS as usize * (BROWSE_TIME.as_millis() / BROWSE_EVERY.as_millis()) as usize;
    assert!(
        asked >= expected * 9 / 10,
        "the browsers made only {asked} requests of the {expected} planned: they were held up"
    );
    assert!(
        success >= 0.99,
        "only {:.2}% of the browsers' requests succeeded",
        success * 100.0
    );
    // Quickly: the median browser request takes at most FLOOD_MEDIAN_DELAY longer under the
    // flood than the same browsers' median without it (measured just before, on the machine as
    // it is now). The tail is bounded loosely: other work on the machine (parallel builds)
    // stalls the proxy at random moments, which moves the p99 a lot and the median little (at
    // load average 10: the median 1.7 ms without the flood and 3 to 7 ms under it, the p99 20
    // to 100 ms, once 277 ms with every request answered). With the flood client at the
    // proxy's own priority, taking a core from it, the median rose to 22 ms and this failed. A
    // starved browser waits seconds: past FLOOD_TAIL in its tail, or timed out and failed above.
    assert!(
        p50 < quiet_p50 + FLOOD_MEDIAN_DELAY,
        "browser median {p50:?} under the flood, {quiet_p50:?} without (p99 {p99:?}, max \
         {worst:?}): the flood held browsers up by more than {FLOOD_MEDIAN_DELAY:?}"
    );
    assert!(
        p99 < FLOOD_TAIL,
        "browser p99 {p99:?} (p50 {p50:?}, max {worst:?}) under the flood, {quiet_p99:?} without"
    );
    for n in 0..BROWSERS {
        let from = format!("127.0.0.{}", 10 + n);
        let answered: u64 = [&quiet, &latencies]
            .iter()
            .map(|phase| phase[n as usize].iter().flatten().count() as u64)
            .sum();
        assert_eq!(
            origin.requests_from(&from),
            answered,
            "browser {from}: the origin's count differs from the answers it got"
        );
    }
}

// ---- b. A flood spread over 2,000 addresses ----------------------------------------------------

const SPREAD: usize = 2000;

/// The `i`-th flooding address: one in each of 2,000 /24s (127.1.0.1 to 127.50.39.1), as a
/// botnet's are spread over networks.
fn spread_address(i: usize) -> IpAddr {
    v4(127, 1 + (i % 50) as u8, (i / 50 % 250) as u8, 1)
}

/// Polls `/api/events?site=shop` until an event with `action` newer than `after` shows up, or
/// `within` runs out; returns when it was seen.
async fn wait_for_event(
    proxy: &Palisade,
    action: &str,
    after: u64,
    within: Duration,
) -> Option<(serde_json::Value, Instant)> {
    let deadline = Instant::now() + within;
    loop {
        let found = events(proxy, &format!("?site=shop&after={after}&limit=10000"))
            .await
            .into_iter()
            .find(|e| e["action"] == action);
        if let Some(event) = found {
            return Some((event, Instant::now()));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn newest_id(events: &[serde_json::Value]) -> u64 {
    events
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .max()
        .unwrap_or(0)
}

// The requests of section b. A browser's: its own headers in its own order, a fresh page each
// time (the cache cannot answer: every request reaches the origin, as a dynamic page's would).
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/131.0.0.0 Safari/537.36";

fn browser_request(n: usize, page: u64, cookie: Option<&str>) -> String {
    site_browser_request(&SHOP_VISITORS, n, page, cookie)
}

/// The browsers of one site: the site's host, and the network their addresses are in
/// (127.0.`net`.10 upwards).
struct Visitors {
    host: &'static str,
    net: u8,
}

const SHOP_VISITORS: Visitors = Visitors {
    host: "shop.example",
    net: 0,
};

/// [`browser_request`] for `visitors`' site.
fn site_browser_request(visitors: &Visitors, n: usize, page: u64, cookie: Option<&str>) -> String {
    let host = visitors.host;
    let cookie = cookie.map_or(String::new(), |c| {
        format!("Cookie: palisade_clearance={c}\r\n")
    });
    format!(
        "GET /echo?browser={n}&page={page} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {CHROME}\r\n\
         Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
         Accept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n{cookie}\r\n"
    )
}

/// A scripting tool's request for a dynamic page, its query random each time.
fn tool_request(i: u64) -> String {
    format!(
        "GET /search?q={:x}z{} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: python-requests/2.31.0\r\n\
         Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24,
        i % 10
    )
}

/// The tool's request for a site's home page, the same each time: the cache answers it.
fn tool_home_request() -> String {
    "GET /echo?home HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: python-requests/2.31.0\r\n\
     Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"
        .to_owned()
}

/// Until `stop`: takes the next of the 2,000 addresses in turn, connects from it, sends three
/// requests `request(i)` on that connection and closes it. Every address sends a few requests
/// a second at most: under any per-address limit.
async fn spread_worker(
    addr: SocketAddr,
    next: &AtomicUsize,
    stop: &AtomicBool,
    tally: &Tally,
    request: &(dyn Fn(u64) -> String + Send + Sync),
    pace: Option<Duration>,
) {
    let mut tick = pace.map(|every| {
        let mut tick = tokio::time::interval(every * 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    while !stop.load(Ordering::Relaxed) {
        if let Some(tick) = &mut tick {
            tick.tick().await;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let source = spread_address(i % SPREAD);
        let Ok(mut wire) = Wire::connect_from(source, addr).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        for k in 0..3 {
            tally.sent.fetch_add(1, Ordering::Relaxed);
            if wire
                .send(request((i * 3 + k) as u64).as_bytes())
                .await
                .is_err()
            {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            match wire.response().await {
                Ok(status) => tally.count(status),
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// A flood over the 2,000 addresses on its own thread, 32 connections at a time, as fast as
/// it is answered.
fn spread_flood(
    addr: SocketAddr,
    request: impl Fn(u64) -> String + Send + Sync + 'static,
) -> (Load, Arc<Tally>) {
    spread_traffic(addr, request, None)
}

/// [`spread_flood`], each of the 32 connections sending at most one request per `pace` when
/// one is given (people, not a closed loop).
fn spread_traffic(
    addr: SocketAddr,
    request: impl Fn(u64) -> String + Send + Sync + 'static,
    pace: Option<Duration>,
) -> (Load, Arc<Tally>) {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let request: Arc<dyn Fn(u64) -> String + Send + Sync> = Arc::new(request);
    let load = {
        let tally = tally.clone();
        Load::start(32, move |_, stop| {
            let (next, tally, request) = (next.clone(), tally.clone(), request.clone());
            async move { spread_worker(addr, &next, &stop, &tally, &*request, pace).await }
        })
    };
    (load, tally)
}

/// What the browsers of section b saw: each request's latency when it was served (200), and
/// every status they got.
#[derive(Default, Debug)]
struct Browsing {
    latencies: Vec<Duration>,
    statuses: std::collections::BTreeMap<u16, u64>,
    failures: u64,
    /// Challenges solved, and how long each took (page to cookie).
    solves: Vec<Duration>,
}

impl Browsing {
    fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.failures
    }

    fn served(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    fn p99(&mut self) -> Duration {
        self.at(0.99)
    }

    fn p50(&mut self) -> Duration {
        self.at(0.5)
    }

    fn at(&mut self, q: f64) -> Duration {
        self.latencies.sort();
        quantile(&self.latencies, q)
    }

    fn merge(&mut self, other: Browsing) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.failures += other.failures;
        self.solves.extend(other.solves);
    }
}

/// One browser of section b: a keep-alive connection from 127.0.0.(10 + n), a fresh page
/// every [`BROWSE_EVERY`] for `time`. With `solve`, it answers a challenge page as the page's
/// script would (the proof of work, the answer posted, the cookie kept) and asks again; the
/// request's latency then includes the solve.
async fn browse_pages(
    addr: SocketAddr,
    visitors: &'static Visitors,
    n: usize,
    time: Duration,
    solve: bool,
) -> Browsing {
    let source = v4(127, 0, visitors.net, 10 + n as u8);
    let mut seen = Browsing::default();
    let mut wire: Option<Wire> = None;
    let mut cookie: Option<String> = None;
    tokio::time::sleep(BROWSE_EVERY * n as u32 / u32::from(BROWSERS)).await;
    let mut tick = tokio::time::interval(BROWSE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + time;
    let mut page = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        page += 1;
        let started = Instant::now();
        let mut status = None;
        for _attempt in 0..3 {
            let request = site_browser_request(visitors, n, page, cookie.as_deref());
            let outcome = exchange_on(&mut wire, (source, addr), request.as_bytes()).await;
            match outcome {
                Ok((503, body)) if solve && body.contains(CHALLENGE_PARAMS) => {
                    let solving = Instant::now();
                    match solve_challenge(&body, source, addr).await {
                        Some(value) => {
                            seen.solves.push(solving.elapsed());
                            cookie = Some(value);
                        }
                        None => {
                            status = Some(503);
                            break;
                        }
                    }
                }
                Ok((code, _)) => {
                    status = Some(code);
                    break;
                }
                Err(_) => {
                    wire = None;
                    break;
                }
            }
        }
        match status {
            Some(code) => {
                *seen.statuses.entry(code).or_default() += 1;
                if code == 200 {
                    seen.latencies.push(started.elapsed());
                }
            }
            None => seen.failures += 1,
        }
    }
    seen
}

/// [`BROWSERS`] browsers of section b at once for `time`; what they saw together.
async fn browse_pages_all(addr: SocketAddr, time: Duration, solve: bool) -> Browsing {
    browse_site_pages(addr, &SHOP_VISITORS, time, solve).await
}

/// [`browse_pages_all`] on `visitors`' site.
async fn browse_site_pages(
    addr: SocketAddr,
    visitors: &'static Visitors,
    time: Duration,
    solve: bool,
) -> Browsing {
    let browsers: Vec<_> = (0..usize::from(BROWSERS))
        .map(|n| tokio::spawn(browse_pages(addr, visitors, n, time, solve)))
        .collect();
    let mut all = Browsing::default();
    for browser in browsers {
        all.merge(browser.await.expect("browser task"));
    }
    all
}

const CHALLENGE_PARAMS: &str = r#"<script type="application/json" id="palisade-challenge">"#;

/// Solves the challenge page `body` as its script would and posts the answer from `source`;
/// the clearance cookie's value, or `None` when the answer was refused.
async fn solve_challenge(body: &str, source: IpAddr, addr: SocketAddr) -> Option<String> {
    solve_challenge_as(body, (source, CHROME), addr)
        .await
        .map(|(cookie, _)| cookie)
}

/// [`solve_challenge`] for a client sending `user_agent` (a clearance is bound to it); the
/// cookie's value and the difficulty solved.
async fn solve_challenge_as(
    body: &str,
    (source, user_agent): (IpAddr, &str),
    addr: SocketAddr,
) -> Option<(String, u8)> {
    let start = body.find(CHALLENGE_PARAMS)? + CHALLENGE_PARAMS.len();
    let len = body[start..].find("</script>")?;
    let params: serde_json::Value = serde_json::from_str(&body[start..start + len]).ok()?;
    let c = params["c"].as_str()?;
    let bits = u8::try_from(params["bits"].as_u64()?).ok()?;
    let parts = u8::try_from(params["parts"].as_u64()?).ok()?;
    // The proof of work is the browser's CPU, not the test runtime's: off the runtime's thread,
    // so the other browsers keep their pace meanwhile.
    let challenge = c.to_string();
    let nonces =
        tokio::task::spawn_blocking(move || shield::challenge::pow::solve(&challenge, bits, parts))
            .await
            .ok()?;
    let answer = serde_json::json!({ "c": c, "n": nonces, "return": params["return"] }).to_string();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        shield::challenge::VERIFY_PATH,
        answer.len()
    );
    let mut wire = Wire::connect_from(source, addr).await.ok()?;
    wire.send(request.as_bytes()).await.ok()?;
    let head = wire.head_and_body().await.ok()?;
    if head.0 != 200 {
        return None;
    }
    const SET_COOKIE: &str = "set-cookie: palisade_clearance=";
    let set_cookie = head.1.lines().find_map(|line| {
        line.get(..SET_COOKIE.len())
            .filter(|name| name.eq_ignore_ascii_case(SET_COOKIE))
            .map(|_| &line[SET_COOKIE.len()..])
    })?;
    Some((set_cookie.split(';').next()?.to_string(), bits))
}

/// The origin's request rate over `time` from `before` requests.
fn origin_rate(origin: &Origin, before: u64, time: Duration) -> f64 {
    (origin.requests() - before) as f64 / time.as_secs_f64()
}

/// The shop site of section b: its cache on (the dynamic pages are not cacheable by their
/// URLs), the access log off (the flood's lines would only load the machine), attack
/// detection as it ships except a short hold, so that the end is seen within the test.
fn shop(origin: &Origin, extra: &str) -> String {
    SiteConfig::new("shop")
        .origin(origin.url())
        .server("access_log = \"off\"")
        .site(&format!(
            "[site.shield]\nattack_hold = \"3s\"\nattack_learning = \"5s\"\n{extra}"
        ))
        .to_toml()
}

/// Section b's set-up: the shop site (`shop` with `extra`) in front of its origin, and its
/// browsers browsing alone for [`SIGNATURE_QUIET`] (the baseline the site learns), every
/// request of theirs served.
struct Baseline {
    origin: Origin,
    proxy: Palisade,
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    /// What the browsers saw, and the origin's rate meanwhile.
    quiet: Browsing,
    origin_rate: f64,
    /// The newest security event by then.
    after_id: u64,
}

fn baseline(extra: &str) -> Baseline {
    let origin = Origin::start("shop");
    let proxy = Palisade::start(&shop(&origin, extra));
    let addr = proxy.http_addr();
    let rt = runtime();
    let before = origin.requests();
    let started = Instant::now();
    let quiet = rt.block_on(browse_pages_all(addr, SIGNATURE_QUIET, false));
    let origin_rate = origin_rate(&origin, before, started.elapsed());
    assert_eq!(
        quiet.served(),
        quiet.requests(),
        "before the flood: {quiet:?}"
    );
    let after_id = newest_id(&rt.block_on(events(&proxy, "?site=shop&limit=10000")));
    Baseline {
        origin,
        proxy,
        rt,
        addr,
        quiet,
        origin_rate,
        after_id,
    }
}

/// What the proxy logged about attacks and challenges: shown when a test of section b ends.
fn attack_log(proxy: &Palisade) -> Vec<String> {
    proxy
        .stderr_text()
        .lines()
        .filter(|l| l.contains("attack") || l.contains("challeng"))
        .map(str::to_owned)
        .collect()
}

/// How long the browsers browse before a flood: the baseline the site learns.
const SIGNATURE_QUIET: Duration = Duration::from_secs(8);
/// How long they browse during it.
const SIGNATURE_FLOOD: Duration = Duration::from_secs(10);

/// The attack this product exists for, end to end: 20 browsers browse a site's dynamic pages,
/// then a tool floods a dynamic path with random queries from 2,000 addresses, each under any
/// per-address limit. Attack detection trips; within 3 s a mitigation derived from the
/// flood's signature is in force (its rule names the tool, not the browsers); every browser
/// request is served, none is challenged, their p99 stays under 100 ms; the origin sees no
/// more than twice its usual rate; the mitigation ends once the flood stops.
#[test]
fn a_tool_flood_from_two_thousand_addresses_is_mitigated_by_its_signature_alone() {
    let _alone = exclusive();
    let Baseline {
        origin,
        proxy,
        rt,
        addr,
        mut quiet,
        origin_rate: quiet_origin_rate,
        after_id,
    } = baseline("");

    let flood_started = Instant::now();
    let (load, flood) = spread_flood(addr, tool_request);
    let origin_before = origin.requests();
    // The origin's count a second after the mitigation came: from then on it sees what the
    // mitigation lets through.
    let (mut browsing, (on, settled)) = rt.block_on(async {
        tokio::join!(browse_pages_all(addr, SIGNATURE_FLOOD, false), async {
            let on = wait_for_event(&proxy, "mitigation_on", after_id, SIGNATURE_FLOOD).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let flood_then = (flood.sent.load(Ordering::Relaxed), flood.status(503));
            (on, (origin.requests(), Instant::now(), flood_then))
        })
    });
    let flood_time = flood_started.elapsed();
    let origin_during = origin_rate(&origin, origin_before, flood_time);
    let origin_mitigated = origin_rate(&origin, settled.0, settled.1.elapsed());
    // Once mitigated, the flood's requests are held a second each (`mitigation_hold`): its 32
    // connections send about 32 a second, every one answered with the challenge.
    let mitigated_time = settled.1.elapsed();
    let flood_after = flood.sent.load(Ordering::Relaxed) - settled.2.0;
    let challenged_after = flood.status(503) - settled.2.1;
    let flood_rate_after = flood_after as f64 / mitigated_time.as_secs_f64();
    let (listed_status, listed) =
        rt.block_on(api(&proxy, "GET", "/api/sites/shop/mitigations", None));
    // `palisade explain --live` judges a request by the mitigations in force.
    let config = proxy.config_path().display().to_string();
    let explained = |agent: &str| {
        palisade_blackbox::cli::palisade(
            &proxy,
            &[
                "explain",
                "--config",
                &config,
                "--ip",
                "127.0.0.99",
                "--live",
                "GET",
                "http://shop.example/search?q=x1y2z3",
                "-H",
                &format!("User-Agent: {agent}"),
            ],
        )
        .ok()
    };
    let tool_explained = explained("python-requests/2.31.0");
    let browser_explained = explained(CHROME);
    let metrics = rt.block_on(scrape(proxy.admin_addr()));
    let stopped = Instant::now();
    load.finish();

    let (on_event, on_at) = on.unwrap_or_else(|| {
        panic!(
            "no mitigation_on event during the flood ({} requests, statuses {:?}); events: {:?}",
            flood.sent.load(Ordering::Relaxed),
            flood.by_status.lock().expect("tally"),
            rt.block_on(events(&proxy, "?site=shop&limit=20"))
        )
    });
    let mitigated_in = on_at.duration_since(flood_started);
    let mitigation = &on_event["mitigation"];
    let sent = flood.sent.load(Ordering::Relaxed);
    eprintln!(
        "tool flood: {sent} requests in {flood_time:.1?} ({:.0}/s), statuses {:?}; mitigation \
         after {mitigated_in:.2?}: {mitigation}; browsers: {} of {} served, p99 {:?} (quiet \
         p99 {:?}), statuses {:?}; origin {:.0}/s over the flood, {:.0}/s once mitigated, \
         {:.0}/s before; the flood once mitigated: {flood_rate_after:.0}/s, {challenged_after} of \
         {flood_after} challenged",
        sent as f64 / flood_time.as_secs_f64(),
        flood.by_status.lock().expect("tally"),
        browsing.served(),
        browsing.requests(),
        browsing.p99(),
        quiet.p99(),
        browsing.statuses,
        origin_during,
        origin_mitigated,
        quiet_origin_rate,
    );
    assert!(
        mitigated_in <= Duration::from_secs(3),
        "the mitigation came {mitigated_in:?} after the flood began"
    );
    assert_eq!(on_event["reason"], "signature", "{on_event}");
    let rule = mitigation["rule"].as_str().expect("the mitigation's rule");
    assert!(
        rule.contains("python-requests")
            || rule.contains("/search")
            || rule.contains("accept-encoding,accept,connection"),
        "the rule does not single out the tool: {rule}"
    );
    assert!(
        !rule.contains("Chrome"),
        "the rule names the browsers: {rule}"
    );
    assert!(
        mitigation["baseline_share"]
            .as_f64()
            .expect("baseline share")
            <= 0.01,
        "{mitigation}"
    );
    assert_eq!(listed_status, 200, "{listed}");
    assert!(
        tool_explained.contains("matches: this request is challenged"),
        "{tool_explained}"
    );
    assert!(
        browser_explained.contains("none matches this request"),
        "{browser_explained}"
    );
    assert_eq!(listed["mitigations"][0]["id"], mitigation["id"], "{listed}");
    assert_eq!(
        sample(&metrics, "palisade_mitigations_active", &[("site", "shop")]),
        Some(1.0),
        "{metrics}"
    );
    // The browsers: all served, never challenged, quickly.
    assert_eq!(
        browsing.served(),
        browsing.requests(),
        "browsers not served during the flood: {:?}",
        browsing.statuses
    );
    // Under 100 ms; on a machine so busy with other work that the browsers were slow before
    // the flood already, within four times what they saw then.
    let bound = Duration::from_millis(100).max(quiet.p99() * 4);
    assert!(
        browsing.p99() < bound,
        "browsers' p99 {:?} during the flood (quiet: {:?})",
        browsing.p99(),
        quiet.p99()
    );
    // The flood: challenged once the mitigation is in force (it cannot answer), and held.
    assert!(
        challenged_after * 10 >= flood_after * 9,
        "the flood was not challenged: {challenged_after} of {flood_after}"
    );
    assert!(
        flood_rate_after < 100.0,
        "the mitigated flood still ran at {flood_rate_after:.0}/s: its answers were not held"
    );
    // The origin: once the mitigation is in force, no more than twice its usual rate (before
    // it, detection's first second of flood reached the origin).
    assert!(
        origin_mitigated <= 2.0 * quiet_origin_rate,
        "origin at {origin_mitigated:.0}/s under mitigation against {quiet_origin_rate:.0}/s before"
    );

    // The flood stops: the attack, and its mitigation, end.
    let on_id = on_event["id"].as_u64().expect("event id");
    let off = rt.block_on(wait_for_event(
        &proxy,
        "mitigation_off",
        on_id,
        Duration::from_secs(15),
    ));
    let (off_event, off_at) = off.expect("no mitigation_off within 15 s of the flood's end");
    eprintln!(
        "tool flood: mitigation_off {:?} after the flood stopped: {off_event}",
        off_at.duration_since(stopped)
    );
    assert_eq!(off_event["reason"], "settled", "{off_event}");
    let (_, listed) = rt.block_on(api(&proxy, "GET", "/api/sites/shop/mitigations", None));
    assert_eq!(listed["mitigations"], serde_json::json!([]), "{listed}");
    // The tool's request now reaches the origin (which has no /search: 404).
    let served = rt.block_on(raw_get(addr, &tool_request(1)));
    assert_eq!(served, 404, "the tool after the attack");
}

const BLOG_VISITORS: Visitors = Visitors {
    host: "blog.example",
    net: 2,
};

/// Tenant isolation: two sites on one edge, both browsed; then a tool floods the shop's home
/// page from 2,000 addresses in a closed loop. The cache answers the flood, so the edge's own
/// CPU is what the two sites share (the flood of the test above is answered by the origin, on
/// this same machine). Until detection trips, the shop sends many times the blog's share, and
/// whenever the edge is short of CPU its requests wait their turn; then its mitigation holds
/// the flood's answers. The blog's browsers are all served, never challenged, never made to
/// wait their turn, and their median latency stays within 1.5 times what it was before the
/// flood (their p99 within 3 times).
#[test]
fn a_flood_on_one_site_leaves_the_other_sites_browsers_as_quick_as_before() {
    let _alone = exclusive();
    let shop_origin = Origin::start("shop");
    let blog_origin = Origin::start("blog");
    let config = format!(
        "{}\n[[site]]\nname = \"blog\"\nhosts = [\"blog.example\"]\norigins = [\"{}\"]\n",
        shop(&shop_origin, "[site.cache]\nttl = \"60s\"\n"),
        blog_origin.url()
    );
    let proxy = Palisade::start(&config);
    let addr = proxy.http_addr();
    let rt = runtime();
    let both = |time| async move {
        tokio::join!(
            browse_site_pages(addr, &SHOP_VISITORS, time, false),
            browse_site_pages(addr, &BLOG_VISITORS, time, false)
        )
    };
    let (mut shop_quiet, mut blog_quiet) = rt.block_on(both(SIGNATURE_QUIET));
    for quiet in [&shop_quiet, &blog_quiet] {
        assert_eq!(
            quiet.served(),
            quiet.requests(),
            "before the flood: {quiet:?}"
        );
    }
    let after_id = newest_id(&rt.block_on(events(&proxy, "?limit=10000")));

    let flood_started = Instant::now();
    let (load, flood) = spread_flood(addr, |_| tool_home_request());
    let (mut shop_flooded, mut blog_flooded) = rt.block_on(both(SIGNATURE_FLOOD));
    let flood_time = flood_started.elapsed();
    load.finish();
    let metrics = rt.block_on(scrape(proxy.admin_addr()));
    let blog_events = rt.block_on(events(&proxy, &format!("?site=blog&after={after_id}")));
    let shop_mitigated = rt
        .block_on(events(
            &proxy,
            &format!("?site=shop&after={after_id}&limit=10000"),
        ))
        .into_iter()
        .any(|e| e["action"] == "mitigation_on");
    let waited = |site: &str| {
        ["let_go", "waited_out"]
            .map(|outcome| {
                sample(
                    &metrics,
                    "palisade_requests_deprioritised_total",
                    &[("site", site), ("outcome", outcome)],
                )
                .unwrap_or(0.0)
            })
            .iter()
            .sum::<f64>()
    };

    let sent = flood.sent.load(Ordering::Relaxed);
    eprintln!(
        "two sites: the shop's flood {sent} requests in {flood_time:.1?} ({:.0}/s), statuses \
         {:?}, mitigated: {shop_mitigated}; the edge short of CPU {:?} times, the shop's \
         requests that waited their turn {}; blog browsers {} of {} served, p50 {:?} (quiet \
         {:?}), p99 {:?} (quiet {:?}), statuses {:?}; shop browsers {} of {} served, p99 {:?} \
         (quiet {:?})",
        sent as f64 / flood_time.as_secs_f64(),
        flood.by_status.lock().expect("tally"),
        sample(&metrics, "palisade_cpu_shortages_total", &[]),
        waited("shop"),
        blog_flooded.served(),
        blog_flooded.requests(),
        blog_flooded.p50(),
        blog_quiet.p50(),
        blog_flooded.p99(),
        blog_quiet.p99(),
        blog_flooded.statuses,
        shop_flooded.served(),
        shop_flooded.requests(),
        shop_flooded.p99(),
        shop_quiet.p99(),
    );
    assert!(shop_mitigated, "the shop's flood was not mitigated");
    assert_eq!(
        blog_flooded.served(),
        blog_flooded.requests(),
        "the blog's browsers during the shop's flood: {:?}",
        blog_flooded.statuses
    );
    assert!(
        blog_events.is_empty(),
        "security events on the blog: {blog_events:?}"
    );
    assert_eq!(waited("blog"), 0.0, "the blog's requests waited their turn");
    assert_eq!(
        shop_flooded.served(),
        shop_flooded.requests(),
        "the shop's browsers during its flood: {:?}",
        shop_flooded.statuses
    );
    // As quick as before: the typical request (the median) within 1.5 times, and the tail
    // (p99) within 3 times. The p99 of these 2 ms answers on a 2-core machine that also runs
    // the flood, the origin and the browsers moves with the scheduler: from 0.9 to 2.0 times
    // its quiet figure between runs with the isolation in place (the median: 0.85 to 1.0), so
    // a tighter bound on it failed runs that were fine.
    assert!(
        blog_flooded.p50() <= blog_quiet.p50() * 3 / 2,
        "the blog's median {:?} during the shop's flood, {:?} before",
        blog_flooded.p50(),
        blog_quiet.p50()
    );
    assert!(
        blog_flooded.p99() <= blog_quiet.p99() * 3,
        "the blog's p99 {:?} during the shop's flood, {:?} before",
        blog_flooded.p99(),
        blog_quiet.p99()
    );
}

/// A legitimate surge: over ten times the baseline, from 2,000 addresses, requests like the
/// browsers' own (a link from a popular site). Detection trips, but nothing singles the surge
/// out from the usual traffic: no mitigation, nobody blocked or challenged (the fallback is
/// off by default).
#[test]
fn a_legitimate_surge_is_neither_blocked_nor_challenged() {
    let _alone = exclusive();
    // The origin is bound, not left in `..`: what is left there is dropped at once.
    let Baseline {
        origin: _origin,
        proxy,
        rt,
        addr,
        after_id,
        ..
    } = baseline("");

    // About 1,600 requests a second at most (32 connections, one request per 20 ms each): 16
    // times the baseline, past the 8 that trips detection, and open-loop like people.
    let (load, surge) = spread_traffic(
        addr,
        |i| browser_request((i % 997) as usize, i, None),
        Some(Duration::from_millis(20)),
    );
    let (mut browsing, detected) = rt.block_on(async {
        tokio::join!(
            browse_pages_all(addr, SIGNATURE_FLOOD, false),
            wait_for_event(&proxy, "under_attack_on", after_id, SIGNATURE_FLOOD)
        )
    });
    load.finish();
    let seen = rt.block_on(events(
        &proxy,
        &format!("?site=shop&after={after_id}&limit=10000"),
    ));
    let actions: std::collections::BTreeMap<String, usize> =
        seen.iter().fold(Default::default(), |mut m, e| {
            *m.entry(e["action"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            m
        });
    let sent = surge.sent.load(Ordering::Relaxed);
    eprintln!(
        "legitimate surge: {sent} requests, statuses {:?}; detection {:?}; events {actions:?}; \
         browsers {} of {} served, p99 {:?}",
        surge.by_status.lock().expect("tally"),
        detected.as_ref().map(|(e, _)| e["value"].clone()),
        browsing.served(),
        browsing.requests(),
        browsing.p99(),
    );
    let origin_metrics: Vec<String> = rt
        .block_on(scrape(proxy.admin_addr()))
        .lines()
        .filter(|l| l.starts_with("palisade_origin") && !l.starts_with("palisade_origin_pressure"))
        .map(str::to_owned)
        .collect();
    eprintln!("legitimate surge: {origin_metrics:#?}");
    assert!(
        detected.is_some(),
        "the surge did not trip detection: the test proves nothing"
    );
    assert_eq!(actions.get("mitigation_on"), None, "{seen:?}");
    assert_eq!(actions.get("challenge"), None, "{seen:?}");
    assert_eq!(actions.get("block"), None, "{seen:?}");
    assert_eq!(
        surge.status(200),
        sent - surge.errors.load(Ordering::Relaxed),
        "{:?}",
        surge.by_status.lock().expect("tally")
    );
    assert_eq!(
        browsing.served(),
        browsing.requests(),
        "{:?}",
        browsing.statuses
    );
}

/// A flood that copies the browsers exactly (their headers, their pages, their shapes): no
/// signature covers it, and with `attack_fallback = "challenge"` everyone without clearance is
/// challenged. The browsers solve the challenge (the page's proof of work at the default
/// difficulty) and are served, every request; the flood, which never solves, is held off.
#[test]
fn a_flood_that_copies_the_browsers_falls_back_to_the_challenge_which_browsers_pass() {
    let _alone = exclusive();
    // The origin is bound, not left in `..`: what is left there is dropped at once.
    let Baseline {
        origin: _origin,
        proxy,
        rt,
        addr,
        after_id,
        ..
    } = baseline("attack_fallback = \"challenge\"");

    let (load, flood) = spread_flood(addr, |i| browser_request((i % 20) as usize, i, None));
    // What the flood had got when the fallback came: from then on it meets the challenge.
    let (mut browsing, (fallback, (served_before, challenged_before))) = rt.block_on(async {
        tokio::join!(browse_pages_all(addr, SIGNATURE_FLOOD, true), async {
            let fallback =
                wait_for_event(&proxy, "challenge_everyone_on", after_id, SIGNATURE_FLOOD).await;
            (fallback, (flood.status(200), flood.status(503)))
        })
    });
    load.finish();
    let served_after = flood.status(200) - served_before;
    let challenged_after = flood.status(503) - challenged_before;
    let sent = flood.sent.load(Ordering::Relaxed);
    let mut solves = browsing.solves.clone();
    solves.sort();
    eprintln!(
        "copying flood: {sent} requests, statuses {:?}; fallback {:?}; browsers {} of {} \
         served, p99 {:?}, {} challenges solved (median {:?}, max {:?})",
        flood.by_status.lock().expect("tally"),
        fallback.as_ref().map(|(e, _)| e.clone()),
        browsing.served(),
        browsing.requests(),
        browsing.p99(),
        solves.len(),
        quantile(&solves, 0.5),
        solves.last(),
    );
    let attack_lines = attack_log(&proxy);
    eprintln!("copying flood: the proxy said {attack_lines:#?}");
    let (event, _) = fallback.expect("no challenge_everyone_on during the flood");
    assert_eq!(event["reason"], "no_signature", "{event}");
    assert_eq!(
        browsing.served(),
        browsing.requests(),
        "{:?}",
        browsing.statuses
    );
    assert!(
        !solves.is_empty(),
        "no browser was challenged: the test proves nothing"
    );
    assert!(
        solves.last().copied().unwrap_or_default() < Duration::from_secs(10),
        "a solve took {:?}",
        solves.last()
    );
    // Once the fallback is on, the flood is held off: what it still gets served is what was
    // in flight, and the seconds before the fallback when it returns after a lull.
    assert!(
        challenged_after >= 4 * served_after,
        "the flood was not held off: {challenged_after} challenged and {served_after} served \
         after the fallback came ({:?} in all)",
        flood.by_status.lock().expect("tally")
    );
}

/// What the solver-equipped flood did.
#[derive(Default, Debug)]
struct Solvers {
    sent: AtomicU64,
    /// Requests a clearance carried through (answered by the origin).
    carried: AtomicU64,
    solves: AtomicU64,
    /// Challenges met while holding a clearance: the clearance was revoked.
    rechallenged: AtomicU64,
    /// The highest difficulty solved.
    hardest: std::sync::atomic::AtomicU8,
}

const SOLVER_AGENT: &str = "python-requests/2.31.0";

/// One bot of the solver-equipped flood, from 127.60.`n`.1: the tool's requests as fast as
/// they are answered, solving every challenge it meets (the page's proof of work) and
/// carrying on with the clearance it earns.
async fn solver_bot(addr: SocketAddr, n: u8, stop: &AtomicBool, tally: &Solvers) {
    let source = v4(127, 60, n, 1);
    let mut cookie: Option<String> = None;
    let mut wire: Option<Wire> = None;
    let mut i = u64::from(n) << 32;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let mut request = tool_request(i);
        if let Some(cookie) = &cookie {
            request.truncate(request.len() - 2);
            request.push_str(&format!("Cookie: palisade_clearance={cookie}\r\n\r\n"));
        }
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = exchange_on(&mut wire, (source, addr), request.as_bytes()).await;
        match outcome {
            Ok((503, body)) if body.contains(CHALLENGE_PARAMS) => {
                if cookie.is_some() {
                    tally.rechallenged.fetch_add(1, Ordering::Relaxed);
                }
                cookie = None;
                if let Some((value, bits)) =
                    solve_challenge_as(&body, (source, SOLVER_AGENT), addr).await
                {
                    tally.solves.fetch_add(1, Ordering::Relaxed);
                    tally.hardest.fetch_max(bits, Ordering::Relaxed);
                    cookie = Some(value);
                }
            }
            Ok((404, _)) => {
                tally.carried.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => {
                wire = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// An attacker with solvers: a tool floods from 2,000 addresses until a mitigation challenges
/// it, while 20 of its bots solve every challenge and keep flooding with the clearance. Each
/// such clearance is revoked once it carries more than `max_requests_per_clearance` requests
/// in ten seconds (a browser is far below), and the revocations raise the difficulty (here
/// from 10 up to 12: `max_difficulty` above `difficulty`; by default it never rises). The
/// browsers, whom no mitigation matches, are served throughout.
#[test]
fn a_flood_with_solvers_loses_its_clearances_and_raises_the_difficulty_while_browsers_are_served() {
    let _alone = exclusive();
    // The origin is bound, not left in `..`: what is left there is dropped at once.
    let Baseline {
        origin: _origin,
        proxy,
        rt,
        addr,
        after_id,
        ..
    } = baseline(
        "[site.challenge]\ndifficulty = 10\nmax_difficulty = 12\nmax_requests_per_clearance = 100",
    );
    let (load, flood) = spread_flood(addr, tool_request);
    let on = rt.block_on(wait_for_event(
        &proxy,
        "mitigation_on",
        after_id,
        Duration::from_secs(5),
    ));
    let bots = Arc::new(Solvers::default());
    let solver_load = {
        let bots = bots.clone();
        Load::start(20, move |n, stop| {
            let bots = bots.clone();
            async move { solver_bot(addr, n as u8, &stop, &bots).await }
        })
    };
    let (mut browsing, raised) = rt.block_on(async {
        tokio::join!(
            browse_pages_all(addr, Duration::from_secs(15), false),
            wait_for_event(&proxy, "difficulty", after_id, Duration::from_secs(15))
        )
    });
    solver_load.finish();
    load.finish();
    let seen = rt.block_on(events(
        &proxy,
        &format!("?site=shop&after={after_id}&limit=10000"),
    ));
    let revoked = seen
        .iter()
        .filter(|e| e["action"] == "clearance_revoked")
        .count();
    eprintln!(
        "solvers: mitigation {:?}; flood {} requests; bots {bots:?}; revocations seen {revoked} \
         (of the newest 10,000 events); difficulty event {:?}; browsers {} of {} served, p99 \
         {:?}, statuses {:?}",
        on.as_ref().map(|(e, _)| e["mitigation"]["rule"].clone()),
        flood.sent.load(Ordering::Relaxed),
        raised.as_ref().map(|(e, _)| e.clone()),
        browsing.served(),
        browsing.requests(),
        browsing.p99(),
        browsing.statuses,
    );
    on.expect("no mitigation for the tool's flood");
    assert!(
        bots.solves.load(Ordering::Relaxed) > 0,
        "the bots solved nothing: the test proves nothing"
    );
    assert!(
        bots.rechallenged.load(Ordering::Relaxed) > 0 && revoked > 0,
        "no clearance was revoked: {bots:?}"
    );
    let (raised, _) = raised.expect("the difficulty did not rise on the evidence");
    assert_eq!(raised["reason"], "solver", "{raised}");
    assert!(raised["value"].as_f64() > Some(10.0), "{raised}");
    assert!(
        bots.hardest.load(Ordering::Relaxed) > 10,
        "the bots never met the raised difficulty: {bots:?}"
    );
    assert_eq!(
        browsing.served(),
        browsing.requests(),
        "{:?}",
        browsing.statuses
    );
}

/// One request on a new connection: its status (0 when it failed).
async fn raw_get(addr: SocketAddr, request: &str) -> u16 {
    let Ok(mut wire) = Wire::connect_from(v4(127, 0, 0, 99), addr).await else {
        return 0;
    };
    if wire.send(request.as_bytes()).await.is_err() {
        return 0;
    }
    wire.response().await.unwrap_or(0)
}

// ---- c. A million distinct rate-limit keys -----------------------------------------------------

const KEYS: u64 = 1_000_000;
/// The longest the key flood may run; the test reports how many keys fit if not all did.
const KEY_FLOOD_TIME: Duration = Duration::from_secs(100);
/// Keys sent before the first memory reading, so buffers, connections and the allocator's
/// arenas are in use before the baseline.
const WARM_KEYS: u64 = 20_000;
const KEY_CONNECTIONS: usize = 4;
const PIPELINE: usize = 32;
/// What the server's resident memory may grow by across the key flood. The limit itself is a
/// fixed 640 KiB allocated (and written) when the config is loaded; the rest is room for the
/// allocator's noise.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

/// Sends requests with keys `from..to` (each once), [`PIPELINE`] at a time on each of
/// [`KEY_CONNECTIONS`] connections, until done or `deadline`; returns how many were answered,
/// and how many of those were not 200.
async fn send_keys(addr: SocketAddr, from: u64, to: u64, deadline: Instant) -> (u64, u64) {
    let next = Arc::new(AtomicU64::new(from));
    let answered = Arc::new(AtomicU64::new(0));
    let not_ok = Arc::new(AtomicU64::new(0));
    let mut connections = Vec::new();
    for c in 0..KEY_CONNECTIONS {
        let (next, answered, not_ok) = (next.clone(), answered.clone(), not_ok.clone());
        connections.push(tokio::spawn(async move {
            let mut wire = Wire::connect_from(v4(127, 0, 0, 3 + c as u8), addr)
                .await
                .expect("connect");
            let mut batch = Vec::with_capacity(PIPELINE * 100);
            while Instant::now() < deadline {
                let first = next.fetch_add(PIPELINE as u64, Ordering::Relaxed);
                if first >= to {
                    break;
                }
                let last = (first + PIPELINE as u64).min(to);
                batch.clear();
                for key in first..last {
                    batch.extend_from_slice(
                        b"GET /status/200 HTTP/1.1\r\nHost: keys.example\r\nx-api-key: key-",
                    );
                    batch.extend_from_slice(key.to_string().as_bytes());
                    batch.extend_from_slice(b"\r\n\r\n");
                }
                wire.send(&batch).await.expect("send a batch");
                for _ in first..last {
                    let status = wire.response().await.expect("a response");
                    answered.fetch_add(1, Ordering::Relaxed);
                    if status != 200 {
                        not_ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for connection in connections {
        connection.await.expect("key connection");
    }
    (
        answered.load(Ordering::Relaxed),
        not_ok.load(Ordering::Relaxed),
    )
}

/// A rate limit's memory is fixed whatever the number of keys: a million requests, each with
/// its own `X-Api-Key`, leave the server's resident memory where it was (within the
/// allocator's noise), and the limit still counts a key that goes over it.
#[test]
fn a_million_distinct_rate_limit_keys_leave_resident_memory_flat() {
    let _alone = exclusive();
    let origin = Origin::start("keys");
    let proxy = Palisade::start(
        &SiteConfig::new("keys")
            .origin(origin.url())
            .server("access_log = \"off\"")
            .site(
                r#"
[site.cache]
ttl = "1h"

[[site.rate_limit]]
id = "per-key"
key = "header:x-api-key"
requests = 100
period = "10s"
action = "block"

[site.shield]
# A million requests in a minute or two is a spike; this test is about memory.
auto_under_attack = false
"#,
            )
            .to_toml(),
    );
    let addr = proxy.http_addr();
    let rt = runtime();
    let started = Instant::now();
    let (warm, warm_not_ok) = rt.block_on(send_keys(addr, 0, WARM_KEYS, started + KEY_FLOOD_TIME));
    assert_eq!((warm, warm_not_ok), (WARM_KEYS, 0), "warm-up requests");
    let origin_after_warmup = origin.requests();
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = proxy.rss_kib();

    let sampler = proxy.sample_rss();
    let flood_started = Instant::now();
    let (answered, not_ok) = rt.block_on(send_keys(
        addr,
        WARM_KEYS,
        KEYS,
        flood_started + KEY_FLOOD_TIME,
    ));
    let flood_time = flood_started.elapsed();
    let peak = sampler.finish();
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = proxy.rss_kib();
    let keys = WARM_KEYS + answered;
    eprintln!(
        "key flood: {answered} requests with distinct keys in {flood_time:.1?} ({:.0}/s), \
         {keys} distinct keys in all, {not_ok} not 200; VmRSS {rss_before} KiB before, \
         {rss_after} KiB after ({:+} KiB), peak {peak} KiB; the origin saw {} requests during \
         the flood",
        answered as f64 / flood_time.as_secs_f64(),
        rss_after as i64 - rss_before as i64,
        origin.requests() - origin_after_warmup,
    );
    assert_eq!(not_ok, 0, "distinct keys are each under the limit");
    // In a debug build on a small shared machine the million may not fit in the time bound;
    // the run must at least be large next to the limit's 16,384 counters per row.
    assert!(
        keys >= 250_000,
        "only {keys} distinct keys in {KEY_FLOOD_TIME:?}: too few to say anything"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_BOUND_KIB,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB over {keys} distinct keys"
    );
    assert!(
        peak.saturating_sub(rss_before) < RSS_GROWTH_BOUND_KIB,
        "VmRSS peaked at {peak} KiB (from {rss_before} KiB) over {keys} distinct keys"
    );

    // The limit still works after all that: one key sent 150 times in a row is refused before
    // the end, and not far from its 100 (the sketch only ever over-counts, a little, when many
    // keys share its counters).
    let statuses: Vec<u16> = rt.block_on(async {
        let mut wire = Wire::connect_from(v4(127, 0, 0, 9), addr)
            .await
            .expect("connect");
        let mut statuses = Vec::new();
        for _ in 0..150 {
            wire.send(
                b"GET /status/200 HTTP/1.1\r\nHost: keys.example\r\nx-api-key: one-key\r\n\r\n",
            )
            .await
            .expect("send");
            statuses.push(wire.response().await.expect("response"));
        }
        statuses
    });
    let first_refused = statuses.iter().position(|s| *s == 429);
    eprintln!("after the flood, one key: first 429 at request {first_refused:?} (limit 100)");
    assert!(
        statuses[..80].iter().all(|s| *s == 200),
        "a fresh key was refused early: {statuses:?}"
    );
    assert_eq!(
        statuses[149], 429,
        "a key over its limit was let through: {statuses:?}"
    );
}

// ---- d. A cache-busting flood on the default miss limit ---------------------------------------

/// The origin's capacity in the cache-busting test: a small origin (32 workers, each answer
/// 50 ms), as `max_origin_concurrency` says it.
const BUSTED_ORIGIN_CAP: u64 = 32;
/// The default `max_misses_per_ip` per 60 s.
const DEFAULT_MISS_LIMIT: u64 = 600;

/// One cache-busting connection: a URL nobody asked for before, request after request.
async fn bust_connection(
    addr: SocketAddr,
    source: IpAddr,
    c: usize,
    stop: &AtomicBool,
    tally: &Tally,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut wire) = Wire::connect_from(source, addr).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let request = format!(
                "GET /slow/50?bust={c}-{n} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: flood\r\n\r\n"
            );
            tally.sent.fetch_add(1, Ordering::Relaxed);
            if wire.send(request.as_bytes()).await.is_err() {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            match wire.response().await {
                Ok(status) => tally.count(status),
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// The miss limit on its defaults (600 per address per minute, only while the origin is under
/// pressure, the challenge past it) still holds a cache-busting flood off the origin. One address
/// floods random query strings over 64 connections at an origin whose capacity is 32 requests
/// at once: it presses the origin within a second (half the cap in flight is pressure), spends
/// its 600 misses, and is answered with the challenge from then on. The origin sees at most
/// those 600 and, once the pressure has been gone for its 10 s hold, one more cap's worth
/// before the pressure is back: well under 700 in all. Twenty browsers on other addresses keep
/// being served.
#[test]
fn a_cache_busting_flood_on_the_default_miss_limit_is_challenged_once_it_presses_the_origin() {
    let _alone = exclusive();
    let origin = Origin::start("shop");
    let proxy = Palisade::start(
        &SiteConfig::new("shop")
            .origin(origin.url())
            .server("access_log = \"off\"")
            .site(&format!(
                "[site.cache]\nttl = \"1m\"\n\n[site.shield]\nmax_origin_concurrency = {BUSTED_ORIGIN_CAP}\n"
            ))
            .to_toml(),
    );
    let addr = proxy.http_addr();
    let flooder = v4(127, 0, 0, 2);

    let flood = Arc::new(Tally::default());
    let flood_started = Instant::now();
    let load = {
        let flood = flood.clone();
        Load::start(FLOOD_CONNECTIONS, move |c, stop| {
            let flood = flood.clone();
            async move { bust_connection(addr, flooder, c, &stop, &flood).await }
        })
    };
    // Browsing starts once the flooder has spent its misses.
    std::thread::sleep(Duration::from_millis(1500));
    let rt = runtime();
    let latencies = browse_all(&rt, addr, BROWSE_TIME);
    load.finish();
    let flood_time = flood_started.elapsed();

    let sent = flood.sent.load(Ordering::Relaxed);
    let at_origin = origin.requests_from("127.0.0.2");
    let (ok, asked) = served(&latencies);
    let success = ok.len() as f64 / asked.max(1) as f64;
    let p99 = quantile(&ok, 0.99);
    let metrics = rt.block_on(scrape(proxy.admin_addr()));
    let challenged = sample(
        &metrics,
        "palisade_shield_actions_total",
        &[("site", "shop"), ("action", "challenge")],
    )
    .unwrap_or(0.0);
    eprintln!(
        "cache-busting flood: {sent} requests in {flood_time:.1?} ({:.0}/s), statuses {:?}, {} \
         errors; {challenged} challenged; the origin saw {at_origin} of them\n\
         browsers: {} of {asked} answered 200 ({:.2}%), p50 {:.1?}, p99 {p99:.1?}",
        sent as f64 / flood_time.as_secs_f64(),
        flood.by_status.lock().expect("tally"),
        flood.errors.load(Ordering::Relaxed),
        ok.len(),
        success * 100.0,
        quantile(&ok, 0.5),
    );

    assert!(
        sent > 10 * DEFAULT_MISS_LIMIT,
        "the flooder sent only {sent} requests in {flood_time:?}: not a flood"
    );
    // Held off the origin: its 600 misses, and a cap's worth each time the hold ran out.
    assert!(
        at_origin <= DEFAULT_MISS_LIMIT + 2 * BUSTED_ORIGIN_CAP,
        "the origin saw {at_origin} of the flooder's requests"
    );
    // Answered with the challenge (a 503 page), not served.
    assert!(
        challenged > 0.8 * sent as f64,
        "only {challenged} of the flooder's {sent} requests were challenged"
    );
    assert_eq!(flood.status(200), at_origin);
    let expected =
        BROWSERS as usize * (BROWSE_TIME.as_millis() / BROWSE_EVERY.as_millis()) as usize;
    assert!(
        asked >= expected * 9 / 10,
        "the browsers made only {asked} requests of the {expected} planned: they were held up"
    );
    // Their latency is printed, not asserted: it is the flood test's (section a) subject, and
    // a challenge page costs the edge more than a 429 (p99 36 to 99 ms in the runs so far, on
    // this 2-core machine with other builds running).
    assert!(
        success >= 0.99,
        "only {:.2}% of the browsers' requests succeeded",
        success * 100.0
    );
}

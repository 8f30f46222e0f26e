//! A client's fingerprints, read once at its connection: the JA4 of its TLS ClientHello
//! (`tls.ja4`) and its HTTP/2 opening SETTINGS and WINDOW_UPDATE (`http2.fingerprint`). Rules
//! on them tell one client's software from another's, from the first request on a connection:
//! rustls from OpenSSL (curl), hyper's HTTP/2 from the h2 crate's over the same TLS, and
//! headless Chromium from a Rust client.
//!
//! The edge logs each connection's fingerprints at debug level (target `edge::fingerprint`);
//! these tests turn that on to learn a client's values, then start an edge whose rules name
//! them. `palisade explain` takes them on its command line.

use std::process::Command;
use std::time::{Duration, Instant};

use palisade_blackbox::browser::Driver;
use palisade_blackbox::client::{self, h1_request, h2_request};
use palisade_blackbox::{LeafCert, Origin, Palisade, SiteConfig, TestCa, binary_path};

const LOG_FILTER: &str = "info,edge::fingerprint=debug";
const HOST: &str = "blog.test";
/// The edge's 403 page (own_responses).
const BLOCKED_TEXT: &str = "This site's security settings do not let this request through.";

/// One TLS site for blog.test in front of `origin`, with a cleartext listener (h2c) too.
struct Setup {
    origin: Origin,
    ca: TestCa,
    cert: LeafCert,
}

impl Setup {
    fn new() -> Setup {
        let ca = TestCa::new();
        let cert = ca.issue(&[HOST]);
        Setup {
            origin: Origin::start("fingerprints-origin"),
            ca,
            cert,
        }
    }

    /// An edge with `rules` (`[[site.rule]]` tables), logging fingerprints.
    fn edge(&self, rules: &str) -> Palisade {
        let config = SiteConfig::blog(self.origin.url())
            .hosts(&[HOST])
            .server(r#"listen_tls = ["127.0.0.1:0"]"#)
            .site(&format!("tls = {}", self.cert.toml()))
            .site(rules);
        Palisade::start_with_log_filter(&config.to_toml(), LOG_FILTER)
    }

    /// GET `path` on a new HTTP/2 connection over rustls (ALPN h2), with hyper's client.
    async fn hyper_h2(&self, proxy: &Palisade, paths: &[&str]) -> Vec<u16> {
        let tls = self
            .ca
            .connect(proxy.https_addr(), HOST, &["h2"])
            .await
            .expect("TLS handshake");
        let mut sender = client::h2_handshake(tls).await.expect("HTTP/2 handshake");
        let mut statuses = Vec::new();
        for path in paths {
            let reply = client::send_h2(&mut sender, h2_request("GET", "https", HOST, path))
                .await
                .expect("a response over HTTP/2");
            statuses.push(reply.status.as_u16());
        }
        statuses
    }

    /// GET `path` on a new HTTP/2 connection over rustls (ALPN h2), with the h2 crate's client
    /// and its default settings.
    async fn h2_crate(&self, proxy: &Palisade, path: &str) -> u16 {
        let tls = self
            .ca
            .connect(proxy.https_addr(), HOST, &["h2"])
            .await
            .expect("TLS handshake");
        let (mut sender, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = http_request(&format!("https://{HOST}{path}"));
        let (response, _) = sender.send_request(request, true).expect("send");
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("a response within 10 s")
            .expect("a response");
        response.status().as_u16()
    }

    /// GET `path` on a new HTTP/1.1 connection over rustls (ALPN http/1.1).
    async fn hyper_h1_over_tls(&self, proxy: &Palisade, path: &str) -> u16 {
        let tls = self
            .ca
            .connect(proxy.https_addr(), HOST, &["http/1.1"])
            .await
            .expect("TLS handshake");
        let mut sender = client::h1_handshake(tls).await.expect("HTTP/1.1 over TLS");
        let reply = client::send_h1(&mut sender, h1_request("GET", HOST, path, client::empty()))
            .await
            .expect("a response over HTTP/1.1");
        reply.status.as_u16()
    }
}

fn http_request(uri: &str) -> hyper::Request<()> {
    hyper::Request::builder()
        .method("GET")
        .uri(uri)
        .body(())
        .expect("a request")
}

/// GET `path` over cleartext HTTP/2 with prior knowledge (h2c).
async fn h2c(proxy: &Palisade, path: &str) -> u16 {
    let tcp = client::tcp(proxy.http_addr()).await.expect("connect");
    let mut sender = client::h2_handshake(tcp).await.expect("h2c handshake");
    let reply = client::send_h2(&mut sender, h2_request("GET", "http", HOST, path))
        .await
        .expect("a response over h2c");
    reply.status.as_u16()
}

/// `curl --http2` (OpenSSL's TLS, nghttp2's HTTP/2) GET `path`; the status.
fn curl(proxy: &Palisade, path: &str) -> u16 {
    let port = proxy.https_addr().port();
    let output = Command::new("curl")
        .args(["--silent", "--insecure", "--http2", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .args(["--output", "/dev/null", "--write-out", "%{http_code}"])
        .arg(format!("https://{HOST}:{port}{path}"))
        .output()
        .unwrap_or_else(|e| panic!("run curl (scripts/test.sh installs it): {e}"));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl printed no status: {output:?}"))
}

/// One connection's fingerprints as the edge logged them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    ja4: String,
    /// Absent from the TLS line, which comes before the protocol is known.
    h2: Option<String>,
}

/// The value of `name="..."` in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_owned())
}

/// Every `message` line logged so far, in order.
fn logged(proxy: &Palisade, message: &str) -> Vec<Logged> {
    proxy
        .stderr_text()
        .lines()
        .filter(|line| line.contains("edge::fingerprint") && line.contains(message))
        .map(|line| Logged {
            ja4: field(line, "ja4").unwrap_or_default(),
            h2: field(line, "h2"),
        })
        .collect()
}

const TLS_LINE: &str = "TLS client fingerprint";
const H2_LINE: &str = "HTTP/2 client fingerprint";

/// Waits (up to 5 s) until more than `seen` `message` lines are logged; the ones after `seen`.
async fn logged_after(proxy: &Palisade, message: &str, seen: usize) -> Vec<Logged> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = logged(proxy, message);
        if lines.len() > seen {
            return lines[seen..].to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "no new `{message}` line within 5 s:\n{}",
            proxy.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `t13d1516h2_8daaf6152771_e5627efa2ab1`: the shape of a JA4.
fn assert_ja4_shape(ja4: &str) {
    let parts: Vec<&str> = ja4.split('_').collect();
    assert!(
        ja4.len() == 36
            && parts.len() == 3
            && parts[0].len() == 10
            && parts[0].starts_with('t')
            && parts[1..]
                .iter()
                .all(|p| p.len() == 12 && p.bytes().all(|b| b.is_ascii_hexdigit())),
        "not a JA4: {ja4:?}"
    );
}

/// `1:65536;2:0;4:6291456;6:262144|15663105`: the shape of an HTTP/2 fingerprint.
fn assert_h2_shape(h2: &str) {
    let (settings, update) = h2.split_once('|').unwrap_or(("", "x"));
    let pairs_ok = settings.is_empty()
        || settings.split(';').all(|pair| {
            pair.split_once(':').is_some_and(|(id, value)| {
                id.parse::<u16>().is_ok() && value.parse::<u32>().is_ok()
            })
        });
    assert!(
        pairs_ok && (update == "00" || update.parse::<u32>().is_ok()),
        "not an HTTP/2 fingerprint: {h2:?}"
    );
}

#[tokio::test]
async fn a_ja4_rule_blocks_the_tls_stack_it_names_and_not_another() {
    let setup = Setup::new();

    // Learn each stack's JA4: rustls (this harness's client), then OpenSSL (curl).
    let learning = setup.edge("");
    assert_eq!(setup.hyper_h2(&learning, &["/echo"]).await, [200]);
    let rustls = logged_after(&learning, TLS_LINE, 0).await[0].ja4.clone();
    assert_eq!(curl(&learning, "/echo"), 200);
    let openssl = logged_after(&learning, TLS_LINE, 1).await[0].ja4.clone();
    let curl_h2 = logged_after(&learning, H2_LINE, 1).await[0].h2.clone();
    println!(
        "rustls client JA4: {rustls}\ncurl (OpenSSL, nghttp2) JA4: {openssl}, HTTP/2: {}",
        curl_h2.as_deref().unwrap_or_default()
    );
    for ja4 in [&rustls, &openssl] {
        assert_ja4_shape(ja4);
        // TLS 1.3, a server name, ALPN h2 first.
        assert!(ja4.starts_with("t13d") && ja4[8..10] == *"h2", "{ja4}");
    }
    assert_ne!(rustls, openssl);

    // Each rule names one stack, under a path of its own.
    let proxy = setup.edge(&format!(
        r#"
[[site.rule]]
id = "no-rustls"
expr = 'http.request.uri.path starts_with "/echo/a" and tls.ja4 eq "{rustls}"'
action = "block"

[[site.rule]]
id = "no-openssl"
expr = 'http.request.uri.path starts_with "/echo/b" and tls.ja4 eq "{openssl}"'
action = "block"
"#
    ));
    let before = setup.origin.requests();
    assert_eq!(
        setup.hyper_h2(&proxy, &["/echo/a", "/echo/b"]).await,
        [403, 200]
    );
    assert_eq!(curl(&proxy, "/echo/a"), 200);
    assert_eq!(curl(&proxy, "/echo/b"), 403);
    assert_eq!(
        setup.origin.requests() - before,
        2,
        "blocked requests reached the origin"
    );
}

#[tokio::test]
async fn an_http2_fingerprint_rule_tells_hyper_from_the_h2_crate_over_the_same_tls() {
    let setup = Setup::new();

    let learning = setup.edge("");
    assert_eq!(setup.hyper_h2(&learning, &["/echo"]).await, [200]);
    let hyper = logged_after(&learning, H2_LINE, 0).await[0].clone();
    assert_eq!(setup.h2_crate(&learning, "/echo").await, 200);
    let h2_crate = logged_after(&learning, H2_LINE, 1).await[0].clone();
    println!("hyper over rustls: {hyper:?}\nh2 crate over rustls: {h2_crate:?}");
    assert_eq!(hyper.ja4, h2_crate.ja4, "one TLS stack, one JA4");
    let (hyper_h2, crate_h2) = (hyper.h2.expect("hyper's"), h2_crate.h2.expect("h2's"));
    assert_h2_shape(&hyper_h2);
    assert_h2_shape(&crate_h2);
    assert_ne!(hyper_h2, crate_h2, "hyper sets its own windows and limits");

    let proxy = setup.edge(&format!(
        r#"
[[site.rule]]
id = "no-hyper"
expr = 'http2.fingerprint eq "{hyper_h2}"'
action = "block"
"#
    ));
    // From the first request on the connection, and every one after.
    assert_eq!(
        setup.hyper_h2(&proxy, &["/echo/1", "/echo/2"]).await,
        [403, 403]
    );
    assert_eq!(setup.h2_crate(&proxy, "/echo/3").await, 200);
}

#[tokio::test]
async fn h2c_has_only_an_http2_fingerprint_and_http1_over_tls_only_a_ja4() {
    let setup = Setup::new();
    let proxy = setup.edge(
        r#"
[[site.rule]]
id = "has-ja4"
expr = 'http.request.uri.path eq "/echo/ja4" and tls.ja4 ne ""'
action = "block"

[[site.rule]]
id = "has-h2"
expr = 'http.request.uri.path eq "/echo/h2" and http2.fingerprint ne ""'
action = "block"
"#,
    );
    assert_eq!(h2c(&proxy, "/echo/ja4").await, 200);
    assert_eq!(h2c(&proxy, "/echo/h2").await, 403);
    assert_eq!(setup.hyper_h1_over_tls(&proxy, "/echo/ja4").await, 403);
    assert_eq!(setup.hyper_h1_over_tls(&proxy, "/echo/h2").await, 200);
    assert_eq!(
        setup.hyper_h2(&proxy, &["/echo/ja4", "/echo/h2"]).await,
        [403, 403]
    );
    // Plain HTTP/1.1 has neither.
    let plain = client::get(proxy.http_addr(), HOST, "/echo/ja4").await;
    assert_eq!(plain.status, 200);
    let plain = client::get(proxy.http_addr(), HOST, "/echo/h2").await;
    assert_eq!(plain.status, 200);

    // What the log says of the h2c connection: an HTTP/2 fingerprint and no JA4.
    let h2c_line = logged(&proxy, H2_LINE)
        .into_iter()
        .find(|l| l.ja4.is_empty())
        .expect("the h2c connection's line");
    assert_h2_shape(h2c_line.h2.as_deref().unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_over_tls_h2_has_a_browsers_ja4_and_http2_fingerprint_unlike_a_rust_clients() {
    let setup = Setup::new();
    let learning = setup.edge("");
    let port = learning.https_addr().port();

    assert_eq!(setup.hyper_h2(&learning, &["/echo"]).await, [200]);
    let rust = logged_after(&learning, H2_LINE, 0).await[0].clone();

    let driver = Driver::start();
    let browser = driver.session().await;
    browser
        .goto(&format!("https://{HOST}:{port}/echo/chromium"))
        .await
        .expect("navigate to the site");
    let text = page_text(&browser).await;
    assert!(
        text.contains("/echo/chromium"),
        "not the origin's echo: {text}"
    );
    let lines = logged_after(&learning, H2_LINE, 1).await;
    let chromium = lines[0].clone();
    let chromium_h2 = chromium.h2.clone().expect("Chromium's HTTP/2 fingerprint");
    println!(
        "Chromium's JA4: {}\nChromium's HTTP/2 fingerprint: {chromium_h2}\n\
         (Rust client, hyper over rustls: JA4 {}, HTTP/2 {})",
        chromium.ja4,
        rust.ja4,
        rust.h2.as_deref().unwrap_or_default()
    );
    assert_ja4_shape(&chromium.ja4);
    assert!(chromium.ja4.starts_with("t13d"), "{}", chromium.ja4);
    assert_eq!(&chromium.ja4[8..10], "h2", "{}", chromium.ja4);
    assert_h2_shape(&chromium_h2);
    assert_ne!(chromium.ja4, rust.ja4);
    assert_ne!(chromium.h2, rust.h2);

    // A rule naming Chromium's stack, on a new edge (a new port: a full handshake, no
    // resumption): Chromium is refused, the Rust client is not.
    let proxy = setup.edge(&format!(
        r#"
[[site.rule]]
id = "no-chromium"
expr = 'tls.ja4 eq "{}" and http2.fingerprint eq "{chromium_h2}"'
action = "block"
"#,
        chromium.ja4
    ));
    browser
        .goto(&format!(
            "https://{HOST}:{}/echo/blocked",
            proxy.https_addr().port()
        ))
        .await
        .expect("navigate to the second edge");
    let text = page_text(&browser).await;
    assert!(
        text.contains(BLOCKED_TEXT),
        "Chromium was not refused: {text}"
    );
    assert_eq!(setup.hyper_h2(&proxy, &["/echo/rust"]).await, [200]);
    browser.close().await.expect("close the browser");
}

#[test]
fn palisade_explain_takes_the_fingerprints_a_rule_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        r#"
[[site]]
name = "blog"
hosts = ["blog.test"]
origins = ["http://127.0.0.1:1"]

[[site.rule]]
id = "chromium-h2"
expr = 'tls.ja4 starts_with "t13d" and http2.fingerprint eq "1:65536;2:0;4:6291456;6:262144|15663105"'
action = "block"
"#,
    )
    .expect("write the config");
    let explain = |extra: &[&str]| {
        let output = Command::new(binary_path())
            .args(["explain", "--config"])
            .arg(&config)
            .args(["--ip", "192.0.2.1"])
            .args(extra)
            .args(["GET", "https://blog.test/"])
            .env("NO_COLOR", "1")
            .output()
            .expect("run palisade explain");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let matched = explain(&[
        "--ja4",
        "t13d1517h2_8daaf6152771_cb7bf5808d99",
        "--http2-fingerprint",
        "1:65536;2:0;4:6291456;6:262144|15663105",
    ]);
    assert!(
        matched.contains("rule chromium-h2 (block): matches"),
        "{matched}"
    );
    let unmatched = explain(&[]);
    assert!(unmatched.contains("verdict: pass"), "{unmatched}");
}

/// The text of the page the browser shows.
async fn page_text(browser: &fantoccini::Client) -> String {
    let value = browser
        .execute(
            "return document.body ? document.body.innerText : '';",
            Vec::new(),
        )
        .await
        .expect("read the page");
    value.as_str().unwrap_or_default().to_owned()
}

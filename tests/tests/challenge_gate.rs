//! The challenge gate, black-box and without a browser: what a client without clearance gets,
//! the answer endpoint, the clearance cookie and what it is bound to, exemptions, challenge
//! rules and rate limits, metrics and events, and signing keys rotated under a running edge.
//!
//! The test plays the browser: it reads the challenge out of the page's JSON block, solves it
//! with `shield::challenge::pow::solve` (the page's algorithm) and posts the answer. Sites run at
//! `difficulty = 8`, a few hundred hashes per part, so solving costs nothing. Cookies a browser
//! could not earn (expired, from another key) are minted with `shield::challenge::clearance`
//! and the keys in the proxy's data directory. Clients that must be told apart connect from
//! their own loopback address (the whole of 127.0.0.0/8 is loopback on Linux); clearance is
//! bound to the /24, so 127.0.1.N is another network than 127.0.0.N.
//!
//! The real browser (Chromium running the page's JavaScript) is `challenge_browser.rs`.

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_blackbox::control::events;
use palisade_blackbox::metrics::{sample, scrape};
use palisade_blackbox::raw::{RawConn, RawResponse};
use palisade_blackbox::{Echo, Origin, Palisade, SiteConfig};
use serde_json::{Value, json};
use shield::challenge::{Binding, ChallengeKeys, clearance, pow};

/// A browser's User-Agent: the one clearance is earned with unless a test says otherwise.
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
/// What a browser sends when it navigates.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
const CURL: &str = "curl/8.5.0";
const VERIFY_PATH: &str = "/.well-known/palisade/challenge";
/// Where the page carries its parameters.
const PARAMS_OPEN: &str = r#"<script type="application/json" id="palisade-challenge">"#;
/// The default clearance lifetime (`clearance_ttl`), as the cookie's `Max-Age` says it.
const CLEARANCE_TTL: Duration = Duration::from_secs(1800);
/// The directives issue 5 fixes for the page; the server may add stricter ones after them.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline' blob:; worker-src blob:; \
                        connect-src 'self'; style-src 'unsafe-inline'";
/// How long one exchange may take before the test gives up on it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Site `blog` in front of `origin` in under-attack mode at difficulty 8, its cache off (every
/// request the gate lets through reaches the origin and counts there), with `challenge` added
/// to its `[site.challenge]` table.
fn under_attack(origin: &Origin, challenge: &str) -> SiteConfig {
    SiteConfig::blog(origin.url())
        .site(r#"state = "under_attack""#)
        .site("[site.cache]\nenabled = false")
        .site(&format!("[site.challenge]\ndifficulty = 8\n{challenge}"))
}

/// One client: an address, a User-Agent, a site, and the clearance cookie it holds, if any.
/// Every request goes on a fresh connection with `Connection: close`, so a response's end is
/// the connection's (which also makes a HEAD response's missing body observable).
#[derive(Debug, Clone)]
struct Visitor {
    proxy: SocketAddr,
    from: IpAddr,
    host: &'static str,
    user_agent: &'static str,
    cookie: Option<String>,
}

impl Visitor {
    /// A browser on 127.0.0.1 visiting `blog.example`, without clearance.
    fn browser(proxy: &Palisade) -> Visitor {
        Visitor {
            proxy: proxy.http_addr(),
            from: v4(127, 0, 0, 1),
            host: "blog.example",
            user_agent: BROWSER,
            cookie: None,
        }
    }

    fn from(self, from: IpAddr) -> Visitor {
        Visitor { from, ..self }
    }

    fn host(self, host: &'static str) -> Visitor {
        Visitor { host, ..self }
    }

    fn user_agent(self, user_agent: &'static str) -> Visitor {
        Visitor { user_agent, ..self }
    }

    fn cookie(self, value: &str) -> Visitor {
        Visitor {
            cookie: Some(value.to_owned()),
            ..self
        }
    }

    /// `method path` with `headers` (lines ending in `\r\n`) and `body`.
    async fn send(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> RawResponse {
        let mut conn = RawConn::connect_from(self.from, self.proxy)
            .await
            .unwrap_or_else(|e| panic!("connect from {}: {e}", self.from));
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n{headers}",
            self.host, self.user_agent
        );
        if let Some(value) = &self.cookie {
            request += &format!("Cookie: {}={value}\r\n", clearance::COOKIE);
        }
        if !body.is_empty() || method == "POST" {
            request += &format!("Content-Length: {}\r\n", body.len());
        }
        request += "Connection: close\r\n\r\n";
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        conn.send(&bytes).await.expect("send the request");
        let response = conn.read_response(RESPONSE_TIMEOUT).await;
        assert!(
            response.status().is_some(),
            "no response to {method} {path} from {} within {RESPONSE_TIMEOUT:?}",
            self.from
        );
        response
    }

    /// A navigation: `GET path` accepting HTML first.
    async fn get(&self, path: &str) -> RawResponse {
        self.send("GET", path, &format!("Accept: {BROWSER_ACCEPT}\r\n"), b"")
            .await
    }

    /// The page's `fetch` of its answer: `POST` of `body` to the verify path.
    async fn answer(&self, body: &str) -> RawResponse {
        self.send(
            "POST",
            VERIFY_PATH,
            "Content-Type: application/json\r\nAccept: */*\r\n",
            body.as_bytes(),
        )
        .await
    }

    /// What the page does: gets the challenge for `path`, solves it, posts the answer; returns
    /// the clearance cookie's value.
    async fn earn_clearance(&self, path: &str) -> String {
        let challenge = Challenge::from_page(&self.get(path).await);
        let accepted = self.answer(&challenge.solved()).await;
        assert_eq!(
            accepted.status(),
            Some(200),
            "a solved challenge was refused: {}",
            accepted.body_text()
        );
        clearance_cookie(&accepted)
    }

    /// What clearance minted by the test must be bound to, to pass for this visitor.
    fn binding(&self, site: &'static str) -> Binding<'static> {
        Binding {
            site,
            ip: self.from,
            user_agent: self.user_agent.as_bytes(),
        }
    }
}

/// The parameters a challenge page carries.
#[derive(Debug)]
struct Challenge {
    c: String,
    bits: u8,
    parts: u8,
    verify: String,
    return_to: String,
}

impl Challenge {
    /// Reads the JSON block out of a challenge page; panics unless `page` is one.
    fn from_page(page: &RawResponse) -> Challenge {
        assert_challenge_page(page);
        let html = page.body_text();
        let start = html
            .find(PARAMS_OPEN)
            .unwrap_or_else(|| panic!("no {PARAMS_OPEN} in the page:\n{html}"))
            + PARAMS_OPEN.len();
        let len = html[start..]
            .find("</script>")
            .expect("the parameters' script element is closed");
        let params: Value = serde_json::from_str(&html[start..start + len])
            .unwrap_or_else(|e| panic!("the page's parameters are not JSON ({e}): {html}"));
        let text = |key: &str| {
            params[key]
                .as_str()
                .unwrap_or_else(|| panic!("no string {key:?} in {params}"))
                .to_owned()
        };
        let small = |key: &str| {
            params[key]
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or_else(|| panic!("no small number {key:?} in {params}"))
        };
        Challenge {
            c: text("c"),
            bits: small("bits"),
            parts: small("parts"),
            verify: text("verify"),
            return_to: text("return"),
        }
    }

    /// The answer's body with nonces `n` and the page's return path.
    fn answer_with(&self, n: &[u64]) -> String {
        json!({ "c": self.c, "n": n, "return": self.return_to }).to_string()
    }

    fn nonces(&self) -> Vec<u64> {
        pow::solve(&self.c, self.bits, self.parts)
    }

    /// The right answer, as the page would post it.
    fn solved(&self) -> String {
        self.answer_with(&self.nonces())
    }
}

/// Panics unless `response` is the challenge page (503, the page's headers and JSON block).
fn assert_challenge_page(response: &RawResponse) {
    assert_eq!(
        response.status(),
        Some(503),
        "expected the challenge page, got `{}`: {}",
        response.status_line,
        response.body_text()
    );
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert!(
        response.body_text().contains(PARAMS_OPEN),
        "a 503 without the challenge's parameters: {}",
        response.body_text()
    );
}

/// Panics unless the origin served `response` for `path` (its `/echo` report, path and query
/// as sent).
fn assert_from_origin(response: &RawResponse, path: &str) {
    assert_eq!(
        response.status(),
        Some(200),
        "GET {path} did not reach the origin: `{}`: {}",
        response.status_line,
        response.body_text()
    );
    assert_eq!(response.header("x-origin-id"), Some("a"));
    assert_eq!(Echo::parse(&response.body).path, path);
}

/// Panics unless the origin answered `response` (its 404 for a route it does not have).
fn assert_forwarded(response: &RawResponse, path: &str) {
    assert_eq!(
        (response.status(), response.header("x-origin-id")),
        (Some(404), Some("a")),
        "GET {path} was not forwarded: `{}`: {}",
        response.status_line,
        response.body_text()
    );
}

/// The body as JSON; panics, showing it, when it is not.
fn json_body(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "`{}`: body is not JSON ({e}): {}",
            response.status_line,
            response.body_text()
        )
    })
}

/// Panics unless `response` is the verify endpoint refusing an answer for `error`.
fn assert_refused(response: &RawResponse, error: &str) {
    assert_eq!(
        response.status(),
        Some(403),
        "expected a refusal ({error}): {}",
        response.body_text()
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(json_body(response), json!({ "ok": false, "error": error }));
}

/// The value of the `palisade_clearance` cookie a response sets, after checking the
/// attributes a cleartext connection gets (no `Secure`).
fn clearance_cookie(response: &RawResponse) -> String {
    let set_cookie = response
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie on {}", response.body_text()));
    let value = set_cookie
        .strip_prefix("palisade_clearance=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("not a clearance cookie: {set_cookie}"));
    assert_eq!(
        set_cookie,
        format!("palisade_clearance={value}; Path=/; Max-Age=1800; HttpOnly; SameSite=Lax")
    );
    assert!(
        value.len() > 40
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not a base64url value: {value:?}"
    );
    value.to_owned()
}

/// The proxy's signing keys, as its data directory holds them.
fn proxy_keys(proxy: &Palisade) -> ChallengeKeys {
    ChallengeKeys::load_or_create(&proxy.dir().join("data")).expect("read the proxy's keys")
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let state = RandomState::new();
    std::array::from_fn(|i| state.hash_one(i) as u8)
}

/// The challenge counters of site `blog`: (issued, solved, failed).
fn challenge_counts(metrics: &str) -> (f64, f64, f64) {
    let outcome = |outcome: &str| {
        sample(
            metrics,
            "palisade_challenges_total",
            &[("site", "blog"), ("outcome", outcome)],
        )
        .unwrap_or_else(|| panic!("no palisade_challenges_total outcome={outcome}:\n{metrics}"))
    };
    (outcome("issued"), outcome("solved"), outcome("failed"))
}

fn failures(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        "palisade_challenge_failures_total",
        &[("site", "blog"), ("reason", reason)],
    )
    .unwrap_or_else(|| panic!("no palisade_challenge_failures_total reason={reason}:\n{metrics}"))
}

// ---- Without clearance -------------------------------------------------------------------------

#[tokio::test]
async fn without_clearance_a_get_gets_the_page_a_head_an_empty_503_and_the_rest_a_403() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let curl = Visitor::browser(&proxy).user_agent(CURL);

    let page = curl
        .send("GET", "/echo/post?id=7", "Accept: */*\r\n", b"")
        .await;
    assert_challenge_page(&page);
    let csp = page
        .header("content-security-policy")
        .expect("the page has a Content-Security-Policy");
    assert!(csp.starts_with(PAGE_CSP), "CSP: {csp}");
    let html = page.body_text();
    assert!(
        page.body.len() < 10_000,
        "the page is {} bytes",
        page.body.len()
    );
    assert!(html.contains("<noscript>"), "no <noscript> in:\n{html}");
    assert!(
        html.contains("Checking your browser before accessing blog.example"),
        "{html}"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "a third-party resource in:\n{html}"
    );
    let challenge = Challenge::from_page(&page);
    assert_eq!((challenge.bits, challenge.parts), (8, 8), "{challenge:?}");
    assert_eq!(challenge.verify, VERIFY_PATH);
    assert_eq!(challenge.return_to, "/echo/post?id=7");

    let head = curl.send("HEAD", "/echo/post", "", b"").await;
    assert_eq!(head.status(), Some(503), "HEAD: `{}`", head.status_line);
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert!(
        head.body.is_empty(),
        "HEAD got a body: {}",
        head.body_text()
    );

    let post = curl
        .send(
            "POST",
            "/echo/comment",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            b"text=hello",
        )
        .await;
    assert_eq!(post.status(), Some(403), "POST: {}", post.body_text());
    assert_eq!(
        post.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        post.body_text().contains("browser challenge is required"),
        "{}",
        post.body_text()
    );

    let api = curl
        .send(
            "GET",
            "/echo/api/posts",
            "Accept: application/json\r\n",
            b"",
        )
        .await;
    assert_eq!(api.status(), Some(403), "JSON GET: {}", api.body_text());
    assert_eq!(api.header("content-type"), Some("application/json"));
    assert_eq!(api.header("cache-control"), Some("no-store"));
    assert_eq!(
        json_body(&api)["error"],
        "browser_challenge_required",
        "{}",
        api.body_text()
    );

    assert_eq!(
        origin.requests(),
        0,
        "a request without clearance got through"
    );
}

// ---- Answers and clearance ---------------------------------------------------------------------

#[tokio::test]
async fn a_solved_challenge_earns_clearance_that_takes_the_browser_to_the_url_it_asked_for() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let browser = Visitor::browser(&proxy);
    let asked_for = "/echo/some/page?x=1&y=%2F";

    let challenge = Challenge::from_page(&browser.get(asked_for).await);
    assert_eq!(challenge.return_to, asked_for);
    let answer = challenge.solved();
    let accepted = browser.answer(&answer).await;
    assert_eq!(accepted.status(), Some(200), "{}", accepted.body_text());
    // The access log counts the answer the edge read.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let logged = loop {
        let found = proxy
            .access_log_entries()
            .into_iter()
            .find(|e| e["path"] == VERIFY_PATH);
        if found.is_some() || std::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let logged = logged.expect("an access-log line for the answer");
    assert_eq!(logged["bytes_in"], answer.len(), "{logged}");
    assert_eq!(logged["status"], 200, "{logged}");
    assert_eq!(accepted.header("content-type"), Some("application/json"));
    assert_eq!(
        json_body(&accepted),
        json!({ "ok": true, "return": asked_for })
    );
    let cookie = clearance_cookie(&accepted);
    assert_eq!(
        origin.requests(),
        0,
        "the origin saw the challenge or its answer"
    );

    let cleared = browser.clone().cookie(&cookie);
    assert_from_origin(&cleared.get(asked_for).await, asked_for);
    // Anywhere on the site, with any method, for as long as it lives.
    assert_from_origin(&cleared.get("/echo/other").await, "/echo/other");
    let post = cleared
        .send("POST", "/echo/comment", "", b"text=hello")
        .await;
    assert_eq!(post.status(), Some(200), "{}", post.body_text());
    assert_eq!(origin.requests(), 3);
    // Without the cookie, the same browser is challenged again.
    assert_challenge_page(&browser.get(asked_for).await);
}

#[tokio::test]
async fn an_answer_is_accepted_once_and_its_replay_is_refused() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let browser = Visitor::browser(&proxy);

    let answer = Challenge::from_page(&browser.get("/echo/a").await).solved();
    let first = browser.answer(&answer).await;
    assert_eq!(first.status(), Some(200), "{}", first.body_text());
    clearance_cookie(&first);

    let replayed = browser.answer(&answer).await;
    assert_refused(&replayed, "replayed");
    assert_eq!(replayed.header("set-cookie"), None);
    // From elsewhere in the same network, and again: still refused.
    let neighbour = browser.clone().from(v4(127, 0, 0, 2));
    assert_refused(&neighbour.answer(&answer).await, "replayed");
}

#[tokio::test]
async fn refused_answers_say_why_and_set_no_cookie() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let browser = Visitor::browser(&proxy);
    let challenge = Challenge::from_page(&browser.get("/echo/a").await);

    // One part's nonce replaced by one that does not solve it.
    let mut wrong = challenge.nonces();
    wrong[3] = (0..)
        .find(|&n| !pow::part_solved(&challenge.c, 3, n, challenge.bits))
        .expect("some nonce fails");
    let refused = browser.answer(&challenge.answer_with(&wrong)).await;
    assert_refused(&refused, "wrong_answer");
    assert_eq!(refused.header("set-cookie"), None);
    // Seven right nonces for eight parts.
    assert_refused(
        &browser
            .answer(&challenge.answer_with(&challenge.nonces()[..7]))
            .await,
        "wrong_answer",
    );

    let garbage = json!({ "c": "garbage", "n": [0, 0, 0, 0, 0, 0, 0, 0], "return": "/" });
    assert_refused(&browser.answer(&garbage.to_string()).await, "invalid");
    assert_refused(&browser.answer("not json at all").await, "invalid");

    // The right answer from another network, or from another browser, is not this token's.
    let moved = browser.clone().from(v4(127, 0, 1, 1));
    assert_refused(&moved.answer(&challenge.solved()).await, "invalid");
    let other_browser = browser.clone().user_agent(CURL);
    assert_refused(&other_browser.answer(&challenge.solved()).await, "invalid");
    // None of those used the token up: its own browser still gets clearance with it.
    let accepted = browser.answer(&challenge.solved()).await;
    assert_eq!(accepted.status(), Some(200), "{}", accepted.body_text());

    // The return path is re-checked: never another host.
    let challenge = Challenge::from_page(&browser.get("/echo/b").await);
    let elsewhere =
        json!({ "c": challenge.c, "n": challenge.nonces(), "return": "//evil.example/x" });
    let accepted = browser.answer(&elsewhere.to_string()).await;
    assert_eq!(json_body(&accepted), json!({ "ok": true, "return": "/" }));
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn the_reserved_prefix_takes_only_posted_answers_and_is_never_forwarded() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let browser = Visitor::browser(&proxy);

    let get = browser.get(VERIFY_PATH).await;
    assert_eq!(
        get.status(),
        Some(405),
        "GET {VERIFY_PATH}: {}",
        get.body_text()
    );
    assert_eq!(get.header("allow"), Some("POST"));
    for path in [
        "/.well-known/palisade/",
        "/.well-known/palisade/other",
        "/.well-known/palisade/challenge/x",
    ] {
        let reply = browser.get(path).await;
        assert_eq!(
            reply.status(),
            Some(404),
            "GET {path}: {}",
            reply.body_text()
        );
        assert_eq!(reply.header("x-origin-id"), None, "GET {path}");
        let posted = browser.send("POST", path, "", b"{}").await;
        assert_eq!(posted.status(), Some(404), "POST {path}");
    }
    // An answer is a few hundred bytes: more than 4 KiB is refused unread, the connection
    // closed.
    let oversized = browser
        .send(
            "POST",
            VERIFY_PATH,
            "Content-Type: application/json\r\n",
            &[b' '; 5000],
        )
        .await;
    assert_eq!(oversized.status(), Some(413), "{}", oversized.body_text());
    assert_eq!(json_body(&oversized)["error"], "too_large");
    assert_eq!(oversized.header("set-cookie"), None);
    assert_eq!(
        origin.requests(),
        0,
        "the reserved prefix reached the origin"
    );
}

// ---- Cookies that do not pass ------------------------------------------------------------------

#[tokio::test]
async fn forged_altered_expired_and_overlong_cookies_get_the_challenge_again() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let browser = Visitor::browser(&proxy);
    let keys = proxy_keys(&proxy);
    let binding = browser.binding("blog");
    let now = SystemTime::now();

    // The control: a cookie minted here with the proxy's key, bound to this browser, passes;
    // so what fails below fails for the one thing changed.
    let minted = clearance::mint(&keys, &binding, CLEARANCE_TTL, now);
    assert_from_origin(
        &browser.clone().cookie(&minted).get("/echo/0").await,
        "/echo/0",
    );

    // Well-formed (version 1, an expiry ten minutes on) but with a random tag.
    let mut forged = [0u8; 41];
    forged[0] = 1;
    let expires = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    forged[1..9].copy_from_slice(&expires.to_be_bytes());
    forged[9..].copy_from_slice(&random_bytes::<32>());
    let forged = URL_SAFE_NO_PAD.encode(forged);
    assert_eq!(forged.len(), minted.len());

    let earned = browser.earn_clearance("/echo/earn").await;
    let mut altered = earned.clone().into_bytes();
    altered[30] = if altered[30] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ASCII");

    let hour = Duration::from_secs(3600);
    let expired = clearance::mint(&keys, &binding, CLEARANCE_TTL, now - hour);
    // Signed right, but claiming to live longer than the site's clearance_ttl.
    let overlong = clearance::mint(&keys, &binding, CLEARANCE_TTL * 4, now);

    for (what, value) in [
        ("random tag", &forged),
        ("one character changed", &altered),
        ("expired", &expired),
        ("overlong", &overlong),
    ] {
        let reply = browser.clone().cookie(value).get("/echo/x").await;
        assert_eq!(
            reply.status(),
            Some(503),
            "a {what} cookie passed: {}",
            reply.body_text()
        );
        assert_challenge_page(&reply);
    }
    assert_from_origin(
        &browser.clone().cookie(&earned).get("/echo/1").await,
        "/echo/1",
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn clearance_stays_with_its_site_network_and_browser() {
    let origin = Origin::start("a");
    let config = under_attack(&origin, "").to_toml()
        + &format!(
            "\n[[site]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"{}\"]\n\
             state = \"under_attack\"\n\n[site.cache]\nenabled = false\n\n\
             [site.challenge]\ndifficulty = 8\n",
            origin.url()
        );
    let proxy = Palisade::start(&config);
    let browser = Visitor::browser(&proxy);
    let cookie = browser.earn_clearance("/echo/earn").await;
    let cleared = browser.clone().cookie(&cookie);
    assert_from_origin(&cleared.get("/echo/blog").await, "/echo/blog");
    // Another address in the same /24 is the same network.
    let same_network = cleared.clone().from(v4(127, 0, 0, 200));
    assert_from_origin(
        &same_network.get("/echo/neighbour").await,
        "/echo/neighbour",
    );

    let other_site = cleared.clone().host("shop.example");
    assert_challenge_page(&other_site.get("/echo/shop").await);
    let other_network = cleared.clone().from(v4(127, 0, 1, 1));
    assert_challenge_page(&other_network.get("/echo/moved").await);
    let other_browser = cleared.clone().user_agent(CURL);
    assert_challenge_page(&other_browser.get("/echo/curl").await);

    // And the other way round: shop's clearance does not open blog.
    let shop = browser.clone().host("shop.example");
    let shop_cookie = shop.earn_clearance("/echo/earn").await;
    assert_from_origin(
        &shop.clone().cookie(&shop_cookie).get("/echo/shop").await,
        "/echo/shop",
    );
    assert_challenge_page(&browser.clone().cookie(&shop_cookie).get("/echo/blog").await);
    assert_eq!(origin.requests(), 3);
}

// ---- Exemptions --------------------------------------------------------------------------------

#[tokio::test]
async fn feeds_robots_txt_and_well_known_paths_pass_unchallenged_by_default() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let reader = Visitor::browser(&proxy).user_agent("FeedReader/2.0");

    for path in [
        "/feed",
        "/index.xml",
        "/robots.txt",
        "/.well-known/security.txt",
    ] {
        assert_forwarded(&reader.get(path).await, path);
    }
    assert_eq!(origin.requests(), 4);
    for path in ["/", "/feeds", "/index.html"] {
        assert_challenge_page(&reader.get(path).await);
    }
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn a_sites_exempt_expression_replaces_the_default_one() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &under_attack(
            &origin,
            r#"exempt = 'http.request.uri.path starts_with "/api/"'"#,
        )
        .to_toml(),
    );
    let client = Visitor::browser(&proxy).user_agent(CURL);

    assert_forwarded(&client.get("/api/x").await, "/api/x");
    let post = client.send("POST", "/api/x", "", b"{}").await;
    assert_forwarded(&post, "POST /api/x");
    assert_challenge_page(&client.get("/feed").await);
    // `/.well-known/` stays exempt whatever the expression says.
    assert_forwarded(
        &client.get("/.well-known/security.txt").await,
        "/.well-known/security.txt",
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn an_allow_listed_address_passes_under_attack_unchallenged() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &under_attack(&origin, "")
            .site("[site.shield]\nallow = [\"127.0.0.9/32\"]")
            .to_toml(),
    );
    let monitor = Visitor::browser(&proxy)
        .user_agent(CURL)
        .from(v4(127, 0, 0, 9));
    assert_from_origin(&monitor.get("/echo/status").await, "/echo/status");
    let post = monitor.send("POST", "/echo/status", "", b"x").await;
    assert_eq!(post.status(), Some(200), "{}", post.body_text());
    // Its neighbour is not on the list.
    assert_challenge_page(
        &monitor
            .clone()
            .from(v4(127, 0, 0, 10))
            .get("/echo/status")
            .await,
    );
    assert_eq!(origin.requests(), 2);
}

// ---- Challenges from rules and rate limits -----------------------------------------------------

#[tokio::test]
async fn a_challenge_rule_challenges_only_what_it_matches_and_a_cleared_browser_passes_it() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site(
                r#"
[site.cache]
enabled = false

[site.challenge]
difficulty = 8

[[site.rule]]
id = "login"
expr = 'http.request.uri.path starts_with "/echo/login"'
action = "challenge"
"#,
            )
            .to_toml(),
    );
    let browser = Visitor::browser(&proxy);

    assert_from_origin(&browser.get("/echo/home").await, "/echo/home");
    let challenge = Challenge::from_page(&browser.get("/echo/login?next=/").await);
    assert_eq!(challenge.return_to, "/echo/login?next=/");
    let accepted = browser.answer(&challenge.solved()).await;
    assert_eq!(accepted.status(), Some(200), "{}", accepted.body_text());
    let cleared = browser.clone().cookie(&clearance_cookie(&accepted));
    assert_from_origin(
        &cleared.get("/echo/login?next=/").await,
        "/echo/login?next=/",
    );
    assert_eq!(origin.requests(), 2);

    let challenged: Vec<_> = events(&proxy, "?site=blog")
        .await
        .into_iter()
        .filter(|e| e["action"] == "challenge")
        .collect();
    assert_eq!(challenged.len(), 1, "{challenged:?}");
    assert_eq!(challenged[0]["reason"], "rule", "{challenged:?}");
    assert_eq!(challenged[0]["rule_id"], "login", "{challenged:?}");
}

#[tokio::test]
async fn a_challenge_rate_limit_challenges_past_its_count_and_a_cleared_browser_passes_it() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site(
                r#"
[site.cache]
enabled = false

[site.challenge]
difficulty = 8

[[site.rate_limit]]
id = "pages"
expr = 'http.request.uri.path starts_with "/echo/"'
requests = 3
period = "30s"
action = "challenge"
"#,
            )
            .to_toml(),
    );
    let browser = Visitor::browser(&proxy);

    for n in 0..3 {
        let path = format!("/echo/{n}");
        assert_from_origin(&browser.get(&path).await, &path);
    }
    // The fourth gets the challenge; the browser solves it.
    let cookie = browser.earn_clearance("/echo/3").await;
    // Another address has its own count.
    let other = browser.clone().from(v4(127, 0, 0, 2));
    assert_from_origin(&other.get("/echo/other").await, "/echo/other");
    assert_eq!(origin.requests(), 4);

    let cleared = browser.clone().cookie(&cookie);
    for n in 4..7 {
        let path = format!("/echo/{n}");
        assert_from_origin(&cleared.get(&path).await, &path);
    }
    // Past its count and without the cookie: still challenged.
    assert_challenge_page(&browser.get("/echo/7").await);
    assert_eq!(origin.requests(), 7);
}

/// The per-address miss limit while the origin is under pressure, for browsers sharing one
/// address (an office NAT): the address is past its misses, so each browser gets the challenge
/// once; solved, it is counted on its own clearance, with an allowance of its own. One that goes
/// on past that allowance gets 429, not another challenge; without its cookie a browser is
/// challenged again.
#[tokio::test]
async fn under_origin_pressure_each_cleared_browser_behind_a_busy_address_has_a_miss_allowance_of_its_own()
 {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &SiteConfig::blog(origin.url())
            .site(
                r#"
[site.challenge]
difficulty = 8

[site.shield]
max_origin_concurrency = 4
max_misses_per_ip = 3
"#,
            )
            .to_toml(),
    );
    // Two slow requests from another network hold half the origin's slots: pressure.
    let elsewhere = Visitor::browser(&proxy).from(v4(127, 0, 31, 1));
    for n in 0..2 {
        let slow = elsewhere.clone();
        tokio::spawn(async move { slow.get(&format!("/slow/6000?n={n}")).await });
    }
    let waited = std::time::Instant::now();
    while origin.requests() < 2 {
        assert!(waited.elapsed() < Duration::from_secs(5), "no slow request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One browser behind the NAT address spends the address's three misses...
    let first = Visitor::browser(&proxy).from(v4(127, 0, 30, 1));
    // Another browser (a cookie is the same for two browsers alike in all it is bound to,
    // solving in the same second: they would share one allowance).
    let second = first.clone().user_agent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/126.0.0.0 Safari/537.36",
    );
    for n in 0..3 {
        let path = format!("/echo/nat/{n}");
        assert_from_origin(&first.get(&path).await, &path);
    }
    // ...so both it and the next browser there get the challenge, and solve it.
    let cookie = first.earn_clearance("/echo/nat/3").await;
    let first = first.cookie(&cookie);
    let cookie = second.earn_clearance("/echo/nat/4").await;
    let second = second.cookie(&cookie);
    for n in 0..3 {
        let path = format!("/echo/first/{n}");
        assert_from_origin(&first.get(&path).await, &path);
        let path = format!("/echo/second/{n}");
        assert_from_origin(&second.get(&path).await, &path);
    }
    let refused = first.get("/echo/first/3").await;
    assert_eq!(refused.status(), Some(429), "{}", refused.body_text());
    assert!(refused.header("retry-after").is_some());
    let without_cookie = Visitor::browser(&proxy).from(v4(127, 0, 30, 1));
    assert_challenge_page(&without_cookie.get("/echo/nat/5").await);
    // The origin saw the slow two, the address's three, and three for each cleared browser.
    assert_eq!(origin.requests(), 2 + 3 + 3 + 3);
}

// ---- Metrics and events ------------------------------------------------------------------------

#[tokio::test]
async fn metrics_and_events_count_pages_answers_and_refusals() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let browser = Visitor::browser(&proxy);
    assert_eq!(
        challenge_counts(&scrape(proxy.admin_addr()).await),
        (0.0, 0.0, 0.0)
    );

    let first = Challenge::from_page(&browser.get("/echo/1").await);
    let second = Challenge::from_page(&browser.get("/echo/2").await);
    let answer = first.solved();
    assert_eq!(browser.answer(&answer).await.status(), Some(200));
    assert_refused(&browser.answer(&answer).await, "replayed");
    let mut wrong = second.nonces();
    wrong[0] = (0..)
        .find(|&n| !pow::part_solved(&second.c, 0, n, second.bits))
        .expect("some nonce fails");
    assert_refused(
        &browser.answer(&second.answer_with(&wrong)).await,
        "wrong_answer",
    );

    let metrics = scrape(proxy.admin_addr()).await;
    assert_eq!(challenge_counts(&metrics), (2.0, 1.0, 2.0), "{metrics}");
    assert_eq!(failures(&metrics, "replayed"), 1.0);
    assert_eq!(failures(&metrics, "wrong_answer"), 1.0);
    assert_eq!(failures(&metrics, "invalid"), 0.0);
    assert_eq!(
        sample(
            &metrics,
            "palisade_challenge_solve_seconds_count",
            &[("site", "blog")]
        ),
        Some(1.0),
        "{metrics}"
    );

    let recorded = events(&proxy, "?site=blog").await;
    let of = |action: &str| -> Vec<&Value> {
        recorded.iter().filter(|e| e["action"] == action).collect()
    };
    let pages = of("challenge");
    assert_eq!(pages.len(), 2, "{recorded:?}");
    assert!(
        pages.iter().all(|e| e["reason"] == "under_attack"),
        "{pages:?}"
    );
    let solved = of("challenge_solved");
    assert_eq!(solved.len(), 1, "{recorded:?}");
    assert_eq!(solved[0]["client_ip"], "127.0.0.1", "{solved:?}");
    assert_eq!(solved[0]["reason"], "proof_of_work", "{solved:?}");
    assert!(
        solved[0]["value"]
            .as_f64()
            .is_some_and(|s| (0.0..10.0).contains(&s)),
        "the solve time in seconds: {solved:?}"
    );
    let mut failed: Vec<_> = of("challenge_failed")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    failed.sort();
    assert_eq!(failed, ["replayed_answer", "wrong_answer"], "{recorded:?}");
}

// ---- Key rotation ------------------------------------------------------------------------------

#[tokio::test]
async fn after_a_key_rotation_and_a_reload_earlier_clearance_still_passes_and_a_foreign_key_does_not()
 {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&under_attack(&origin, "").to_toml());
    let browser = Visitor::browser(&proxy);
    let binding = browser.binding("blog");
    let earlier = browser.earn_clearance("/echo/earn").await;

    let rotated = ChallengeKeys::rotate(&proxy.dir().join("data")).expect("rotate the keys");
    let under_new_key = clearance::mint(&rotated, &binding, CLEARANCE_TTL, SystemTime::now());
    // Until it reloads, the edge knows nothing of the new key.
    assert_challenge_page(&browser.clone().cookie(&under_new_key).get("/echo/0").await);

    assert!(
        !proxy.stderr_text().contains("configuration reloaded"),
        "a reload before the test asked for one:\n{}",
        proxy.stderr_text()
    );
    proxy.sighup();
    let reloaded = proxy.wait_for_stderr(Duration::from_secs(5), |line| {
        line.contains("configuration reloaded") || line.contains("not reloaded")
    });
    assert!(
        reloaded
            .as_deref()
            .is_some_and(|line| line.contains("configuration reloaded")),
        "no reload within 5 s of SIGHUP: {reloaded:?}\n{}",
        proxy.stderr_text()
    );

    assert_from_origin(
        &browser.clone().cookie(&earlier).get("/echo/1").await,
        "/echo/1",
    );
    assert_from_origin(
        &browser.clone().cookie(&under_new_key).get("/echo/2").await,
        "/echo/2",
    );
    let foreign = ChallengeKeys::ephemeral().expect("a third key");
    let unrelated = clearance::mint(&foreign, &binding, CLEARANCE_TTL, SystemTime::now());
    assert_challenge_page(&browser.clone().cookie(&unrelated).get("/echo/3").await);
    // Challenges issued now are signed with the new key and still earn clearance.
    let fresh = browser.earn_clearance("/echo/again").await;
    assert_from_origin(
        &browser.clone().cookie(&fresh).get("/echo/4").await,
        "/echo/4",
    );
    assert_eq!(origin.requests(), 3);
}

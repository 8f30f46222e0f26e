//! The abuse-report intake (`/.well-known/palisade/abuse`, docs/abuse.md), black-box: the form
//! on a site's host and on the operator's hostname, what a bad report gets, the per-address
//! limit, and that nothing under it ever reaches an origin.
//!
//! The edge stores nothing: it hands checked reports to the control plane's sink, which
//! stores them (`GET /api/reports` shows them); a well-formed report gets 201 with
//! `{"id": N, "status": "new", "urgent": ...}`. (An edge without a sink answers 503: the
//! edge's unit tests cover that, since the binary always installs one.)
//!
//! Clients that must be told apart (the limit counts per address) connect from their own
//! loopback address: the whole of 127.0.0.0/8 is loopback on Linux.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use palisade_blackbox::control::ABUSE_PATH;
use palisade_blackbox::metrics::{sample, scrape_until};
use palisade_blackbox::raw::{RawConn, RawResponse};
use palisade_blackbox::{Origin, Palisade, SiteConfig, client};
use serde_json::Value;

const OPERATOR_HOST: &str = "abuse.provider.example";
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A report that passes every check.
const GOOD_REPORT: &str = r#"{"category":"phishing","urls":["http://blog.example/login"],"description":"A fake bank login page.","contact":"me@mail.example"}"#;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Site `blog` for `blog.example` in front of `origin`, the operator's hostname set.
fn with_operator_host(origin: &Origin) -> SiteConfig {
    SiteConfig::blog(origin.url()).server(&format!("operator_host = \"{OPERATOR_HOST}\""))
}

/// `method path` with `Host: host` from address `from`, on a fresh connection with
/// `Connection: close`; `content` is the Content-Type and body, if any.
async fn send(
    proxy: SocketAddr,
    from: IpAddr,
    method: &str,
    host: &str,
    path: &str,
    content: Option<(&str, &str)>,
) -> RawResponse {
    let mut conn = RawConn::connect_from(from, proxy)
        .await
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: test/1\r\n");
    if let Some((content_type, body)) = content {
        request += &format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request += "Connection: close\r\n\r\n";
    if let Some((_, body)) = content {
        request += body;
    }
    conn.send(request.as_bytes())
        .await
        .expect("send the request");
    let response = conn.read_response(RESPONSE_TIMEOUT).await;
    assert!(
        response.status().is_some(),
        "no response to {method} {path} (Host: {host}) within {RESPONSE_TIMEOUT:?}"
    );
    response
}

/// A bodiless `method path` request to blog.example from `from`.
async fn on_blog(proxy: &Palisade, from: IpAddr, method: &str, path: &str) -> RawResponse {
    send(proxy.http_addr(), from, method, "blog.example", path, None).await
}

async fn post_json(proxy: &Palisade, from: IpAddr, host: &str, body: &str) -> RawResponse {
    send(
        proxy.http_addr(),
        from,
        "POST",
        host,
        ABUSE_PATH,
        Some(("application/json", body)),
    )
    .await
}

fn json(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", response.body_text()))
}

/// The form page's headers: no script at all, nothing stored.
fn assert_is_the_form(response: &RawResponse, host: &str) {
    assert_eq!(response.status(), Some(200), "{}", response.body_text());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let csp = response
        .header("content-security-policy")
        .expect("a Content-Security-Policy");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script may run: {csp}");
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{response:?}"
    );
    let body = response.body_text();
    assert!(body.contains(&format!("Report abuse on {host}")), "{body}");
    assert!(body.contains(&format!("action=\"{ABUSE_PATH}\"")), "{body}");
    for field in ["category", "urls", "description", "contact"] {
        assert!(
            body.contains(&format!("name=\"{field}\"")),
            "{field}: {body}"
        );
    }
    assert!(!body.contains("<script"), "{body}");
}

#[tokio::test]
async fn the_form_is_served_on_a_site_host_with_a_strict_policy_and_never_reaches_the_origin() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&with_operator_host(&origin).to_toml());

    let get = on_blog(&proxy, v4(127, 0, 0, 1), "GET", ABUSE_PATH).await;
    assert_is_the_form(&get, "blog.example");
    let head = on_blog(&proxy, v4(127, 0, 0, 1), "HEAD", ABUSE_PATH).await;
    assert_eq!(head.status(), Some(200));
    let put = send(
        proxy.http_addr(),
        v4(127, 0, 0, 1),
        "PUT",
        "blog.example",
        ABUSE_PATH,
        Some(("application/json", "{}")),
    )
    .await;
    assert_eq!(put.status(), Some(405));
    assert_eq!(put.header("allow"), Some("GET, HEAD, POST"));

    assert_eq!(origin.requests(), 0, "the intake is the edge's own page");
}

#[tokio::test]
async fn a_good_json_report_is_stored_answered_201_and_counted() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&with_operator_host(&origin).to_toml());

    let response = post_json(&proxy, v4(127, 0, 0, 1), "blog.example", GOOD_REPORT).await;

    assert_eq!(response.status(), Some(201), "{}", response.body_text());
    let body = json(&response);
    assert_eq!(body["status"], "new", "{body}");
    assert_eq!(body["urgent"], false, "{body}");
    let id = body["id"].as_i64().expect("an id");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let stored = client::admin_get(proxy.admin_addr(), &format!("/api/reports/{id}")).await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    let stored: Value = serde_json::from_slice(&stored.body).unwrap();
    assert_eq!(stored["site"], "blog");
    assert_eq!(stored["host"], "blog.example");
    assert_eq!(stored["reporter_ip"], "127.0.0.1");
    let metrics = scrape_until(proxy.admin_addr(), Duration::from_secs(5), |text| {
        sample(
            text,
            "palisade_abuse_reports_total",
            &[("outcome", "taken")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(
            &metrics,
            "palisade_abuse_reports_total",
            &[("outcome", "taken")]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_bad_report_gets_400_naming_the_field() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&with_operator_host(&origin).to_toml());
    // Each from its own address: every POST counts against its sender's allowance.
    let cases = [
        (
            r#"{"urls":["https://blog.example/"],"description":"x"}"#,
            Value::from("category"),
        ),
        (
            r#"{"category":"spam","urls":["https://blog.example/"],"description":"x"}"#,
            Value::from("category"),
        ),
        (
            r#"{"category":"malware","urls":["ftp://blog.example/x.exe"],"description":"x"}"#,
            Value::from("urls"),
        ),
        (
            r#"{"category":"malware","urls":[],"description":"x"}"#,
            Value::from("urls"),
        ),
        (
            r#"{"category":"other","urls":["https://blog.example/"],"description":"  "}"#,
            Value::from("description"),
        ),
        (
            r#"{"category":"other","urls":["https://blog.example/"],"description":"a\u0000b"}"#,
            Value::from("description"),
        ),
        ("not json", Value::Null),
    ];
    for (i, (body, field)) in cases.iter().enumerate() {
        let from = v4(127, 0, 1, i as u8 + 1);
        let response = post_json(&proxy, from, "blog.example", body).await;
        assert_eq!(
            response.status(),
            Some(400),
            "{body}: {}",
            response.body_text()
        );
        let answer = json(&response);
        assert_eq!(&answer["field"], field, "{body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    // A form gets itself back, filled in, the error above it, every value escaped.
    let form = "category=harassment&urls=https%3A%2F%2Fblog.example%2Fa%26b\
                &description=&contact=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let response = send(
        proxy.http_addr(),
        v4(127, 0, 2, 1),
        "POST",
        "blog.example",
        ABUSE_PATH,
        Some(("application/x-www-form-urlencoded", form)),
    )
    .await;
    assert_eq!(response.status(), Some(400), "{}", response.body_text());
    let page = response.body_text();
    assert!(page.contains("<strong>description:</strong>"), "{page}");
    assert!(
        page.contains("<option value=\"harassment\" selected>"),
        "{page}"
    );
    assert!(page.contains("https://blog.example/a&amp;b"), "{page}");
    assert!(!page.contains("<script"), "{page}");
    assert!(response.header("content-security-policy").is_some());

    // Neither JSON nor a form.
    let response = send(
        proxy.http_addr(),
        v4(127, 0, 2, 2),
        "POST",
        "blog.example",
        ABUSE_PATH,
        Some(("text/plain", "hello")),
    )
    .await;
    assert_eq!(response.status(), Some(415));
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_url_that_is_not_an_rfc_3986_url_is_refused_and_the_form_shows_it_escaped() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&with_operator_host(&origin).to_toml());
    let hostile = r#"https://blog.example/"><script>alert(1)</script>"#;
    let report = |url: &str| {
        serde_json::json!({"category": "phishing", "urls": [url], "description": "see it"})
            .to_string()
    };
    for (i, url) in [
        hostile,
        "https://blog.example/{x}",
        "https://blog.example/a|b",
        "https://blog.example/%zz",
        "https://blog.example/a#b#c",
        "https://bl<og.example/",
        "https://blog.example:80a/",
        "https://[::1/",
        "https://[not-v6]/",
    ]
    .into_iter()
    .enumerate()
    {
        let response = post_json(
            &proxy,
            v4(127, 0, 4, i as u8 + 1),
            "blog.example",
            &report(url),
        )
        .await;
        assert_eq!(
            response.status(),
            Some(400),
            "{url}: {}",
            response.body_text()
        );
        assert_eq!(json(&response)["field"], "urls", "{url}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{url}"
        );
    }

    // The form gets itself back with the URL shown as text.
    let form = format!(
        "category=phishing&description=see+it&urls={}",
        hostile
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let response = send(
        proxy.http_addr(),
        v4(127, 0, 5, 1),
        "POST",
        "blog.example",
        ABUSE_PATH,
        Some(("application/x-www-form-urlencoded", &form)),
    )
    .await;
    assert_eq!(response.status(), Some(400), "{}", response.body_text());
    let page = response.body_text();
    assert!(
        page.contains("https://blog.example/&quot;&gt;&lt;script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");

    // Valid ones are taken; an IRI's non-ASCII characters are percent-encoded (RFC 3987 3.1).
    for (i, (url, stored)) in [
        (
            "https://blog.example/a?b=c&d=%20e#f",
            "https://blog.example/a?b=c&d=%20e#f",
        ),
        ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        (
            "https://user@blog.example/'quoted'",
            "https://user@blog.example/'quoted'",
        ),
        (
            "https://blog.example/café",
            "https://blog.example/caf%C3%A9",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let response = post_json(
            &proxy,
            v4(127, 0, 6, i as u8 + 1),
            "blog.example",
            &report(url),
        )
        .await;
        assert_eq!(
            response.status(),
            Some(201),
            "{url}: {}",
            response.body_text()
        );
        let id = json(&response)["id"].as_i64().expect("an id");
        let shown = client::admin_get(proxy.admin_addr(), &format!("/api/reports/{id}")).await;
        let shown: Value = serde_json::from_slice(&shown.body).expect("a report");
        assert_eq!(shown["urls"], serde_json::json!([stored]), "{url}");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn the_sixth_report_in_ten_minutes_from_one_address_gets_429() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&with_operator_host(&origin).to_toml());
    let reporter = v4(127, 0, 0, 5);

    for n in 1..=5 {
        let response = post_json(&proxy, reporter, "blog.example", GOOD_REPORT).await;
        assert_eq!(response.status(), Some(201), "report {n}: {response:?}");
    }
    let response = post_json(&proxy, reporter, "blog.example", GOOD_REPORT).await;
    assert_eq!(response.status(), Some(429), "{}", response.body_text());
    assert_eq!(response.header("retry-after"), Some("600"));
    assert!(json(&response)["error"].is_string());
    // The limit is per address and across hosts: the operator's hostname counts too.
    let response = post_json(&proxy, reporter, OPERATOR_HOST, GOOD_REPORT).await;
    assert_eq!(response.status(), Some(429));
    let response = post_json(&proxy, v4(127, 0, 0, 6), "blog.example", GOOD_REPORT).await;
    assert_eq!(
        response.status(),
        Some(201),
        "another address is not limited"
    );
    // The form itself is still served to the limited address.
    let form = on_blog(&proxy, reporter, "GET", ABUSE_PATH).await;
    assert_eq!(form.status(), Some(200));
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn the_operator_hostname_serves_the_form_and_nothing_else_while_unknown_hosts_get_421() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&with_operator_host(&origin).to_toml());
    let from = v4(127, 0, 0, 1);

    let form = send(
        proxy.http_addr(),
        from,
        "GET",
        OPERATOR_HOST,
        ABUSE_PATH,
        None,
    )
    .await;
    assert_is_the_form(&form, OPERATOR_HOST);
    // The name as a client may write it: another case, a port.
    let form = send(
        proxy.http_addr(),
        from,
        "GET",
        "Abuse.Provider.Example:80",
        ABUSE_PATH,
        None,
    )
    .await;
    assert_eq!(form.status(), Some(200));

    for path in [
        "/",
        "/echo",
        "/.well-known/palisade/challenge",
        "/.well-known/palisade/abuse/x",
    ] {
        let other = send(proxy.http_addr(), from, "GET", OPERATOR_HOST, path, None).await;
        assert_eq!(other.status(), Some(404), "{path}: {}", other.body_text());
    }

    let report = post_json(&proxy, v4(127, 0, 3, 1), OPERATOR_HOST, GOOD_REPORT).await;
    assert_eq!(report.status(), Some(201), "{}", report.body_text());
    let id = json(&report)["id"].as_i64().expect("an id");
    let stored = client::admin_get(proxy.admin_addr(), &format!("/api/reports/{id}")).await;
    let stored: Value = serde_json::from_slice(&stored.body).unwrap();
    assert_eq!(
        stored["site"],
        Value::Null,
        "a report on the operator's hostname has no site"
    );

    let unknown = client::get(proxy.http_addr(), "unknown.example", ABUSE_PATH).await;
    assert_eq!(unknown.status, 421, "{}", unknown.text());
    let unknown = client::get(proxy.http_addr(), "unknown.example", "/echo").await;
    assert_eq!(unknown.status, 421);
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn without_operator_host_its_name_is_just_an_unknown_host() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());

    let reply = client::get(proxy.http_addr(), OPERATOR_HOST, ABUSE_PATH).await;

    assert_eq!(reply.status, 421);
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn deny_lists_hold_on_the_intake_but_a_challenge_never_stands_in_front_of_it() {
    let origin = Origin::start("a");
    let proxy = Palisade::start(
        &with_operator_host(&origin)
            .site("state = \"under_attack\"")
            .site("[site.shield]\ndeny = [\"127.0.4.0/24\"]")
            .site("[shield]\ndeny = [\"127.0.5.0/24\"]")
            .to_toml(),
    );

    // Under attack, every visitor without clearance is challenged, but not on the intake.
    let form = on_blog(&proxy, v4(127, 0, 0, 1), "GET", ABUSE_PATH).await;
    assert_is_the_form(&form, "blog.example");
    let page = on_blog(&proxy, v4(127, 0, 0, 1), "GET", "/").await;
    assert_eq!(
        page.status(),
        Some(503),
        "the rest of the site is challenged"
    );

    let site_denied = v4(127, 0, 4, 1);
    let global_denied = v4(127, 0, 5, 1);
    for (from, host) in [
        (site_denied, "blog.example"),
        (global_denied, "blog.example"),
        (global_denied, OPERATOR_HOST),
    ] {
        let form = send(proxy.http_addr(), from, "GET", host, ABUSE_PATH, None).await;
        assert_eq!(form.status(), Some(403), "{from} on {host}");
        let report = post_json(&proxy, from, host, GOOD_REPORT).await;
        assert_eq!(report.status(), Some(403), "{from} on {host}");
    }
    assert_eq!(origin.requests(), 0);
}

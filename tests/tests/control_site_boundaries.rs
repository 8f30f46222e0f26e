//! The boundary between sites on the admin API, as a provider hosting many customers relies on
//! it: a token limited to one site must never read, change or learn of another.
//!
//! The sweep walks the OpenAPI document the binary serves (so a route added later is swept
//! too, and fails the sweep until this file knows how to probe it): every operation, under
//! every kind of credential (none, malformed, wrong, each scope, each scope limited to site
//! `alpha`), with the other site (`bravo`) named in the path, the query, percent-encoded, and
//! with every declared query parameter given twice. Each answer must have the exact status
//! the rules give, say `nosniff`, and, to a caller that does not reach `bravo`, never name it.
//!
//! The other tests pin one finding each: reports cited by a suspension, `/metrics` behind a
//! local proxy, host names a limited token may claim, `nosniff`, what errors echo, and one
//! answer (404) for a report out of reach.

use std::net::{IpAddr, Ipv4Addr};

use palisade_blackbox::client::{self, Reply};
use palisade_blackbox::control::{Token, api, api_as, file_report, json_of, make_token};
use palisade_blackbox::{Origin, Palisade, SiteConfig};
use serde_json::{Value, json};

const ALPHA: &str = "alpha";
const BRAVO: &str = "bravo";
const OPERATOR_HOST: &str = "abuse.provider.test";

/// A customer's site as the provider makes it through the API: `NAME.test`, and a rule that
/// blocks `/blocked` so a request there leaves a security event with the visitor's address.
fn customer_site(name: &str, origin: &Origin) -> Value {
    json!({
        "name": name,
        "hosts": [format!("{name}.test")],
        "origins": [origin.url()],
        "rule": [{"id": "no-probe", "expr": "http.request.uri.path starts_with \"/blocked\"", "action": "block"}]
    })
}

/// The provider: a file site (`blog`), the operator's host name for reports, and two
/// customers' sites made through the API, each with a security event and an abuse report;
/// one more report was taken on the operator's host name (it has no site).
struct Provider {
    proxy: Palisade,
    origin: Origin,
    alpha_report: i64,
    bravo_report: i64,
    operator_report: i64,
}

impl Provider {
    async fn start() -> Provider {
        let origin = Origin::start("o");
        let proxy = Palisade::start(
            &SiteConfig::blog(origin.url())
                .server(&format!("operator_host = \"{OPERATOR_HOST}\""))
                .to_toml(),
        );
        for name in [ALPHA, BRAVO] {
            let (status, body) = api(
                &proxy,
                "POST",
                "/api/sites",
                Some(customer_site(name, &origin)),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            let host = format!("{name}.test");
            let blocked = client::get(proxy.http_addr(), &host, "/blocked").await;
            assert_eq!(blocked.status, 403, "the rule blocks /blocked on {host}");
        }
        let from = |n: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 3, n));
        let alpha_report = file_report(&proxy, from(1), "alpha.test").await;
        let bravo_report = file_report(&proxy, from(2), "bravo.test").await;
        let operator_report = file_report(&proxy, from(3), OPERATOR_HOST).await;
        Provider {
            proxy,
            origin,
            alpha_report,
            bravo_report,
            operator_report,
        }
    }
}

/// One request with `authorization` as the whole `Authorization` field (or none).
async fn send(
    proxy: &Palisade,
    authorization: Option<&str>,
    method: &str,
    target: &str,
    body: Option<&Value>,
) -> Reply {
    let admin = proxy.admin_addr();
    let payload = match body {
        Some(body) => client::full(body.to_string()),
        None => client::empty(),
    };
    let mut request = client::h1_request(method, &admin.to_string(), target, payload);
    if let Some(value) = authorization {
        request.headers_mut().insert(
            "authorization",
            value.parse().expect("an Authorization value"),
        );
    }
    if body.is_some() {
        request
            .headers_mut()
            .insert("content-type", "application/json".parse().expect("a type"));
    }
    client::try_send(admin, request)
        .await
        .unwrap_or_else(|e| panic!("{method} {target} failed: {e}"))
}

// ---- The sweep -----------------------------------------------------------------------------

/// A live token's powers, as the sweep's rules read them.
#[derive(Debug, Clone)]
struct Powers {
    scopes: Vec<&'static str>,
    sites: Option<Vec<&'static str>>,
}

impl Powers {
    fn has_scope(&self, scope: &str) -> bool {
        scope == "any" || self.scopes.contains(&"admin") || self.scopes.contains(&scope)
    }

    fn reaches(&self, site: &str) -> bool {
        self.sites.as_ref().is_none_or(|s| s.contains(&site))
    }
}

/// Who calls.
struct Credential {
    label: String,
    authorization: Option<String>,
    /// `None`: not a live token.
    powers: Option<Powers>,
}

impl Credential {
    fn reaches(&self, site: &str) -> bool {
        self.powers.as_ref().is_some_and(|p| p.reaches(site))
    }
}

/// What a call names that a site limit decides on.
#[derive(Debug, Clone, Copy)]
enum Subject {
    Site(&'static str),
    /// An abuse report: of this site, or (`None`) taken on the operator's host name.
    Report(Option<&'static str>),
    NoSuchReport,
}

/// One request the sweep sends for an operation.
#[derive(Debug, Clone)]
struct Call {
    target: String,
    body: Option<Value>,
    subjects: Vec<Subject>,
    /// A query parameter given twice (plainly or percent-encoded) or one the operation does
    /// not declare: 400 once the caller is known and has the scope.
    bad_query: bool,
}

/// What the sweep knows of one operation beyond the document: the body it sends, and the
/// answer once the caller is let through. Bodies are chosen so that nothing changes for good
/// (a deleted site is made again at once).
struct Probe {
    body: ProbeBody,
    authorized: u16,
    restores_site: bool,
}

enum ProbeBody {
    None,
    Json(Value),
    /// `{"name": SITE}`: the site the call is about is named in the body.
    NamesSite,
}

fn probe(method: &str, path: &str) -> Option<Probe> {
    let p = |body: ProbeBody, authorized: u16| Probe {
        body,
        authorized,
        restores_site: false,
    };
    Some(match (method, path) {
        ("GET", "/api/openapi.json") => p(ProbeBody::None, 200),
        ("GET", "/api/sites") => p(ProbeBody::None, 200),
        // Checked (422: no hosts, no origins) only once the name is known to be reachable.
        ("POST", "/api/sites") => p(ProbeBody::NamesSite, 422),
        ("GET", "/api/sites/{site}") => p(ProbeBody::None, 200),
        ("PATCH", "/api/sites/{site}") => p(ProbeBody::Json(json!({"state": "bogus"})), 422),
        ("PUT", "/api/sites/{site}") => p(ProbeBody::Json(json!({"state": "bogus"})), 422),
        ("DELETE", "/api/sites/{site}") => Probe {
            body: ProbeBody::None,
            authorized: 200,
            restores_site: true,
        },
        // Suspension is not a state to switch to: 422, nothing switched.
        ("PUT", "/api/sites/{site}/state") => {
            p(ProbeBody::Json(json!({"state": "suspended"})), 422)
        }
        ("POST", "/api/sites/{site}/suspend") => p(ProbeBody::Json(json!({"reason": ""})), 422),
        // Not suspended: 409, nothing done.
        ("POST", "/api/sites/{site}/reinstate") => p(ProbeBody::None, 409),
        ("POST", "/api/sites/{site}/purge") => p(ProbeBody::Json(json!({"everything": true})), 200),
        ("GET", "/api/sites/{site}/analytics") => p(ProbeBody::None, 200),
        ("GET", "/api/sites/{site}/mitigations") => p(ProbeBody::None, 200),
        // No attack, so no mitigation is in force: 404 once the token is let through.
        ("POST", "/api/sites/{site}/mitigations/{id}/dismiss") => p(ProbeBody::None, 404),
        ("POST", "/api/sites/{site}/mitigations/{id}/pin") => p(ProbeBody::None, 404),
        ("GET", "/api/audit") => p(ProbeBody::None, 200),
        ("GET", "/api/tokens") => p(ProbeBody::None, 200),
        ("POST", "/api/tokens") => p(ProbeBody::Json(json!({"name": "", "scopes": []})), 422),
        // An id no token has: 404, nothing revoked.
        ("DELETE", "/api/tokens/{id}") => p(ProbeBody::None, 404),
        ("GET", "/api/reports") => p(ProbeBody::None, 200),
        ("GET", "/api/reports/{id}") => p(ProbeBody::None, 200),
        ("PATCH", "/api/reports/{id}") => p(ProbeBody::Json(json!({"notes": ""})), 200),
        ("GET", "/api/events") => p(ProbeBody::None, 200),
        // Not in a cluster: no nodes, for every token with the read scope.
        ("GET", "/api/edges") => p(ProbeBody::None, 200),
        _ => return None,
    })
}

/// A query parameter's two values for the "given twice" calls.
fn two_values(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "site" => (ALPHA, BRAVO),
        "target" => ("site:alpha", "site:bravo"),
        "since" => ("1h", "2h"),
        "limit" => ("1", "2"),
        "after" => ("1", "2"),
        "status" => ("new", "reviewing"),
        "wait" => ("applied", "applied"),
        _ => return None,
    })
}

/// `name` with its first character percent-encoded: the same parameter once decoded.
fn encoded_name(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().expect("a parameter has a name");
    format!("%{:02X}{}", first as u32, chars.as_str())
}

/// Every call the sweep makes for one operation of the document.
fn calls(provider: &Provider, path: &str, parameters: &[Value], probe: &Probe) -> Vec<Call> {
    let declared = |place: &str| -> Vec<String> {
        parameters
            .iter()
            .filter(|p| p["in"] == place)
            .map(|p| p["name"].as_str().expect("a parameter name").to_string())
            .collect()
    };
    // The path's variants: each site plainly and percent-encoded, each kind of report.
    let mut paths: Vec<(String, Vec<Subject>)> = vec![(path.to_string(), Vec::new())];
    for name in declared("path") {
        let hole = format!("{{{name}}}");
        // A token id names no site: only who may manage tokens matters.
        let values: Vec<(String, Option<Subject>)> = match (name.as_str(), path) {
            ("site", _) => vec![
                (ALPHA.into(), Some(Subject::Site(ALPHA))),
                ("%61lpha".into(), Some(Subject::Site(ALPHA))),
                (BRAVO.into(), Some(Subject::Site(BRAVO))),
                ("%62ravo".into(), Some(Subject::Site(BRAVO))),
            ],
            ("id", p) if p.starts_with("/api/reports/") => {
                let bravo = provider.bravo_report.to_string();
                let bravo_encoded = format!("%{:02X}{}", bravo.as_bytes()[0], &bravo[1..]);
                vec![
                    (
                        provider.alpha_report.to_string(),
                        Some(Subject::Report(Some(ALPHA))),
                    ),
                    (bravo, Some(Subject::Report(Some(BRAVO)))),
                    (bravo_encoded, Some(Subject::Report(Some(BRAVO)))),
                    (
                        provider.operator_report.to_string(),
                        Some(Subject::Report(None)),
                    ),
                    ("999999".into(), Some(Subject::NoSuchReport)),
                ]
            }
            ("id", p) if p.contains("/mitigations/") => vec![("sig-1".into(), None)],
            ("id", p) if p.starts_with("/api/tokens/") => {
                vec![("tok_0000000000000000".into(), None)]
            }
            _ => panic!("the sweep has no values for path parameter {name} of {path}: add them"),
        };
        let mut filled = Vec::new();
        for (p, subjects) in &paths {
            for (value, subject) in &values {
                let mut subjects = subjects.clone();
                subjects.extend(*subject);
                filled.push((p.replace(&hole, value), subjects));
            }
        }
        paths = filled;
    }
    let body_for = |site: Option<&str>| match &probe.body {
        ProbeBody::None => None,
        ProbeBody::Json(body) => Some(body.clone()),
        ProbeBody::NamesSite => Some(json!({"name": site.unwrap_or(ALPHA)})),
    };
    let mut calls = Vec::new();
    for (target, subjects) in &paths {
        match probe.body {
            ProbeBody::NamesSite => {
                for site in [ALPHA, BRAVO] {
                    let mut subjects = subjects.clone();
                    subjects.push(Subject::Site(site));
                    calls.push(Call {
                        target: target.clone(),
                        body: body_for(Some(site)),
                        subjects,
                        bad_query: false,
                    });
                }
            }
            _ => calls.push(Call {
                target: target.clone(),
                body: body_for(None),
                subjects: subjects.clone(),
                bad_query: false,
            }),
        }
    }
    // Query variants on the first path (the caller's own site where there is one).
    let (first, first_subjects) = paths[0].clone();
    let with_query = |query: String, extra: Vec<Subject>, bad_query: bool| {
        let mut subjects = first_subjects.clone();
        subjects.extend(extra);
        Call {
            target: format!("{first}?{query}"),
            body: body_for(None),
            subjects,
            bad_query,
        }
    };
    for name in declared("query") {
        match name.as_str() {
            "site" => {
                calls.push(with_query(
                    "site=alpha".into(),
                    vec![Subject::Site(ALPHA)],
                    false,
                ));
                calls.push(with_query(
                    "site=bravo".into(),
                    vec![Subject::Site(BRAVO)],
                    false,
                ));
                calls.push(with_query(
                    "%73ite=bravo".into(),
                    vec![Subject::Site(BRAVO)],
                    false,
                ));
            }
            "target" => {
                let alpha = vec![Subject::Site(ALPHA)];
                calls.push(with_query("target=site:alpha".into(), alpha, false));
                let bravo = vec![Subject::Site(BRAVO)];
                calls.push(with_query("target=site%3Abravo".into(), bravo, false));
            }
            _ => {}
        }
        let (one, two) = two_values(&name).unwrap_or_else(|| {
            panic!("the sweep has no values for query parameter {name} of {path}: add them")
        });
        calls.push(with_query(
            format!("{name}={one}&{name}={two}"),
            vec![],
            true,
        ));
        let encoded = encoded_name(&name);
        calls.push(with_query(
            format!("{name}={one}&{encoded}={two}"),
            vec![],
            true,
        ));
    }
    calls.push(with_query("zzz=1".into(), vec![], true));
    calls
}

/// The answer the rules give `credential` for `call` on an operation needing `scope`.
fn expected(credential: &Credential, scope: &str, call: &Call, probe: &Probe) -> u16 {
    let Some(powers) = &credential.powers else {
        return 401;
    };
    if !powers.has_scope(scope) {
        return 403;
    }
    if call.bad_query {
        return 400;
    }
    for subject in &call.subjects {
        match subject {
            Subject::Site(site) if !powers.reaches(site) => return 403,
            // One answer whether the report is elsewhere or nowhere: nothing to probe with.
            Subject::Report(site)
                if powers.sites.is_some() && !site.is_some_and(|s| powers.reaches(s)) =>
            {
                return 404;
            }
            Subject::NoSuchReport => return 404,
            _ => {}
        }
    }
    probe.authorized
}

#[tokio::test]
async fn every_operation_under_every_credential_keeps_a_site_limited_token_inside_its_site() {
    let provider = Provider::start().await;
    let proxy = &provider.proxy;

    let mut credentials = vec![
        Credential {
            label: "no token".into(),
            authorization: None,
            powers: None,
        },
        Credential {
            label: "a malformed field".into(),
            authorization: Some("Token pal_not-bearer".into()),
            powers: None,
        },
        Credential {
            label: "a token nobody has".into(),
            authorization: Some("Bearer pal_wrong-token-nobody-has-000000000000".into()),
            powers: None,
        },
    ];
    let scopes = ["read", "edit", "purge", "suspend", "admin"];
    for scope in scopes {
        let token = make_token(proxy, &[scope], None).await;
        credentials.push(Credential {
            label: scope.to_string(),
            authorization: Some(format!("Bearer {}", token.secret)),
            powers: Some(Powers {
                scopes: vec![scope],
                sites: None,
            }),
        });
        if scope != "admin" {
            let token = make_token(proxy, &[scope], Some(&[ALPHA])).await;
            credentials.push(Credential {
                label: format!("{scope} limited to {ALPHA}"),
                authorization: Some(format!("Bearer {}", token.secret)),
                powers: Some(Powers {
                    scopes: vec![scope],
                    sites: Some(vec![ALPHA]),
                }),
            });
        }
    }

    let (status, document) = api(proxy, "GET", "/api/openapi.json", None).await;
    assert_eq!(status, 200, "{document}");
    let mut failures = Vec::new();
    let mut sent = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, operation) in item.as_object().expect("a path item") {
            let Some(scope) = operation["x-palisade-scope"].as_str() else {
                continue; // `parameters`
            };
            let method = method.to_uppercase();
            let probe = probe(&method, path).unwrap_or_else(|| {
                panic!(
                    "{method} {path} is in the OpenAPI document but the sweep does not know \
                     how to probe it: add it to `probe`"
                )
            });
            let mut parameters = shared.clone();
            parameters.extend(
                operation["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            for call in calls(&provider, path, &parameters, &probe) {
                for credential in &credentials {
                    let want = expected(credential, scope, &call, &probe);
                    let reply = send(
                        proxy,
                        credential.authorization.as_deref(),
                        &method,
                        &call.target,
                        call.body.as_ref(),
                    )
                    .await;
                    sent += 1;
                    let text = reply.text();
                    let what = format!("{method} {} as {}", call.target, credential.label);
                    if reply.status.as_u16() != want {
                        failures.push(format!(
                            "{what}: {} (want {want}): {text:.200}",
                            reply.status
                        ));
                    }
                    if !credential.reaches(BRAVO) && text.contains(BRAVO) {
                        failures.push(format!("{what}: the answer names {BRAVO}: {text:.300}"));
                    }
                    if reply.header("x-content-type-options") != Some("nosniff") {
                        failures.push(format!("{what}: no X-Content-Type-Options: nosniff"));
                    }
                    if probe.restores_site && reply.status == 200 {
                        let site = call
                            .subjects
                            .iter()
                            .find_map(|s| match s {
                                Subject::Site(site) => Some(*site),
                                _ => None,
                            })
                            .expect("a deleted site is named");
                        let document = customer_site(site, &provider.origin);
                        let (status, body) = api(proxy, "POST", "/api/sites", Some(document)).await;
                        assert_eq!(status, 201, "{site} made again after {what}: {body}");
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} answers broke the rules:\n{}",
        failures.len(),
        failures
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        sent >= 1000,
        "the sweep sent {sent} requests: is every route in the document?"
    );
}

// ---- Finding 1: one parse of the query ------------------------------------------------------

#[tokio::test]
async fn a_site_named_twice_or_percent_encoded_in_a_query_is_refused_not_read_two_ways() {
    let provider = Provider::start().await;
    let proxy = &provider.proxy;
    let alpha_reader = make_token(proxy, &["read"], Some(&[ALPHA])).await;
    let as_alpha =
        |path: &'static str| api_as(proxy, Some(&alpha_reader.secret), "GET", path, None);

    for path in [
        "/api/events?site=alpha&site=bravo",
        "/api/events?site=alpha&%73ite=bravo",
        "/api/events?%73ite=alpha&site=bravo",
        "/api/reports?site=alpha&%73ite=bravo",
        "/api/audit?target=site:alpha&%74arget=site:bravo",
        "/api/sites/alpha/analytics?since=1h&%73ince=2h",
    ] {
        let reply = as_alpha(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert!(!reply.text().contains(BRAVO), "{path}: {}", reply.text());
    }
    // Decoded once, the name means the same to the decision and to the work.
    let reply = as_alpha("/api/events?%73ite=alpha").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = json_of(&reply)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!events.is_empty(), "alpha's event is shown");
    assert!(events.iter().all(|e| e["site"] == ALPHA), "{events:?}");
    // Without a site, a limited token's listing holds its own sites' events only.
    let reply = as_alpha("/api/events").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!reply.text().contains(BRAVO), "{}", reply.text());
    let reply = as_alpha("/api/events?site=bravo").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
}

// ---- Finding 2: reports a suspension cites --------------------------------------------------

/// The error with every run of digits replaced, so two refusals can be compared.
fn without_digits(error: &Value) -> String {
    let text = error.to_string();
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn a_suspension_by_a_limited_token_cites_only_its_own_sites_reports_and_cannot_probe_others()
{
    let provider = Provider::start().await;
    let proxy = &provider.proxy;
    let desk = make_token(proxy, &["read", "suspend"], Some(&[ALPHA])).await;
    let suspend = |reports: Vec<i64>| {
        api_as(
            proxy,
            Some(&desk.secret),
            "POST",
            "/api/sites/alpha/suspend",
            Some(json!({"reason": "phishing kit", "reports": reports})),
        )
    };

    let elsewhere = suspend(vec![provider.bravo_report]).await;
    let nowhere = suspend(vec![999_999]).await;
    let operators = suspend(vec![provider.operator_report]).await;
    for (what, reply) in [
        ("bravo's", &elsewhere),
        ("no", &nowhere),
        ("the operator host's", &operators),
    ] {
        assert_eq!(reply.status, 422, "citing {what} report: {}", reply.text());
        assert_eq!(json_of(reply)["field"], "reports", "{}", reply.text());
    }
    assert_eq!(
        without_digits(&json_of(&elsewhere)),
        without_digits(&json_of(&nowhere)),
        "another site's report and a missing one get the same answer"
    );
    assert_eq!(
        without_digits(&json_of(&operators)),
        without_digits(&json_of(&nowhere))
    );
    for id in [provider.bravo_report, provider.operator_report] {
        let (_, report) = api(proxy, "GET", &format!("/api/reports/{id}"), None).await;
        assert_eq!(
            report["status"], "new",
            "report {id} is untouched: {report}"
        );
    }
    let (_, alpha) = api(proxy, "GET", "/api/sites/alpha", None).await;
    assert_eq!(
        alpha["state"], "active",
        "a refused suspension suspends nothing"
    );

    // Its own site's report is cited and actioned.
    let reply = suspend(vec![provider.alpha_report]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (_, report) = api(
        proxy,
        "GET",
        &format!("/api/reports/{}", provider.alpha_report),
        None,
    )
    .await;
    assert_eq!(report["status"], "actioned");
    // A token for every site may cite a report taken on the operator's host name.
    let (status, body) = api(
        proxy,
        "POST",
        "/api/sites/bravo/suspend",
        Some(json!({"reason": "phishing kit", "reports": [provider.operator_report]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

// ---- Finding 3: /metrics behind a local proxy -----------------------------------------------

async fn scrape(proxy: &Palisade, token: Option<&Token>, relayed: Option<(&str, &str)>) -> Reply {
    let admin = proxy.admin_addr();
    let mut request = client::h1_request("GET", &admin.to_string(), "/metrics", client::empty());
    if let Some(token) = token {
        let value = format!("Bearer {}", token.secret);
        request
            .headers_mut()
            .insert("authorization", value.parse().expect("a token"));
    }
    if let Some((name, value)) = relayed {
        request.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("a field name"),
            value.parse().expect("a value"),
        );
    }
    client::try_send(admin, request)
        .await
        .expect("GET /metrics")
}

#[tokio::test]
async fn metrics_are_open_without_a_token_only_to_the_networks_metrics_open_to_names() {
    let origin = Origin::start("o");
    // An empty list: the set-up with a proxy in front of a loopback admin listener.
    let closed = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("metrics_open_to = []")
            .to_toml(),
    );
    let reader = make_token(&closed, &["read"], None).await;
    let limited = make_token(&closed, &["read"], Some(&["blog"])).await;
    let reply = scrape(&closed, None, None).await;
    assert_eq!(
        reply.status,
        401,
        "a loopback peer is not enough: {}",
        reply.text()
    );
    assert_eq!(scrape(&closed, Some(&reader), None).await.status, 200);
    // Every site's metrics are on the page: a token limited to some sites does not get it.
    assert_eq!(scrape(&closed, Some(&limited), None).await.status, 403);

    let listed = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("metrics_open_to = [\"127.0.0.0/8\"]")
            .to_toml(),
    );
    let reply = scrape(&listed, None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().contains("palisade_requests_total"),
        "{}",
        reply.text()
    );

    let bad = Palisade::check(
        &SiteConfig::blog(origin.url())
            .server("metrics_open_to = [\"loopback\"]")
            .to_toml(),
    );
    assert!(!bad.status.success(), "{}", bad.stdout);
    assert!(
        bad.stderr.contains("server.metrics_open_to"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn by_default_metrics_are_open_to_loopback_only_on_a_loopback_listener_and_never_to_relayed_requests()
 {
    let origin = Origin::start("o");
    let local = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
    assert_eq!(
        scrape(&local, None, None).await.status,
        200,
        "a local scraper"
    );
    // A reverse proxy on this host relays its clients from loopback, saying so.
    for relayed in [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
    ] {
        let reply = scrape(&local, None, Some(relayed)).await;
        assert_eq!(reply.status, 401, "{relayed:?}: {}", reply.text());
    }
    // Bound beyond loopback, nothing is open by default, not even to a loopback peer.
    let wide = Palisade::start(
        &SiteConfig::blog(origin.url())
            .server("admin = \"0.0.0.0:0\"")
            .to_toml(),
    );
    let reply = scrape(&wide, None, None).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    let reader = make_token(&wide, &["read"], None).await;
    assert_eq!(scrape(&wide, Some(&reader), None).await.status, 200);
}

// ---- Finding 4: host names a limited token may claim ----------------------------------------

#[tokio::test]
async fn a_limited_token_claims_only_names_under_those_its_sites_already_hold() {
    let provider = Provider::start().await;
    let proxy = &provider.proxy;
    let origin = provider.origin.url();
    // A catch-all site serves every name nobody claims.
    let (status, body) = api(
        proxy,
        "POST",
        "/api/sites",
        Some(json!({"name": "catchall", "hosts": ["*"], "origins": [origin]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        proxy,
        "PATCH",
        "/api/sites/bravo",
        Some(json!({"hosts": ["bravo.test", "*.bravo.test", "taken.alpha.test"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let editor = make_token(proxy, &["edit"], Some(&[ALPHA, "alpha-shop"])).await;
    let set_hosts = |hosts: Value| {
        api_as(
            proxy,
            Some(&editor.secret),
            "PATCH",
            "/api/sites/alpha",
            Some(json!({ "hosts": hosts })),
        )
    };

    for hosts in [
        json!(["alpha.test", "x.bravo.test"]),
        json!(["alpha.test", "*.bravo.test"]),
        json!(["alpha.test", "unclaimed.test"]),
        json!(["alpha.test", "*"]),
        json!(["alpha.test", "test"]),
        json!(["alpha.test", "xalpha.test"]),
    ] {
        let reply = set_hosts(hosts.clone()).await;
        assert_eq!(reply.status, 403, "{hosts}: {}", reply.text());
        assert_eq!(json_of(&reply)["field"], "hosts", "{}", reply.text());
        assert!(!reply.text().contains("\"bravo\""), "{}", reply.text());
        assert!(!reply.text().contains("catchall"), "{}", reply.text());
    }
    // Taken under its own name by another site: a conflict, without naming who holds it.
    let reply = set_hosts(json!(["alpha.test", "taken.alpha.test"])).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(!reply.text().contains(BRAVO), "{}", reply.text());
    let (_, alpha) = api(proxy, "GET", "/api/sites/alpha", None).await;
    assert_eq!(alpha["hosts"], json!(["alpha.test"]), "nothing was claimed");

    let reply = set_hosts(json!(["alpha.test", "www.alpha.test", "*.shop.alpha.test"])).await;
    assert_eq!(reply.status, 200, "names under its own: {}", reply.text());
    // A new site of the token's may start under a name its other site holds, and not elsewhere.
    let create = |hosts: Value| {
        api_as(
            proxy,
            Some(&editor.secret),
            "POST",
            "/api/sites",
            Some(json!({"name": "alpha-shop", "hosts": hosts, "origins": [origin]})),
        )
    };
    let reply = create(json!(["alpha-shop.test"])).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let reply = create(json!(["eu.shop.alpha.test"])).await;
    assert_eq!(reply.status, 201, "{}", reply.text());

    // The operator (a token for every site) may give the site any free name; then it is held.
    let (status, body) = api(
        proxy,
        "PATCH",
        "/api/sites/alpha",
        Some(json!({"hosts": ["alpha.test", "alpha.example"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply = set_hosts(json!(["alpha.test", "alpha.example", "www.alpha.example"])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

// ---- Finding 5: nosniff ---------------------------------------------------------------------

#[tokio::test]
async fn every_answer_of_the_admin_listener_says_nosniff() {
    let provider = Provider::start().await;
    let proxy = &provider.proxy;
    for (token, method, path) in [
        (Some(palisade_blackbox::ADMIN_TOKEN), "GET", "/api/reports"),
        (Some(palisade_blackbox::ADMIN_TOKEN), "GET", "/api/nowhere"),
        (Some(palisade_blackbox::ADMIN_TOKEN), "DELETE", "/api/audit"),
        (None, "GET", "/api/sites"),
        (None, "GET", "/metrics"),
        (None, "GET", "/healthz"),
        (None, "GET", "/elsewhere"),
    ] {
        let reply = api_as(proxy, token, method, path, None).await;
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{method} {path}: {}",
            reply.status
        );
    }
}

// ---- Finding 6: what errors say -------------------------------------------------------------

#[tokio::test]
async fn errors_name_the_configuration_file_by_its_base_name_and_cut_what_they_echo() {
    let provider = Provider::start().await;
    let proxy = &provider.proxy;
    let (status, body) = api(
        proxy,
        "PATCH",
        "/api/sites/blog",
        Some(json!({"state": "paused"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("palisade.toml"), "{error}");
    let dir = proxy.dir().display().to_string();
    assert!(
        !error.contains(&dir),
        "the file's directory is not shown: {error}"
    );

    let long = "a".repeat(10_000);
    let echoes = [
        api(proxy, "GET", &format!("/api/sites/{long}"), None).await,
        api(proxy, "POST", "/api/sites", Some(json!({"name": long, "hosts": ["x.test"], "origins": ["http://127.0.0.1:1"]}))).await,
        api(proxy, "POST", "/api/sites", Some(json!({"name": "x", "hosts": [format!("{long}.test")], "origins": ["http://127.0.0.1:1"]}))).await,
        api(proxy, "GET", &format!("/api/reports/{long}"), None).await,
        api(proxy, "DELETE", &format!("/api/tokens/{long}"), None).await,
        api(proxy, "GET", &format!("/api/audit?{long}=1"), None).await,
        api(proxy, "POST", "/api/tokens", Some(json!({"name": "t", "scopes": [long]}))).await,
    ];
    for (status, body) in echoes {
        assert!((400..500).contains(&status), "{status}: {body:.200}");
        let shown = body.to_string();
        assert!(
            shown.len() < 1000,
            "{status}: the answer echoes {} bytes: {shown:.300}",
            shown.len()
        );
    }
}

// ---- Finding 7: one answer for a report out of reach ----------------------------------------

#[tokio::test]
async fn a_report_out_of_a_tokens_reach_is_404_to_get_and_patch_alike() {
    let provider = Provider::start().await;
    let proxy = &provider.proxy;
    let desk = make_token(proxy, &["read", "suspend"], Some(&[ALPHA])).await;
    let as_desk = |method: &'static str, id: i64| {
        let body = (method == "PATCH").then(|| json!({"status": "dismissed"}));
        let path = format!("/api/reports/{id}");
        let secret = desk.secret.clone();
        async move { api_as(proxy, Some(&secret), method, &path, body).await }
    };
    for method in ["GET", "PATCH"] {
        let missing = as_desk(method, 999_999).await;
        assert_eq!(missing.status, 404, "{method}: {}", missing.text());
        for id in [provider.bravo_report, provider.operator_report] {
            let reply = as_desk(method, id).await;
            assert_eq!(reply.status, 404, "{method} report {id}: {}", reply.text());
            assert_eq!(
                without_digits(&json_of(&reply)),
                without_digits(&json_of(&missing)),
                "{method}: out of reach and missing read the same"
            );
        }
        let own = as_desk(method, provider.alpha_report).await;
        assert_eq!(
            own.status,
            200,
            "{method} its own site's report: {}",
            own.text()
        );
    }
    for id in [provider.bravo_report, provider.operator_report] {
        let (_, report) = api(proxy, "GET", &format!("/api/reports/{id}"), None).await;
        assert_eq!(report["status"], "new", "report {id} is untouched");
    }
}

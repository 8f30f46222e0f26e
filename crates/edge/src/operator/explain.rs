//! `palisade explain`: what the shield would do with a request, worked out from the
//! configuration alone. Nothing is sent and no counter moves; rate limits show what they would
//! count, and the state only a running edge has (attack detection, origin slots) is named as
//! such.

use crate::router::HostRouter;
use http::{HeaderMap, HeaderName, HeaderValue};
use model::Config;
use shield::RequestFacts;
use shield::guard::{BuildError, GuardError, ListsError, SiteGuard};
use shield::ratelimit::LimiterRegistry;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The request to explain, as the command line gives it.
pub struct ExplainRequest<'a> {
    /// The client's address, as the shield would see it.
    pub ip: IpAddr,
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: &'a str,
    /// `https://host/path?query` (or `http://`).
    pub url: &'a str,
    /// `Name: value` lines.
    pub headers: &'a [String],
    /// The mitigations a running edge has in force for the request's site (`--live`), to
    /// judge the request by; `None` when the explanation is from the configuration alone.
    pub mitigations: Option<&'a [LiveMitigation]>,
    /// The client's JA4, as `tls.ja4` reads it (`--ja4`); only with an `https://` URL.
    pub ja4: Option<&'a str>,
    /// The client's HTTP/2 fingerprint, as `http2.fingerprint` reads it
    /// (`--http2-fingerprint`); the request is then an HTTP/2 one.
    pub http2_fingerprint: Option<&'a str>,
}

/// A mitigation in force on a running edge, as `GET /api/sites/{site}/mitigations` shows it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LiveMitigation {
    /// `sig-N`.
    pub id: String,
    /// The rule, in the rules language.
    pub rule: String,
    /// `challenge` or `block`.
    pub action: String,
}

/// The name of the site `url`'s host routes to, if any: whose mitigations `--live` asks for.
pub fn site_of(config: &Config, url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = model::normalize_host(uri.authority()?.as_str())?;
    let router = HostRouter::new(&config.sites);
    router.route(&host).map(|i| config.sites[i].name.clone())
}

/// Why a request cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The request as given is malformed: its URL, its method or a header line. The message
    /// says which and why.
    #[error("{0}")]
    Request(String),
    /// The `[shield]` list files cannot be read.
    #[error(transparent)]
    Lists(#[from] ListsError),
    /// The site's lists, rules or rate limits do not build.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The site's challenge `exempt` expression does not compile.
    #[error(transparent)]
    Challenge(#[from] BuildError),
}

/// The explanation as text, or what is wrong with the request or the configuration.
pub fn explain(config: &Config, request: &ExplainRequest<'_>) -> Result<String, ExplainError> {
    let bad = ExplainError::Request;
    let uri: http::Uri = request
        .url
        .parse()
        .map_err(|e| bad(format!("{:?} is not a URL: {e}", request.url)))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(bad(format!(
                "{:?} must start with http:// or https://",
                request.url
            )));
        }
    };
    if request.ja4.is_some() && !tls {
        return Err(bad(format!(
            "a JA4 comes with TLS only: {:?} must start with https://",
            request.url
        )));
    }
    let connection = shield::ConnectionTraits {
        ja4: request.ja4.map(Box::from),
        h2: request.http2_fingerprint.map(Box::from),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| bad(format!("{:?} has no host", request.url)))?;
    let host = model::normalize_host(authority.as_str())
        .ok_or_else(|| bad(format!("{:?} is not a valid host", authority.as_str())))?;
    let method = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| bad(format!("{:?} is not an HTTP method", request.method)))?;
    let mut headers = HeaderMap::new();
    for line in request.headers {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header {line:?} must be written as 'Name: value'")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad(format!("{:?} is not a header name", name.trim())))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| bad(format!("the value of header {name} is not valid")))?;
        headers.append(name, value);
    }

    let router = HostRouter::new(&config.sites);
    let Some(index) = router.route(&host) else {
        return Ok(format!(
            "host {host} belongs to no site: the edge answers 421 and forwards nothing\n"
        ));
    };
    let site = &config.sites[index];
    let global = shield::guard::build_lists(&config.shield.lists, "shield")?;
    let guard = SiteGuard::build(index, site, Arc::new(global), &LimiterRegistry::default())?;
    let facts = RequestFacts {
        ip: request.ip,
        host: &host,
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        tls,
        version: if connection.h2.is_some() {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        },
        connection: &connection,
    };
    let explanation = guard.explain(&facts, Instant::now());
    let mut out = String::new();
    let _ = writeln!(out, "site: {} (host {host})", site.name);
    let _ = writeln!(out, "{explanation}");
    let shield = &site.shield;
    let challenge =
        shield::challenge::SiteChallenge::build(&format!("site[{index}]"), &site.challenge)?;
    let gate = Gate {
        state: site.state,
        verdict: &explanation.verdict,
        exempt: challenge.exempt(&facts),
        takes_page: crate::phases::challenge::can_take(&challenge, &facts),
    };
    let _ = writeln!(out, "{}", gate.what_happens());
    let _ = writeln!(
        out,
        "at run time also: {}; at most {} origin requests at once",
        gate.attack_detection(&shield.attack),
        shield.max_origin_concurrency
    );
    let _ = writeln!(
        out,
        "{}",
        miss_limit(
            shield,
            crate::phases::challenge::can_take(&challenge, &facts)
        )
    );
    let _ = writeln!(
        out,
        "{}",
        mitigations(request.mitigations, &facts, gate.exempt)
    );
    Ok(out)
}

/// The running edge's mitigations, as they meet this request.
fn mitigations(live: Option<&[LiveMitigation]>, facts: &RequestFacts<'_>, exempt: bool) -> String {
    let Some(live) = live else {
        return "mitigations: only the running edge knows those in force (--live asks it)".into();
    };
    if live.is_empty() {
        return "mitigations: none in force on the running edge".into();
    }
    // A rule the edge wrote always parses; one that does not is shown, not trusted.
    let matched = live
        .iter()
        .find(|m| shield::Expr::parse(&m.rule).is_ok_and(|rule| rule.eval(facts)));
    match matched {
        Some(m) if exempt => format!(
            "mitigations: {} (`{}`) matches, but the site's `exempt` lets this request through",
            m.id, m.rule
        ),
        Some(m) => format!(
            "mitigations: {} (`{}`) matches: this request is {} while the attack lasts",
            m.id,
            m.rule,
            if m.action == "block" {
                "blocked (403, connection closed)"
            } else {
                "challenged unless it holds clearance"
            }
        ),
        None => format!(
            "mitigations: {} in force, none matches this request",
            live.len()
        ),
    }
}

/// The site's state and the under-attack gate as they meet this request.
struct Gate<'a> {
    state: model::SiteState,
    verdict: &'a shield::guard::Verdict,
    /// The site's `exempt` (feeds, `robots.txt`, `/.well-known/`) lets it through.
    exempt: bool,
    /// A browser's GET or HEAD, which the challenge page can carry through and back.
    takes_page: bool,
}

impl Gate<'_> {
    /// What happens to this request at the gate, then why.
    fn what_happens(&self) -> String {
        use model::SiteState;
        use shield::guard::Verdict;
        let state = self.state.as_str();
        let onward = "it goes on to the cache and the origin";
        match (self.state, self.verdict) {
            (SiteState::Paused, _) => "state: paused: the request goes straight to the origin, \
                 because the shield and the cache step aside while a site is paused"
                .to_string(),
            (SiteState::Suspended, _) => "state: suspended: the request gets the suspension \
                 notice (403, or 451 for a legal demand), because service to the site is \
                 terminated"
                .to_string(),
            (_, Verdict::Allowed) => {
                format!("state: {state}: not challenged, {onward}, because it is allowed above")
            }
            (_, Verdict::Pass) if self.state != SiteState::UnderAttack => format!(
                "state: {state}: not challenged, {onward}, because the under-attack gate is open \
                 while the site is not under attack"
            ),
            (_, Verdict::Pass) if self.exempt => format!(
                "state: {state}: not challenged, {onward}, because the site's `exempt` (feeds, \
                 robots.txt, /.well-known/) lets it through under attack"
            ),
            (_, Verdict::Pass) if self.takes_page => format!(
                "state: {state}: without a clearance cookie it gets the challenge page (503); \
                 with one, {onward}; because every visitor must pass the challenge under attack"
            ),
            (_, Verdict::Pass) => format!(
                "state: {state}: without a clearance cookie it gets 403 (a browser is needed); \
                 with one, {onward}; because under attack every visitor must pass the challenge, \
                 and only a browser's GET or HEAD can take the page"
            ),
            _ => format!(
                "state: {state}: the under-attack gate is not reached, because the verdict above \
                 answers first"
            ),
        }
    }

    /// Automatic attack detection, as it could change the answer at run time.
    fn attack_detection(&self, detection: &model::AttackDetection) -> &'static str {
        use model::SiteState;
        use shield::guard::Verdict;
        if self.state != SiteState::Active || !matches!(self.verdict, Verdict::Pass) {
            return "automatic attack detection would not change this answer";
        }
        if !detection.enabled {
            return "automatic attack detection is off for this site";
        }
        match (self.exempt, detection.fallback) {
            (true, _) => {
                "if attack detection trips, this request is still exempt from mitigation and the \
                 challenge"
            }
            (false, model::AttackFallback::Off) => {
                "if attack detection trips, this request is challenged (or blocked) only if it \
                 matches the attack's signature (GET /api/sites/{site}/mitigations lists them)"
            }
            (false, model::AttackFallback::Challenge) => {
                "if attack detection trips, this request is challenged if it matches the \
                 attack's signature, or if no signature covers the surge (attack_fallback = \
                 challenge)"
            }
        }
    }
}

/// The per-address cache-miss limit, as it would meet this request.
fn miss_limit(shield: &model::SiteShield, can_take_challenge: bool) -> String {
    if shield.max_misses_per_ip == 0 {
        return "miss limit: none".into();
    }
    let when = if shield.misses_only_under_pressure {
        "only while the origin is under pressure"
    } else {
        "always"
    };
    let past = match shield.misses_action {
        model::LimitAction::Block => "429",
        model::LimitAction::Log => "a security event, and served",
        model::LimitAction::Challenge if can_take_challenge => {
            "the challenge (once cleared, an allowance of its own)"
        }
        model::LimitAction::Challenge => "429 (this request cannot take the challenge)",
    };
    format!(
        "miss limit: {} cache misses per address per {:?}, {when}; past it, this request gets {past}",
        shield.max_misses_per_ip, shield.misses_period
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_str(
            "t.toml",
            r#"
[[site]]
name = "blog"
hosts = ["blog.example"]
origins = ["http://127.0.0.1:1"]
[[site.rule]]
id = "bots"
expr = 'http.user_agent contains "BadBot"'
action = "block"
[site.shield]
deny = ["203.0.113.0/24"]
"#,
        )
        .unwrap()
    }

    fn run(ip: &str, url: &str, headers: &[String]) -> Result<String, ExplainError> {
        explain(
            &config(),
            &ExplainRequest {
                ip: ip.parse().unwrap(),
                method: "GET",
                url,
                headers,
                mitigations: None,
                ja4: None,
                http2_fingerprint: None,
            },
        )
    }

    #[test]
    fn names_the_site_the_rules_and_the_verdict() {
        let text = run(
            "10.0.0.1",
            "https://blog.example/post",
            &["User-Agent: BadBot/1.0".into()],
        )
        .unwrap();
        assert!(text.starts_with("site: blog"), "{text}");
        assert!(text.contains("rule bots (block): matches"), "{text}");
        assert!(
            text.contains("state: active: the under-attack gate is not reached, because the verdict above answers first"),
            "{text}"
        );
        let page = run("10.0.0.1", "https://blog.example/post", &[]).unwrap();
        assert!(
            page.contains(
                "state: active: not challenged, it goes on to the cache and the origin, because \
                 the under-attack gate is open while the site is not under attack"
            ),
            "{page}"
        );
        assert!(!page.contains("challenges everyone"), "{page}");
        assert!(text.contains("verdict: block: 403 (rule)"), "{text}");
        let denied = run("203.0.113.5", "http://blog.example/", &[]).unwrap();
        assert!(
            denied.contains("site deny list (203.0.113.0/24)"),
            "{denied}"
        );
        let fine = run("10.0.0.1", "http://blog.example/", &[]).unwrap();
        assert!(fine.contains("verdict: pass"), "{fine}");
    }

    fn run_with_state(state: &str, method: &str, url: &str, headers: &[String]) -> String {
        let text = format!(
            "[[site]]\nname = \"blog\"\nhosts = [\"blog.example\"]\n\
             origins = [\"http://127.0.0.1:1\"]\nstate = \"{state}\"\n"
        );
        let config = Config::from_toml_str("t.toml", &text).unwrap();
        explain(
            &config,
            &ExplainRequest {
                ip: "10.0.0.1".parse().unwrap(),
                method,
                url,
                headers,
                mitigations: None,
                ja4: None,
                http2_fingerprint: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_gate_says_what_happens_to_this_request_then_why() {
        let page = run_with_state("under_attack", "GET", "https://blog.example/post", &[]);
        assert!(
            page.contains(
                "state: under_attack: without a clearance cookie it gets the challenge page (503)"
            ),
            "{page}"
        );
        let post = run_with_state("under_attack", "POST", "https://blog.example/post", &[]);
        assert!(
            post.contains("without a clearance cookie it gets 403 (a browser is needed)"),
            "{post}"
        );
        let feed = run_with_state("under_attack", "GET", "https://blog.example/feed", &[]);
        assert!(
            feed.contains("state: under_attack: not challenged, it goes on to the cache and the origin, because the site's `exempt`"),
            "{feed}"
        );
        let paused = run_with_state("paused", "GET", "https://blog.example/post", &[]);
        assert!(
            paused.contains("state: paused: the request goes straight to the origin"),
            "{paused}"
        );
        let active = run_with_state("active", "GET", "https://blog.example/post", &[]);
        assert!(
            active.contains(
                "at run time also: if attack detection trips, this request is challenged (or \
                 blocked) only if it matches the attack's signature"
            ),
            "{active}"
        );
    }

    #[test]
    fn the_miss_limit_says_when_it_applies_and_what_this_request_would_get() {
        let page = run("10.0.0.1", "https://blog.example/post", &[]).unwrap();
        assert!(
            page.contains(
                "miss limit: 600 cache misses per address per 60s, only while the origin is \
                 under pressure; past it, this request gets the challenge"
            ),
            "{page}"
        );
        let feed = run("10.0.0.1", "https://blog.example/feed", &[]).unwrap();
        assert!(feed.contains("this request gets 429"), "{feed}");
        let api = run(
            "10.0.0.1",
            "https://blog.example/api",
            &["Accept: application/json".into()],
        )
        .unwrap();
        assert!(api.contains("this request gets 429"), "{api}");
    }

    #[test]
    fn the_running_edges_mitigations_judge_the_request_when_asked() {
        let live = |mitigations: &[LiveMitigation], agent: &str| {
            explain(
                &config(),
                &ExplainRequest {
                    ip: "10.0.0.1".parse().unwrap(),
                    method: "GET",
                    url: "https://blog.example/search?q=x",
                    headers: &[format!("User-Agent: {agent}")],
                    mitigations: Some(mitigations),
                    ja4: None,
                    http2_fingerprint: None,
                },
            )
            .unwrap()
        };
        let tool = LiveMitigation {
            id: "sig-1".into(),
            rule: r#"http.user_agent eq "python-requests/2.31.0""#.into(),
            action: "challenge".into(),
        };
        let text = live(std::slice::from_ref(&tool), "python-requests/2.31.0");
        assert!(
            text.contains("mitigations: sig-1 (`http.user_agent eq \"python-requests/2.31.0\"`) matches: this request is challenged"),
            "{text}"
        );
        let text = live(std::slice::from_ref(&tool), "Mozilla/5.0");
        assert!(
            text.contains("mitigations: 1 in force, none matches this request"),
            "{text}"
        );
        assert!(live(&[], "x").contains("mitigations: none in force on the running edge"));
        let offline = run("10.0.0.1", "https://blog.example/", &[]).unwrap();
        assert!(offline.contains("--live asks it"), "{offline}");
        assert_eq!(
            site_of(&config(), "https://blog.example/x").as_deref(),
            Some("blog")
        );
        assert_eq!(site_of(&config(), "https://nobody.example/"), None);
    }

    #[test]
    fn unknown_hosts_and_bad_input_are_said_plainly() {
        let text = run("10.0.0.1", "http://other.example/", &[]).unwrap();
        assert!(text.contains("421"), "{text}");
        assert!(run("10.0.0.1", "ftp://blog.example/", &[]).is_err());
        assert!(run("10.0.0.1", "not a url", &[]).is_err());
        assert!(run("10.0.0.1", "http://blog.example/", &["NoColon".into()]).is_err());
    }

    #[test]
    fn a_malformed_request_is_told_apart_from_a_list_file_that_cannot_be_read() {
        let bad_header = run("10.0.0.1", "http://blog.example/", &["NoColon".into()]);
        assert!(matches!(bad_header, Err(ExplainError::Request(_))));
        let config = Config::from_toml_str(
            "t.toml",
            r#"
[shield]
deny_files = ["/nonexistent/palisade-deny.txt"]
[[site]]
name = "blog"
hosts = ["blog.example"]
origins = ["http://127.0.0.1:1"]
"#,
        )
        .unwrap();
        let request = ExplainRequest {
            ip: "10.0.0.1".parse().unwrap(),
            method: "GET",
            url: "http://blog.example/",
            headers: &[],
            mitigations: None,
            ja4: None,
            http2_fingerprint: None,
        };
        let err = explain(&config, &request).unwrap_err();
        assert!(
            matches!(&err, ExplainError::Lists(ListsError::Read { .. })),
            "{err}"
        );
    }

    #[test]
    fn rules_on_the_clients_fingerprints_read_what_the_command_line_gives() {
        let config = Config::from_toml_str(
            "t.toml",
            r#"
[[site]]
name = "blog"
hosts = ["blog.example"]
origins = ["http://127.0.0.1:1"]

[[site.rule]]
id = "curl-tls"
expr = 'tls.ja4 eq "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"'
action = "block"

[[site.rule]]
id = "hyper-h2"
expr = 'http2.fingerprint eq "2:0;4:2097152;5:16384;6:16384|5177345" and http.request.version eq "HTTP/2"'
action = "block"
"#,
        )
        .unwrap();
        let run = |url, ja4, h2| {
            explain(
                &config,
                &ExplainRequest {
                    ip: "10.0.0.1".parse().unwrap(),
                    method: "GET",
                    url,
                    headers: &[],
                    ja4,
                    http2_fingerprint: h2,
                    mitigations: None,
                },
            )
        };
        let curl = run(
            "https://blog.example/",
            Some("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"),
            None,
        )
        .unwrap();
        assert!(curl.contains("rule curl-tls (block): matches"), "{curl}");
        let hyper = run(
            "https://blog.example/",
            None,
            Some("2:0;4:2097152;5:16384;6:16384|5177345"),
        )
        .unwrap();
        assert!(hyper.contains("rule hyper-h2 (block): matches"), "{hyper}");
        let neither = run("https://blog.example/", None, None).unwrap();
        assert!(neither.contains("verdict: pass"), "{neither}");
        let err = run("http://blog.example/", Some("t13d"), None).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }
}

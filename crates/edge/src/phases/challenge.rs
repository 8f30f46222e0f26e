//! The challenge gate's HTTP side: who is cleared, what a visitor without clearance gets, and
//! the endpoint that takes answers (`POST /.well-known/palisade/challenge`).
//!
//! The cryptography (tokens, proof of work, cookies, replay filter, keys) is
//! `shield::challenge`; this module reads requests and writes responses around it.

use crate::body::{ClientBody, EdgeBody};
use crate::http::fields::prefers_json;
use crate::own_responses::{edge_page, not_stored};
use crate::snapshot::SiteRuntime;
use crate::state::ChallengeState;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use shield::challenge::page::{self, PageParams};
use shield::challenge::{
    Binding, ChallengeKeys, RESERVED_PREFIX, Rejection, SiteChallenge, VERIFY_PATH, clearance,
    token,
};
use shield::events::{EventAction, EventReason, NewEvent};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// Largest answer body accepted: a token, sixteen numbers and a return path fit in far less.
const MAX_ANSWER_BYTES: usize = 4096;

/// Longest return path carried through a challenge (longer ones return to `/`).
const MAX_RETURN_LEN: usize = 2048;

/// The CSP of the challenge page: its own inline script and style, a worker from a Blob, and
/// requests to this origin only.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline' blob:; \
     worker-src blob:; connect-src 'self'; style-src 'unsafe-inline'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn binding<'a>(site: &'a SiteRuntime, ip: IpAddr, headers: &'a HeaderMap) -> Binding<'a> {
    Binding {
        site: &site.name,
        ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .map_or(&b""[..], HeaderValue::as_bytes),
    }
}

/// True when the request carries a live clearance cookie for this site, address prefix and
/// browser, not revoked as a solver's (`shield::challenge::solvers`).
pub fn cleared(keys: &ChallengeKeys, site: &SiteRuntime, ip: IpAddr, headers: &HeaderMap) -> bool {
    let Some(value) = shield::ratelimit::cookie_value(headers, clearance::COOKIE) else {
        return false;
    };
    clearance::verify(
        keys,
        &binding(site, ip, headers),
        value,
        site.challenge.settings.clearance_ttl,
        SystemTime::now(),
    ) && !site
        .protection
        .solvers
        .is_revoked(headers, std::time::Instant::now())
}

/// What a visitor without clearance gets: the challenge page for a browser's GET or HEAD, a
/// 403 saying a browser is needed otherwise (a form post or an API call cannot be carried
/// through a page and back).
pub fn challenge(
    state: &ChallengeState,
    keys: &ChallengeKeys,
    site: &SiteRuntime,
    ip: IpAddr,
    request: &Request<ClientBody>,
    host: &str,
) -> Response<EdgeBody> {
    let method = request.method();
    let headers = request.headers();
    if !(method == Method::GET || method == Method::HEAD) || prefers_json(headers) {
        return browser_required(prefers_json(headers));
    }
    let puzzle = site.challenge.puzzle(site.protection.solvers.extra_bits());
    let token = token::issue(
        keys,
        &state.nonces,
        &binding(site, ip, headers),
        puzzle,
        SystemTime::now(),
    );
    let return_to = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let html = page::render(&PageParams {
        host,
        token: &token,
        bits: puzzle.bits,
        parts: puzzle.parts,
        verify_path: VERIFY_PATH,
        return_to: safe_return(return_to),
    });
    site.metrics.challenge_issued();
    let mut response = not_stored(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html; charset=utf-8",
        html,
    );
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    // For crawlers and scripts that read a 503 as "come back later" rather than "gone".
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// True when the challenge page is an answer this request can use: a browser's GET or HEAD
/// (not a call that prefers JSON, which [`challenge`] answers with a 403) for a path the site
/// does not exempt (feeds and `robots.txt` by default: their readers run no JavaScript).
pub fn can_take(challenge: &SiteChallenge, facts: &shield::RequestFacts<'_>) -> bool {
    matches!(facts.method, "GET" | "HEAD")
        && !prefers_json(facts.headers)
        && !challenge.exempt(facts)
}

/// 403: this request needs a browser's clearance first.
fn browser_required(json: bool) -> Response<EdgeBody> {
    let (body, content_type) = if json {
        (
            "{\"error\":\"browser_challenge_required\",\"message\":\"This site is checking its \
             visitors. Open it in a web browser to pass the check, then retry.\"}\n",
            "application/json",
        )
    } else {
        (
            "A browser challenge is required: this site is checking its visitors. Open it in a \
             web browser to pass the check, then retry.\n",
            "text/plain; charset=utf-8",
        )
    };
    not_stored(StatusCode::FORBIDDEN, content_type, body)
}

/// The path a solved challenge returns to: the request's own path and query when it is a
/// plain local path, else `/` (never another host: `//evil.example` stays here).
pub fn safe_return(path: &str) -> &str {
    let local = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= MAX_RETURN_LEN
        && !path.bytes().any(|b| b.is_ascii_control() || b == b'\\');
    if local { path } else { "/" }
}

/// True for paths under Palisade's reserved prefix, which are never forwarded.
pub fn is_reserved(path: &str) -> bool {
    path.starts_with(RESERVED_PREFIX)
}

#[derive(Deserialize)]
struct Answer {
    c: String,
    n: Vec<u64>,
    #[serde(default, rename = "return")]
    return_to: Option<String>,
}

/// Serves a request under the reserved prefix: answers to challenges; 404 for the rest.
/// Also says how many body bytes it read (for the access log).
pub async fn reserved(
    state: &ChallengeState,
    keys: &ChallengeKeys,
    site: &SiteRuntime,
    (ip, tls): (IpAddr, bool),
    body_timeout: Duration,
    request: Request<ClientBody>,
    record: &(dyn Fn(NewEvent) + Sync),
) -> (Response<EdgeBody>, u64) {
    if request.uri().path() != VERIFY_PATH {
        return (edge_page(StatusCode::NOT_FOUND, false), 0);
    }
    if request.method() != Method::POST {
        let mut response = edge_page(StatusCode::METHOD_NOT_ALLOWED, false);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return (response, 0);
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_ANSWER_BYTES);
    // A body too big or too slow is left unread: the connection cannot be reused.
    let unread = |status, error: &str| {
        let mut response = answer_json(status, format!("{{\"ok\":false,\"error\":\"{error}\"}}"));
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        (response, 0)
    };
    let bytes: Bytes = match tokio::time::timeout(body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => return unread(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        Err(_) => return unread(StatusCode::REQUEST_TIMEOUT, "timeout"),
    };
    let response = verify_answer(state, keys, site, (ip, tls), &parts.headers, &bytes, record);
    (response, bytes.len() as u64)
}

/// Checks a posted answer; clearance on success.
fn verify_answer(
    state: &ChallengeState,
    keys: &ChallengeKeys,
    site: &SiteRuntime,
    (ip, tls): (IpAddr, bool),
    headers: &HeaderMap,
    bytes: &[u8],
    record: &(dyn Fn(NewEvent) + Sync),
) -> Response<EdgeBody> {
    let Ok(answer) = serde_json::from_slice::<Answer>(bytes) else {
        return refuse(site, ip, Rejection::Invalid, record);
    };
    let binding = binding(site, ip, headers);
    let settings = &site.challenge.settings;
    let now = SystemTime::now();
    let solved = match token::verify(
        keys,
        &binding,
        &answer.c,
        &answer.n,
        settings.challenge_ttl,
        &state.replay,
        now,
    ) {
        Ok(solved) => solved,
        Err(why) => return refuse(site, ip, why, record),
    };
    site.metrics.challenge_solved(solved.solve_time);
    record(NewEvent {
        value: Some(solved.solve_time.as_secs_f64()),
        ..NewEvent::for_client(
            &site.name,
            ip,
            EventAction::ChallengeSolved,
            EventReason::ProofOfWork,
        )
    });
    let cookie = clearance::mint(keys, &binding, settings.clearance_ttl, now);
    let return_to = safe_return(answer.return_to.as_deref().unwrap_or("/"));
    let body = serde_json::json!({ "ok": true, "return": return_to }).to_string();
    let mut response = answer_json(StatusCode::OK, body);
    if let Ok(value) =
        HeaderValue::from_str(&clearance::set_cookie(&cookie, settings.clearance_ttl, tls))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn refuse(
    site: &SiteRuntime,
    ip: IpAddr,
    why: Rejection,
    record: &dyn Fn(NewEvent),
) -> Response<EdgeBody> {
    site.metrics.challenge_failed(why);
    let reason = match why {
        Rejection::Invalid => EventReason::InvalidAnswer,
        Rejection::Expired => EventReason::ExpiredAnswer,
        Rejection::WrongAnswer => EventReason::WrongAnswer,
        Rejection::Replayed => EventReason::ReplayedAnswer,
    };
    record(NewEvent::for_client(
        &site.name,
        ip,
        EventAction::ChallengeFailed,
        reason,
    ));
    answer_json(
        StatusCode::FORBIDDEN,
        format!("{{\"ok\":false,\"error\":\"{}\"}}", why.as_str()),
    )
}

fn answer_json(status: StatusCode, body: impl Into<Bytes>) -> Response<EdgeBody> {
    not_stored(status, "application/json", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn json_is_preferred_only_when_ranked_above_html() {
        assert!(prefers_json(&accept(&["application/json"])));
        assert!(prefers_json(&accept(&[
            "application/vnd.api+json, */*;q=0.1"
        ])));
        assert!(prefers_json(&accept(&[
            "text/html;q=0.5",
            "application/json"
        ])));
        assert!(!prefers_json(&accept(&[])));
        assert!(!prefers_json(&accept(&["*/*"])));
        assert!(!prefers_json(&accept(&[
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ])));
        assert!(!prefers_json(&accept(&[
            "application/json;q=0.5, text/html"
        ])));
        assert!(!prefers_json(&accept(&[
            "application/json;q=nonsense, text/html"
        ])));
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        for ok in ["/", "/a/b?x=1&y=%2F", "/.well-known/x"] {
            assert_eq!(safe_return(ok), ok);
        }
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=1",
            "/a\\b",
        ] {
            assert_eq!(safe_return(bad), "/", "{bad:?}");
        }
        assert_eq!(
            safe_return(&format!("/{}", "a".repeat(MAX_RETURN_LEN))),
            "/"
        );
    }

    #[test]
    fn the_403_says_a_browser_is_needed() {
        let r = browser_required(true);
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "application/json");
        let r = browser_required(false);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }
}

//! The `route` phase: which site does this request belong to?
//!
//! The host comes from the request target's authority when there is one (HTTP/2 `:authority`,
//! or an HTTP/1.1 absolute-form target, which RFC 9112 §3.2.2 says overrides Host), else from
//! the single Host header. A host no site claims gets 421 and goes nowhere: the edge is never an
//! open proxy (the operator's hostname, when no site claims it, reaches only the abuse intake:
//! `phases::abuse`). On TLS the host must belong to the same site as the SNI name, so a connection
//! opened for one site cannot be used to reach another (RFC 9110 §15.5.20: 421 tells the client
//! to retry on a new connection).

use crate::body::{ClientBody, EdgeBody};
use crate::http::client::real_client_ip;
use crate::own_responses::{edge_page, suspension_notice};
use crate::phases::abuse;
use crate::phases::request::{Arrival, ClientFraming, SiteRequest};
use crate::router::SiteIndex;
use crate::snapshot::Snapshot;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use model::SiteState;
use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::Arc;

/// The methods a 405 to CONNECT names: the standard ones the edge forwards (RFC 9110 §9).
const ALLOWED_BUT_CONNECT: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";

/// Why a request was not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRefusal {
    /// CONNECT: the edge does not tunnel (405).
    Connect,
    /// No host, several hosts, or a malformed one (400).
    BadHost,
    /// No site claims the host (421).
    UnknownHost,
    /// TLS: the host belongs to another site than the SNI name (421).
    SniMismatch,
    /// No site claims the host, but it is the operator's hostname (`[server] operator_host`):
    /// Palisade's own abuse intake answers there, and nothing is forwarded.
    OperatorHost,
    /// The asterisk-form target `*` with another method than OPTIONS (400): RFC 9112 §3.2.4
    /// allows it only for a server-wide OPTIONS, and an origin may read it as anything.
    BadTarget,
}

/// The request target in origin form when the client's differs only by an empty path:
/// `GET http://host?x=1` names the path `/` (RFC 9112 §3.2.1, "if the target URI's path
/// component is empty, the client MUST send "/" as the path"), and forwarding `?x=1` as a
/// request line would hand the origin a target it cannot parse. `None`: the target is fine.
pub fn with_rooted_path(uri: &Uri) -> Option<Uri> {
    let query_only = uri.path_and_query()?.as_str().starts_with('?');
    if !query_only {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    let rooted = format!("/{}", uri.path_and_query()?.as_str());
    parts.path_and_query = Some(rooted.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// A routed request: its site and the host it named (normalised).
pub struct Routed<'a> {
    pub site: SiteIndex,
    pub host: Cow<'a, str>,
    /// The host as the client wrote it (with port), for Host and X-Forwarded-Host.
    pub authority: &'a str,
}

/// Runs after the framing check, on every request. Reads the request's target, Host and
/// method, and on TLS the site the SNI name chose. Continues with the request routed to its
/// site: the host, the authority as written, the client's address (behind trusted proxies,
/// the one they name) and the request's declared body length, all also into the log.
///
/// Answers early: CONNECT → 405; no, several or a malformed host, or `*` with another method
/// than OPTIONS → 400; a host no site claims → 421 (the operator's hostname: its abuse intake
/// and nothing else); on TLS a host of another site than SNI's → 421. Nothing is forwarded.
pub async fn route(arrival: Arrival<'_>) -> ControlFlow<Response<EdgeBody>, SiteRequest<'_>> {
    let Arrival {
        state,
        conn,
        snapshot,
        request,
        h2_stream,
        log,
        framing_on_wire: _,
    } = arrival;
    let routed = find_site(
        snapshot,
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
        conn.sni_site.as_deref(),
    );
    let trusted = |ip| snapshot.is_trusted_proxy(ip);
    let routed = match routed {
        Ok(routed) => routed,
        Err(RouteRefusal::OperatorHost) => {
            // The operator's hostname: the abuse intake and nothing else, never forwarded.
            log.client_ip = real_client_ip(request.headers(), &conn.client, trusted);
            if log.access_log_on() {
                log.host = snapshot.operator_host.as_deref().map(Arc::from);
            }
            // Boxed: the intake's future is large and this path is rare; inline, every
            // request's routing would carry (and copy) its size.
            let (response, bytes_in) = Box::pin(abuse::operator_host(
                &state.abuse,
                &state.metrics,
                snapshot,
                log.client_ip,
                std::mem::replace(request, Request::new(ClientBody::Taken)),
            ))
            .await;
            log.read(bytes_in);
            return ControlFlow::Break(response);
        }
        Err(refusal) => {
            let status = match refusal {
                RouteRefusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
                RouteRefusal::BadHost | RouteRefusal::BadTarget => StatusCode::BAD_REQUEST,
                RouteRefusal::UnknownHost
                | RouteRefusal::SniMismatch
                | RouteRefusal::OperatorHost => StatusCode::MISDIRECTED_REQUEST,
            };
            let close = refusal != RouteRefusal::UnknownHost;
            let mut response = edge_page(status, close);
            if refusal == RouteRefusal::Connect {
                // RFC 9110 §15.5.6: a 405 lists what the target does allow; the edge passes
                // every other method on to the site.
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_BUT_CONNECT));
            }
            return ControlFlow::Break(response);
        }
    };
    let site = &snapshot.sites[routed.site];
    let host: Arc<str> = Arc::from(&*routed.host);
    // The Host field already names the authority for an origin-form HTTP/1.1 request; its
    // value is shared rather than the text copied.
    let host_field = request
        .headers()
        .get(header::HOST)
        .filter(|_| request.uri().authority().is_none());
    let authority = match host_field {
        Some(field) => field.clone(),
        None => {
            HeaderValue::from_str(routed.authority).unwrap_or_else(|_| HeaderValue::from_static(""))
        }
    };
    let client_ip = real_client_ip(request.headers(), &conn.client, trusted);
    log.site = Some((Arc::clone(&site.name), Arc::clone(&site.metrics)));
    log.analytics = Some(Arc::clone(&site.analytics));
    log.client_ip = client_ip;
    if log.access_log_on() {
        log.host = Some(Arc::clone(&host));
    }
    let declared_length = declared_length(request.headers());
    ControlFlow::Continue(SiteRequest {
        state,
        conn,
        snapshot,
        site,
        framing: ClientFraming::of(request),
        request,
        h2_stream,
        log,
        host,
        authority,
        client_ip,
        allowed: false,
        suspect: false,
        paused: false,
        declared_length,
        fill: None,
        pass: None,
    })
}

/// Runs after the edge's own endpoints (a suspended site's visitors can still report it).
/// Reads the site's state. Answers a suspended site's request with its notice (451 or 403),
/// and nothing else: no cache, no origin. Marks a paused site's request to pass the shield
/// and the cache by.
pub fn apply_site_state(request: &mut SiteRequest<'_>) -> ControlFlow<Response<EdgeBody>> {
    match request.site.config.state {
        SiteState::Suspended => {
            let legal = request.site.config.suspension.is_some_and(|s| s.legal);
            ControlFlow::Break(suspension_notice(legal, request.request.headers()))
        }
        SiteState::Paused => {
            request.paused = true;
            ControlFlow::Continue(())
        }
        SiteState::Active | SiteState::UnderAttack => ControlFlow::Continue(()),
    }
}

/// The body length a request declares (a Content-Length hyper has already validated).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Which site claims the request's host, and the host as routing read it.
pub fn find_site<'a>(
    snapshot: &Snapshot,
    method: &Method,
    uri: &'a Uri,
    version: Version,
    headers: &'a HeaderMap,
    sni_site: Option<&str>,
) -> Result<Routed<'a>, RouteRefusal> {
    if method == Method::CONNECT {
        return Err(RouteRefusal::Connect);
    }
    if uri.path_and_query().is_some_and(|t| t.as_str() == "*") && method != Method::OPTIONS {
        return Err(RouteRefusal::BadTarget);
    }
    let mut host_headers = headers.get_all(header::HOST).iter();
    let host_header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(RouteRefusal::BadHost);
    }
    let host_header = match host_header {
        Some(v) => Some(v.to_str().map_err(|_| RouteRefusal::BadHost)?),
        None => None,
    };
    let authority = match (uri.authority(), host_header) {
        (Some(authority), Some(host)) if version == Version::HTTP_2 => {
            // RFC 9113 §8.3.1: Host and :authority must agree.
            if !host.eq_ignore_ascii_case(authority.as_str()) {
                return Err(RouteRefusal::BadHost);
            }
            authority.as_str()
        }
        (Some(authority), _) => authority.as_str(),
        (None, Some(host)) => host,
        // RFC 9112 §3.2: HTTP/1.1 requires Host. HTTP/1.0 may omit it; only a catch-all
        // site can take such a request.
        (None, None) if version == Version::HTTP_11 => return Err(RouteRefusal::BadHost),
        (None, None) => "",
    };
    let host = if authority.is_empty() {
        Cow::Borrowed("")
    } else {
        if authority.contains('@') {
            return Err(RouteRefusal::BadHost);
        }
        model::normalize_host(authority).ok_or(RouteRefusal::BadHost)?
    };
    let Some(site) = snapshot.sites.route(&host) else {
        // A connection whose SNI chose a site stays that site's, operator hostname or not.
        let operator = sni_site.is_none() && snapshot.operator_host.as_deref() == Some(&*host);
        return Err(if operator {
            RouteRefusal::OperatorHost
        } else {
            RouteRefusal::UnknownHost
        });
    };
    if let Some(sni_site) = sni_site
        && snapshot.sites[site].name.as_ref() != sni_site
    {
        return Err(RouteRefusal::SniMismatch);
    }
    Ok(Routed {
        site,
        host,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9112_3_2_1_an_empty_path_is_sent_as_slash() {
        let uri: Uri = "http://blog.example?x=1".parse().unwrap();
        let rooted = with_rooted_path(&uri).expect("rooted");
        assert_eq!(rooted.path_and_query().unwrap().as_str(), "/?x=1");
        assert_eq!(rooted.authority().unwrap().as_str(), "blog.example");
        for fine in ["/a?x=1", "http://blog.example/", "*", "http://blog.example"] {
            let uri: Uri = fine.parse().unwrap();
            assert!(with_rooted_path(&uri).is_none(), "{fine}");
        }
    }
}

//! The `route` phase: which site does this request belong to?
//!
//! The host comes from the request target's authority when there is one (HTTP/2 `:authority`,
//! or an HTTP/1.1 absolute-form target, which RFC 9112 §3.2.2 says overrides Host), else from
//! the single Host header. A host no site claims gets 421 and goes nowhere: the edge is never an
//! open proxy (the operator's hostname, when no site claims it, reaches only the abuse intake:
//! `phases::abuse`). On TLS the host must belong to the same site as the SNI name, so a connection
//! opened for one site cannot be used to reach another (RFC 9110 §15.5.20: 421 tells the client
//! to retry on a new connection).

use crate::router::SiteIndex;
use crate::snapshot::Snapshot;
use http::{HeaderMap, Method, Uri, Version, header};
use std::borrow::Cow;

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

pub fn route<'a>(
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
    let Some(site) = snapshot.router.route(&host) else {
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

//! The per-request context the phases share (see `pipeline`): what a request came with, and
//! what the phases have found out about it so far.
//!
//! It comes in two stages, each a type, so that no phase can run before what it needs is
//! known: [`Arrival`], the request as the connection handed it over, before routing; and
//! [`SiteRequest`], routed to a site (its host, the client's address, the cache's decision once
//! the cache phase has run). The request itself stays in `pipeline::handle`'s frame and both
//! contexts borrow it, and after routing the phases take the context by reference: nothing of
//! a request is copied from phase to phase. The `origin` phase takes the request itself away
//! (its body goes to the origin) and hands the `respond` phase an [`OriginAnswer`].
//!
//! Both carry the request's [`RequestLog`], which `pipeline::handle` finishes once, whatever
//! phase answered.

use crate::body::{ClientBody, EdgeBody};
use crate::conn_context::ConnContext;
use crate::metrics::CacheOutcome;
use crate::origin::{InterimSink, OriginResponseBody, OriginState};
use crate::own_responses::client_response_headers;
use crate::phases::cache::fill::Fill;
use crate::phases::log::RequestLog;
use crate::snapshot::{SiteRuntime, Snapshot};
use crate::state::EdgeState;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Version};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A request before routing.
pub struct Arrival<'a> {
    pub state: &'a Arc<EdgeState>,
    pub conn: &'a Arc<ConnContext>,
    /// The configuration the request runs on from start to end (a reload in between does not
    /// change it: invariant 7).
    pub snapshot: &'a Snapshot,
    /// The request itself stays in `pipeline::handle`'s frame: the contexts borrow it, so it
    /// is never copied from one to the next.
    pub request: &'a mut Request<ClientBody>,
    /// On HTTP/2, where the origin's interim responses go (on HTTP/1.1 the connection takes
    /// them).
    pub h2_stream: Option<Arc<dyn InterimSink>>,
    pub log: &'a mut RequestLog,
    /// The framing error the connection's tracker found in this request's head as sent, if
    /// any (hyper normalises some ambiguous shapes away before the fields can show them).
    pub framing_on_wire: Option<crate::http::framing::FramingError>,
}

/// A request routed to a site.
pub struct SiteRequest<'a> {
    pub state: &'a Arc<EdgeState>,
    pub conn: &'a Arc<ConnContext>,
    pub snapshot: &'a Snapshot,
    pub site: &'a SiteRuntime,
    pub request: &'a mut Request<ClientBody>,
    pub h2_stream: Option<Arc<dyn InterimSink>>,
    pub log: &'a mut RequestLog,
    /// The host routing matched (normalised: lowercase, no port), shared with the access log.
    pub host: Arc<str>,
    /// The authority as the client wrote it (with its port), for the origin's Host and
    /// X-Forwarded-Host.
    pub authority: HeaderValue,
    /// The client's address: the peer, or behind a trusted proxy the address it names.
    pub client_ip: IpAddr,
    /// How responses are framed for this client.
    pub framing: ClientFraming,
    /// An allow list or rule let the request skip the rest of the shield (the miss limit too).
    pub allowed: bool,
    /// The request matched a mitigation of an attack's signature and went on (its client
    /// holds clearance): the origin's cap sheds such requests first.
    pub suspect: bool,
    /// The site is paused: a plain proxy, past the shield and the cache.
    pub paused: bool,
    /// The body length the client declared, if any.
    pub declared_length: Option<u64>,
    /// The cache's fill when the response may be stored (the cache phase sets it).
    pub fill: Option<Box<Fill>>,
    /// The `Cache-Status` parameters when the cache passes the request on without storing
    /// (RFC 9211 §2.2).
    pub pass: Option<&'static str>,
}

/// The origin's answer, with what the `respond` phase needs of the request it no longer has.
pub struct OriginAnswer {
    pub response: Response<OriginResponseBody>,
    pub method: Method,
    pub target: PathAndQuery,
    /// For a request that is not safe (RFC 9111 §4.4): its fields, to invalidate what the
    /// origin's answer makes stale.
    pub invalidation: Option<HeaderMap>,
}

impl<'a> SiteRequest<'a> {
    /// Records a shield action: the site's metrics and analytics, and the security events.
    pub fn record(&self, event: shield::events::NewEvent) {
        record(self.state, self.site, event);
    }

    /// What the cache did with this request, into the metrics and the log.
    pub fn cache_outcome(&mut self, outcome: CacheOutcome) {
        self.site.metrics.cache(outcome);
        self.log.cache = Some(outcome);
    }

    /// A response from the cache or an origin, framed for this client.
    pub fn for_client(&self, response: Response<EdgeBody>) -> Response<EdgeBody> {
        self.framing.apply(response)
    }

    /// The request target (`/` for one without a path).
    pub fn target(&self) -> PathAndQuery {
        self.request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    }

    /// `http` or `https`: how the client reached the edge.
    pub fn scheme(&self) -> &'static str {
        if self.conn.client.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The site's cache key for a request to `path_and_query` on `host` with `headers`.
    pub fn cache_key(&self, path_and_query: &str, headers: &HeaderMap) -> cache::CacheKey {
        cache::CacheKey::new(
            &self.site.name,
            &self.site.config.cache,
            self.scheme(),
            &self.host,
            path_and_query,
            headers,
        )
    }
}

impl SiteRequest<'_> {
    /// Takes the request away from the context (an empty one is left): for the phase that
    /// sends it on, or an endpoint of the edge's own that reads its body.
    pub fn take_request(&mut self) -> Request<ClientBody> {
        std::mem::replace(self.request, Request::new(ClientBody::Taken))
    }

    /// The origin that answered, and how long its head took, into the log.
    pub fn answered_by(&mut self, origin: &Arc<OriginState>, upstream_time: Duration) {
        self.log.origin = Some(Arc::clone(origin));
        self.log.upstream_time = Some(upstream_time);
    }
}

/// Records a shield action on `site`: its metrics and analytics, and the security events.
pub fn record(state: &EdgeState, site: &SiteRuntime, event: shield::events::NewEvent) {
    site.metrics.shield(event.action);
    site.analytics.shield(
        analytics::Minute::at(std::time::Instant::now()),
        event.action,
        event.reason,
    );
    state.events.record(event);
}

/// How a response is framed for the client that sent the request: in its HTTP version, with
/// keep-alive for an HTTP/1.0 client that asked for it (see
/// [`crate::own_responses::client_response_headers`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientFraming {
    pub version: Version,
    pub http10_keep_alive: bool,
}

impl ClientFraming {
    pub fn of(request: &Request<ClientBody>) -> ClientFraming {
        let version = request.version();
        ClientFraming {
            version,
            http10_keep_alive: version == Version::HTTP_10
                && crate::http::fields::has_token(
                    request.headers(),
                    &http::header::CONNECTION,
                    "keep-alive",
                ),
        }
    }

    /// `response` (from the cache or an origin) framed for this client.
    pub fn apply(self, mut response: Response<EdgeBody>) -> Response<EdgeBody> {
        client_response_headers(&mut response, self.version, self.http10_keep_alive);
        response
    }
}

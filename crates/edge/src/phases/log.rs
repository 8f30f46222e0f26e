//! The `log` phase, when the response body is done (or abandoned): the site's metrics and
//! analytics, one access-log line, and the connection's idle clock. It runs once per request
//! whatever phase answered: `pipeline::handle` attaches it to the response with
//! [`RequestLog::finish_with`], and the body calls it at its end.

use crate::access_log::AccessRecord;
use crate::body::{BodyMeter, ClientBody, EdgeBody, Finish};
use crate::conn_context::ConnContext;
use crate::metrics::{CacheOutcome, SiteMetrics, UNROUTED};
use crate::origin::OriginState;
use crate::protection::OriginPermit;
use crate::state::EdgeState;
use analytics::{Minute, ServedRequest, SiteAnalytics};
use http::{Method, Request, Response, Uri, Version};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Everything the `log` phase needs, carried to the end of the response body. The phases
/// fill in what they learn as the request goes (the site, the client's address, the origin).
pub struct RequestLog {
    state: Arc<EdgeState>,
    conn: Arc<ConnContext>,
    /// The site's name and metrics (none for a request that matched no site).
    pub site: Option<(Arc<str>, Arc<SiteMetrics>)>,
    pub client_ip: IpAddr,
    method: Method,
    uri: Uri,
    /// The host the request was for, when the access log is on.
    pub host: Option<Arc<str>>,
    version: Version,
    status: u16,
    /// Request body bytes read.
    pub meter: Option<Arc<BodyMeter>>,
    pub origin: Option<Arc<OriginState>>,
    pub upstream_time: Option<Duration>,
    /// The origin request's slot under the site's concurrency cap, held to the response's end.
    pub origin_permit: Option<OriginPermit>,
    /// How long to hold the answer before it goes out: a mitigation's (`mitigation_hold`).
    pub hold: Option<std::time::Duration>,
    /// The site's analytics (none for a request that matched no site).
    pub analytics: Option<Arc<SiteAnalytics>>,
    /// What the cache did, for the site's analytics.
    pub cache: Option<CacheOutcome>,
    started: Instant,
}

impl RequestLog {
    /// The log of `request`, which started at `started`, on `conn`.
    pub fn start(
        state: &Arc<EdgeState>,
        conn: &Arc<ConnContext>,
        request: &Request<ClientBody>,
        started: Instant,
    ) -> RequestLog {
        RequestLog {
            state: Arc::clone(state),
            conn: Arc::clone(conn),
            site: None,
            client_ip: conn.client.peer,
            method: request.method().clone(),
            uri: request.uri().clone(),
            host: None,
            version: request.version(),
            status: 0,
            meter: None,
            origin: None,
            upstream_time: None,
            origin_permit: None,
            hold: None,
            analytics: None,
            cache: None,
            started,
        }
    }

    /// Whether the access log is written (the host is kept for it only then).
    pub fn access_log_on(&self) -> bool {
        self.state.access_log.enabled()
    }

    /// Body bytes read by an endpoint of the edge's own that took the request whole.
    pub fn read(&mut self, bytes_in: u64) {
        self.meter = Some(Arc::new(BodyMeter::read(bytes_in)));
    }

    /// Attaches this log to the response the client gets: it runs when the body is done.
    pub fn finish_with(mut self, mut response: Response<EdgeBody>) -> Response<EdgeBody> {
        self.conn.interim.discard_unsent();
        self.status = response.status().as_u16();
        response.body_mut().watch_sends(Arc::clone(&self.conn));
        response.body_mut().on_finish(Box::new(self));
        response
    }
}

impl Finish for RequestLog {
    fn finish(mut self: Box<Self>, bytes_out: u64, _complete: bool) {
        // The response is done with the origin: its slot under the site's cap is free.
        drop(self.origin_permit.take());
        // One clock read for the duration and the connection's idle clock.
        let now = Instant::now();
        let duration = now.saturating_duration_since(self.started);
        let bytes_in = self.meter.as_ref().map_or(0, |m| m.bytes());
        let (site_name, metrics) = match &self.site {
            Some((name, metrics)) => (&**name, metrics),
            None => (UNROUTED, &self.state.unrouted),
        };
        metrics.record(self.status, duration, bytes_in, bytes_out);
        if let Some(analytics) = &self.analytics {
            let request = ServedRequest {
                status: self.status,
                bytes_in,
                bytes_out,
                path: self.uri.path(),
                client: self.client_ip,
                cache: self.cache,
            };
            analytics.record(Minute::at(now), &request);
        }
        if self.state.access_log.enabled() {
            self.state.access_log.write(&AccessRecord {
                time: SystemTime::now()
                    .checked_sub(duration)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                site: site_name,
                client_ip: self.client_ip,
                method: self.method.as_str(),
                host: self.host.as_deref().unwrap_or(""),
                path: self.uri.path(),
                protocol: protocol(self.version),
                status: self.status,
                bytes_in,
                bytes_out,
                duration_ms: duration.as_secs_f64() * 1000.0,
                origin: self.origin.as_ref().map(|o| o.label.as_str()),
                upstream_ms: self.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
            });
        }
        self.conn
            .activity
            .request_finished(crate::clock::ms_at(now));
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

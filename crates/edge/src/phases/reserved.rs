//! The edge's own endpoints under `/.well-known/palisade/` on every site: the challenge's
//! answers (`phases::challenge`) and the abuse intake (`phases::abuse`).

use crate::body::EdgeBody;
use crate::phases::{abuse, challenge, shield};
use crate::request::SiteRequest;
use http::Response;
use std::net::IpAddr;
use std::ops::ControlFlow;

/// Runs right after routing, before the site's state and the shield. Reads the path. A
/// request for one of the edge's own endpoints is answered here and never forwarded, never
/// challenged (a challenge rule must not stand between a browser and its answer), and
/// answered whatever the site's state (a suspended site's visitors can still report it); only
/// the deny lists hold. Everything else goes on untouched.
pub async fn answer_own_endpoints(
    request: &mut SiteRequest<'_>,
) -> ControlFlow<Response<EdgeBody>> {
    if !challenge::is_reserved(request.request.uri().path()) {
        return ControlFlow::Continue(());
    }
    let site = request.site;
    let client = (request.client_ip, request.conn.client.tls);
    let record = |event| request.record(event);
    if let Some(refusal) = shield::answer(&site.guard.check_lists(client.0, &record)) {
        return ControlFlow::Break(refusal);
    }
    // Boxed: these endpoints' futures are large and rare; inline, every request would carry
    // (and copy) their size through this phase.
    ControlFlow::Break(Box::pin(answer(request, client)).await)
}

/// Answers a request for one of the edge's own endpoints.
async fn answer(request: &mut SiteRequest<'_>, client: (IpAddr, bool)) -> Response<EdgeBody> {
    let (state, site, snapshot) = (request.state, request.site, request.snapshot);
    let http_request = request.take_request();
    let timeout = snapshot.limits.request_body_timeout;
    let record = |event| crate::request::record(state, site, event);
    let (response, bytes_in) = if http_request.uri().path() == abuse::ABUSE_PATH {
        let place = abuse::Place {
            site: Some(&site.name),
            host: &request.host,
        };
        abuse::serve(
            &state.abuse,
            &state.metrics,
            place,
            client.0,
            timeout,
            http_request,
        )
        .await
    } else {
        challenge::reserved(
            &state.challenges,
            &snapshot.challenge_keys,
            site,
            client,
            timeout,
            http_request,
            &record,
        )
        .await
    };
    request.log.read(bytes_in);
    response
}

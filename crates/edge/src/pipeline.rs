//! A request's path through the edge: [`handle`] lists the phases in order. Each phase is a
//! function in `phases/` with a doc comment saying when it runs, what it reads and writes, and
//! what its early answers mean; it either passes the request on (`ControlFlow::Continue`) or
//! answers it (`ControlFlow::Break`).
//!
//! ```text
//! http      framing two parsers could read two ways → 400, close   phases::framing
//! route     Host/:authority → site; unknown → 421, CONNECT → 405    phases::route
//! reserved  /.well-known/palisade/: challenge answers, abuse        phases::reserved
//!           reports (any site state; deny lists hold)
//! state     suspended → its notice; paused → past shield and cache  phases::route
//! turn      edge short of CPU: a site under attack or above its      phases::turn
//!           share waits its turn (at most overload_wait)
//! shield    lists, rules, rate limits → 403/429; challenge gate     phases::shield
//! limits    declared body over max_body_bytes → 413                  phases::limits
//! cache     fresh (or stale-while-revalidate) → answer; else a fill  phases::cache
//!           (a miss past its limit under origin pressure → challenge
//!           or 429)
//! origin    small body read whole; concurrency cap (a short fair     phases::forward
//!           queue, then stale or 503), rewrite, forward, failover;
//!           failures → stale or 502/504
//! respond   store, revalidate, invalidate; clean for the client      phases::respond
//! log       when the body is done: metrics, analytics, access line   phases::log
//! ```
//! (`accept`, `tls` and the `http` timeouts run before this, per connection: see `conn`.)

use crate::body::{ClientBody, EdgeBody};
use crate::conn_context::ConnContext;
use crate::http::interim::InterimSink;
use crate::phases::log::RequestLog;
use crate::phases::request::Arrival;
use crate::phases::{cache, forward, framing, limits, reserved, respond, route, shield, turn};
use crate::state::EdgeState;
use http::{Request, Response};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

/// Runs one request through the phases, in order, and returns what the client gets. Each
/// phase passes the request on or answers it; whichever answers, the log is finished once.
/// `h2_stream`: on HTTP/2, where the origin's interim responses go (on HTTP/1.1 the connection
/// takes them).
pub async fn handle(
    state: &Arc<EdgeState>,
    conn: &Arc<ConnContext>,
    mut request: Request<ClientBody>,
    h2_stream: Option<Arc<dyn InterimSink>>,
) -> Response<EdgeBody> {
    let started = Instant::now();
    let framing_on_wire = conn.activity.request_started();
    if let Some(rooted) = route::with_rooted_path(request.uri()) {
        *request.uri_mut() = rooted;
    }
    let snapshot = state.snapshot.load_full();
    let mut log = RequestLog::start(state, conn, &request, started);
    // The phases run in this function's own body rather than in one they await: a request's
    // futures are moved whole each time one is awaited, and one more level of them cost 4 KiB
    // of copying per request (callgrind).
    let response = 'answered: {
        /// A phase's outcome: what it passes on, or its answer, which ends the request.
        macro_rules! phase {
            ($outcome:expr) => {
                match $outcome {
                    ControlFlow::Continue(next) => next,
                    ControlFlow::Break(answer) => break 'answered answer,
                }
            };
        }
        let arrival = Arrival {
            state,
            conn,
            snapshot: &snapshot,
            request: &mut request,
            h2_stream,
            log: &mut log,
            framing_on_wire,
        };
        phase!(framing::refuse_ambiguous(&arrival));
        let mut request = phase!(route::route(arrival).await);
        phase!(reserved::answer_own_endpoints(&mut request).await);
        phase!(route::apply_site_state(&mut request));
        if let Some(wait) = turn::wait_if_short(&request) {
            // Boxed: the wait lives only in deprioritised requests, not in every request's
            // future.
            Box::pin(wait).await;
        }
        phase!(shield::gate(&mut request));
        phase!(limits::refuse_oversized_body(&request));
        phase!(cache::look_up(&mut request).await);
        let answer = phase!(forward::to_origin(&mut request).await);
        respond::deliver(&mut request, answer).await
    };
    if let Some(hold) = log.hold.take() {
        // Boxed: the timer lives only in held requests, not in every request's future.
        Box::pin(tokio::time::sleep(hold)).await;
    }
    log.finish_with(response)
}

//! The `http` phase's refusal, the first thing a request meets: framing that two HTTP parsers
//! could read two ways (request smuggling; the rules are in `http::framing`).

use crate::body::EdgeBody;
use crate::own_responses::edge_page;
use crate::phases::request::Arrival;
use http::{Response, StatusCode};
use std::ops::ControlFlow;

/// Runs before routing, on every request. Reads the head as the connection's tracker saw it
/// on the wire (`Arrival::framing_on_wire`) and the parsed fields. Answers 400 and closes the
/// connection when the framing is ambiguous: nothing after it on the connection can be
/// trusted, and nothing of it reaches routing, the shield or an origin.
pub fn refuse_ambiguous(arrival: &Arrival<'_>) -> ControlFlow<Response<EdgeBody>> {
    let checked = match arrival.framing_on_wire {
        Some(e) => Err(e),
        None => crate::http::framing::check(arrival.request.version(), arrival.request.headers()),
    };
    match checked {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            tracing::debug!(peer = %arrival.conn.client.peer, reason = e.reason(), "refused request framing");
            ControlFlow::Break(edge_page(StatusCode::BAD_REQUEST, true))
        }
    }
}

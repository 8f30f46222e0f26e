//! The site's request limits that are known before any byte of the body is read.

use crate::body::EdgeBody;
use crate::own_responses::edge_page;
use crate::phases::request::SiteRequest;
use http::{Response, StatusCode};
use std::ops::ControlFlow;

/// Runs after the shield, before the cache. Reads the declared Content-Length. Answers 413
/// and closes the connection when it is over the site's `max_body_bytes`: refused before a
/// byte of the body is read or anything reaches the origin. (A chunked body that grows past
/// the limit is cut off as it streams: `body::OriginBody`.)
pub fn refuse_oversized_body(request: &SiteRequest<'_>) -> ControlFlow<Response<EdgeBody>> {
    match request.declared_length {
        Some(n) if n > request.site.config.max_body_bytes => {
            ControlFlow::Break(edge_page(StatusCode::PAYLOAD_TOO_LARGE, true))
        }
        _ => ControlFlow::Continue(()),
    }
}

//! RFC 9111's decisions, one module per part of the RFC, as pure functions over messages and
//! times. Nothing here does I/O or keeps state: the cache asks, these answer.
//!
//! | module | RFC 9111 | question |
//! |---|---|---|
//! | `directives` | §5.2 | what does `Cache-Control` say? |
//! | `date` | RFC 9110 §5.6.7 | which time does an HTTP date name, in any of its three formats? |
//! | `freshness` | §4.2 | how long is a response fresh, how old is it now? |
//! | `storable` | §3, §3.5 | may this response be stored? |
//! | `deception` | §4.2.2, web cache deception | may the cache store on its own judgement here? |
//! | `reuse` | §4, §4.2.4, RFC 5861 | may a stored response answer this request, and how? |
//! | `validation` | §4.3, §3.2 | conditional requests, 304 handling, updating stored headers |
//! | `invalidation` | §4.4 | what does an unsafe request invalidate? |
//! | `targeted` | RFC 9213 | does `CDN-Cache-Control` (or the site's own field) say otherwise? |

pub mod date;
pub mod deception;
pub mod directives;
pub mod freshness;
pub mod invalidation;
pub mod reuse;
pub mod storable;
pub mod targeted;
pub mod validation;

pub use directives::{Delta, Qualified, RequestDirectives, ResponseDirectives};
pub use freshness::Timing;

use http::StatusCode;

/// Status codes a cache may store with a heuristic lifetime: RFC 9110 §15.1 (200, 203, 204,
/// 206, 300, 301, 308, 404, 405, 410, 414, 501).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose caching requirements this cache implements (what `must-understand`,
/// §5.2.2.3, asks about): every final status RFC 9110 defines, except 206 (this cache stores
/// only complete responses and answers ranges from them) and 304 (never stored; it refreshes a
/// stored response, §4.3.4).
pub fn understood_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=303 | 305 | 307 | 308 | 400..=418 | 421..=422 | 426 | 500..=505
    )
}

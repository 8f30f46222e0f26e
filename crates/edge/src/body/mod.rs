//! Bodies that cross the edge: streamed both ways frame by frame, never collected in memory,
//! except a small request body read whole before an origin slot is taken (`origin_body_buffer`,
//! bounded together by `body_buffer_memory`: [`BodyBuffers`]).
//!
//! - [`OriginBody`]: what is sent to an origin, the client's body metered against the site's
//!   `max_body_bytes` and paced against `min_request_body_rate` ([`BodyPace`]), read ahead or
//!   streamed.
//! - [`EdgeBody`]: what is sent to a client, which finishes the request's log record when the
//!   last frame leaves (or the client goes away).
//! - [`ClientBody`]: a client's request body as HTTP/1.1 or HTTP/2 delivers it.
//!
//! The submodules depend downward: `to_client` → `to_origin` → `client` → `limits`; the origin
//! client uses `to_origin` and `limits` only.

pub mod client;
pub mod limits;
pub mod to_client;
pub mod to_origin;

pub use client::{ClientBody, H2RequestBody};
pub use limits::{BodyBuffers, BodyMeter, BodyPace, BoxError};
pub use to_client::{EdgeBody, Finish, Tee};
pub use to_origin::OriginBody;

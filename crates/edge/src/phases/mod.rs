//! One module per phase of a request's path (see `pipeline` for the order), each phase a
//! function over the request's context (`request`: [`request::Arrival`] before routing,
//! [`request::SiteRequest`] after) that passes the request on or answers it.

pub mod abuse;
pub mod cache;
pub mod challenge;
pub mod forward;
pub mod framing;
pub mod limits;
pub mod log;
pub mod request;
pub mod reserved;
pub mod respond;
pub mod route;
pub mod shield;
pub mod turn;

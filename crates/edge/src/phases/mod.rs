//! One module per phase of a request's path (see `pipeline` for the order).

pub mod abuse;
pub mod cache;
pub mod challenge;
pub mod forward;
pub mod respond;
pub mod route;
pub mod shield;

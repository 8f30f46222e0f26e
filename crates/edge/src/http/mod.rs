//! HTTP at the wire level, below both the request's phases and the origin client: header fields
//! that describe a hop (`fields`), the client connection's facts and address (`client`), and
//! request framing as the bytes arrive (`framing`: smuggling shapes, where heads end), and where
//! an origin's interim responses go (`interim`).
//!
//! Nothing here knows of sites, the cache or the shield; everything here is a pure function or
//! a small state machine over bytes and header maps, tested without a socket.

pub mod client;
pub mod fields;
pub mod framing;
pub mod interim;

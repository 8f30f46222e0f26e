//! The edge: the data plane every visitor's request crosses.
//!
//! It accepts connections (cleartext HTTP/1.1 and h2c, TLS with SNI), runs each request through
//! the phases in [`pipeline`] (route, forward to an origin, respond, log), and reads all its
//! settings from one immutable [`Snapshot`] that a reload swaps atomically. It is not the control
//! plane: it never writes configuration, it only serves what it was handed.
//!
//! ## Layout
//! | module | job |
//! |---|---|
//! | [`server`] | starts listeners and the admin endpoint, reload, graceful shutdown |
//! | `listener`, `conn`, `conn_guard` | accept loops, per-connection HTTP serving and timeouts, connection caps |
//! | `tls` | certificates by SNI |
//! | [`pipeline`] | the request's phases in order |
//! | `phases/*` | one module per phase |
//! | `origin/*` | origin pools, health, selection, the forwarding client |
//! | `snapshot`, `router` | the config snapshot and Host → Site routing |
//! | `metrics`, `access_log`, `admin` | what an operator sees |
//!
//! ## Invariants (each pinned by a named test)
//! 1. Never an open proxy: a request whose host no site claims gets 421 and no origin is contacted;
//!    CONNECT is refused; on TLS the Host must belong to the site SNI chose
//!    (`router::tests::unknown_host_routes_nowhere`, blackbox `unknown_host_gets_421_*`,
//!    `connect_is_refused_*`, `tls_host_sni_mismatch_gets_421`).
//! 2. Ambiguous framing is rejected before routing: Content-Length with Transfer-Encoding,
//!    duplicate Content-Length → 400 and the connection closes
//!    (`phases::framing::tests::*`, blackbox `smuggling_*`).
//! 3. Hop-by-hop headers, including those named in Connection, never cross the edge in either
//!    direction (`phases::forward::tests::strips_hop_by_hop_*`, blackbox `hop_by_hop_*`).
//! 4. Client-supplied forwarding headers are replaced unless the peer is a trusted proxy
//!    (`phases::forward::tests::untrusted_peer_*`, blackbox `x_forwarded_for_spoofing_*`).
//! 5. Error pages never show an origin's address (`phases::respond::tests::error_pages_*`,
//!    blackbox `origin_down_gets_502_*`).
//! 6. Never panic on network input: every parse of a header value is fallible.
//! 7. Requests in flight finish on the snapshot they started with; a reload never drops one
//!    (blackbox `reload_under_load_*`).

pub mod access_log;
mod admin;
mod body;
mod clock;
mod conn;
mod conn_guard;
mod listener;
pub mod metrics;
mod origin;
mod phases;
pub mod pipeline;
mod router;
pub mod server;
mod snapshot;
mod tls;

pub use server::{Edge, EdgeError};
pub use snapshot::Snapshot;

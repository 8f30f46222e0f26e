//! Black-box tests for Palisade: they drive the real `palisade` binary over real sockets.
//!
//! This crate is the harness; the tests live in `tests/*.rs`, one file per subject, named by
//! the part of Palisade it is about (`edge_*`, `cache_*`, `shield_*`, `challenge_*`, `control_*`,
//! `abuse_intake`). It knows nothing of the
//! proxy's code (it does not depend on any crate in `crates/`): everything it asserts is what
//! a client, an origin, an operator or a log reader can observe. It is not a place for unit tests
//! of the proxy's internals; those sit next to the code.
//!
//! The pieces:
//!
//! | piece | what it is |
//! | --- | --- |
//! | [`Palisade`] | the binary, started on a config in a temp dir, its ports read from its log |
//! | [`Origin`] | a real HTTP/1.1 origin server (`/echo`, `/bytes/N`, `/slow/MS`, `/mirror`, `/ws`, ...) |
//! | [`ScriptedOrigin`] | a raw TCP origin that answers request N with scripted bytes, then keeps, closes or lingers |
//! | [`RecordingOrigin`] | an origin that keeps every byte it receives per connection and answers each request with its request line |
//! | [`SiteConfig`] | the config most tests start from: one site, plus the lines a test adds |
//! | [`client`] | HTTP/1.1, h2c, TLS and WebSocket clients over plain sockets |
//! | [`cli`] | the `palisade` command line run against an instance's admin API |
//! | [`control`] | the admin API as JSON, tokens made for a test, security events, reports filed through the intake |
//! | [`raw`] | byte-exact HTTP/1.1 exchanges, for framing attacks and connection state |
//! | [`h2raw`] | hand-made HTTP/2 frames over h2c, for protocol floods |
//! | [`metrics`] | the admin listener's Prometheus text, scraped, and samples read out of it |
//! | [`TestCa`] | a throwaway certificate authority and leaf certificates as PEM files |
//! | [`browser`] | headless Chromium through chromedriver |
//! | [`redis`] | a real `redis-server`, stopped and started at will, and a RESP client |
//! | [`cluster`] | a control node and edge nodes over one Redis |
//!
//! Build the binary before running the tests:
//!
//! ```text
//! cargo build --bin palisade && cargo nextest run -p palisade-blackbox
//! ```
//!
//! A typical test:
//!
//! ```no_run
//! use palisade_blackbox::{Origin, Palisade, SiteConfig, client};
//!
//! # async fn example() {
//! let origin = Origin::start("a");
//! let proxy = Palisade::start(&SiteConfig::blog(origin.url()).to_toml());
//! let reply = client::get(proxy.http_addr(), "blog.example", "/echo").await;
//! assert_eq!(reply.status, 200);
//! # }
//! ```
//!
//! Every piece cleans up on drop, also when a test panics: the proxy process is killed and the
//! origin's runtime is shut down.

pub mod browser;
pub mod cli;
pub mod client;
pub mod cluster;
mod config;
pub mod control;
mod echo;
pub mod h2raw;
pub mod metrics;
pub mod open_files;
mod origin;
mod palisade;
pub mod raw;
pub mod recording_origin;
pub mod redis;
pub mod scripted_origin;
mod tls;

pub use config::SiteConfig;
pub use echo::Echo;
pub use origin::Origin;
pub use palisade::{ADMIN_TOKEN, CheckRun, DeadPort, Palisade, RssSampler, binary_path, free_port};
pub use recording_origin::RecordingOrigin;
pub use scripted_origin::ScriptedOrigin;
pub use tls::{LeafCert, TestCa, negotiated_alpn, peer_leaf};

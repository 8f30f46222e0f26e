//! The shield: what stands between a request that has been routed to a site and that site's
//! cache and origin.
//!
//! ```text
//! guard        a site's lists, rules and limits, in order      guard
//! lists        allow/deny CIDRs, longest prefix wins          iplist
//! rules        the firewall's expression language            rules
//! rate limits  counts per key in bounded memory              ratelimit
//! attack       baselines, spikes, under-attack mode           attack
//! pressure     is the origin struggling (concurrency, latency)  pressure
//! challenge    proof of work, signed clearance cookies         challenge
//! events       what the shield did, in a bounded ring         events
//! carried      state a new snapshot takes over, by name       carried
//! ```
//! Everything here is built once per config snapshot and then only read (counters aside), so
//! the edge's hot path takes no lock. The crate does no network I/O (building a guard reads
//! the list files the config names): the edge hands it a request's [`RequestFacts`] and acts
//! on the verdict.

// Unsafe code is forbidden in the library. Its unit tests are built with `deny` instead
// (Cargo.toml): the allocation test installs a counting `GlobalAlloc`, which only an
// `unsafe impl` can be, and `forbid` could not be lifted for it.
#![cfg_attr(not(test), forbid(unsafe_code))]

pub mod attack;
pub mod carried;
pub mod challenge;
pub mod events;
pub mod facts;
pub mod guard;
pub mod iplist;
pub mod pressure;
pub mod ratelimit;
pub mod rules;
pub mod signature;

pub use facts::{ConnectionTraits, RequestFacts};
pub use iplist::{IpTable, IpTableBuilder, ListError, parse_list, parse_net};
pub use rules::{Expr, RuleError};

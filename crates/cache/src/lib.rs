//! Palisade's HTTP cache: a shared cache in the sense of RFC 9111, sitting in front of a site's
//! origins.
//!
//! What it is for: deciding, per RFC 9111 (with RFC 5861's stale-while-revalidate and
//! stale-if-error), whether a response may be stored, whether a stored response may answer a
//! request, and how to revalidate it; keeping stored responses in a memory tier and a disk tier
//! bounded in bytes; coalescing concurrent misses; purging.
//!
//! What it is not: an HTTP client or server. It never opens a socket; the edge asks it questions
//! and hands it bodies.
//!
//! | module | job |
//! |---|---|
//! | `policy` | the RFC's decisions, section by section, as pure functions |
//! | `key` | primary cache keys: site, URL, keyed fields |
//! | `vary` | secondary keys from Vary (§4.1), Accept-Encoding normalised |
//! | `object` | a stored response |
//! | `memory` | the memory tier: bounded in bytes, scan-resistant |
//! | `meta` | what the disk tier keeps as an object's metadata |
//! | `persist` | writing stored responses to the disk tier (whole or streamed) and reading them back |
//! | `disk` | the disk tier: objects under `data_dir`, checksummed, bounded, warm after restart |
//! | `range` | Range requests answered from a stored complete response (206, 416) |
//! | `purge` | purge rules (URL, prefix, host, tag, site; hard or soft) applied without a scan |
//! | `coalesce` | fill locks: one origin request per missing object |
//! | `store` | the cache as the edge uses it: lookup, lock, store |

pub mod coalesce;
pub mod disk;
pub mod key;
pub mod memory;
pub mod meta;
pub mod object;
pub mod persist;
pub mod policy;
pub mod purge;
pub mod range;
pub mod store;
pub mod vary;

pub use key::{CacheKey, ObjectId};
pub use object::StoredObject;
pub use purge::{Purge, PurgeScope};
pub use store::{Cache, Loaded, Lookup};

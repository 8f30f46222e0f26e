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
//! | `disk` | the disk tier: objects under `data_dir`, checksummed, bounded, warm after restart |

pub mod disk;
pub mod policy;

//! The operator's side of the edge, apart from the request path: the admin listener and its
//! built-in endpoints (`admin`), purges (`purge_api`: parsing a purge and the background pass
//! that applies it to what is stored) and `palisade explain` (`explain`: the shield's verdict
//! worked out from the configuration alone).
//!
//! Nothing here runs for a visitor's request; the phases never import it. It reads the edge's
//! state (`state`, `snapshot`) and the shared store (the cache) like any other reader.

pub mod admin;
pub mod explain;
pub mod purge_api;

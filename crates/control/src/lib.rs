//! The control plane: the operator's side of Palisade.
//!
//! It owns the authoritative state (sites the API manages, suspensions, API tokens, the
//! hash-chained audit log, abuse reports, analytics rollups) in one SQLite file in the data
//! directory, serves the admin API on the admin listener, and turns every accepted change into
//! a new snapshot for the edge. It is not on a request's path: the edge reads only its snapshot
//! and hands abuse reports and analytics over through narrow hooks.

pub mod store;

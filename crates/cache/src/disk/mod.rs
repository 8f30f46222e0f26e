//! The disk tier (being written).

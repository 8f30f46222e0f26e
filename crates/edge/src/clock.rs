//! A monotonic millisecond clock shared by the whole process, cheap enough for the hot path
//! and small enough (a `u64`) to keep in an atomic.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the process's clock started (never 0, so 0 can mean "unset").
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] for an instant already read.
pub fn ms_at(instant: Instant) -> u64 {
    let start = *START.get_or_init(Instant::now);
    instant.saturating_duration_since(start).as_millis() as u64 + 1
}

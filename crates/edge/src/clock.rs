//! A monotonic millisecond clock shared by the whole process, cheap enough for the hot path
//! and small enough (a `u64`) to keep in an atomic.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the process's clock started (never 0, so 0 can mean "unset").
pub fn now_ms() -> u64 {
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// `now_ms()` plus `d`, saturating.
pub fn after_ms(d: Duration) -> u64 {
    now_ms().saturating_add(d.as_millis() as u64)
}

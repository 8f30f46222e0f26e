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

/// The `Date` field for a response sent now (RFC 9110 §6.6.1), formatted at most once a
/// second per thread, as hyper does for the responses it writes itself.
pub fn http_date() -> http::HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, Option<http::HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second || cached.1.is_none() {
            let text = httpdate::fmt_http_date(now);
            cached.1 = http::HeaderValue::from_str(&text).ok();
            cached.0 = second;
        }
        cached.1.clone().unwrap_or(http::HeaderValue::from_static(
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ))
    })
}

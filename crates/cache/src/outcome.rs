//! What the cache did for one request, as the edge's metrics, access log and analytics count
//! it.

/// What the cache did for a request (counted for sites with the cache on, GET and HEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Answered from a stored response.
    Hit,
    /// A stale stored response was served (stale-while-revalidate, stale-if-error).
    Stale,
    /// A stale stored response was revalidated and the origin's 304 refreshed it.
    Revalidated,
    /// Fetched from the origin to be stored.
    Miss,
    /// Passed to the origin without storing (bypass path, known uncacheable URL, HEAD miss).
    Pass,
}

impl CacheOutcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [CacheOutcome; 5] = [
        CacheOutcome::Hit,
        CacheOutcome::Stale,
        CacheOutcome::Revalidated,
        CacheOutcome::Miss,
        CacheOutcome::Pass,
    ];

    /// The outcome's name in metrics, logs and `Cache-Status`-style reports.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Stale => "stale",
            CacheOutcome::Revalidated => "revalidated",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Pass => "pass",
        }
    }
}

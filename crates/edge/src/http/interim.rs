//! Interim (1xx) responses on their way from an origin to a client.

/// Where an origin's interim (1xx) responses go: the client's connection, when it can take
/// them. RFC 9110 §15.2: a proxy forwards 1xx responses, except those it asked for itself.
pub trait InterimSink: Send + Sync {
    /// An interim response other than 100 (the edge answers `Expect` itself) and 101 (final:
    /// an upgrade), its fields as the origin sent them.
    fn interim(&self, status: http::StatusCode, headers: &http::HeaderMap);
}

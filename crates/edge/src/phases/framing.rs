//! The `http` phase's own checks on request framing, run before routing.
//!
//! hyper's parser already refuses malformed Content-Length values, obs-fold, invalid header
//! bytes and non-chunked transfer codings. What it tolerates, and an edge must not, is framing
//! that two HTTP implementations could read differently (RFC 9112 §6.3, "request smuggling"):
//! - Content-Length together with Transfer-Encoding. RFC 9112 lets a server drop the
//!   Content-Length and read chunked, but an origin behind us might read it the other way;
//!   refusing is the only answer that cannot desynchronise anything.
//! - Content-Length sent twice or as a list, even with equal values.
//! - Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1: treat as faulty framing).
//!
//! Each gets 400 and the connection is closed, since what follows on it cannot be trusted.

use http::{HeaderMap, Version, header};

/// Why a request's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    LengthAndChunked,
    RepeatedLength,
    ChunkedInHttp10,
}

impl FramingError {
    pub fn reason(self) -> &'static str {
        match self {
            FramingError::LengthAndChunked => "both Content-Length and Transfer-Encoding",
            FramingError::RepeatedLength => "more than one Content-Length",
            FramingError::ChunkedInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
        }
    }
}

/// Checks an HTTP/1.x request's framing headers; HTTP/2 frames its own bodies.
pub fn check(version: Version, headers: &HeaderMap) -> Result<(), FramingError> {
    if version == Version::HTTP_2 || version == Version::HTTP_3 {
        return Ok(());
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() || length.is_some_and(|v| v.as_bytes().contains(&b',')) {
        return Err(FramingError::RepeatedLength);
    }
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    if chunked && length.is_some() {
        return Err(FramingError::LengthAndChunked);
    }
    if chunked && version == Version::HTTP_10 {
        return Err(FramingError::ChunkedInHttp10);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn length_with_chunked_is_refused() {
        let h = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert_eq!(check(Version::HTTP_11, &h), Err(FramingError::LengthAndChunked));
    }

    #[test]
    fn repeated_length_is_refused_even_when_equal() {
        let h = headers(&[("content-length", "5"), ("content-length", "5")]);
        assert_eq!(check(Version::HTTP_11, &h), Err(FramingError::RepeatedLength));
        let h = headers(&[("content-length", "5, 5")]);
        assert_eq!(check(Version::HTTP_11, &h), Err(FramingError::RepeatedLength));
    }

    #[test]
    fn chunked_in_http10_is_refused() {
        let h = headers(&[("transfer-encoding", "chunked")]);
        assert_eq!(check(Version::HTTP_10, &h), Err(FramingError::ChunkedInHttp10));
    }

    #[test]
    fn ordinary_framing_passes() {
        assert_eq!(check(Version::HTTP_11, &headers(&[("content-length", "5")])), Ok(()));
        let chunked = headers(&[("transfer-encoding", "chunked")]);
        assert_eq!(check(Version::HTTP_11, &chunked), Ok(()));
        assert_eq!(check(Version::HTTP_11, &HeaderMap::new()), Ok(()));
    }
}

//! HTTP/1.1 to origins on the wire: the request head the edge writes, and the response head it
//! reads with the framing of the body that follows (RFC 9112 §6.3).
//!
//! Pure functions over bytes, so every rule here is tested without a socket.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Version};
use std::mem::MaybeUninit;

/// Largest response head an origin may send (status line and fields). nginx's default is 4 or
/// 8 KiB ("upstream sent too big header"), which large cookies break; hyper allows ~400 KiB.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Most fields in one response head (or one trailer section).
pub const MAX_RESPONSE_FIELDS: usize = 256;

/// How the request body, if any, is framed on the way to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    None,
    /// The client's Content-Length is forwarded as it is; the body is sent as it arrives.
    Length,
    /// No length known in advance (a chunked HTTP/1.1 body, an HTTP/2 body without
    /// content-length): sent chunked, trailers included.
    Chunked,
}

/// Writes `METHOD target HTTP/1.1`, the fields (`name: value\r\n` lines, as the forward phase
/// wrote them) and the framing field.
///
/// The fields carry no hop-by-hop lines, so no Transfer-Encoding of the client's; a
/// Content-Length is there only when the client declared one, and then it frames the body.
pub fn encode_request_head(
    method: &Method,
    target: &PathAndQuery,
    fields: &[u8],
    framing: RequestFraming,
) -> Vec<u8> {
    let mut head =
        Vec::with_capacity(method.as_str().len() + target.as_str().len() + fields.len() + 48);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_str().as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    head.extend_from_slice(fields);
    if framing == RequestFraming::Chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to HEAD, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the origin closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: ResponseFraming,
    /// The connection may carry another request once this body has been read.
    pub keep_alive: bool,
}

/// Why a response head was refused (the client gets a 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("response head larger than {MAX_RESPONSE_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("more than {MAX_RESPONSE_FIELDS} response fields")]
    TooManyFields,
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
}

/// Parses one response head from the front of `buf`. `Ok(None)`: not complete yet (read more).
/// On success the head's bytes are gone from `buf`; field values share them without a copy.
/// `request_method` decides whether a body follows (none after HEAD).
pub fn parse_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    // Uninitialised slots: zeroing 256 of them (8 KiB) per response cost more than parsing.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyFields),
        Err(e) => return Err(HeadError::Malformed(parse_error(e))),
    };
    if length > MAX_RESPONSE_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(HeadError::Malformed("status code"))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each value sits in the head, so the values can be cut from the frozen bytes (no
    // copy) once httparse's borrow of `buf` ends.
    let base = buf.as_ptr() as usize;
    let mut fields: Vec<(HeaderName, usize, usize)> = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("field name"))?;
        fields.push((
            name,
            field.value.as_ptr() as usize - base,
            field.value.len(),
        ));
    }
    let head: Bytes = buf.split_to(length).freeze();
    // Room for what the respond phase and hyper add (Via, Date, framing): growing a header
    // map rehashes it.
    let mut headers = HeaderMap::with_capacity(fields.len() + 4);
    for (name, start, len) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + len))
            .map_err(|_| HeadError::Malformed("field value"))?;
        headers.append(name, value);
    }
    let (framing, keep_alive) = framing(status, version, &mut headers, request_method)?;
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "field name",
        httparse::Error::HeaderValue => "field value",
        httparse::Error::NewLine => "line ending",
        httparse::Error::Status => "status line",
        httparse::Error::Version => "version",
        _ => "syntax",
    }
}

/// RFC 9112 §6.3, in its order, and whether the connection outlives the response.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    request_method: &Method,
) -> Result<(ResponseFraming, bool), HeadError> {
    let mut keep_alive = match version {
        Version::HTTP_10 => has_token(headers, &header::CONNECTION, b"keep-alive"),
        _ => !has_token(headers, &header::CONNECTION, b"close"),
    };
    // 1. HEAD, 1xx, 204 and 304 never have a body, whatever the fields say.
    if request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((ResponseFraming::Empty, keep_alive));
    }
    // 3. Transfer-Encoding overrides Content-Length; chunked last means chunked, anything
    // else means the body runs to the close. A message with both may be an attempt to desync
    // this connection: drop the length and do not reuse the connection.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        return if last_coding_is_chunked(headers) {
            Ok((ResponseFraming::Chunked, keep_alive))
        } else {
            Ok((ResponseFraming::UntilClose, false))
        };
    }
    // 5. Content-Length: every value (fields or list members) must be the same number.
    let mut length: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for member in value.as_bytes().split(|b| *b == b',') {
            let n =
                parse_decimal(member.trim_ascii()).ok_or(HeadError::Malformed("content-length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Malformed("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) => Ok((ResponseFraming::Length(n), keep_alive)),
        // 7. Otherwise the body ends when the connection does.
        None => Ok((ResponseFraming::UntilClose, false)),
    }
}

fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
        .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether a comma-separated field holds `token` (any case).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// 1*DIGIT, without overflow.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Parses a trailer section (the field lines after the last chunk, then CRLF) into fields.
pub fn parse_trailers(section: &[u8]) -> Result<HeaderMap, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
    match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            let mut trailers = HeaderMap::with_capacity(parsed.len());
            for field in parsed {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| HeadError::Malformed("trailer name"))?;
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| HeadError::Malformed("trailer value"))?;
                trailers.append(name, value);
            }
            Ok(trailers)
        }
        Ok(httparse::Status::Partial) => Err(HeadError::Malformed("trailer section")),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyFields),
        Err(e) => Err(HeadError::Malformed(parse_error(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        parse_response_head(&mut BytesMut::from(text), &method)
    }

    fn head(text: &str) -> ResponseHead {
        parse(text, Method::GET).unwrap().unwrap()
    }

    #[test]
    fn request_head_names_method_target_and_fields() {
        let fields = b"host: blog.example\r\nx-a: 1\r\n";
        let target = PathAndQuery::from_static("/a?b=c");
        let head = encode_request_head(&Method::POST, &target, fields, RequestFraming::Chunked);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /a?b=c HTTP/1.1\r\nhost: blog.example\r\nx-a: 1\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        let head = encode_request_head(&Method::GET, &target, fields, RequestFraming::None);
        assert!(
            !String::from_utf8(head)
                .unwrap()
                .contains("transfer-encoding")
        );
    }

    #[test]
    fn partial_head_asks_for_more_and_leaves_the_buffer_alone() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-le");
        assert!(
            parse_response_head(&mut buf, &Method::GET)
                .unwrap()
                .is_none()
        );
        assert_eq!(buf.len(), 27);
    }

    #[test]
    fn parsed_head_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
        let head = parse_response_head(&mut buf, &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.framing, ResponseFraming::Length(5));
        assert!(head.keep_alive);
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn rfc9112_6_3_head_1xx_204_304_have_no_body() {
        let text = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
        let to_head = parse(text, Method::HEAD).unwrap().unwrap();
        assert_eq!(to_head.framing, ResponseFraming::Empty);
        assert_eq!(
            to_head.headers["content-length"], "5",
            "HEAD keeps the length it describes"
        );
        for status in ["204 No Content", "304 Not Modified", "103 Early Hints"] {
            let text = format!("HTTP/1.1 {status}\r\ntransfer-encoding: chunked\r\n\r\n");
            assert_eq!(head(&text).framing, ResponseFraming::Empty, "{status}");
        }
    }

    #[test]
    fn rfc9112_6_3_transfer_encoding_overrides_content_length_and_ends_reuse() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, ResponseFraming::Chunked);
        assert!(!h.headers.contains_key("content-length"));
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Chunked, true));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n");
        assert_eq!(
            (h.framing, h.keep_alive),
            (ResponseFraming::UntilClose, false)
        );
    }

    #[test]
    fn rfc9112_6_3_conflicting_or_malformed_content_length_is_refused() {
        for bad in ["5, 6", "abc", "-1", "", "99999999999999999999"] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            assert!(parse(&text, Method::GET).is_err(), "{bad:?}");
        }
        let text = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n";
        assert!(parse(text, Method::GET).is_err());
        let same = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5, 5\r\n\r\n");
        assert_eq!(same.framing, ResponseFraming::Length(5));
    }

    #[test]
    fn rfc9112_6_3_no_length_means_until_close() {
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(
            (h.framing, h.keep_alive),
            (ResponseFraming::UntilClose, false)
        );
    }

    #[test]
    fn rfc9112_9_3_persistence_follows_version_and_connection() {
        assert!(
            !head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n");
        assert!(h.keep_alive);
        assert_eq!(h.version, Version::HTTP_10);
    }

    #[test]
    fn oversized_or_malformed_heads_are_errors_not_panics() {
        let mut big = String::from("HTTP/1.1 200 OK\r\nx: ");
        big.push_str(&"a".repeat(MAX_RESPONSE_HEAD_BYTES));
        assert_eq!(parse(&big, Method::GET).unwrap_err(), HeadError::TooLarge);
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_RESPONSE_FIELDS {
            many.push_str(&format!("x-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(
            parse(&many, Method::GET).unwrap_err(),
            HeadError::TooManyFields
        );
        for bad in [
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(parse(bad, Method::GET).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trailers_are_parsed_as_fields() {
        let trailers = parse_trailers(b"x-checksum: abc\r\nx-b: 1\r\n\r\n").unwrap();
        assert_eq!(trailers["x-checksum"], "abc");
        assert_eq!(trailers.len(), 2);
        assert!(parse_trailers(b"\r\n").unwrap().is_empty());
        assert!(parse_trailers(b"bad name: 1\r\n\r\n").is_err());
    }

    #[test]
    fn decimal_parsing_refuses_signs_spaces_and_overflow() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"1024"), Some(1024));
        for bad in [&b""[..], b"+1", b" 1", b"1a", b"18446744073709551616999"] {
            assert_eq!(parse_decimal(bad), None);
        }
    }
}

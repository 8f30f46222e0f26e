//! HTTP/1.1 to origins on the wire: the request head the edge writes, and the response head it
//! reads with the framing of the body that follows (RFC 9112 §6.3).
//!
//! Pure functions over bytes, so every rule here is tested without a socket.

use crate::http::fields;
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

/// How the request body, if any, is framed on the way to the origin. The framing field is
/// written from this, never copied from the client's fields, so what the origin is told always
/// matches the bytes it is sent (a Connection option that named Content-Length once made the
/// two differ: request smuggling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body, and no length field.
    None,
    /// A body of exactly this many bytes (the client's Content-Length, which hyper holds the
    /// body to), sent as it arrives; `Length(0)` is a declared empty body.
    Length(u64),
    /// No length known in advance (a chunked HTTP/1.1 body, an HTTP/2 body without
    /// content-length): sent chunked, trailers included.
    Chunked,
}

/// Writes `METHOD target HTTP/1.1`, the fields (`name: value\r\n` lines, as the forward phase
/// wrote them: no Host-less, framing or hop-by-hop lines of the client's) and the framing field.
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
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A chunk's size line (`{len:x}\r\n`), for a chunked request body.
pub fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The last chunk and the trailer section of a chunked request body, with only the trailers
/// that may cross (`fields::trailer_may_cross`).
pub fn last_chunk(trailers: Option<&HeaderMap>) -> Bytes {
    let Some(trailers) = trailers.filter(|t| !t.is_empty()) else {
        return Bytes::from_static(b"0\r\n\r\n");
    };
    let mut section = b"0\r\n".to_vec();
    for (name, value) in trailers {
        if !fields::trailer_may_cross(name.as_str()) {
            continue;
        }
        section.extend_from_slice(name.as_str().as_bytes());
        section.extend_from_slice(b": ");
        section.extend_from_slice(value.as_bytes());
        section.extend_from_slice(b"\r\n");
    }
    section.extend_from_slice(b"\r\n");
    Bytes::from(section)
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to HEAD, 1xx, 204, 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, to the last chunk and the trailer section.
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

/// Tells when an unfinished response head is worth parsing again. Parsing from the start after
/// every read would let an origin that trickles its head a byte at a time cost time quadratic
/// in the head's size (about 0.6 s of CPU for a 60 KB head), which in a shield shared by many
/// sites is one site's origin taxing them all. So it is parsed again when bytes that could end
/// it have arrived, or when the buffer has doubled since the last parse: the parses then add up
/// to a few times the head's size, and a malformed head is still caught before it doubles.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// Bytes of the buffer already known to hold no head end.
    searched: usize,
    /// The buffer's length at the last parse.
    parsed: usize,
}

impl HeadScan {
    /// True on the first look at a buffer, when a head end may be among the bytes that arrived
    /// since the last look, when the buffer has doubled since the last parse, or when it
    /// reached the head limit (the parse refuses it).
    pub fn worth_parsing(&mut self, buf: &[u8]) -> bool {
        // A head end is at most 3 bytes long: it may begin just before the new bytes.
        let worth = self.searched == 0
            || buf.len() >= MAX_RESPONSE_HEAD_BYTES
            || buf.len() >= 2 * self.parsed
            || crate::http::framing::find_head_end(buf, self.searched.saturating_sub(3)).is_some();
        self.searched = buf.len();
        if worth {
            self.parsed = buf.len();
        }
        worth
    }

    /// A head was taken from the buffer (a 1xx): what follows is looked at afresh.
    pub fn restart(&mut self) {
        *self = HeadScan::default();
    }
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
    // What the fields say about framing and persistence, read once from the raw fields.
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut facts = FieldFacts::default();
    let mut named: Vec<&[u8]> = Vec::new();
    // Where each kept value sits in the head, so the values can be cut from the frozen bytes
    // (no copy) once httparse's borrow of `buf` ends.
    let base = buf.as_ptr() as usize;
    let mut fields: Vec<(HeaderName, usize, usize)> = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("field name"))?;
        facts.read(&name, field.value, &mut named)?;
        // Hop-by-hop fields describe the connection they arrived on and end here (RFC 9110
        // §7.6.1); a 101 keeps its Upgrade, the protocol being switched to.
        if fields::is_hop_by_hop(name.as_str()) && !(switching && name == header::UPGRADE) {
            continue;
        }
        fields.push((
            name,
            field.value.as_ptr() as usize - base,
            field.value.len(),
        ));
    }
    if !named.is_empty() || facts.transfer_encoding {
        fields.retain(|(name, _, _)| {
            let named_in_connection = named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_str().as_bytes()));
            // Transfer-Encoding overrides Content-Length: the length is not passed on.
            let overridden_length = facts.transfer_encoding && name == header::CONTENT_LENGTH;
            !named_in_connection && !overridden_length
        });
    }
    drop(named);
    let head: Bytes = buf.split_to(length).freeze();
    // Room for what the respond phase and hyper add (Via, Date, framing): growing a header
    // map rehashes it.
    let mut headers = HeaderMap::with_capacity(fields.len() + 4);
    for (name, start, len) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + len))
            .map_err(|_| HeadError::Malformed("field value"))?;
        headers.append(name, value);
    }
    let (framing, keep_alive) = framing(status, version, &facts, request_method);
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// What a response's fields say about its framing and its connection.
#[derive(Debug, Default)]
struct FieldFacts {
    close: bool,
    keep_alive: bool,
    transfer_encoding: bool,
    /// The last coding of the last Transfer-Encoding field is chunked.
    chunked_last: bool,
    length: Option<u64>,
}

impl FieldFacts {
    /// Takes in one field; `named` gathers the fields Connection names.
    fn read<'a>(
        &mut self,
        name: &HeaderName,
        value: &'a [u8],
        named: &mut Vec<&'a [u8]>,
    ) -> Result<(), HeadError> {
        if name == header::CONNECTION {
            for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if !token.is_empty() && !fields::is_connection_option(token) {
                    named.push(token);
                }
            }
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.chunked_last = value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONTENT_LENGTH {
            // Every value (fields or list members) must be the same number.
            for member in value.split(|b| *b == b',') {
                let n = parse_decimal(member.trim_ascii())
                    .ok_or(HeadError::Malformed("content-length"))?;
                if self.length.is_some_and(|seen| seen != n) {
                    return Err(HeadError::Malformed("conflicting content-length"));
                }
                self.length = Some(n);
            }
        }
        Ok(())
    }
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
    facts: &FieldFacts,
    request_method: &Method,
) -> (ResponseFraming, bool) {
    let keep_alive = match version {
        Version::HTTP_10 => facts.keep_alive && !facts.close,
        _ => !facts.close,
    };
    // 1. HEAD, 1xx, 204 and 304 never have a body, whatever the fields say.
    if request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return (ResponseFraming::Empty, keep_alive);
    }
    // 3. Transfer-Encoding overrides Content-Length; chunked last means chunked, anything
    // else means the body runs to the close. A message with both may be an attempt to desync
    // this connection: the length is dropped and the connection not reused.
    if facts.transfer_encoding {
        return if facts.chunked_last {
            (
                ResponseFraming::Chunked,
                keep_alive && facts.length.is_none(),
            )
        } else {
            (ResponseFraming::UntilClose, false)
        };
    }
    match facts.length {
        // 5. Content-Length.
        Some(n) => (ResponseFraming::Length(n), keep_alive),
        // 7. Otherwise the body ends when the connection does.
        None => (ResponseFraming::UntilClose, false),
    }
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
                if !fields::trailer_may_cross(name.as_str()) {
                    continue;
                }
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
        let head = encode_request_head(&Method::PUT, &target, fields, RequestFraming::Length(12));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "PUT /a?b=c HTTP/1.1\r\nhost: blog.example\r\nx-a: 1\r\n\
             content-length: 12\r\n\r\n"
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

    /// An origin trickling its head a byte at a time gets it parsed a few times (as the buffer
    /// doubles, and at the byte that ends it), not once per byte; garbage is still caught before
    /// the buffer doubles past it; at the limit the head is parsed, and refused.
    #[test]
    fn a_trickled_head_is_parsed_as_it_doubles_and_once_it_can_be_complete() {
        let padded = format!("HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n", "p".repeat(3000));
        for head in [
            &b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 0\n\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            padded.as_bytes(),
        ] {
            let (mut scan, mut buf, mut parses) = (HeadScan::default(), BytesMut::new(), 0);
            for (i, byte) in head.iter().enumerate() {
                buf.extend_from_slice(&[*byte]);
                if scan.worth_parsing(&buf) {
                    parses += 1;
                    let parsed = parse_response_head(&mut buf, &Method::GET).unwrap();
                    assert_eq!(parsed.is_some(), i == head.len() - 1, "{head:?} at {i}");
                }
            }
            // Lengths 1, 2, 4, ... up to the head's, and its last byte.
            let doublings = usize::BITS - head.len().leading_zeros();
            assert!(
                parses <= doublings as usize + 2,
                "{parses} parses of {} bytes",
                head.len()
            );
        }

        let bad = b"HTXP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n";
        let (mut scan, mut buf) = (HeadScan::default(), BytesMut::new());
        let caught = bad.iter().position(|byte| {
            buf.extend_from_slice(&[*byte]);
            scan.worth_parsing(&buf) && parse_response_head(&mut buf, &Method::GET).is_err()
        });
        // The bad byte is the third; it is seen by the time the buffer doubles past it.
        assert!(caught.is_some_and(|at| at < 6), "{caught:?}");

        let mut scan = HeadScan::default();
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        assert!(scan.worth_parsing(&buf));
        buf.resize(MAX_RESPONSE_HEAD_BYTES - 1, b'a');
        assert!(scan.worth_parsing(&buf), "doubled");
        buf.extend_from_slice(b"a");
        assert!(scan.worth_parsing(&buf), "at the limit");
        assert_eq!(
            parse_response_head(&mut buf, &Method::GET).unwrap_err(),
            HeadError::TooLarge
        );
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
    fn rfc9110_7_6_1_hop_by_hop_fields_end_at_the_edge() {
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
             X-Secret: 1\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nX-Kept: 2\r\n\r\n",
        );
        for gone in [
            "connection",
            "keep-alive",
            "x-secret",
            "transfer-encoding",
            "upgrade",
        ] {
            assert!(!h.headers.contains_key(gone), "{gone} passed on");
        }
        assert_eq!(h.headers["x-kept"], "2");
        assert_eq!((h.framing, h.keep_alive), (ResponseFraming::Chunked, true));
        let switching = head(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert_eq!(
            switching.headers["upgrade"], "websocket",
            "a 101 keeps its Upgrade"
        );
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
        let kept = parse_trailers(
            b"x-checksum: abc\r\nContent-Length: 9\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            kept.len(),
            1,
            "framing fields dropped from trailers: {kept:?}"
        );
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

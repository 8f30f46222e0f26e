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
//! - A transfer coding list other than exactly `chunked` (`gzip, chunked`, `chunked, chunked`,
//!   `identity, chunked`): hyper decodes the chunked layer and would let the edge forward the
//!   body as if that were all, silently dropping a coding the origin was told about.
//! - Connection naming Content-Length or Host. Connection lists fields to drop at the next
//!   hop (RFC 9110 §7.6.1), but a request's framing and routing are not the client's to drop:
//!   a body whose length the next hop no longer knows is read there as the next request. No
//!   client has a use for it, so it is refused rather than ignored. (Transfer-Encoding named
//!   there is hop-by-hop anyway, and the forwarding fields are the edge's own: for those the
//!   option is ignored, see `forward::connection_may_remove`.)
//!
//! Each gets 400 and the connection is closed, since what follows on it cannot be trusted.
//!
//! hyper normalises the first two before the pipeline sees the request (it drops the
//! Content-Length beside a Transfer-Encoding, and folds equal repeated lengths into one), so
//! the header map alone cannot show them. [`FramingTracker`] therefore reads the HTTP/1.x byte
//! stream as it arrives, follows each message's framing (heads, fixed-length and chunked
//! bodies) to find where every head starts, and records which request, by its position on the
//! connection, carried an ambiguous head.

use http::{HeaderMap, Version, header};

/// Why a request's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FramingError {
    LengthAndChunked,
    RepeatedLength,
    ChunkedInHttp10,
    /// A transfer coding list other than exactly `chunked`.
    UnsupportedCoding,
    /// Connection names Content-Length or Host.
    ConnectionNamesFraming,
}

impl FramingError {
    const ALL: [FramingError; 5] = [
        FramingError::LengthAndChunked,
        FramingError::RepeatedLength,
        FramingError::ChunkedInHttp10,
        FramingError::UnsupportedCoding,
        FramingError::ConnectionNamesFraming,
    ];

    /// The error stored as `self as u8` (the connection keeps it in an atomic).
    pub(crate) fn from_code(code: u8) -> FramingError {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(FramingError::LengthAndChunked)
    }

    pub fn reason(self) -> &'static str {
        match self {
            FramingError::LengthAndChunked => "both Content-Length and Transfer-Encoding",
            FramingError::RepeatedLength => "more than one Content-Length",
            FramingError::ChunkedInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            FramingError::UnsupportedCoding => "a transfer coding other than chunked",
            FramingError::ConnectionNamesFraming => "Connection names Content-Length or Host",
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
    if chunked && !is_only_chunked(headers) {
        return Err(FramingError::UnsupportedCoding);
    }
    if headers.get_all(header::CONNECTION).iter().any(|value| {
        value.as_bytes().split(|b| *b == b',').any(|token| {
            let token = token.trim_ascii();
            token.eq_ignore_ascii_case(b"content-length") || token.eq_ignore_ascii_case(b"host")
        })
    }) {
        return Err(FramingError::ConnectionNamesFraming);
    }
    Ok(())
}

/// Whether the Transfer-Encoding lines, taken together, list exactly one coding: `chunked`.
fn is_only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii);
    codings
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// Follows HTTP/1.x message framing on a connection's incoming bytes to inspect every request
/// head as the client sent it.
#[derive(Debug)]
pub struct FramingTracker {
    state: Track,
    /// Head bytes, kept only while a head spans several reads.
    partial: Vec<u8>,
    /// Heads completed so far on this connection.
    heads: u64,
    max_head: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Head,
    Fixed(u64),
    /// Inside a chunk-size line (digits, extensions) until its LF.
    ChunkSize {
        size: u64,
        digits: bool,
        in_ext: bool,
    },
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes still to skip.
    ChunkEnd(u8),
    /// After the last chunk: trailer fields until an empty line. `at_line_start` is true
    /// right after a LF.
    Trailers {
        at_line_start: bool,
    },
    /// Framing can no longer be followed (an upgrade, a head hyper will refuse); stop looking.
    Opaque,
    /// A head outgrew `max_head` before its end arrived: hyper's buffer, which holds at least
    /// these bytes, is over the same limit (both are `max_header_bytes`), so it answers 431 and
    /// closes. Stop looking. (Black-box `an_oversized_head_completed_by_one_late_read_is_refused`
    /// fails if the two limits ever part.)
    HeadTooLarge,
}

impl FramingTracker {
    pub fn new(max_head: usize) -> FramingTracker {
        FramingTracker {
            state: Track::Head,
            partial: Vec::new(),
            heads: 0,
            max_head,
        }
    }

    /// Request heads read completely so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// True once a head outgrew the limit unfinished, which hyper refuses on its own. Heads that
    /// arrive whole in one read are judged at any size, so whether this happens depends on how
    /// the bytes were cut into reads, while the connection's fate (refused) does not.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn gave_up_on_head_size(&self) -> bool {
        self.state == Track::HeadTooLarge
    }

    /// True inside a request body (of a known framing): the client is still sending it.
    pub fn in_body(&self) -> bool {
        matches!(
            self.state,
            Track::Fixed(_)
                | Track::ChunkSize { .. }
                | Track::ChunkData(_)
                | Track::ChunkEnd(_)
                | Track::Trailers { .. }
        )
    }

    /// True between messages: nothing of a next request has been read yet.
    pub fn at_message_start(&self) -> bool {
        self.state == Track::Head && self.partial.is_empty()
    }

    /// Feeds bytes as read from the client. Returns the index (0-based, in order on the
    /// connection) of a request whose head is ambiguous, with the reason.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<(u64, FramingError)> {
        let mut found = None;
        while !bytes.is_empty() {
            match self.state {
                Track::Opaque | Track::HeadTooLarge => return found,
                Track::Head => {
                    if self.partial.is_empty() {
                        // RFC 9112 §2.2: tolerate empty lines before a request line.
                        let skip = bytes
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            break;
                        }
                    }
                    let start = self.partial.len().saturating_sub(3);
                    let end = if self.partial.is_empty() {
                        find_head_end(bytes, 0).map(|end| (end, true))
                    } else {
                        let take = bytes.len().min(self.max_head + 4);
                        self.partial.extend_from_slice(&bytes[..take]);
                        find_head_end(&self.partial, start).map(|end| (end, false))
                    };
                    match end {
                        Some((end, in_place)) => {
                            let (head_result, consumed) = if in_place {
                                (inspect_head(&bytes[..end]), end)
                            } else {
                                let before =
                                    self.partial.len() - bytes.len().min(self.max_head + 4);
                                let result = inspect_head(&self.partial[..end]);
                                (result, end - before)
                            };
                            self.partial = Vec::new();
                            let index = self.heads;
                            self.heads += 1;
                            bytes = &bytes[consumed..];
                            match head_result {
                                Head::Ambiguous(e) => {
                                    found.get_or_insert((index, e));
                                    self.state = Track::Opaque;
                                }
                                Head::Body(body) => self.state = body,
                            }
                        }
                        None => {
                            if self.partial.is_empty() {
                                self.partial.extend_from_slice(bytes);
                            }
                            if self.partial.len() > self.max_head {
                                self.state = Track::HeadTooLarge;
                            }
                            return found;
                        }
                    }
                }
                Track::Fixed(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        Track::Head
                    } else {
                        Track::Fixed(left - n)
                    };
                }
                Track::ChunkData(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        Track::ChunkEnd(2)
                    } else {
                        Track::ChunkData(left - n)
                    };
                }
                Track::ChunkEnd(left) => {
                    bytes = &bytes[1..];
                    self.state = if left == 1 {
                        Track::ChunkSize {
                            size: 0,
                            digits: false,
                            in_ext: false,
                        }
                    } else {
                        Track::ChunkEnd(left - 1)
                    };
                }
                Track::ChunkSize {
                    size,
                    digits,
                    in_ext,
                } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match b {
                        b'\n' if !digits => Track::Opaque,
                        b'\n' if size == 0 => Track::Trailers {
                            at_line_start: true,
                        },
                        b'\n' => Track::ChunkData(size),
                        _ if in_ext => Track::ChunkSize {
                            size,
                            digits,
                            in_ext,
                        },
                        b';' | b' ' | b'\t' | b'\r' => Track::ChunkSize {
                            size,
                            digits,
                            in_ext: true,
                        },
                        _ => match (b as char).to_digit(16) {
                            Some(d) if size < (1 << 56) => Track::ChunkSize {
                                size: size * 16 + u64::from(d),
                                digits: true,
                                in_ext,
                            },
                            // hyper refuses this chunk; the connection ends.
                            _ => Track::Opaque,
                        },
                    };
                }
                Track::Trailers { at_line_start } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match b {
                        b'\n' if at_line_start => Track::Head,
                        b'\n' => Track::Trailers {
                            at_line_start: true,
                        },
                        b'\r' => Track::Trailers { at_line_start },
                        _ => Track::Trailers {
                            at_line_start: false,
                        },
                    };
                }
            }
        }
        found
    }
}

enum Head {
    Ambiguous(FramingError),
    /// How the body that follows is framed.
    Body(Track),
}

/// Finds the end of a head (just past CRLFCRLF, or LFLF which hyper and httparse also accept),
/// searching from `from`. Also tells the origin client when an unfinished response head is
/// worth parsing again (`origin::codec::HeadScan`).
///
/// Every request's bytes pass through here, so it jumps from line feed to line feed
/// (`memchr`, vectorised) rather than testing each byte.
pub(crate) fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let from = from.min(bytes.len());
    memchr::memchr_iter(b'\n', &bytes[from..])
        .map(|i| i + from)
        .find_map(|i| match bytes.get(i + 1..i + 3) {
            Some([b'\n', _]) => Some(i + 2),
            Some([b'\r', b'\n']) => Some(i + 3),
            None if bytes.get(i + 1) == Some(&b'\n') => Some(i + 2),
            _ => None,
        })
}

/// True when `line` is the field `name` (lowercase), that is `name` in any case and a colon.
/// A field name cannot contain a colon, so this is the same test as comparing everything
/// before the line's first colon.
fn is_field(line: &[u8], name: &[u8]) -> bool {
    line.get(name.len()) == Some(&b':') && line[..name.len()].eq_ignore_ascii_case(name)
}

fn inspect_head(head: &[u8]) -> Head {
    let mut lengths = 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut upgrade = false;
    let mut line_start = 0;
    let mut http10 = false;
    for line_end in memchr::memchr_iter(b'\n', head).chain(std::iter::once(head.len())) {
        let line = &head[line_start..line_end];
        if line_start == 0 {
            http10 = line.trim_ascii_end().ends_with(b"HTTP/1.0");
        } else {
            // Most fields are none of the three: their first letter settles it.
            match line.first().map(u8::to_ascii_lowercase) {
                Some(b'c') if is_field(line, b"content-length") => {
                    let value = line[b"content-length:".len()..].trim_ascii();
                    lengths += 1;
                    if value.contains(&b',') {
                        lengths += 1;
                    }
                    length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                }
                Some(b't') if is_field(line, b"transfer-encoding") => chunked = true,
                Some(b'u') if is_field(line, b"upgrade") => upgrade = true,
                _ => {}
            }
        }
        line_start = line_end + 1;
        if line_start > head.len() {
            break;
        }
    }
    if lengths > 1 {
        return Head::Ambiguous(FramingError::RepeatedLength);
    }
    if chunked && lengths > 0 {
        return Head::Ambiguous(FramingError::LengthAndChunked);
    }
    if chunked && http10 {
        return Head::Ambiguous(FramingError::ChunkedInHttp10);
    }
    if upgrade {
        // After a 101 the bytes are another protocol's.
        return Head::Body(Track::Opaque);
    }
    Head::Body(if chunked {
        Track::ChunkSize {
            size: 0,
            digits: false,
            in_ext: false,
        }
    } else {
        match (lengths, length) {
            (0, _) | (_, Some(0)) => Track::Head,
            (_, Some(n)) => Track::Fixed(n),
            // An unparsable length: hyper refuses the request and closes.
            (_, None) => Track::Opaque,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn feed_all(chunks: &[&[u8]]) -> Option<(u64, FramingError)> {
        let mut tracker = FramingTracker::new(8192);
        let mut found = None;
        for chunk in chunks {
            if let Some(f) = tracker.feed(chunk) {
                found.get_or_insert(f);
            }
        }
        found
    }

    #[test]
    fn tracker_flags_length_with_chunked_in_either_order() {
        let a: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(feed_all(&[a]), Some((0, FramingError::LengthAndChunked)));
        let b: &[u8] =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(feed_all(&[b]), Some((0, FramingError::LengthAndChunked)));
    }

    /// A head that outgrows the limit unfinished is hyper's to refuse (431); the tracker says
    /// it stopped there. The same head read whole is still judged: that costs nothing, and
    /// refusing it does not then rest on hyper's buffer arithmetic alone.
    #[test]
    fn tracker_stops_at_an_unfinished_head_over_the_limit_but_judges_a_whole_one() {
        let padding = format!("X-Pad: {}\r\n", "p".repeat(100));
        let head =
            format!("POST / HTTP/1.1\r\n{padding}Content-Length: 1\r\nContent-Length: 1\r\n\r\n");
        let head = head.as_bytes();
        assert!(head.len() > 120);

        let mut whole = FramingTracker::new(120);
        assert_eq!(whole.feed(head), Some((0, FramingError::RepeatedLength)));
        assert!(!whole.gave_up_on_head_size());

        let mut cut = FramingTracker::new(120);
        assert_eq!(cut.feed(&head[..60]), None);
        assert!(!cut.gave_up_on_head_size());
        assert_eq!(cut.feed(&head[60..125]), None);
        assert!(cut.gave_up_on_head_size());
        assert_eq!(cut.feed(&head[125..]), None);
        assert!(cut.gave_up_on_head_size());
    }

    #[test]
    fn tracker_flags_repeated_equal_lengths() {
        let a: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(feed_all(&[a]), Some((0, FramingError::RepeatedLength)));
    }

    #[test]
    fn tracker_follows_bodies_to_find_the_second_head() {
        // A clean request with a fixed body, then a chunked one with trailers, then a bad one,
        // split at awkward places.
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\n\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
GET /c HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n";
        for split in [1, 7, 30, 45, 60, 70, 90] {
            let (x, y) = stream.split_at(split.min(stream.len()));
            assert_eq!(
                feed_all(&[x, y]),
                Some((2, FramingError::RepeatedLength)),
                "split at {split}"
            );
        }
        assert_eq!(
            feed_all(&stream.chunks(1).collect::<Vec<_>>()),
            Some((2, FramingError::RepeatedLength))
        );
    }

    /// Hostile bytes never panic the tracker, and what it buffers of an unfinished head stays
    /// within the header limit whatever arrives.
    #[test]
    fn tracker_survives_random_bytes_with_bounded_memory() {
        let alphabet: &[u8] = b"\r\n:; ,0123456789abcdefABCDEFGHTP/.-\x00\xff";
        let words: [&[u8]; 8] = [
            b"POST / HTTP/1.1\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"5\r\nhello\r\n",
            b"0\r\n\r\n",
            b"Upgrade: x\r\n",
            b"GET / HTTP/1.0\r\n",
        ];
        let mut noise = crate::test_input::Noise::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let mut tracker = FramingTracker::new(8192);
            for _ in 0..noise.below(40) {
                let mut chunk = Vec::new();
                for _ in 0..noise.below(6) {
                    noise.piece(&mut chunk, &words, alphabet, 300, 2);
                }
                let _ = tracker.feed(&chunk);
                assert!(
                    tracker.partial.len() <= 8192 + 8192 + 4,
                    "{}",
                    tracker.partial.len()
                );
            }
        }
    }

    /// The vectorised head-end search finds what a byte-by-byte scan finds, on hostile input.
    #[test]
    fn head_end_search_matches_a_byte_scan() {
        fn byte_scan(bytes: &[u8], from: usize) -> Option<usize> {
            (from..bytes.len()).find_map(|i| {
                if bytes[i] != b'\n' {
                    None
                } else if bytes.get(i + 1) == Some(&b'\n') {
                    Some(i + 2)
                } else if bytes.get(i + 1..i + 3) == Some(b"\r\n") {
                    Some(i + 3)
                } else {
                    None
                }
            })
        }
        let alphabet: &[u8] = b"\r\n\r\n:aZ \x00";
        let words: [&[u8]; 3] = [b"Host: a\r\n", b"\r\n\r\n", b"\n\n"];
        let mut noise = crate::test_input::Noise::new(0x5851_f42d_4c95_7f2d);
        for _ in 0..5000 {
            let mut bytes = Vec::new();
            noise.piece(&mut bytes, &words, alphabet, 40, 2);
            for from in 0..=bytes.len() {
                assert_eq!(
                    find_head_end(&bytes, from),
                    byte_scan(&bytes, from),
                    "{bytes:?} from {from}"
                );
            }
        }
    }

    /// Where the reads split a pipeline does not change what is found, for CRLF and bare-LF
    /// heads and any case of the field names.
    #[test]
    fn tracker_finds_the_same_at_every_split() {
        type Expected = Option<(u64, FramingError)>;
        let pipelines: [(&[u8], Expected); 4] = [
            (
                b"POST / HTTP/1.1\r\ncontent-LENGTH: 3\r\n\r\nabcGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
                Some((1, FramingError::LengthAndChunked)),
            ),
            (
                b"POST / HTTP/1.1\nContent-Length: 2\nX-Content-Length: 9\n\nhiGET / HTTP/1.0\nTRANSFER-ENCODING: chunked\n\n",
                Some((1, FramingError::ChunkedInHttp10)),
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx",
                Some((0, FramingError::RepeatedLength)),
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\nContent-Length:0\r\n\r\n",
                None,
            ),
        ];
        for (stream, expected) in pipelines {
            assert_eq!(feed_all(&[stream]), expected, "{}", stream.escape_ascii());
            for split in 1..stream.len() {
                let (a, b) = stream.split_at(split);
                assert_eq!(feed_all(&[a, b]), expected, "split at {split}");
            }
        }
    }

    #[test]
    fn tracker_passes_clean_pipelines() {
        let stream: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(feed_all(&[stream]), None);
        assert_eq!(feed_all(&stream.chunks(3).collect::<Vec<_>>()), None);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn transfer_codings_other_than_exactly_chunked_are_refused() {
        for codings in [
            &[("transfer-encoding", "gzip, chunked")][..],
            &[("transfer-encoding", "identity, chunked")],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", ",chunked")],
        ] {
            assert_eq!(
                check(Version::HTTP_11, &headers(codings)),
                Err(FramingError::UnsupportedCoding),
                "{codings:?}"
            );
        }
        for fine in ["chunked", "Chunked", " CHUNKED "] {
            let h = headers(&[("transfer-encoding", fine)]);
            assert_eq!(check(Version::HTTP_11, &h), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn connection_naming_content_length_or_host_is_refused() {
        for connection in [
            "Content-Length",
            "close, Content-Length",
            "keep-alive,content-length",
            "CONTENT-LENGTH",
            "host",
            "x-a, Host ",
        ] {
            let h = headers(&[("content-length", "3"), ("connection", connection)]);
            assert_eq!(
                check(Version::HTTP_11, &h),
                Err(FramingError::ConnectionNamesFraming),
                "{connection:?}"
            );
        }
        // Other fields, and names that merely contain these, stay the client's to drop.
        for connection in [
            "close",
            "keep-alive, x-secret",
            "x-content-length",
            "hostname",
        ] {
            let h = headers(&[("connection", connection)]);
            assert_eq!(check(Version::HTTP_11, &h), Ok(()), "{connection:?}");
        }
    }

    #[test]
    fn framing_errors_survive_their_code() {
        for error in FramingError::ALL {
            assert_eq!(FramingError::from_code(error as u8), error);
        }
    }

    #[test]
    fn length_with_chunked_is_refused() {
        let h = headers(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert_eq!(
            check(Version::HTTP_11, &h),
            Err(FramingError::LengthAndChunked)
        );
    }

    #[test]
    fn repeated_length_is_refused_even_when_equal() {
        let h = headers(&[("content-length", "5"), ("content-length", "5")]);
        assert_eq!(
            check(Version::HTTP_11, &h),
            Err(FramingError::RepeatedLength)
        );
        let h = headers(&[("content-length", "5, 5")]);
        assert_eq!(
            check(Version::HTTP_11, &h),
            Err(FramingError::RepeatedLength)
        );
    }

    #[test]
    fn chunked_in_http10_is_refused() {
        let h = headers(&[("transfer-encoding", "chunked")]);
        assert_eq!(
            check(Version::HTTP_10, &h),
            Err(FramingError::ChunkedInHttp10)
        );
    }

    #[test]
    fn ordinary_framing_passes() {
        assert_eq!(
            check(Version::HTTP_11, &headers(&[("content-length", "5")])),
            Ok(())
        );
        let chunked = headers(&[("transfer-encoding", "chunked")]);
        assert_eq!(check(Version::HTTP_11, &chunked), Ok(()));
        assert_eq!(check(Version::HTTP_11, &HeaderMap::new()), Ok(()));
    }
}

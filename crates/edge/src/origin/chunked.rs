//! Decoding an origin's chunked response body (RFC 9112 §7.1), strictly: a chunk-size line
//! must end in CRLF, sizes are at most 16 hex digits, chunk data must be followed by CRLF, and
//! extensions (ignored) and trailer sections have size limits. A body that breaks a rule is an
//! error: the client's response is cut short and the connection is not reused, since where the
//! next message would start is no longer known.

use super::codec::{HeadError, parse_trailers};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;

/// Longest chunk-size line, extensions included.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Largest trailer section.
pub const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// What the buffered bytes gave.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The last chunk and its (empty) trailer section have been read.
    End,
    /// The buffer holds no complete piece: read more.
    NeedMore,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("malformed chunk-size line")]
    SizeLine,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("trailer section over {MAX_TRAILER_BYTES} bytes")]
    TrailersTooLarge,
    #[error("trailers: {0}")]
    Trailers(HeadError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    /// Bytes of the trailer section already searched for its end.
    Trailers(usize),
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

impl ChunkedDecoder {
    /// Takes the next piece from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Size => {
                    let Some(end) = find_crlf(buf, MAX_CHUNK_LINE_BYTES)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_size_line(&buf[..end])?;
                    let _ = buf.split_to(end + 2);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = remaining.min(buf.len() as u64);
                    let data = buf.split_to(take as usize).freeze();
                    self.state = match remaining - take {
                        0 => State::DataEnd,
                        left => State::Data(left),
                    };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::DataEnd);
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers(scanned) => {
                    if buf.starts_with(b"\r\n") {
                        let _ = buf.split_to(2);
                        self.state = State::Done;
                        return Ok(Decoded::End);
                    }
                    // Resume the search where the last one stopped: a trickling origin must
                    // not make this quadratic.
                    let from = scanned.saturating_sub(3);
                    let Some(end) = buf[from..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|at| from + at)
                    else {
                        if buf.len() > MAX_TRAILER_BYTES {
                            return Err(ChunkError::TrailersTooLarge);
                        }
                        self.state = State::Trailers(buf.len());
                        return Ok(Decoded::NeedMore);
                    };
                    if end + 4 > MAX_TRAILER_BYTES {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    let section = buf.split_to(end + 4);
                    let trailers = parse_trailers(&section).map_err(ChunkError::Trailers)?;
                    self.state = State::Done;
                    return Ok(Decoded::Trailers(trailers));
                }
            }
        }
    }
}

/// Position of the CRLF ending the first line, if the buffer holds one; an error when the line
/// is too long or ends in a bare LF.
fn find_crlf(buf: &[u8], max: usize) -> Result<Option<usize>, ChunkError> {
    match buf.iter().take(max + 2).position(|b| *b == b'\n') {
        Some(0) => Err(ChunkError::SizeLine),
        Some(lf) if buf[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(ChunkError::SizeLine),
        None if buf.len() >= max + 2 => Err(ChunkError::SizeLine),
        None => Ok(None),
    }
}

/// `chunk-size [ BWS ; chunk-ext ]`, CRLF already cut off.
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ChunkError::SizeLine);
    }
    let mut size = 0u64;
    for d in &line[..digits] {
        let value = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        size = (size << 4) | u64::from(value);
    }
    let rest = line[digits..].trim_ascii_start();
    let valid_extension = rest.is_empty()
        || (rest[0] == b';' && rest.iter().all(|b| *b == b'\t' || (b' '..0x7f).contains(b)));
    if valid_extension {
        Ok(size)
    } else {
        Err(ChunkError::SizeLine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body and trailers.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => return Ok((body, trailers)),
                Decoded::NeedMore => {
                    assert!(fed < input.len(), "decoder wants more than the whole input");
                    let next = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn rfc9112_7_1_chunks_decode_whatever_the_read_boundaries() {
        let input = b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, input.len()] {
            let (body, trailers) = decode_in_steps(input, step).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            assert!(trailers.is_none());
        }
    }

    #[test]
    fn rfc9112_7_1_2_trailer_section_is_returned() {
        let input = b"3\r\nabc\r\n0\r\nx-sum: 42\r\nx-b: 1\r\n\r\n";
        for step in [1, 5, input.len()] {
            let (body, trailers) = decode_in_steps(input, step).unwrap();
            assert_eq!(body, b"abc");
            let trailers = trailers.expect("trailers");
            assert_eq!(trailers["x-sum"], "42");
            assert_eq!(trailers.len(), 2);
        }
    }

    #[test]
    fn bytes_after_the_last_chunk_stay_in_the_buffer() {
        let mut buf = BytesMut::from(&b"1\r\na\r\n0\r\n\r\nHTTP/1.1"[..]);
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"a"))
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::End);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::End,
            "stays at the end"
        );
        assert_eq!(&buf[..], b"HTTP/1.1");
    }

    #[test]
    fn rfc9112_7_1_malformed_chunking_is_an_error() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],   // bare LF
            b"x\r\nhello\r\n0\r\n\r\n",      // not hex
            b"\r\nhello\r\n0\r\n\r\n",       // no size
            b"11111111111111111\r\n",        // 17 digits
            b"5 junk\r\nhello\r\n0\r\n\r\n", // not an extension
            b"5\r\nhelloXX0\r\n\r\n",        // no CRLF after data
            b"-5\r\nhello\r\n",              // sign
            b"5;\x01\r\nhello\r\n0\r\n\r\n", // control byte in extension
            b"0\r\nnot a field\r\n\r\n",     // broken trailer
        ] {
            assert!(
                decode_in_steps(bad, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn endless_size_line_or_trailers_hit_their_limits() {
        let mut long = b"5;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE_BYTES + 10));
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&long[..])),
            Err(ChunkError::SizeLine)
        );

        let mut trailers = b"0\r\nx: ".to_vec();
        trailers.extend(std::iter::repeat_n(b'a', MAX_TRAILER_BYTES + 10));
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&trailers[..])),
            Err(ChunkError::TrailersTooLarge)
        );
    }

    /// Whatever an origin sends, reading a response head and then a chunked body never panics,
    /// and a head that never completes is refused once it passes its limit.
    #[test]
    fn random_origin_bytes_never_panic_the_head_parser_or_the_decoder() {
        use super::super::codec::{MAX_RESPONSE_HEAD_BYTES, parse_response_head};
        use http::Method;
        let alphabet: &[u8] = b"\r\n:; ,0123456789abcdefABCDEF xHTP/.-\t\x00\x7f\xff";
        let words: [&[u8]; 9] = [
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.0 103 Early\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Connection: close, x\r\n",
            b"\r\n",
            b"5\r\nhello\r\n",
            b"0\r\nx: 1\r\n\r\n",
            b"ffffffffffffffff;e\r\n",
        ];
        let mut noise = crate::test_input::Noise::new(0x2545_f491_4f6c_dd1d);
        let (mut heads, mut pieces) = (0, 0);
        for round in 0..2000 {
            // Mostly plausible responses with noise in them: pure noise would rarely get past
            // the status line.
            let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
            let mut decoder: Option<ChunkedDecoder> = None;
            for _ in 0..noise.below(30) {
                let mut bytes = Vec::new();
                for _ in 0..noise.below(6) {
                    // Three pieces in four are plausible words, the rest noise.
                    noise.piece(&mut bytes, &words, alphabet, 50, 4);
                }
                buf.extend_from_slice(&bytes);
                let method = if round % 5 == 0 {
                    Method::HEAD
                } else {
                    Method::GET
                };
                match &mut decoder {
                    None => match parse_response_head(&mut buf, &method) {
                        Ok(Some(_)) => {
                            heads += 1;
                            decoder = Some(ChunkedDecoder::default());
                        }
                        Ok(None) => assert!(buf.len() < MAX_RESPONSE_HEAD_BYTES),
                        Err(_) => break,
                    },
                    Some(d) => loop {
                        match d.decode(&mut buf) {
                            Ok(Decoded::NeedMore) | Ok(Decoded::End) => break,
                            Ok(_) => pieces += 1,
                            Err(_) => break,
                        }
                    },
                }
            }
        }
        // The generator must reach both parsers, or this test would prove nothing.
        assert!(
            heads > 100 && pieces > 100,
            "heads {heads}, chunk pieces {pieces}"
        );
    }

    #[test]
    fn sixteen_hex_digits_is_the_largest_size() {
        let mut buf = BytesMut::from(&b"FFFFFFFFFFFFFFFF\r\nab"[..]);
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"ab"))
        );
    }
}

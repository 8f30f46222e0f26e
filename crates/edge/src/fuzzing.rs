//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers that read bytes off
//! the network, driven the way the edge drives them. Built only with the `fuzzing` feature; not
//! part of the edge's API.
//!
//! Each reader takes its input in pieces whose sizes the fuzzer also picks. What a reader
//! concludes must not depend on how TCP happened to cut the stream, so the targets compare the
//! outcome of a split read with that of one read of everything.

use crate::origin::chunked::{ChunkedDecoder, Decoded};
use crate::origin::codec;
use crate::phases::framing::FramingTracker;
use bytes::BytesMut;
use http::Method;

pub use crate::origin::codec::ResponseFraming;

/// What reading one origin response gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OriginRead {
    /// Status and field count, once the head was complete.
    pub head: Option<(u16, usize)>,
    pub framing: Option<ResponseFraming>,
    pub keep_alive: bool,
    pub body: Vec<u8>,
    pub trailer_fields: usize,
    /// How the read ended: `complete`, `incomplete` (the bytes ran out), or the error.
    pub end: String,
}

/// Reads one response from `input` as the origin client does (the head, then the body by its
/// framing), with the bytes arriving in pieces of the sizes in `cuts`, used in turn and then
/// again (`[]`: everything at once; a size of 0 counts as 1).
pub fn read_origin_response(input: &[u8], cuts: &[u8], head_request: bool) -> OriginRead {
    let method = if head_request {
        Method::HEAD
    } else {
        Method::GET
    };
    let mut pieces = Pieces::new(input, cuts);
    let mut buf = BytesMut::new();
    let mut read = OriginRead::default();
    let mut scan = codec::HeadScan::default();
    let head = loop {
        let parsed = if buf.is_empty() || !scan.worth_parsing(&buf) {
            Ok(None)
        } else {
            codec::parse_response_head(&mut buf, &method)
        };
        match parsed {
            Ok(Some(head)) => break head,
            Ok(None) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => {
                    // The origin closed: what it sent is judged whole, as a last parse would.
                    read.end = match codec::parse_response_head(&mut buf, &method) {
                        Err(e) => e.to_string(),
                        Ok(_) => "incomplete".into(),
                    };
                    return read;
                }
            },
            Err(e) => {
                read.end = e.to_string();
                return read;
            }
        }
    };
    read.head = Some((head.status.as_u16(), head.headers.len()));
    read.framing = Some(head.framing);
    read.keep_alive = head.keep_alive;
    read.end = match head.framing {
        ResponseFraming::Empty => "complete".into(),
        ResponseFraming::Length(length) => {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            loop {
                let take = (length - read.body.len()).min(buf.len());
                read.body.extend_from_slice(&buf.split_to(take));
                if read.body.len() == length {
                    break "complete".into();
                }
                match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => break "incomplete".into(),
                }
            }
        }
        ResponseFraming::UntilClose => {
            read.body.extend_from_slice(&buf);
            pieces.for_each(|piece| read.body.extend_from_slice(piece));
            "complete".into()
        }
        ResponseFraming::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(data)) => read.body.extend_from_slice(&data),
                    Ok(Decoded::Trailers(fields)) => read.trailer_fields += fields.len(),
                    Ok(Decoded::End) => break "complete".into(),
                    Ok(Decoded::NeedMore) => match pieces.next() {
                        Some(piece) => buf.extend_from_slice(piece),
                        None => break "incomplete".into(),
                    },
                    Err(e) => break e.to_string(),
                }
            }
        }
    };
    read
}

/// What the framing tracker saw on a connection's incoming bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFraming {
    /// The first request with an ambiguous head: its index on the connection and why.
    pub first_ambiguous: Option<(u64, String)>,
    pub heads: u64,
    pub at_message_start: bool,
    /// The tracker stopped at a head that outgrew its limit unfinished (hyper refuses it).
    pub gave_up_on_head_size: bool,
}

/// Feeds a client's bytes to the connection's framing tracker in pieces of the sizes in `cuts`
/// (as for [`read_origin_response`]).
pub fn track_client_framing(input: &[u8], cuts: &[u8], max_head: usize) -> ClientFraming {
    let mut tracker = FramingTracker::new(max_head);
    let mut first_ambiguous = None;
    for piece in Pieces::new(input, cuts) {
        if let Some((index, error)) = tracker.feed(piece)
            && first_ambiguous.is_none()
        {
            first_ambiguous = Some((index, error.reason().to_string()));
        }
    }
    ClientFraming {
        first_ambiguous,
        heads: tracker.heads(),
        at_message_start: tracker.at_message_start(),
        gave_up_on_head_size: tracker.gave_up_on_head_size(),
    }
}

/// `input` cut into pieces of the sizes in `cuts`, cycled.
struct Pieces<'a> {
    rest: &'a [u8],
    cuts: &'a [u8],
    next_cut: usize,
}

impl<'a> Pieces<'a> {
    fn new(rest: &'a [u8], cuts: &'a [u8]) -> Pieces<'a> {
        Pieces {
            rest,
            cuts,
            next_cut: 0,
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let size = match self.cuts.get(self.next_cut % self.cuts.len().max(1)) {
            Some(&cut) => usize::from(cut.max(1)),
            None => self.rest.len(),
        };
        self.next_cut += 1;
        let (piece, rest) = self.rest.split_at(size.min(self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_response_reads_the_same_however_it_is_cut() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
                      5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 2\r\n\r\n";
        let whole = read_origin_response(input, &[], false);
        assert_eq!(whole.head, Some((200, 1)));
        assert_eq!(whole.body, b"hello world");
        assert_eq!(whole.trailer_fields, 1);
        assert_eq!(whole.end, "complete");
        for cuts in [&[1u8][..], &[2, 7], &[0, 13, 3]] {
            assert_eq!(read_origin_response(input, cuts, false), whole, "{cuts:?}");
        }
    }

    #[test]
    fn a_short_or_broken_response_says_how_it_ended() {
        let short = read_origin_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
            &[],
            false,
        );
        assert_eq!(
            (short.body.as_slice(), short.end.as_str()),
            (&b"abc"[..], "incomplete")
        );
        let broken = read_origin_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
            &[4],
            false,
        );
        assert_eq!(broken.body, b"abc");
        assert_eq!(broken.end, "chunk data not followed by CRLF");
        let head = read_origin_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", &[], true);
        assert_eq!(head.end, "complete");
        assert!(head.body.is_empty());
    }

    #[test]
    fn the_tracker_finds_the_smuggling_head_however_the_pipeline_is_cut() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
                      POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let whole = track_client_framing(input, &[], 8192);
        assert_eq!(whole.first_ambiguous.as_ref().map(|(i, _)| *i), Some(1));
        for cuts in [&[1u8][..], &[5, 1, 30]] {
            assert_eq!(track_client_framing(input, cuts, 8192), whole, "{cuts:?}");
        }
    }
}

//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers that read bytes off
//! the network, driven the way the edge drives them. Built only with the `fuzzing` feature; not
//! part of the edge's API.
//!
//! Each reader takes its input in pieces whose sizes the fuzzer also picks. What a reader
//! concludes must not depend on how TCP happened to cut the stream, so the targets compare the
//! outcome of a split read with that of one read of everything.

use crate::fingerprint::{ClientHello, ClientHelloReader, H2SettingsReader, Progress, ja4};
use crate::http::framing::FramingTracker;
use crate::origin::chunked::{ChunkedDecoder, Decoded};
use crate::origin::codec;
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

/// What the origin would receive is not exactly the one request the edge accepted. `sent` is
/// what the edge wrote, escaped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotOneRequest {
    /// The origin cannot parse a head out of what it receives.
    #[error("the origin cannot parse {sent:?}")]
    Unparsable {
        /// What the edge wrote, escaped.
        sent: String,
    },
    /// Not exactly one Host, more than one Content-Length, or both framings.
    #[error("ambiguous head to the origin: {sent:?}")]
    AmbiguousHead {
        /// What the edge wrote, escaped.
        sent: String,
    },
    /// The method or the target the origin reads is not the client's.
    #[error("the request line changed: {sent:?}")]
    RequestLineChanged {
        /// What the edge wrote, escaped.
        sent: String,
    },
    /// The origin cannot read the chunked body to its end.
    #[error("a broken chunked body: {sent:?}")]
    BrokenChunks {
        /// What the edge wrote, escaped.
        sent: String,
    },
    /// The Content-Length the origin reads is not a number.
    #[error("content-length: {0}")]
    BadLength(std::num::ParseIntError),
    /// Fewer body bytes than the Content-Length the origin reads.
    #[error("a body shorter than its length: {sent:?}")]
    ShortBody {
        /// What the edge wrote, escaped.
        sent: String,
    },
    /// The body the origin reads is not the client's.
    #[error("the body changed: {sent:?}")]
    BodyChanged {
        /// What the edge wrote, escaped.
        sent: String,
    },
    /// Bytes after the request, which the origin would read as a second one.
    #[error("bytes after the request, which the origin reads as another one: {sent:?}")]
    TrailingBytes {
        /// What the edge wrote, escaped.
        sent: String,
    },
}

/// Sends a client's HTTP/1.1 request (head and body bytes, as a client wrote them) through the
/// edge's request rewriting as the pipeline does, and reads what the origin would receive back
/// strictly. `Ok(None)`: the edge refuses it (or it is not one complete request); `Ok(Some)`:
/// the origin's bytes. `Err`: what the origin would receive is not exactly the one request the
/// edge accepted (its method, target and body), which is request smuggling or corruption.
///
/// httparse stands in for hyper on the client side; both refuse what RFC 9112 refuses, and the
/// edge's own framing checks run on the fields as parsed.
pub fn forward_request(input: &[u8]) -> Result<Option<Vec<u8>>, NotOneRequest> {
    use crate::http::{client::ClientFacts, framing};
    use crate::origin::fields as forward;
    use crate::phases::route;
    use http::{HeaderMap, HeaderName, HeaderValue, Uri, Version};

    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut slots);
    let Ok(httparse::Status::Complete(head_len)) = request.parse(input) else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(1)) = (request.method, request.path, request.version)
    else {
        return Ok(None);
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Ok(None);
    };
    let Ok(mut uri) = target.parse::<Uri>() else {
        return Ok(None);
    };
    let mut headers = HeaderMap::new();
    for field in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Ok(None);
        };
        headers.append(name, value);
    }
    if framing::check(Version::HTTP_11, &headers).is_err() || method == Method::CONNECT {
        return Ok(None);
    }
    if let Some(rooted) = route::with_rooted_path(&uri) {
        uri = rooted;
    }
    if uri.path_and_query().is_some_and(|t| t.as_str() == "*") && method != Method::OPTIONS {
        return Ok(None);
    }
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Ok(None);
    };
    let authority = match uri.authority() {
        Some(a) => match HeaderValue::from_str(a.as_str()) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
        None => host.clone(),
    };
    if authority.is_empty() {
        return Ok(None);
    }

    // The body as hyper reads it: chunked (exactly), else the declared length, else none.
    let rest = &input[head_len..];
    let (body, trailers, framing) = if headers.contains_key(http::header::TRANSFER_ENCODING) {
        let mut buf = BytesMut::from(rest);
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut trailers = None;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
                Ok(Decoded::Trailers(fields)) => trailers = Some(fields),
                Ok(Decoded::End) => break,
                Ok(Decoded::NeedMore) | Err(_) => return Ok(None),
            }
        }
        (body, trailers, codec::RequestFraming::Chunked)
    } else if let Some(length) = headers.get(http::header::CONTENT_LENGTH) {
        let Some(length) = length
            .to_str()
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l <= rest.len())
        else {
            return Ok(None);
        };
        (
            rest[..length].to_vec(),
            None,
            codec::RequestFraming::Length(length as u64),
        )
    } else {
        (Vec::new(), None, codec::RequestFraming::None)
    };

    let client = ClientFacts::new(std::net::Ipv4Addr::LOCALHOST.into(), false, false);
    let hop = forward::Hop {
        version: Version::HTTP_11,
        authority: &authority,
        client: &client,
        client_ip: client.peer,
        upgrade: false,
        cache_fill: None,
    };
    let mut fields = Vec::new();
    forward::write_origin_fields(&mut fields, &headers, &hop);
    let target = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut sent = codec::encode_request_head(&method, &target, &fields, framing);
    match framing {
        codec::RequestFraming::Chunked => {
            if !body.is_empty() {
                sent.extend_from_slice(&codec::chunk_size_line(body.len()));
                sent.extend_from_slice(&body);
                sent.extend_from_slice(b"\r\n");
            }
            sent.extend_from_slice(&codec::last_chunk(trailers.as_ref()));
        }
        _ => sent.extend_from_slice(&body),
    }

    // What the origin reads: exactly one request, the one accepted.
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut seen = httparse::Request::new(&mut slots);
    let Ok(httparse::Status::Complete(seen_head)) = seen.parse(&sent) else {
        return Err(NotOneRequest::Unparsable {
            sent: sent.escape_ascii().to_string(),
        });
    };
    let field = |name: &str| {
        seen.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.to_vec())
            .collect::<Vec<_>>()
    };
    let (lengths, codings, seen_hosts) = (
        field("content-length"),
        field("transfer-encoding"),
        field("host"),
    );
    if seen_hosts.len() != 1 || lengths.len() > 1 || (!lengths.is_empty() && !codings.is_empty()) {
        return Err(NotOneRequest::AmbiguousHead {
            sent: sent.escape_ascii().to_string(),
        });
    }
    if seen.method != Some(method.as_str()) || seen.path != Some(target.as_str()) {
        return Err(NotOneRequest::RequestLineChanged {
            sent: sent.escape_ascii().to_string(),
        });
    }
    let rest = &sent[seen_head..];
    let (seen_body, used) = if !codings.is_empty() {
        let mut buf = BytesMut::from(rest);
        let mut decoder = ChunkedDecoder::default();
        let mut seen_body = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => seen_body.extend_from_slice(&data),
                Ok(Decoded::Trailers(_)) => {}
                Ok(Decoded::End) => break,
                Ok(Decoded::NeedMore) | Err(_) => {
                    return Err(NotOneRequest::BrokenChunks {
                        sent: sent.escape_ascii().to_string(),
                    });
                }
            }
        }
        (seen_body, rest.len() - buf.len())
    } else {
        let length = lengths
            .first()
            .map(|l| String::from_utf8_lossy(l).parse::<usize>())
            .transpose()
            .map_err(NotOneRequest::BadLength)?
            .unwrap_or(0);
        if length > rest.len() {
            return Err(NotOneRequest::ShortBody {
                sent: sent.escape_ascii().to_string(),
            });
        }
        (rest[..length].to_vec(), length)
    };
    if seen_body != body {
        return Err(NotOneRequest::BodyChanged {
            sent: sent.escape_ascii().to_string(),
        });
    }
    if used != rest.len() {
        return Err(NotOneRequest::TrailingBytes {
            sent: sent.escape_ascii().to_string(),
        });
    }
    Ok(Some(sent))
}

/// What reading a client's first bytes for its fingerprints gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprinted {
    pub progress: Progress,
    pub fingerprint: Option<String>,
}

/// Reads a TLS client's first bytes as the listener keeps them (the records of its
/// ClientHello), in pieces of the sizes in `cuts` (as [`read_origin_response`] takes them),
/// and makes the JA4 of what was kept.
pub fn read_client_hello(input: &[u8], cuts: &[u8]) -> Fingerprinted {
    let mut reader = ClientHelloReader::new();
    let mut progress = Progress::NeedMore;
    for piece in Pieces::new(input, cuts) {
        progress = reader.feed(piece);
    }
    let fingerprint = reader
        .message()
        .and_then(|m| ClientHello::parse(m).ok())
        .map(|hello| ja4(&hello).into());
    Fingerprinted {
        progress,
        fingerprint,
    }
}

/// Reads an HTTP/2 client's first bytes (the preface first) for its fingerprint, in pieces of
/// the sizes in `cuts`.
pub fn read_h2_opening(input: &[u8], cuts: &[u8]) -> Fingerprinted {
    let mut reader = H2SettingsReader::new();
    let mut progress = Progress::NeedMore;
    for piece in Pieces::new(input, cuts) {
        progress = reader.feed(piece);
    }
    Fingerprinted {
        progress,
        fingerprint: reader.fingerprint().map(str::to_owned),
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

    struct Vector {
        what: &'static str,
        records: &'static str,
        ja4: &'static str,
    }

    include!("fingerprint/testdata/vectors.rs");

    #[test]
    fn a_client_hello_gives_the_same_ja4_however_its_reads_are_cut() {
        for v in VECTORS.iter().chain([&NON_ASCII_ALPN]) {
            let digits: Vec<u8> = v.records.bytes().filter(u8::is_ascii_hexdigit).collect();
            let records: Vec<u8> = digits
                .chunks(2)
                .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
                .collect();
            let whole = read_client_hello(&records, &[]);
            assert_eq!(whole.progress, Progress::Complete, "{}", v.what);
            assert_eq!(whole.fingerprint.as_deref(), Some(v.ja4), "{}", v.what);
            for cuts in [&[1u8][..], &[5], &[3, 250, 7], &[255, 0]] {
                assert_eq!(
                    read_client_hello(&records, cuts),
                    whole,
                    "{} {cuts:?}",
                    v.what
                );
            }
        }
    }

    #[test]
    fn a_forwarded_request_reaches_the_origin_as_exactly_one_request() {
        let accepted: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello",
            b"PUT /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\nContent-Length: 9\r\nX-Sum: 1\r\n\r\n",
            b"GET http://a?x=1 HTTP/1.1\r\nHost: a\r\nConnection: x-a, via\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 31\r\n\r\nGET /admin HTTP/1.1\r\nX-Ignore: ",
        ];
        for input in accepted {
            let sent = forward_request(input)
                .unwrap_or_else(|e| panic!("{}: {e}", input.escape_ascii()))
                .unwrap_or_else(|| panic!("refused: {}", input.escape_ascii()));
            assert!(sent.starts_with(b"GET /") || sent.starts_with(b"P"));
        }
        // The smuggling shapes are refused before anything is written.
        let refused: [&[u8]; 3] = [
            b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 31\r\nConnection: content-length\r\n\r\nGET /admin HTTP/1.1\r\nX-Ignore: ",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ];
        for input in refused {
            assert_eq!(forward_request(input), Ok(None), "{}", input.escape_ascii());
        }
    }

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

//! The TLS ClientHello, read off the wire the way rustls reads it and parsed strictly enough to
//! fingerprint it: record layer (RFC 8446 §5.1), handshake header (§4), ClientHello (§4.1.2).
//!
//! Nothing here decides the handshake: rustls does, on its own copy of the bytes. A hello this
//! module cannot read (not a handshake record, a record or message over its limit, lengths that
//! do not add up) only means the connection has no fingerprint.

use super::Progress;

/// The largest ClientHello kept, handshake header included: browsers send under 2.5 KiB (a
/// post-quantum key share and ECH GREASE included); past this the connection goes without a
/// fingerprint.
pub const MAX_CLIENT_HELLO_BYTES: usize = 16 * 1024;

/// TLSPlaintext.length may not exceed 2^14 (RFC 8446 §5.1).
const MAX_RECORD_FRAGMENT: u16 = 1 << 14;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;

/// Reassembles the first handshake message from TLS records as they arrive, in pieces of any
/// size, keeping only the message's bytes and at most [`MAX_CLIENT_HELLO_BYTES`] of them.
#[derive(Debug)]
pub struct ClientHelloReader {
    progress: Progress,
    record_header: [u8; RECORD_HEADER_LEN],
    record_header_len: u8,
    /// Fragment bytes of the current record not read yet.
    record_left: u16,
    /// The handshake message so far: header and body. Grows with what arrives, never ahead.
    message: Vec<u8>,
}

impl Default for ClientHelloReader {
    fn default() -> Self {
        ClientHelloReader::new()
    }
}

impl ClientHelloReader {
    /// A reader at the start of a connection.
    pub fn new() -> ClientHelloReader {
        ClientHelloReader {
            progress: Progress::NeedMore,
            record_header: [0; RECORD_HEADER_LEN],
            record_header_len: 0,
            record_left: 0,
            message: Vec::new(),
        }
    }

    /// Reads the next bytes the client sent. Once complete or abandoned, bytes are ignored.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Progress {
        while self.progress == Progress::NeedMore && !bytes.is_empty() {
            if self.record_left == 0 {
                let have = usize::from(self.record_header_len);
                let take = bytes.len().min(RECORD_HEADER_LEN - have);
                self.record_header[have..have + take].copy_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if have + take < RECORD_HEADER_LEN {
                    self.record_header_len = (have + take) as u8;
                    break;
                }
                self.record_header_len = 0;
                let [kind, _, _, len_hi, len_lo] = self.record_header;
                let len = u16::from_be_bytes([len_hi, len_lo]);
                // Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
                if kind != CONTENT_HANDSHAKE || len == 0 || len > MAX_RECORD_FRAGMENT {
                    return self.abandon();
                }
                self.record_left = len;
                continue;
            }
            let take = bytes.len().min(usize::from(self.record_left));
            let (fragment, rest) = bytes.split_at(take);
            bytes = rest;
            self.record_left -= take as u16;
            self.take_fragment(fragment);
        }
        self.progress
    }

    /// Appends handshake bytes, up to the end of the first message.
    fn take_fragment(&mut self, mut fragment: &[u8]) {
        if self.message.len() < HANDSHAKE_HEADER_LEN {
            let take = fragment
                .len()
                .min(HANDSHAKE_HEADER_LEN - self.message.len());
            self.message.extend_from_slice(&fragment[..take]);
            fragment = &fragment[take..];
            if self.message.len() < HANDSHAKE_HEADER_LEN {
                return;
            }
            if self.message[0] != HANDSHAKE_CLIENT_HELLO
                || self.declared_len() > MAX_CLIENT_HELLO_BYTES
            {
                self.abandon();
                return;
            }
        }
        let wanted = self.declared_len() - self.message.len();
        let take = fragment.len().min(wanted);
        self.message.extend_from_slice(&fragment[..take]);
        if self.message.len() == self.declared_len() {
            self.progress = Progress::Complete;
        }
    }

    /// The whole message's length (header included) as its header declares it.
    fn declared_len(&self) -> usize {
        let [_, a, b, c] = [
            self.message[0],
            self.message[1],
            self.message[2],
            self.message[3],
        ];
        HANDSHAKE_HEADER_LEN + u32::from_be_bytes([0, a, b, c]) as usize
    }

    fn abandon(&mut self) -> Progress {
        self.progress = Progress::Abandoned;
        self.message = Vec::new();
        self.progress
    }

    /// The complete ClientHello handshake message (its 4-byte header, then the body).
    pub fn message(&self) -> Option<&[u8]> {
        (self.progress == Progress::Complete).then_some(self.message.as_slice())
    }
}

/// Why a handshake message is not a ClientHello this module can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not a ClientHello, or its length is not the header's.
    #[error("not a ClientHello message")]
    NotClientHello,
    /// A length runs past its container, or leaves bytes over.
    #[error("ClientHello lengths do not add up")]
    Lengths,
}

/// A ClientHello, borrowed from its message: the parts a fingerprint reads, each checked to
/// fit exactly in the part around it.
#[derive(Debug, Clone, Copy)]
pub struct ClientHello<'a> {
    /// `legacy_version`: the version a client without `supported_versions` asks for.
    pub legacy_version: u16,
    /// `cipher_suites`: two bytes each, in the client's order.
    cipher_suites: &'a [u8],
    /// The extensions block (without its length); empty when the hello has none.
    extensions: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// Parses a complete handshake message (header included), as [`ClientHelloReader`] gives it.
    pub fn parse(message: &'a [u8]) -> Result<ClientHello<'a>, Malformed> {
        let mut m = Reader(message);
        if m.u8()? != HANDSHAKE_CLIENT_HELLO {
            return Err(Malformed::NotClientHello);
        }
        let len = m.u24()?;
        if len != m.0.len() {
            return Err(Malformed::NotClientHello);
        }
        let legacy_version = m.u16()?;
        m.take(32)?; // random
        let session_id = m.u8_prefixed()?;
        // legacy_session_id<0..32> (RFC 8446 §4.1.2).
        if session_id.len() > 32 {
            return Err(Malformed::Lengths);
        }
        let cipher_suites = m.u16_prefixed()?;
        if !cipher_suites.len().is_multiple_of(2) {
            return Err(Malformed::Lengths);
        }
        m.u8_prefixed()?; // legacy_compression_methods
        // A TLS 1.2 or older hello may end here: no extensions at all.
        let extensions = if m.0.is_empty() {
            &[][..]
        } else {
            let block = m.u16_prefixed()?;
            m.end()?;
            let mut walk = Reader(block);
            while !walk.0.is_empty() {
                walk.u16()?;
                walk.u16_prefixed()?;
            }
            block
        };
        Ok(ClientHello {
            legacy_version,
            cipher_suites,
            extensions,
        })
    }

    /// The cipher suites, in order (GREASE included).
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + 'a {
        self.cipher_suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    /// The extensions as `(type, data)`, in order (GREASE included).
    pub fn extensions(&self) -> impl Iterator<Item = (u16, &'a [u8])> + 'a {
        let mut walk = Reader(self.extensions);
        // Checked whole by `parse`: the walk ends exactly at the block's end.
        std::iter::from_fn(move || Some((walk.u16().ok()?, walk.u16_prefixed().ok()?)))
    }
}

/// A cursor over bytes whose every read is checked.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed::Lengths);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Result<usize, Malformed> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize)
    }

    pub(super) fn u8_prefixed(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    pub(super) fn u16_prefixed(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    pub(super) fn end(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed::Lengths)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record holding `message`.
    fn record(message: &[u8]) -> Vec<u8> {
        let mut out = vec![CONTENT_HANDSHAKE, 3, 1];
        out.extend_from_slice(&(message.len() as u16).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    /// A minimal TLS 1.2 ClientHello message: one cipher, no extensions.
    fn minimal_hello() -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]); // compression: null
        let mut message = vec![HANDSHAKE_CLIENT_HELLO];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    #[test]
    fn a_hello_split_across_records_and_reads_is_reassembled_whole() {
        let message = minimal_hello();
        // The message in records of 7 bytes, the stream then read 3 bytes at a time.
        let stream: Vec<u8> = message.chunks(7).flat_map(record).collect();
        let mut reader = ClientHelloReader::new();
        let mut last = Progress::NeedMore;
        for piece in stream.chunks(3) {
            last = reader.feed(piece);
        }
        assert_eq!(last, Progress::Complete);
        assert_eq!(reader.message(), Some(&message[..]));
        let hello = ClientHello::parse(&message).expect("parses");
        assert_eq!(hello.legacy_version, 0x0303);
        assert_eq!(hello.cipher_suites().collect::<Vec<_>>(), [0x1301]);
        assert_eq!(hello.extensions().count(), 0);
    }

    #[test]
    fn bytes_after_the_hello_are_not_kept() {
        let message = minimal_hello();
        let mut stream = record(&message);
        // A ChangeCipherSpec record and then anything: ignored once the hello is complete.
        stream.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        stream.extend_from_slice(&[0xff; 64]);
        let mut reader = ClientHelloReader::new();
        assert_eq!(reader.feed(&stream), Progress::Complete);
        assert_eq!(reader.message(), Some(&message[..]));
    }

    #[test]
    fn what_is_not_a_handshake_record_is_abandoned_at_once() {
        for first in [
            &b"GET / HTTP/1.1\r\n"[..],
            // SSLv2-compatible hello, which rustls does not speak either.
            &[0x80, 0x2e, 0x01, 0x00, 0x02][..],
            // An alert record.
            &[21, 3, 3, 0, 2, 2, 40][..],
            // A zero-length handshake record, and one over 2^14.
            &[22, 3, 1, 0, 0][..],
            &[22, 3, 1, 0x40, 0x01][..],
            // A handshake message other than ClientHello first.
            &[22, 3, 1, 0, 4, 2, 0, 0, 0][..],
            // A ClientHello declaring more than the limit.
            &[22, 3, 1, 0, 4, 1, 0, 0x40, 0x01][..],
        ] {
            let mut reader = ClientHelloReader::new();
            assert_eq!(
                reader.feed(first),
                Progress::Abandoned,
                "{}",
                first.escape_ascii()
            );
            assert_eq!(reader.message(), None);
            assert_eq!(reader.feed(&record(&minimal_hello())), Progress::Abandoned);
        }
    }

    #[test]
    fn the_reader_never_holds_more_than_the_limit_or_more_than_arrived() {
        // A hello declaring exactly the limit, sent in full-size records.
        let body_len = MAX_CLIENT_HELLO_BYTES - HANDSHAKE_HEADER_LEN;
        let mut message = vec![HANDSHAKE_CLIENT_HELLO];
        message.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
        message.resize(MAX_CLIENT_HELLO_BYTES, 0);
        let mut reader = ClientHelloReader::new();
        let stream: Vec<u8> = message.chunks(1 << 14).flat_map(record).collect();
        // Half of it: only what arrived is held.
        assert_eq!(reader.feed(&stream[..stream.len() / 2]), Progress::NeedMore);
        assert!(reader.message.len() <= stream.len() / 2);
        assert_eq!(reader.feed(&stream[stream.len() / 2..]), Progress::Complete);
        assert_eq!(
            reader.message().map(<[u8]>::len),
            Some(MAX_CLIENT_HELLO_BYTES)
        );
    }

    #[test]
    fn lengths_that_do_not_add_up_are_malformed() {
        let good = minimal_hello();
        assert!(ClientHello::parse(&good).is_ok());
        // Every truncation of the message, with its header's length fixed to match.
        for cut in 4..good.len() {
            let mut message = good[..cut].to_vec();
            message[1..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes()[1..]);
            assert!(ClientHello::parse(&message).is_err(), "cut at {cut}");
        }
        // A header that disagrees with the body's length.
        let mut short = good.clone();
        short.pop();
        assert_eq!(
            ClientHello::parse(&short).unwrap_err(),
            Malformed::NotClientHello
        );
        // An odd cipher_suites length.
        let mut odd = good.clone();
        odd[4 + 2 + 32 + 1 + 1] = 3;
        assert!(ClientHello::parse(&odd).is_err());
        // A 33-byte session id.
        let mut message = good[..4 + 2 + 32].to_vec();
        message.push(33);
        message.extend_from_slice(&[0; 33]);
        message.extend_from_slice(&good[4 + 2 + 32 + 1..]);
        let len = (message.len() - 4) as u32;
        message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
        assert_eq!(
            ClientHello::parse(&message).unwrap_err(),
            Malformed::Lengths
        );
        // An extensions block whose last extension runs past it, or with a byte over.
        for tail in [&[0, 4, 0, 0, 0, 1][..], &[0, 5, 0, 0, 0, 0, 9], &[0]] {
            let mut message = good.clone();
            message.extend_from_slice(tail);
            let len = (message.len() - 4) as u32;
            message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
            assert_eq!(
                ClientHello::parse(&message).unwrap_err(),
                Malformed::Lengths,
                "{tail:?}"
            );
        }
    }
}

//! Hand-made HTTP/2 over cleartext TCP (h2c with prior knowledge): frames written byte by byte,
//! so a test can send what no HTTP/2 library would (a HEADERS block that never ends, a reset
//! for every stream it opens, ten thousand PINGs), and read back the frames the server sends.
//!
//! Header blocks are HPACK without Huffman coding; reading responses decodes nothing beyond
//! what the tests need ([`Frame::is_status_200`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// GOAWAY and RST_STREAM error codes (RFC 9113 §7).
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame on the wire: the 9-byte header and the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("frame payload fits 24 bits")
        .to_be_bytes();
    assert_eq!(len[0], 0, "frame payload over 16 MiB");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame with `(identifier, value)` pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = pairs
        .iter()
        .flat_map(|(id, value)| {
            let mut entry = id.to_be_bytes().to_vec();
            entry.extend_from_slice(&value.to_be_bytes());
            entry
        })
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

pub fn ping(data: u64) -> Vec<u8> {
    frame(PING, 0, 0, &data.to_be_bytes())
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// HEADERS carrying a complete block (END_HEADERS), optionally ending the stream.
pub fn headers(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, block)
}

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits set to `high`.
pub fn hpack_int(out: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(out: &mut Vec<u8>, text: &[u8]) {
    hpack_int(out, 0x00, 7, text.len());
    out.extend_from_slice(text);
}

/// A header field as a literal without indexing, new name (RFC 7541 §6.2.2).
pub fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_string(out, name.as_bytes());
    hpack_string(out, value);
}

/// A header field as a literal with incremental indexing, new name (RFC 7541 §6.2.1): the
/// decoder adds it to its dynamic table, where the first entry has index 62.
pub fn hpack_indexed_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x40);
    hpack_string(out, name.as_bytes());
    hpack_string(out, value);
}

/// The header block of `GET http://{authority}{path}`: `:method GET`, `:scheme http` from the
/// static table, `:path` and `:authority` as literals with indexed names.
pub fn get_block(authority: &str, path: &str) -> Vec<u8> {
    let mut out = vec![0x82, 0x86];
    out.push(0x04);
    hpack_string(&mut out, path.as_bytes());
    out.push(0x01);
    hpack_string(&mut out, authority.as_bytes());
    out
}

/// A frame read from the server.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's error code.
    pub fn goaway_code(&self) -> Option<u32> {
        (self.kind == GOAWAY && self.payload.len() >= 8)
            .then(|| u32::from_be_bytes(self.payload[4..8].try_into().expect("four bytes")))
    }

    /// A response HEADERS whose block starts with `:status 200` from the static table (0x88),
    /// as every HPACK encoder writes it.
    pub fn is_status_200(&self) -> bool {
        self.kind == HEADERS && self.payload.first() == Some(&0x88)
    }
}

/// What the server did with a connection a test was abusing.
#[derive(Debug, Default)]
pub struct Ending {
    /// The first GOAWAY's error code, if one came.
    pub goaway: Option<u32>,
    /// The server closed (or reset) the connection.
    pub closed: bool,
    /// The first thousand frames read meanwhile.
    pub frames: Vec<Frame>,
    /// Every frame read meanwhile.
    pub frames_read: usize,
}

/// One h2c connection, the preface and the client's SETTINGS already sent.
pub struct H2Conn {
    reader: H2Reader,
    write: OwnedWriteHalf,
}

impl H2Conn {
    /// Connects with an empty SETTINGS frame: every setting at its default.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<H2Conn> {
        Self::connect_with_settings(addr, &[]).await
    }

    /// Connects and announces `(identifier, value)` settings, e.g. `(0x4, 0)` for an initial
    /// stream window of zero.
    pub async fn connect_with_settings(
        addr: SocketAddr,
        pairs: &[(u16, u32)],
    ) -> std::io::Result<H2Conn> {
        Self::start(TcpStream::connect(addr).await?, pairs).await
    }

    /// Connects from `source`, e.g. `127.0.0.2`.
    pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<H2Conn> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        Self::start(socket.connect(addr).await?, &[]).await
    }

    async fn start(stream: TcpStream, pairs: &[(u16, u32)]) -> std::io::Result<H2Conn> {
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut conn = H2Conn {
            reader: H2Reader {
                read,
                buf: Vec::new(),
                eof: false,
            },
            write,
        };
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(pairs));
        conn.send(&hello).await?;
        Ok(conn)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await
    }

    /// See [`H2Reader::read_frame`].
    pub async fn read_frame(&mut self, timeout: Duration) -> Option<Frame> {
        self.reader.read_frame(timeout).await
    }

    /// See [`H2Reader::read_until_closed`].
    pub async fn read_until_closed(&mut self, timeout: Duration) -> Ending {
        self.reader.read_until_closed(timeout).await
    }

    /// Splits the connection so frames can be written on one task while the server's are read
    /// on another.
    pub fn into_split(self) -> (H2Reader, OwnedWriteHalf) {
        (self.reader, self.write)
    }
}

/// The reading side of an [`H2Conn`].
pub struct H2Reader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
    eof: bool,
}

impl H2Reader {
    /// The next frame within `timeout`; `None` on close, reset or timeout.
    pub async fn read_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = take_frame(&mut self.buf) {
                return Some(frame);
            }
            if self.eof {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 64 * 1024];
            match tokio::time::timeout(left, self.read.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until the server closes the connection or `timeout` passes.
    pub async fn read_until_closed(&mut self, timeout: Duration) -> Ending {
        let deadline = Instant::now() + timeout;
        let mut ending = Ending::default();
        while let Some(frame) = self
            .read_frame(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            if ending.goaway.is_none() {
                ending.goaway = frame.goaway_code();
            }
            ending.frames_read += 1;
            if ending.frames.len() < 1000 {
                ending.frames.push(frame);
            }
        }
        ending.closed = self.eof;
        ending
    }
}

/// The complete frames at the front of `bytes` (what a server sent), in order.
pub fn parse_frames(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = bytes.to_vec();
    std::iter::from_fn(|| take_frame(&mut buf)).collect()
}

/// Takes one complete frame off the front of `buf`.
fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    if buf.len() < 9 {
        return None;
    }
    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
    if buf.len() < 9 + len {
        return None;
    }
    let head: Vec<u8> = buf.drain(..9).collect();
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload: buf.drain(..len).collect(),
    })
}

//! Byte-exact HTTP/1.1 over TCP: what a hostile or broken client sends, and what came back,
//! including whether the server closed the connection.
//!
//! No HTTP library sits in between, so requests that a library would refuse to produce
//! (two `Content-Length`s, obs-fold, NUL bytes) reach the proxy exactly as written.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long to wait for a response, and then for the server to close the connection.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What came back for one raw request.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// `HTTP/1.1 400 Bad Request`, or empty when no complete response head arrived.
    pub status_line: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields after a chunked body.
    pub trailers: Vec<(String, String)>,
    /// The server closed (FIN or RST) the connection after, or instead of, the response.
    pub connection_closed: bool,
}

impl RawResponse {
    /// The status code, if a response head arrived.
    pub fn status(&self) -> Option<u16> {
        self.status_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` on a new connection, reads one response (up to [`READ_TIMEOUT`]), then waits
/// up to [`READ_TIMEOUT`] more to see whether the server closes the connection.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut conn = RawConn::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    // A server that rejects early may close before taking every byte; that is its answer.
    let _ = conn.send(request).await;
    let mut response = conn.read_response(READ_TIMEOUT).await;
    if !response.connection_closed {
        response.connection_closed = conn.closed_within(READ_TIMEOUT).await;
    }
    response
}

/// One client TCP connection, for exchanges that span several writes and reads.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read but not yet consumed by a response.
    buf: Vec<u8>,
    /// The server has closed its side.
    eof: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        Self::from_stream(TcpStream::connect(addr).await?)
    }

    /// Connects from `source` (any port), e.g. `127.0.0.2`: the whole of 127.0.0.0/8 is
    /// loopback on Linux, so one test can be several clients to per-address limits.
    pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<RawConn> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        Self::from_stream(socket.connect(addr).await?)
    }

    fn from_stream(stream: TcpStream) -> std::io::Result<RawConn> {
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads once into the buffer; `false` once the server has closed (or reset) the connection.
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response (skipping 1xx interim ones) within `timeout`. A response cut short
    /// by a close or the timeout comes back with whatever arrived, `status_line` empty if the
    /// head was incomplete.
    pub async fn read_response(&mut self, timeout: Duration) -> RawResponse {
        self.read_next(timeout, true).await
    }

    /// Like [`RawConn::read_response`], but an interim response (`100 Continue`, `103 Early
    /// Hints`) comes back on its own, for exchanges that wait for one before going on.
    pub async fn read_interim_or_response(&mut self, timeout: Duration) -> RawResponse {
        self.read_next(timeout, false).await
    }

    async fn read_next(&mut self, timeout: Duration, skip_interim: bool) -> RawResponse {
        let deadline = Instant::now() + timeout;
        loop {
            let mut response = RawResponse::default();
            let head_end = loop {
                if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                    break end;
                }
                if !self.fill_until(deadline).await {
                    response.connection_closed = self.eof;
                    return response;
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            self.buf.drain(..head_end + 4);
            let mut lines = head.split("\r\n");
            response.status_line = lines.next().unwrap_or_default().to_owned();
            response.headers = lines
                .filter_map(|line| line.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let status = response.status().unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                if skip_interim {
                    continue;
                }
                return response;
            }
            if status == 101 || status == 204 || status == 304 {
                return response;
            }
            let chunked = response
                .header("transfer-encoding")
                .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
            let length = response
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            if chunked {
                loop {
                    if let Some((body, trailers, used)) = dechunk(&self.buf) {
                        response.body = body;
                        response.trailers = trailers;
                        self.buf.drain(..used);
                        break;
                    }
                    if !self.fill_until(deadline).await {
                        response.body = std::mem::take(&mut self.buf);
                        break;
                    }
                }
            } else if let Some(length) = length {
                while self.buf.len() < length {
                    if !self.fill_until(deadline).await {
                        break;
                    }
                }
                let take = length.min(self.buf.len());
                response.body = self.buf.drain(..take).collect();
            } else {
                // Close-delimited body.
                while self.fill_until(deadline).await {}
                response.body = std::mem::take(&mut self.buf);
            }
            response.connection_closed = self.eof;
            return response;
        }
    }

    /// One read, bounded by `deadline`; `false` on close or timeout.
    async fn fill_until(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        matches!(tokio::time::timeout(left, self.fill()).await, Ok(true))
    }

    /// Whether the server closes the connection within `timeout` (bytes arriving meanwhile are
    /// kept for the next response).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, self.fill()).await.is_err() {
                return false;
            }
        }
        true
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A de-chunked body, its trailer fields, and how many bytes of the buffer it took.
type Dechunked = (Vec<u8>, Vec<(String, String)>, usize);

/// Decodes a complete chunked body at the start of `buf`, or `None` if more bytes are needed.
fn dechunk(buf: &[u8]) -> Option<Dechunked> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&buf[at..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[at..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailer section, ended by an empty line.
            let mut trailers = Vec::new();
            loop {
                let end = at + find(&buf[at..], b"\r\n")?;
                let line = String::from_utf8_lossy(&buf[at..end]).into_owned();
                at = end + 2;
                match line.split_once(':') {
                    Some((n, v)) => trailers.push((n.trim().to_owned(), v.trim().to_owned())),
                    None => return Some((body, trailers, at)),
                }
            }
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_reads_complete_body_and_trailers() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: abc\r\n\r\nNEXT";
        let (body, trailers, used) = dechunk(wire).expect("complete");
        assert_eq!(body, b"hello world");
        assert_eq!(trailers, vec![("x-checksum".to_owned(), "abc".to_owned())]);
        assert_eq!(&wire[used..], b"NEXT");
    }

    #[test]
    fn dechunk_waits_for_more_bytes() {
        assert_eq!(dechunk(b"5\r\nhel"), None);
        assert_eq!(dechunk(b"0\r\n"), None);
    }
}

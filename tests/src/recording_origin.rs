//! An HTTP/1.1 origin that keeps every byte it receives, per connection, and answers each
//! request with its own request line: for proving what crossed the proxy on the wire.
//!
//! It reads requests the way a typical origin server does (Transfer-Encoding chunked, else
//! Content-Length, else no body) and keeps connections open, so a request smuggled inside
//! another's body shows up as an extra request, and a victim whose request was glued to a
//! smuggled prefix gets the wrong answer. [`parse_exact`] reads the recorded bytes back
//! strictly, for tests that assert the origin received exactly the requests they meant.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Longest request head the origin reads; a longer one ends the connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// One request as read from the recorded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRequest {
    pub method: String,
    pub target: String,
    /// Fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields after a chunked body, names lowercased.
    pub trailers: Vec<(String, String)>,
}

impl WireRequest {
    /// Every value of field `name` (lowercase).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of field `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }
}

/// The origin's answer to a request: `200`, body `METHOD target` (none for HEAD).
pub fn answer_body(method: &str, target: &str) -> String {
    format!("{method} {target}")
}

/// An origin on 127.0.0.1 on the caller's tokio runtime (so `start` runs inside one); stops
/// when dropped, also when a test panics.
pub struct RecordingOrigin {
    addr: SocketAddr,
    /// Bytes received, one entry per accepted connection, in accept order.
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl RecordingOrigin {
    pub fn start() -> RecordingOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("recording origin: bind");
        listener
            .set_nonblocking(true)
            .expect("recording origin: non-blocking listener");
        let addr = listener.local_addr().expect("recording origin: address");
        let listener = TcpListener::from_std(listener).expect("recording origin: inside a runtime");
        let received = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept(listener, Arc::clone(&received)));
        RecordingOrigin {
            addr,
            received,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, for a config's `origins`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bytes received so far, one entry per connection, in accept order.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every byte received so far, connections concatenated (lossy UTF-8), for messages.
    pub fn all_text(&self) -> String {
        self.connections()
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n--- next connection ---\n")
    }
}

impl Drop for RecordingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, received: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _peer)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                let index = {
                    let mut all = received.lock().unwrap_or_else(|p| p.into_inner());
                    all.push(Vec::new());
                    all.len() - 1
                };
                connections.spawn(serve(socket, Arc::clone(&received), index));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(mut socket: TcpStream, received: Arc<Mutex<Vec<Vec<u8>>>>, index: usize) {
    let mut buf = Vec::new();
    let mut read = [0u8; 16 * 1024];
    loop {
        // Answer every complete request in the buffer, in order.
        loop {
            match parse_one(&buf) {
                Parsed::Request(request, used) => {
                    buf.drain(..used);
                    // A response to HEAD has no content (RFC 9110 §9.3.2).
                    let body = if request.method == "HEAD" {
                        String::new()
                    } else {
                        answer_body(&request.method, &request.target)
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: no-store\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Parsed::Incomplete if buf.len() <= MAX_HEAD_BYTES + 16 * 1024 * 1024 => break,
                Parsed::Incomplete | Parsed::Invalid(_) => return,
            }
        }
        match socket.read(&mut read).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.extend_from_slice(&read[..n]);
                received.lock().unwrap_or_else(|p| p.into_inner())[index]
                    .extend_from_slice(&read[..n]);
            }
        }
    }
}

enum Parsed {
    /// A request and the bytes it took.
    Request(WireRequest, usize),
    Incomplete,
    Invalid(String),
}

/// Reads the recorded bytes of one connection strictly: one request after another, each with
/// exactly one Host, at most one Content-Length, never both Content-Length and
/// Transfer-Encoding, Transfer-Encoding only `chunked`; no byte left over.
pub fn parse_exact(mut bytes: &[u8]) -> Result<Vec<WireRequest>, String> {
    let mut requests = Vec::new();
    while !bytes.is_empty() {
        match parse_one(bytes) {
            Parsed::Request(request, used) => {
                let hosts = request.all("host").len();
                let lengths = request.all("content-length");
                let codings = request.all("transfer-encoding");
                if hosts != 1 {
                    return Err(format!("{hosts} Host fields in {request:?}"));
                }
                if lengths.len() > 1 || (!lengths.is_empty() && !codings.is_empty()) {
                    return Err(format!("ambiguous framing in {request:?}"));
                }
                if !codings.is_empty() && codings != ["chunked"] {
                    return Err(format!("transfer coding {codings:?} in {request:?}"));
                }
                requests.push(request);
                bytes = &bytes[used..];
            }
            Parsed::Incomplete => {
                return Err(format!(
                    "{} bytes left that are no complete request: {:?}",
                    bytes.len(),
                    String::from_utf8_lossy(bytes)
                ));
            }
            Parsed::Invalid(why) => return Err(why),
        }
    }
    Ok(requests)
}

/// Parses one request from the front of `bytes` as an ordinary origin server would.
fn parse_one(bytes: &[u8]) -> Parsed {
    let Some(head_end) = find(bytes, b"\r\n\r\n").map(|i| i + 4) else {
        return Parsed::Incomplete;
    };
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut request = httparse::Request::new(&mut slots);
    match request.parse(&bytes[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(e) => {
            return Parsed::Invalid(format!(
                "malformed head ({e}): {:?}",
                String::from_utf8_lossy(&bytes[..head_end])
            ));
        }
    }
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut parsed = WireRequest {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    let chunked = parsed.all("transfer-encoding").last().is_some_and(|v| {
        v.rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("chunked")
    });
    let rest = &bytes[head_end..];
    if chunked {
        match dechunk(rest) {
            Dechunked::Done {
                body,
                trailers,
                used,
            } => {
                parsed.body = body;
                parsed.trailers = trailers;
                Parsed::Request(parsed, head_end + used)
            }
            Dechunked::Incomplete => Parsed::Incomplete,
            Dechunked::Invalid(why) => Parsed::Invalid(why),
        }
    } else {
        let length = match parsed
            .header("content-length")
            .map(|v| v.trim().parse::<usize>())
        {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Parsed::Invalid(format!("bad content-length in {parsed:?}")),
        };
        if rest.len() < length {
            return Parsed::Incomplete;
        }
        parsed.body = rest[..length].to_vec();
        Parsed::Request(parsed, head_end + length)
    }
}

enum Dechunked {
    Done {
        body: Vec<u8>,
        trailers: Vec<(String, String)>,
        used: usize,
    },
    Incomplete,
    Invalid(String),
}

fn dechunk(bytes: &[u8]) -> Dechunked {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&bytes[at..], b"\r\n").map(|i| at + i) else {
            return Dechunked::Incomplete;
        };
        let line = String::from_utf8_lossy(&bytes[at..line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Dechunked::Invalid(format!("bad chunk size line {line:?}"));
        };
        at = line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            let mut trailers = Vec::new();
            loop {
                let Some(end) = find(&bytes[at..], b"\r\n").map(|i| at + i) else {
                    return Dechunked::Incomplete;
                };
                let line = String::from_utf8_lossy(&bytes[at..end]).into_owned();
                at = end + 2;
                if line.is_empty() {
                    return Dechunked::Done {
                        body,
                        trailers,
                        used: at,
                    };
                }
                let Some((name, value)) = line.split_once(':') else {
                    return Dechunked::Invalid(format!("bad trailer line {line:?}"));
                };
                trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        if bytes.len() < at + size + 2 {
            return Dechunked::Incomplete;
        }
        body.extend_from_slice(&bytes[at..at + size]);
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Dechunked::Invalid("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_exact_reads_back_to_back_requests_and_refuses_leftovers() {
        let two = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc\
                    GET /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
                    2\r\nhi\r\n0\r\nx-t: 1\r\n\r\n";
        let requests = parse_exact(two).expect("two requests");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body, b"abc");
        assert_eq!(requests[1].target, "/b");
        assert_eq!(requests[1].body, b"hi");
        assert_eq!(requests[1].trailers, [("x-t".to_string(), "1".to_string())]);
        // A body the head does not announce is a second, unfinished request.
        assert!(
            parse_exact(b"POST /a HTTP/1.1\r\nhost: x\r\n\r\nGET /admin HTTP/1.1\r\n").is_err()
        );
        assert!(parse_exact(b"GET /a HTTP/1.1\r\n\r\n").is_err(), "no Host");
    }
}

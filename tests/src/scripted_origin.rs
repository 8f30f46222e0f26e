//! A raw TCP origin that answers each request with exactly the bytes a test scripts: for
//! responses no HTTP library would write (two Content-Lengths, a broken chunked body, a 70 KiB
//! field), and for connection behaviour a library hides (closing an idle keep-alive connection,
//! answering before reading the body, then a lingering close).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long a lingering close keeps reading (and discarding) before it closes the socket.
pub const LINGER: Duration = Duration::from_secs(1);

/// Longest request head the origin reads; a longer one ends the connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What the origin does with the connection once a reply's bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Reads the next request head on the same connection.
    KeepOpen,
    /// Closes the connection at once.
    Close,
    /// Reads nothing more, waits this long, then closes: an origin's keep-alive timeout firing
    /// on an idle connection.
    CloseAfter(Duration),
    /// Shuts down its write side (FIN), then reads and discards whatever arrives for up to
    /// [`LINGER`] before closing, so an answer sent before the request body was read is not
    /// destroyed by the TCP RST that closing with unread bytes would send.
    LingeringClose,
}

/// The scripted answer to one request head: bytes written as they are, then [`Then`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub then: Then,
    /// How long the origin thinks before writing `bytes` (a slow origin).
    pub delay: Duration,
}

impl Reply {
    pub fn new(bytes: impl Into<Vec<u8>>, then: Then) -> Reply {
        Reply {
            bytes: bytes.into(),
            then,
            delay: Duration::ZERO,
        }
    }

    /// The same reply, written only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// `bytes`, then wait for the next request on the same connection.
    pub fn keep_open(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::new(bytes, Then::KeepOpen)
    }

    /// `bytes`, then close.
    pub fn close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::new(bytes, Then::Close)
    }

    /// `bytes`, then close after `delay` without reading another request.
    pub fn close_after(bytes: impl Into<Vec<u8>>, delay: Duration) -> Reply {
        Reply::new(bytes, Then::CloseAfter(delay))
    }

    /// `bytes`, then a lingering close (see [`Then::LingeringClose`]).
    pub fn lingering_close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::new(bytes, Then::LingeringClose)
    }

    /// `HTTP/1.1 200 OK` with `Content-Length: 2` and body `ok`, connection kept open.
    pub fn ok() -> Reply {
        Reply::keep_open(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..])
    }
}

/// What every connection of one origin shares.
struct Shared {
    script: Box<dyn Fn(usize) -> Reply + Send + Sync>,
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Request heads with their numbers, in the order they were read.
    heads: Mutex<Vec<(usize, String)>>,
}

/// An origin on 127.0.0.1 that reads request heads byte by byte (up to the `\r\n\r\n` that
/// ends each, and not one byte further: a request body stays unread in the socket) and answers
/// head number N (0-based, counted over all connections) with `script(N)`.
///
/// ```no_run
/// use std::time::Duration;
/// use palisade_blackbox::scripted_origin::{Reply, ScriptedOrigin};
///
/// # async fn example() {
/// let origin = ScriptedOrigin::start(|n| match n {
///     0 => Reply::close_after(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
///                             Duration::from_millis(100)),
///     _ => Reply::ok(),
/// });
/// # }
/// ```
///
/// It runs as a task on the caller's tokio runtime (so `start` must be called inside one),
/// and stops when dropped, also when a test panics: the accept task is aborted and every
/// connection with it.
pub struct ScriptedOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ScriptedOrigin {
    /// Starts listening on a free port of 127.0.0.1 at once (connections queue until the
    /// runtime runs the origin's task).
    pub fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> ScriptedOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("scripted origin: bind");
        listener
            .set_nonblocking(true)
            .expect("scripted origin: non-blocking listener");
        let addr = listener.local_addr().expect("scripted origin: address");
        let listener = TcpListener::from_std(listener).expect("scripted origin: inside a runtime");
        let shared = Arc::new(Shared {
            script: Box::new(script),
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            heads: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        ScriptedOrigin { addr, shared, task }
    }

    /// An origin answering request `n` (0-based) with `200 OK`, the fields in `extra` (each
    /// ending in CRLF) and body `v{n}`, so a test can tell which answer it got.
    pub fn numbered(extra: &'static str) -> ScriptedOrigin {
        ScriptedOrigin::start(move |n| {
            let body = format!("v{n}");
            Reply::keep_open(format!(
                "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            ))
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a config's `origins`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Complete request heads read so far, over all connections.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The request heads read so far, in the order they were numbered, each without its
    /// final empty line (lossy UTF-8).
    pub fn heads(&self) -> Vec<String> {
        let mut heads = self
            .shared
            .heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        heads.sort_by_key(|(n, _)| *n);
        heads.into_iter().map(|(_, head)| head).collect()
    }
}

impl Drop for ScriptedOrigin {
    fn drop(&mut self) {
        // The connection tasks live in a JoinSet owned by this task: dropping it aborts them.
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _peer)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let _ = socket.set_nodelay(true);
                connections.spawn(serve(socket, shared.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(mut socket: TcpStream, shared: Arc<Shared>) {
    loop {
        let Some(head) = read_head(&mut socket).await else {
            return;
        };
        let n = shared.requests.fetch_add(1, Ordering::SeqCst);
        shared
            .heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((n, head));
        let reply = (shared.script)(n);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if socket.write_all(&reply.bytes).await.is_err() {
            return;
        }
        let _ = socket.flush().await;
        match reply.then {
            Then::KeepOpen => continue,
            Then::Close => return,
            Then::CloseAfter(delay) => {
                tokio::time::sleep(delay).await;
                return;
            }
            Then::LingeringClose => {
                let _ = socket.shutdown().await;
                let mut sink = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(LINGER, async {
                    while let Ok(n) = socket.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
                return;
            }
        }
    }
}

/// Reads one request head, byte by byte, up to and including its `\r\n\r\n`; `None` when the
/// peer closes first or the head grows past [`MAX_HEAD_BYTES`].
async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD_BYTES {
            return None;
        }
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    head.truncate(head.len() - 4);
    Some(String::from_utf8_lossy(&head).into_owned())
}

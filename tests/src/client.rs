//! Clients that talk to the proxy the way real ones do: HTTP/1.1, h2c with prior knowledge,
//! either over TLS, and WebSocket.
//!
//! Each connection is opened by the test, so the test decides what the proxy sees: which Host,
//! which protocol, one request per connection or many.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::header::{HOST, HeaderMap};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::echo::Echo;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body type every client here sends.
pub type ClientBody = BoxBody<Bytes, BoxError>;

/// How long one request may take before a helper gives up (so a hung proxy fails the test
/// instead of hanging it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response with its body read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-origin-id` the origin stamped on the response.
    pub fn origin_id(&self) -> Option<&str> {
        self.header("x-origin-id")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as the origin's `/echo` report; panics (showing the body) if it is not one.
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected an /echo reply, got {} with body {:?}",
            self.status,
            self.text()
        );
        Echo::parse(&self.body)
    }
}

pub fn empty() -> ClientBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(data: impl Into<Bytes>) -> ClientBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `len` bytes made on the fly from one shared 64 KiB chunk: nothing is buffered, and
/// its exact size hint makes hyper send `Content-Length: len`.
pub fn generated(len: u64) -> ClientBody {
    Generated {
        left: len,
        announce_len: true,
    }
    .boxed()
}

/// Like [`generated`], but the size is kept to itself, so hyper sends the body with
/// `Transfer-Encoding: chunked`: the proxy learns how big it is only by reading it.
pub fn generated_chunked(len: u64) -> ClientBody {
    Generated {
        left: len,
        announce_len: false,
    }
    .boxed()
}

static CHUNK: [u8; 64 * 1024] = [b'u'; 64 * 1024];

struct Generated {
    left: u64,
    /// Whether the size hint is exact (Content-Length) or unknown (chunked).
    announce_len: bool,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let take = self.left.min(CHUNK.len() as u64) as usize;
        self.left -= take as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..take])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.announce_len {
            SizeHint::with_exact(self.left)
        } else {
            SizeHint::default()
        }
    }
}

/// An origin-form HTTP/1.1 request: `METHOD path` with `Host: host`.
pub fn h1_request(method: &str, host: &str, path: &str, body: ClientBody) -> Request<ClientBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
        .body(body)
        .expect("valid request parts")
}

/// An HTTP/2 request: `:scheme`, `:authority` and `:path` all come from the absolute URI
/// `scheme://authority/path`.
pub fn h2_request(method: &str, scheme: &str, authority: &str, path: &str) -> Request<ClientBody> {
    Request::builder()
        .method(method)
        .uri(format!("{scheme}://{authority}{path}"))
        .version(Version::HTTP_2)
        .body(empty())
        .expect("valid request parts")
}

/// Opens a TCP connection with Nagle off.
pub async fn tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// An HTTP/1.1 connection over `io` (TCP or TLS); its driver runs on a spawned task.
pub async fn h1_handshake<IO>(io: IO) -> Result<http1::SendRequest<ClientBody>, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

/// An HTTP/2 connection over `io`: prior knowledge on TCP (h2c), or after ALPN `h2` on TLS.
pub async fn h2_handshake<IO>(io: IO) -> Result<http2::SendRequest<ClientBody>, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Reads a response body to the end.
pub async fn collect(response: Response<Incoming>) -> Result<Reply, BoxError> {
    let (head, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: head.status,
        version: head.version,
        headers: head.headers,
        body,
    })
}

/// Runs `exchange`, failing it if it takes longer than [`REQUEST_TIMEOUT`].
async fn within_request_timeout(
    exchange: impl Future<Output = Result<Reply, BoxError>>,
) -> Result<Reply, BoxError> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| BoxError::from("request timed out"))?
}

/// Sends one request on an HTTP/1.1 connection and reads the whole reply, within
/// [`REQUEST_TIMEOUT`].
pub async fn send_h1(
    sender: &mut http1::SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Result<Reply, BoxError> {
    within_request_timeout(async {
        sender.ready().await?;
        collect(sender.send_request(request).await?).await
    })
    .await
}

/// Sends one request on an HTTP/2 connection and reads the whole reply, within
/// [`REQUEST_TIMEOUT`].
pub async fn send_h2(
    sender: &mut http2::SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Result<Reply, BoxError> {
    within_request_timeout(async {
        sender.ready().await?;
        collect(sender.send_request(request).await?).await
    })
    .await
}

/// One request on a fresh HTTP/1.1 connection to `addr`.
pub async fn try_send(addr: SocketAddr, request: Request<ClientBody>) -> Result<Reply, BoxError> {
    let mut sender = h1_handshake(tcp(addr).await?).await?;
    send_h1(&mut sender, request).await
}

/// `GET path` with `Host: host` on a fresh HTTP/1.1 connection; errors are returned.
pub async fn try_get(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, BoxError> {
    try_send(addr, h1_request("GET", host, path, empty())).await
}

/// `GET path` with `Host: host` on a fresh HTTP/1.1 connection; panics on a transport error
/// (any HTTP status is a reply).
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    try_get(addr, host, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} (Host: {host}) via {addr} failed: {e}"))
}

/// `GET path` with `Host: host` and the extra request fields `fields` on a fresh HTTP/1.1
/// connection; panics on a transport error.
pub async fn get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    fields: &[(&'static str, &'static str)],
) -> Reply {
    let mut request = h1_request("GET", host, path, empty());
    for (name, value) in fields {
        let value = value
            .parse()
            .unwrap_or_else(|e| panic!("field {name}: {value:?} is not a header value: {e}"));
        request.headers_mut().append(*name, value);
    }
    try_send(addr, request)
        .await
        .unwrap_or_else(|e| panic!("GET {path} (Host: {host}) via {addr} failed: {e}"))
}

/// `GET path` on the admin listener, with the suite's admin token.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Reply {
    admin_send(addr, "GET", path, None).await
}

/// A request to the admin listener with the suite's admin token (`Authorization: Bearer`);
/// `json`, when given, is the body. Panics on a transport error.
pub async fn admin_send(addr: SocketAddr, method: &str, path: &str, json: Option<&str>) -> Reply {
    admin_send_as(addr, Some(crate::palisade::ADMIN_TOKEN), method, path, json).await
}

/// [`admin_send`] with another token, or none.
pub async fn admin_send_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Reply {
    let body = match json {
        Some(json) => full(json.to_string()),
        None => empty(),
    };
    let mut request = h1_request(method, &addr.to_string(), path, body);
    if let Some(token) = token {
        request.headers_mut().insert(
            hyper::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("token header"),
        );
    }
    if json.is_some() {
        request.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
    }
    try_send(addr, request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} on the admin listener {addr} failed: {e}"))
}

/// A WebSocket client connection through the proxy: TCP to `addr`, then the upgrade request
/// `GET path` with `Host: host`.
pub async fn websocket(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<WebSocketStream<TcpStream>, BoxError> {
    let request = format!("ws://{host}{path}").into_client_request()?;
    let stream = tcp(addr).await?;
    let (ws, _response) = tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .map_err(|_| BoxError::from("websocket handshake timed out"))??;
    Ok(ws)
}

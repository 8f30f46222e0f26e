//! A real, scriptable HTTP/1.1 origin server for the proxy to talk to.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::client::BoxError;
use crate::echo::Echo;

/// Boxed errors, so a body can stream what another one yields (`/mirror` passes the request
/// body's errors on).
type OriginBody = BoxBody<Bytes, BoxError>;

/// `/bytes/N` streams this, sliced, so a 1 GiB body costs no memory.
static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// Counters and switches shared by every connection of one origin.
struct OriginState {
    id: String,
    requests: AtomicU64,
    health_checks: AtomicU64,
    /// TCP connections accepted, so tests can see whether the proxy reuses them.
    connections: AtomicU64,
    /// Request body bytes read so far by every route, counted as they arrive (a body cut off
    /// midway counts what did arrive).
    body_bytes: AtomicU64,
    healthy: AtomicBool,
    /// Requests per client, by the last `X-Forwarded-For` entry the proxy sent.
    by_client: Mutex<HashMap<String, u64>>,
    /// Requests being handled now (`/health` excluded), from their head to their response's
    /// head, and the most at once so far.
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
}

/// One request being handled, counted in `in_flight` until dropped.
struct Busy<'a>(&'a OriginState);

impl<'a> Busy<'a> {
    fn start(state: &'a OriginState) -> Busy<'a> {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_in_flight.fetch_max(now, Ordering::SeqCst);
        Busy(state)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An HTTP/1.1 origin on 127.0.0.1, on its own tokio runtime (so it keeps serving whatever the
/// test's runtime is doing, and works from sync and async tests alike).
///
/// Every response carries `x-origin-id: <id>`, so tests can tell origins apart. Routes:
///
/// | route | response |
/// | --- | --- |
/// | `/echo` (any method, any suffix or query) | 200, JSON [`Echo`] of the request it received, trailers included |
/// | `/bytes/N` | 200, N bytes of `x`, streamed in 64 KiB chunks, with `Content-Length: N` |
/// | `/status/N` | status N |
/// | `/slow/MS` | 200 after MS milliseconds |
/// | `/upload` | reads the body as a stream; 200, `{"bytes": N}` |
/// | `/mirror` | 200 at once, chunked: the request body streamed back frame by frame as it arrives |
/// | `/hop` | 200 with hop-by-hop headers a proxy must drop, and `X-Normal: 1` |
/// | `/trailers` | chunked 200 with trailer `x-checksum: abc` (sent when the request has `TE: trailers`) |
/// | `/ws` | WebSocket echo of every text and binary message |
/// | `/health` | 200, or 503 after [`Origin::set_healthy`]`(false)` |
/// | anything else | 404 |
///
/// [`Origin::requests`] counts every request except `/health`, so health checks do not blur
/// "the origin saw nothing" assertions; [`Origin::requests_from`] counts them per client (by
/// `X-Forwarded-For`). [`Origin::connections`] counts accepted TCP connections,
/// [`Origin::body_bytes`] the request body bytes that arrived, whole bodies or not, and
/// [`Origin::most_in_flight`] the most requests it handled at once.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    runtime: Option<Runtime>,
    shutdown: watch::Sender<bool>,
    serving: Option<JoinHandle<()>>,
}

impl Origin {
    /// Starts an origin named `id` on a free port of 127.0.0.1.
    pub fn start(id: &str) -> Origin {
        Self::start_on(id, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts an origin named `id` on `addr`: after [`Origin::stop`], this brings an origin
    /// back on the same port.
    pub fn start_on(id: &str, addr: SocketAddr) -> Origin {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("origin-{id}"))
            .enable_all()
            .build()
            .expect("origin runtime");
        let listener = {
            let _entered = runtime.enter();
            bind_reusable(addr).unwrap_or_else(|e| panic!("origin {id}: bind {addr}: {e}"))
        };
        let addr = listener.local_addr().expect("origin address");
        let state = Arc::new(OriginState {
            id: id.to_owned(),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            by_client: Mutex::new(HashMap::new()),
            in_flight: AtomicU64::new(0),
            most_in_flight: AtomicU64::new(0),
        });
        let (shutdown, stop_rx) = watch::channel(false);
        let serving = runtime.spawn(serve(listener, state.clone(), stop_rx));
        Origin {
            addr,
            state,
            runtime: Some(runtime),
            shutdown,
            serving: Some(serving),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a config's `origins`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Requests received so far, `/health` excluded.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// `/health` requests received so far.
    pub fn health_checks(&self) -> u64 {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (health checks' included).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Request body bytes received so far, over every route and request, counted as they
    /// arrive: a body the proxy cut off counts the part that got through.
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::SeqCst)
    }

    /// Requests received so far from `client` (`/health` excluded), as the proxy names the
    /// client: the last entry of the `X-Forwarded-For` it sent, e.g. `"127.0.0.2"`.
    pub fn requests_from(&self, client: &str) -> u64 {
        let by_client = self.state.by_client.lock().expect("origin client counts");
        by_client.get(client).copied().unwrap_or(0)
    }

    /// The most requests (`/health` excluded) the origin handled at once so far, each counted
    /// from its head to its response's head.
    pub fn most_in_flight(&self) -> u64 {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// Makes `/health` answer 200 (`true`) or 503 (`false`); other routes are unaffected.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Stops listening and drops every open connection (keep-alive ones included), so the port
    /// refuses connections once this returns. Idempotent.
    pub async fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(runtime) = self.runtime.take() {
            // Does not block, so it is fine inside an async test.
            runtime.shutdown_background();
        }
    }
}

/// SO_REUSEADDR lets [`Origin::start_on`] take the port back while old connections sit in
/// TIME_WAIT.
fn bind_reusable(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve(listener: TcpListener, state: Arc<OriginState>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else { continue };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| route(state.clone(), stop.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn route(
    state: Arc<OriginState>,
    stop: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let _busy = (path != "/health").then(|| Busy::start(&state));
    if path == "/health" {
        state.health_checks.fetch_add(1, Ordering::SeqCst);
    } else {
        state.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(client) = last_forwarded_for(req.headers()) {
            let mut by_client = state.by_client.lock().expect("origin client counts");
            *by_client.entry(client).or_insert(0) += 1;
        }
    }
    let (first, rest) = match path.trim_start_matches('/').split_once('/') {
        Some((first, rest)) => (first.to_owned(), rest.to_owned()),
        None => (path.trim_start_matches('/').to_owned(), String::new()),
    };
    let mut response = match first.as_str() {
        "echo" => echo(&state, req).await,
        "bytes" => match rest.parse::<u64>() {
            Ok(n) => bytes(n),
            Err(_) => text(StatusCode::BAD_REQUEST, "bad byte count"),
        },
        "status" => match rest
            .parse::<u16>()
            .ok()
            .and_then(|n| StatusCode::from_u16(n).ok())
        {
            Some(status) => text(status, "as requested"),
            None => text(StatusCode::BAD_REQUEST, "bad status"),
        },
        "slow" => match rest.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, "slow response")
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "bad delay"),
        },
        "upload" => upload(&state, req).await,
        "mirror" => mirror(state.clone(), req),
        "hop" => hop(),
        "trailers" => trailers(),
        "ws" => websocket(req, stop),
        "health" if state.healthy.load(Ordering::SeqCst) => text(StatusCode::OK, "healthy"),
        "health" => text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
        _ => text(StatusCode::NOT_FOUND, "no such route"),
    };
    if let Ok(id) = HeaderValue::from_str(&state.id) {
        response.headers_mut().insert("x-origin-id", id);
    }
    Ok(response)
}

/// The last address of the request's `X-Forwarded-For` fields: the client as the proxy saw it.
fn last_forwarded_for(headers: &HeaderMap) -> Option<String> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    (!entry.is_empty()).then(|| entry.to_owned())
}

fn full(body: impl Into<Bytes>) -> OriginBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<OriginBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}

fn json(value: serde_json::Value) -> Response<OriginBody> {
    let mut response = Response::new(full(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What arrived of a request body: its length and its trailer fields.
struct ReadBody {
    len: u64,
    trailers: Vec<(String, String)>,
}

/// Reads a body frame by frame, keeping only the count (also added to the origin's
/// `body_bytes` as it goes) and the trailers.
async fn read_body(state: &OriginState, mut body: Incoming) -> Result<ReadBody, hyper::Error> {
    let mut read = ReadBody {
        len: 0,
        trailers: Vec::new(),
    };
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            read.len += data.len() as u64;
            state
                .body_bytes
                .fetch_add(data.len() as u64, Ordering::SeqCst);
        } else if let Some(trailers) = frame.trailers_ref() {
            read.trailers.extend(fields(trailers));
        }
    }
    Ok(read)
}

/// Header or trailer fields as (lower-case name, lossy UTF-8 value) pairs, in order.
fn fields(map: &HeaderMap) -> impl Iterator<Item = (String, String)> + '_ {
    map.iter().map(|(name, value)| {
        (
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        )
    })
}

async fn echo(state: &OriginState, req: Request<Incoming>) -> Response<OriginBody> {
    let (head, body) = req.into_parts();
    let Ok(body) = read_body(state, body).await else {
        return text(StatusCode::BAD_REQUEST, "request body failed");
    };
    let version = match head.version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    };
    let seen = Echo {
        method: head.method.to_string(),
        path: head
            .uri
            .path_and_query()
            .map_or_else(|| head.uri.to_string(), |pq| pq.to_string()),
        version: version.to_owned(),
        headers: fields(&head.headers).collect(),
        body_len: body.len,
        trailers: body.trailers,
    };
    json(seen.to_json())
}

fn bytes(n: u64) -> Response<OriginBody> {
    let chunks = futures_util::stream::unfold(n, |left| async move {
        if left == 0 {
            return None;
        }
        let take = left.min(CHUNK.len() as u64) as usize;
        let frame = Frame::data(Bytes::from_static(&CHUNK[..take]));
        Some((Ok::<_, BoxError>(frame), left - take as u64))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    response
}

async fn upload(state: &OriginState, req: Request<Incoming>) -> Response<OriginBody> {
    match read_body(state, req.into_body()).await {
        Ok(body) => json(serde_json::json!({ "bytes": body.len })),
        Err(_) => text(StatusCode::BAD_REQUEST, "request body failed"),
    }
}

/// Streams the request body back as the response body, each frame as it arrives (counted in
/// `body_bytes`), so the response starts before the request has been read: a full-duplex
/// exchange. The response has no length, so it goes out chunked.
fn mirror(state: Arc<OriginState>, req: Request<Incoming>) -> Response<OriginBody> {
    let body = req
        .into_body()
        .map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                state
                    .body_bytes
                    .fetch_add(data.len() as u64, Ordering::SeqCst);
            }
            frame
        })
        .map_err(BoxError::from)
        .boxed();
    Response::new(body)
}

fn hop() -> Response<OriginBody> {
    let mut response = text(StatusCode::OK, "hop-by-hop headers attached");
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        HeaderValue::from_static("x-secret, keep-alive"),
    );
    headers.insert("x-secret", HeaderValue::from_static("1"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
    headers.insert("x-normal", HeaderValue::from_static("1"));
    response
}

fn trailers() -> Response<OriginBody> {
    let mut trailer_fields = HeaderMap::new();
    trailer_fields.insert("x-checksum", HeaderValue::from_static("abc"));
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"first part, "))),
        Ok(Frame::data(Bytes::from_static(b"second part"))),
        Ok(Frame::trailers(trailer_fields)),
    ];
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
        frames,
    ))));
    response
        .headers_mut()
        .insert(header::TRAILER, HeaderValue::from_static("x-checksum"));
    response
}

fn websocket(mut req: Request<Incoming>, mut stop: watch::Receiver<bool>) -> Response<OriginBody> {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(StatusCode::BAD_REQUEST, "missing sec-websocket-key");
    };
    if !is_upgrade {
        return text(StatusCode::BAD_REQUEST, "not a websocket upgrade");
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (mut sink, mut messages) = ws.split();
        let echo = async {
            while let Some(Ok(message)) = messages.next().await {
                if (message.is_text() || message.is_binary()) && sink.send(message).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            _ = echo => {}
            _ = stop.changed() => {}
        }
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
    *response.body_mut() = full(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

//! `bare-hyper`: the reference row of `bench/cache.sh`.
//!
//! A minimal hyper 1.x HTTP/1.1 server with keep-alive that answers `GET /1k`
//! (1024 bytes) and `GET /100k` (102400 bytes) from memory, with the same
//! bytes and `Cache-Control` field as the benchmark's origin, and 404 to
//! anything else. No cache logic, no routing table, no logging: it shows what
//! hyper and tokio cost on their own when a response is already in memory, the
//! floor a cache built on them can approach.
//!
//! One thread: a current-thread tokio runtime (the benchmark pins it to one
//! core). Usage: `bare-hyper 127.0.0.1:8080`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The origin's file contents (bench/cache.sh writes the same pattern).
const PATTERN: &[u8] = b"palisade-bench-0123456789abcdefghijklmnopqrstuvwxyz\n";

/// `size` bytes of `PATTERN`, leaked once so that every response body is a
/// `Bytes::from_static` (cloning it is a pointer copy).
fn body_of(size: usize) -> Bytes {
    let data: Vec<u8> = PATTERN.iter().copied().cycle().take(size).collect();
    Bytes::from_static(Box::leak(data.into_boxed_slice()))
}

#[derive(Clone, Copy)]
struct Bodies {
    small: &'static Bytes,
    large: &'static Bytes,
}

fn respond(req: &Request<Incoming>, bodies: Bodies) -> Response<Full<Bytes>> {
    let body = match (req.method(), req.uri().path()) {
        (&Method::GET, "/1k") => Some(bodies.small),
        (&Method::GET, "/100k") => Some(bodies.large),
        _ => None,
    };
    let mut resp = match body {
        Some(b) => {
            let mut resp = Response::new(Full::new(b.clone()));
            resp.headers_mut().insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            resp
        }
        None => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    };
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let bodies = Bodies {
        small: Box::leak(Box::new(body_of(1024))),
        large: Box::leak(Box::new(body_of(100 * 1024))),
    };
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bare-hyper listening on http://{addr}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors and the like: keep serving the others.
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        // Like every other server in the benchmark: no Nagle delay on
        // responses written in more than one piece.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                service_fn(move |req| async move { Ok::<_, Infallible>(respond(&req, bodies)) });
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            // A client closing its connection mid-request is not our error.
            let _ = conn.await;
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match (args.next(), args.next()) {
        (Some(a), None) => match a.parse() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("bare-hyper: bad address {a:?}: {e}");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("usage: bare-hyper ADDRESS:PORT");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(serve(addr)) {
        eprintln!("bare-hyper: {e}");
        std::process::exit(1);
    }
}

//! The `accept` and `tls` phases: accept loops for cleartext and TLS listeners.
//!
//! Caps and the per-client rate of new connections are checked before anything is read from a
//! socket, so a connection flood costs one accept and one close per connection. The TLS handshake has its own deadline.
//!
//! The ClientHello is kept as rustls reads it ([`ClientHelloCapture`]) and, once the handshake
//! has succeeded, becomes the connection's JA4 (`tls.ja4`).

use crate::conn;
use crate::conn_context::ConnContext;
use crate::conn_guard::{ConnGuard, Refusal};
use crate::fingerprint::ClientHelloCapture;
use crate::http::client::ClientFacts;
use crate::state::EdgeState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Http,
    Https,
}

impl ListenerKind {
    pub fn label(self) -> &'static str {
        match self {
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
        }
    }
}

/// Binds a listening socket with the options a busy server needs.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    // Restarting while old connections sit in TIME_WAIT must not fail to bind.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // A deep backlog absorbs connection bursts while the accept loop catches up.
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Accepts until shutdown is signalled; then the listener is dropped and new connections are
/// refused by the kernel.
pub async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    state: Arc<EdgeState>,
    guard: Arc<ConnGuard>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => admit(stream, peer, kind, &state, &guard, &shutdown),
            Err(e) => {
                // Out of file descriptors or a similar pressure: back off briefly instead of
                // spinning on the error.
                tracing::warn!(error = %e, listener = kind.label(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    state: &Arc<EdgeState>,
    guard: &Arc<ConnGuard>,
    shutdown: &watch::Receiver<bool>,
) {
    let snapshot = state.snapshot.load();
    let limits = &snapshot.limits;
    let permit = match guard.admit(peer.ip(), limits) {
        Ok(permit) => permit,
        Err(refusal) => {
            let counter = match refusal {
                Refusal::TotalCap => &state.metrics.connections_refused_total_cap,
                Refusal::ClientCap => &state.metrics.connections_refused_client_cap,
                Refusal::AcceptRate => &state.metrics.connections_refused_accept_rate,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %peer, reason = refusal.label(), "connection refused");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let client = ClientFacts::new(
        peer.ip(),
        kind == ListenerKind::Https,
        snapshot.is_trusted_proxy(peer.ip()),
    );
    let state = Arc::clone(state);
    let shutdown = shutdown.clone();
    match kind {
        ListenerKind::Http => {
            let ctx = Arc::new(ConnContext::new(client, None, false, permit));
            tokio::spawn(conn::serve_parkable(stream, ctx, state, shutdown));
        }
        ListenerKind::Https => {
            let Some(tls) = snapshot.tls.clone() else {
                // A reload removed every certificate: nothing can be served here.
                return;
            };
            let handshake_timeout = limits.tls_handshake_timeout;
            tokio::spawn(async move {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let stream = ClientHelloCapture::new(stream);
                let mut stream =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            state
                                .metrics
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            state
                                .metrics
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let mut client = client;
                client.traits.set_ja4(stream.get_mut().0.take_ja4());
                tracing::debug!(
                    target: "edge::fingerprint",
                    peer = %peer,
                    ja4 = client.traits.ja4.as_deref().unwrap_or(""),
                    "TLS client fingerprint"
                );
                let (_, session) = stream.get_ref();
                let h2 = session.alpn_protocol() == Some(b"h2");
                let sni_site = session.server_name().and_then(|name| {
                    let snapshot = state.snapshot.load();
                    let host = model::normalize_host(name)?;
                    let site = snapshot.sites.route(&host)?;
                    Some(Arc::clone(&snapshot.sites[site].name))
                });
                let ctx = Arc::new(ConnContext::new(client, sni_site, h2, permit));
                let serving = conn::Serving {
                    parkable: false,
                    protocols: if h2 {
                        conn::Protocols::Http2
                    } else {
                        conn::Protocols::Http1
                    },
                };
                conn::serve(stream, ctx, state, shutdown, serving).await;
            });
        }
    }
}

//! A WebSocket (or other upgraded) connection after the origin's 101: bytes copied both ways,
//! cut when either side closes or nothing moves for `idle_timeout`.

use crate::clock;
use crate::conn_context::ConnContext;
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// After a 101, copies bytes both ways until either side closes or nothing moves for
/// `idle_timeout`. The tunnel holds the connection's permit, so it still counts against the
/// client's connection cap.
/// `origin_early`: bytes the origin sent right behind its 101, already in the new protocol.
pub fn spawn_tunnel(
    ctx: Arc<ConnContext>,
    client: hyper::upgrade::OnUpgrade,
    mut origin: TcpStream,
    origin_early: bytes::Bytes,
    idle_timeout: Duration,
) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(peer = %ctx.client.peer, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        if !origin_early.is_empty() && client.write_all(&origin_early).await.is_err() {
            return;
        }
        let last = AtomicU64::new(clock::now_ms());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut origin_read, mut origin_write) = origin.split();
        let up = pump(&mut client_read, &mut origin_write, &last);
        let down = pump(&mut origin_read, &mut client_write, &last);
        let watchdog = async {
            loop {
                tokio::time::sleep(idle_timeout / 4).await;
                let idle = clock::now_ms().saturating_sub(last.load(Ordering::Relaxed));
                if idle >= idle_timeout.as_millis() as u64 {
                    return;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(up, down) } => {}
            () = watchdog => tracing::debug!(peer = %ctx.client.peer, "tunnel idle; closing"),
        }
    });
}

async fn pump<R, W>(from: &mut R, to: &mut W, last: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Pass the half-close on; the other direction may still be talking.
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        last.store(clock::now_ms(), Ordering::Relaxed);
    }
}

//! Small HTTP/2 writes gathered into one socket write per turn of the connection.
//!
//! The `h2` crate hands a DATA frame of 256 bytes or more to the socket as its own write (the
//! payload is chained, not copied) and flushes before it encodes the next frame: ten 1 KiB
//! answers ready together became ten `writev` calls, and over TLS ten records. HAProxy sends
//! them in one. [`BatchedWrites`] sits under h2: it copies small writes into one buffer and
//! writes that buffer when the connection's task comes round again, so every answer that was
//! ready within one turn leaves in one write (and one TLS record). Large writes, and a buffer
//! that would pass [`BATCH_BYTES`], go to the socket at once, the buffer first, so body data
//! of big answers is not copied.
//!
//! A *turn* is one poll of the connection's task: the connection loop calls
//! [`Turns::next_turn`] at the start of each. A flush asked for in the turn that buffered the
//! bytes is put off: the task is woken, and the first flush of the next turn writes them.
//! h2 flushes at the end of every poll that leaves work waiting, so nothing stays held.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes gathered before they are written: a full TLS record's plaintext, and room for
/// the answers of a browser's typical burst of small requests (ten 1 KiB answers with their
/// heads take about 11 KiB).
pub const BATCH_BYTES: usize = 16 * 1024;

/// Slices one write passes on: h2 writes its buffer and one payload; the rest is spare.
const MAX_SLICES: usize = 16;

/// The turn counter shared by a connection's loop and its [`BatchedWrites`].
#[derive(Debug, Default)]
pub struct Turns(AtomicU32);

impl Turns {
    /// Marks the start of a poll of the connection's task.
    pub fn next_turn(&self) {
        // Only the connection's own task touches it: the counter orders nothing else.
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn now(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An HTTP/2 connection's socket with its small writes gathered (see the module docs).
#[derive(Debug)]
pub struct BatchedWrites<I> {
    inner: I,
    turns: Arc<Turns>,
    /// Bytes taken from h2 and not yet written; `held[written..]` is what is left.
    held: Vec<u8>,
    written: usize,
    /// The turn in which `held` got its first byte.
    held_since: u32,
}

impl<I> BatchedWrites<I> {
    pub fn new(inner: I, turns: Arc<Turns>) -> BatchedWrites<I> {
        BatchedWrites {
            inner,
            turns,
            held: Vec::new(),
            written: 0,
            held_since: 0,
        }
    }

    fn held_len(&self) -> usize {
        self.held.len() - self.written
    }

    fn hold(&mut self, bufs: &[io::IoSlice<'_>]) {
        if self.held_len() == 0 {
            self.held_since = self.turns.now();
            if self.held.capacity() == 0 {
                self.held.reserve_exact(BATCH_BYTES);
            }
        }
        for buf in bufs {
            self.held.extend_from_slice(buf);
        }
    }

    fn release(&mut self) {
        // Given back once written: an idle connection keeps no batch buffer (h2 keeps its own
        // 16 KiB), and the allocator hands the same block to the next batch.
        self.held = Vec::new();
        self.written = 0;
    }
}

impl<I: AsyncWrite + Unpin> BatchedWrites<I> {
    /// Writes everything held.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.held_len() > 0 {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.release();
        Poll::Ready(Ok(()))
    }

    /// Writes what is held and as much of `bufs` as the socket takes, in one call per try;
    /// how many bytes of `bufs` went.
    fn poll_write_through(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            let held = self.held_len();
            if held == 0 {
                self.release();
                return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            }
            let mut slices = [io::IoSlice::new(&[]); MAX_SLICES];
            slices[0] = io::IoSlice::new(&self.held[self.written..]);
            let count = 1 + bufs.len().min(MAX_SLICES - 1);
            slices[1..count].copy_from_slice(&bufs[..count - 1]);
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < held {
                self.written += n;
                continue;
            }
            self.release();
            if n > held {
                return Poll::Ready(Ok(n - held));
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for BatchedWrites<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let incoming: usize = bufs.iter().map(|b| b.len()).sum();
        if this.held_len() + incoming <= BATCH_BYTES {
            this.hold(bufs);
            return Poll::Ready(Ok(incoming));
        }
        this.poll_write_through(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // Vectored writes are taken whatever the socket is: a batch is one buffer.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.held_len() > 0 && this.held_since == this.turns.now() {
            // Put off to the next turn: whatever else this turn makes joins the same write.
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_held(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncReadExt;

    /// A socket that counts the writes it is given.
    struct CountingSocket {
        written: Vec<u8>,
        writes: usize,
        /// Bytes each write takes at most.
        take: usize,
    }

    impl AsyncWrite for CountingSocket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.take);
            self.written.extend_from_slice(&buf[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.take;
            let mut n = 0;
            for buf in bufs {
                let part = buf.len().min(left);
                self.written.extend_from_slice(&buf[..part]);
                left -= part;
                n += part;
            }
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn socket(take: usize) -> (BatchedWrites<CountingSocket>, Arc<Turns>) {
        let turns = Arc::new(Turns::default());
        let inner = CountingSocket {
            written: Vec::new(),
            writes: 0,
            take,
        };
        (BatchedWrites::new(inner, Arc::clone(&turns)), turns)
    }

    async fn write_and_flush(io: &mut BatchedWrites<CountingSocket>, bytes: &[u8]) {
        let mut io = Pin::new(io);
        let n = poll_fn(|cx| io.as_mut().poll_write(cx, bytes))
            .await
            .unwrap();
        assert_eq!(n, bytes.len());
        poll_fn(|cx| io.as_mut().poll_flush(cx)).await.unwrap();
    }

    #[tokio::test]
    async fn small_writes_flushed_in_one_turn_leave_in_one_write_on_the_next() {
        let (mut io, turns) = socket(usize::MAX);
        for i in 0..10u8 {
            write_and_flush(&mut io, &[i; 1033]).await;
        }
        assert_eq!(io.inner.writes, 0, "nothing written within the turn");
        turns.next_turn();
        poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(io.inner.writes, 1);
        assert_eq!(io.inner.written.len(), 10_330);
        assert!(io.inner.written[..1033].iter().all(|&b| b == 0));
        assert!(io.inner.written[10_330 - 1033..].iter().all(|&b| b == 9));
    }

    #[tokio::test]
    async fn a_write_past_the_batch_goes_out_with_what_is_held_in_one_call() {
        let (mut io, _turns) = socket(usize::MAX);
        write_and_flush(&mut io, b"head").await;
        let payload = vec![7u8; BATCH_BYTES];
        write_and_flush(&mut io, &payload).await;
        assert_eq!(io.inner.writes, 1);
        assert_eq!(&io.inner.written[..4], b"head");
        assert_eq!(io.inner.written.len(), 4 + BATCH_BYTES);
        assert_eq!(io.held_len(), 0);
    }

    #[tokio::test]
    async fn a_socket_taking_part_of_a_write_gets_the_rest_in_order() {
        let (mut io, turns) = socket(100);
        write_and_flush(&mut io, &[1; 300]).await;
        let mut payload = vec![2u8; BATCH_BYTES];
        payload[BATCH_BYTES - 1] = 3;
        let mut sent = 0;
        while sent < payload.len() {
            sent += poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &payload[sent..]))
                .await
                .unwrap();
        }
        turns.next_turn();
        poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
            .await
            .unwrap();
        let written = &io.inner.written;
        assert_eq!(written.len(), 300 + BATCH_BYTES);
        assert!(written[..300].iter().all(|&b| b == 1));
        assert!(written[300..written.len() - 1].iter().all(|&b| b == 2));
        assert_eq!(written[written.len() - 1], 3);
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_held_first() {
        let (mut io, _turns) = socket(usize::MAX);
        write_and_flush(&mut io, b"GOAWAY").await;
        poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))
            .await
            .unwrap();
        assert_eq!(io.inner.written, b"GOAWAY");
    }

    #[tokio::test]
    async fn bytes_go_out_over_a_real_socket_unchanged() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        let turns = Arc::new(Turns::default());
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut io = BatchedWrites::new(stream, Arc::clone(&turns));
        let mut expected = Vec::new();
        for round in 0..50u32 {
            turns.next_turn();
            let chunk: Vec<u8> = (0..(round * 997) % 40_000)
                .map(|i| (i + round) as u8)
                .collect();
            let mut sent = 0;
            while sent < chunk.len() {
                sent += poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &chunk[sent..]))
                    .await
                    .unwrap();
            }
            poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
                .await
                .unwrap();
            expected.extend_from_slice(&chunk);
        }
        poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap(), expected);
    }
}

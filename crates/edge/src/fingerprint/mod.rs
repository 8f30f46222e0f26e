//! Fingerprints of a client's software, read once when its connection opens: JA4 from the TLS
//! ClientHello ([`ja4`]) and the HTTP/2 fingerprint from its opening SETTINGS ([`h2`]). Rules
//! read them as `tls.ja4` and `http2.fingerprint`, and attack signatures are made of them: a
//! tool that copies a browser's headers rarely copies its TLS and HTTP/2 stacks.
//!
//! Both are read from the bytes as they pass on their way to rustls and h2, which see exactly
//! what they would without them and decide the handshake and the protocol on their own: a hello
//! or an opening this module cannot read only means the connection has no fingerprint.
//!
//! | piece | what it does |
//! |---|---|
//! | [`ClientHelloCapture`] | wraps the socket during the TLS handshake and keeps the ClientHello as rustls reads it |
//! | [`client_hello`] | the record layer reassembled ([`ClientHelloReader`]) and the hello parsed ([`ClientHello`]) |
//! | [`ja4()`] | the JA4 string of a parsed hello |
//! | [`H2SettingsReader`] | the client's first SETTINGS and WINDOW_UPDATE, as `1:65536;2:0;...\|15663105` |
//!
//! ## Limits
//! - A ClientHello is kept up to [`MAX_CLIENT_HELLO_BYTES`] (16 KiB, handshake header
//!   included), in records of at most 2^14 bytes; the buffer grows only with bytes that
//!   arrived, and is freed when the handshake ends. A larger hello gets no JA4.
//! - An HTTP/2 opening is read up to its first SETTINGS frame with at most [`MAX_SETTINGS`]
//!   (32) settings and the frame after it; the text is at most [`MAX_H2_FINGERPRINT_LEN`]
//!   bytes. More settings: no fingerprint.
//!
//! ## Cost
//! Once per connection, nothing per request (a request reads the values through one atomic
//! load). `benches/fingerprint.rs` (`cargo bench -p edge --bench fingerprint`) measured, on
//! the project's 2-core build machine: 1.4 µs for the JA4 of Chromium's 1,952-byte hello
//! (1.7 µs when it arrives in 100-byte reads), 0.15 µs for Chromium's HTTP/2 fingerprint,
//! beside 167 µs for the server's side of the TLS 1.3 handshake itself: under 1% of it.
//!
//! ## Invariants (each pinned by a named test)
//! 1. Never a panic, never a read past the input, on any bytes: truncated and damaged hellos
//!    give no JA4 or a well-formed one. (`ja4::tests::damaged_hellos_never_panic_and_give_no_fingerprint_or_a_well_formed_one`,
//!    `client_hello::tests::lengths_that_do_not_add_up_are_malformed`,
//!    `h2::tests::a_wrong_first_frame_gives_no_fingerprint`.)
//! 2. The outcome does not depend on how TCP cut the bytes into reads.
//!    (`client_hello::tests::a_hello_split_across_records_and_reads_is_reassembled_whole`,
//!    `h2::tests::settings_in_the_order_sent_then_the_window_update`, which reads every way,
//!    `fuzzing::tests::a_client_hello_gives_the_same_ja4_however_its_reads_are_cut`; fuzz
//!    targets `client_hello` and `h2_settings`.)
//! 3. JA4 is the specification's, checked against FoxIO's captures and expected outputs.
//!    (`ja4::tests::captured_client_hellos_give_the_reference_ja4`.)
//! 4. What rustls reads is what the client sent: the capture only copies.
//!    (`tests::the_capture_passes_every_byte_through_and_keeps_only_the_hello`.)
//! 5. The HTTP/2 fingerprint is settled before h2 is handed the frame of any request.
//!    (`h2::tests::the_fingerprint_is_settled_by_the_frame_after_settings_before_any_request_is_read`.)

pub mod client_hello;
pub mod h2;
mod ja4;

pub use client_hello::{ClientHello, ClientHelloReader, MAX_CLIENT_HELLO_BYTES};
pub use h2::{H2SettingsReader, MAX_H2_FINGERPRINT_LEN, MAX_SETTINGS};
pub use ja4::{JA4_LEN, ja4};

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How far a reader of the client's first bytes has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed.
    NeedMore,
    /// Done: the reader holds what it was reading for.
    Complete,
    /// The bytes are not what the reader keeps; it has let go of them and ignores the rest.
    Abandoned,
}

/// A socket wrapper for the TLS handshake: reads pass through unchanged, and the ClientHello
/// among them is kept for [`ClientHelloCapture::take_ja4`]. After that it only passes bytes on.
#[derive(Debug)]
pub struct ClientHelloCapture<IO> {
    io: IO,
    reader: Option<ClientHelloReader>,
}

impl<IO> ClientHelloCapture<IO> {
    /// Wraps a connection before anything was read from it.
    pub fn new(io: IO) -> ClientHelloCapture<IO> {
        ClientHelloCapture {
            io,
            reader: Some(ClientHelloReader::new()),
        }
    }

    /// The JA4 of the ClientHello read, if there was a complete one this module could parse.
    /// Stops keeping bytes and frees the hello, whatever the answer.
    pub fn take_ja4(&mut self) -> Option<Box<str>> {
        let reader = self.reader.take()?;
        let hello = ClientHello::parse(reader.message()?).ok()?;
        Some(ja4(&hello))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ClientHelloCapture<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Some(reader) = this.reader.as_mut()
            && matches!(polled, Poll::Ready(Ok(())))
        {
            reader.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ClientHelloCapture<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_capture_passes_every_byte_through_and_keeps_only_the_hello() {
        // A ClientHello in two records, then bytes of what follows it.
        let mut body = vec![3, 3];
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let mut message = vec![1, 0, 0, body.len() as u8];
        message.extend_from_slice(&body);
        let mut sent = Vec::new();
        for part in message.chunks(20) {
            sent.extend_from_slice(&[22, 3, 1, 0, part.len() as u8]);
            sent.extend_from_slice(part);
        }
        sent.extend_from_slice(&[20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xaa, 0xbb]);

        let (mut client, server) = tokio::io::duplex(7);
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                client.write_all(&sent).await.unwrap();
                client
            })
        };
        let mut capture = ClientHelloCapture::new(server);
        let mut got = vec![0; sent.len()];
        capture.read_exact(&mut got).await.unwrap();
        assert_eq!(got, sent);
        assert_eq!(
            capture.take_ja4().as_deref(),
            Some("t12i010000_0f2cb44170f4_000000000000")
        );
        // Taken once; the wrapper then only passes bytes on, both ways.
        assert_eq!(capture.take_ja4(), None);
        let mut client = writer.await.unwrap();
        capture.write_all(b"pong").await.unwrap();
        let mut back = [0; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
    }
}

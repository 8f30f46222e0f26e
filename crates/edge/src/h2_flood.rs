//! HTTP/2 floods that h2 bounds in memory but not in rate: a client's frames are walked (their
//! 9-byte headers only; payloads are skipped) on their way to hyper, and a connection that
//! makes the server answer or cancel too much is cut.
//!
//! What h2 0.4 already stops, and what this adds (docs/config.md, "HTTP/2 protections"):
//! - PING and SETTINGS floods (CVE-2019-9512, CVE-2019-9515): h2 holds one ACK at a time and
//!   reads no further frame until it is written, so memory is bounded, but a client that reads
//!   its ACKs gets one per frame for as long as it likes. Here: more than
//!   [`MAX_ACKED_FRAMES`] PINGs and SETTINGS (not ACKs) within [`WINDOW_MS`] cuts the connection.
//! - Rapid reset (CVE-2023-44487): h2 sends GOAWAY once more than 20 streams are reset before
//!   hyper accepts them, which catches resets sent in a burst. Paced resets (each stream
//!   accepted, then cancelled) are not bounded there; each starts a request the edge then
//!   drops. Here: [`MAX_RESETS`] resets within [`WINDOW_MS`] that are more than half of the
//!   streams opened in it cut the connection. A browser cancels at most the 128 streams it can
//!   have open when a page is left, so it stays under the limit.
//!
//! Counting costs a few instructions per frame and one clock read only when a limit is
//! reached.

use crate::clock;

/// The window the counts below are judged over.
pub const WINDOW_MS: u64 = 10_000;
/// PING and SETTINGS frames (without the ACK flag) a client may send per window: each makes the
/// server write an ACK. Browsers send one SETTINGS and the odd PING.
pub const MAX_ACKED_FRAMES: u32 = 100;
/// RST_STREAM frames a client may send per window when most of its streams end that way.
pub const MAX_RESETS: u32 = 200;

const CONNECTION_PREFACE_LEN: u8 = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;

/// What a connection was cut for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Abuse {
    ControlFlood,
    ResetFlood,
}

/// Follows the frames of one HTTP/2 connection from the client, across reads.
#[derive(Debug)]
pub struct H2FloodGuard {
    preface_left: u8,
    header: [u8; FRAME_HEADER_LEN],
    header_len: u8,
    payload_left: u32,
    window_start_ms: u64,
    acked_frames: u32,
    resets: u32,
    streams: u32,
}

impl H2FloodGuard {
    /// For a connection that has sent `seen` bytes of the client connection preface before
    /// the bytes the guard will be fed.
    pub fn after_preface_bytes(seen: usize) -> H2FloodGuard {
        let mut guard = H2FloodGuard::starting_at(clock::now_ms());
        guard.preface_left = CONNECTION_PREFACE_LEN.saturating_sub(seen.min(24) as u8);
        guard
    }

    fn starting_at(now_ms: u64) -> H2FloodGuard {
        H2FloodGuard {
            preface_left: CONNECTION_PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            window_start_ms: now_ms,
            acked_frames: 0,
            resets: 0,
            streams: 0,
        }
    }

    /// Reads the next bytes the client sent.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), H2Abuse> {
        self.feed_at(bytes, clock::now_ms)
    }

    fn feed_at(&mut self, mut bytes: &[u8], now_ms: impl Fn() -> u64) -> Result<(), H2Abuse> {
        if self.preface_left > 0 {
            let skip = bytes.len().min(usize::from(self.preface_left));
            self.preface_left -= skip as u8;
            bytes = &bytes[skip..];
        }
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = bytes.len().min(self.payload_left as usize);
                self.payload_left -= skip as u32;
                bytes = &bytes[skip..];
                continue;
            }
            let have = usize::from(self.header_len);
            let take = bytes.len().min(FRAME_HEADER_LEN - have);
            self.header[have..have + take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if have + take < FRAME_HEADER_LEN {
                self.header_len = (have + take) as u8;
                break;
            }
            self.header_len = 0;
            let [l0, l1, l2, kind, flags, ..] = self.header;
            self.payload_left = u32::from_be_bytes([0, l0, l1, l2]);
            self.count(kind, flags, &now_ms)?;
        }
        Ok(())
    }

    fn count(&mut self, kind: u8, flags: u8, now_ms: &impl Fn() -> u64) -> Result<(), H2Abuse> {
        match kind {
            HEADERS => self.streams = self.streams.saturating_add(1),
            RST_STREAM => {
                self.resets += 1;
                if self.resets > MAX_RESETS
                    && self.resets.saturating_mul(2) > self.streams
                    && !self.window_passed(now_ms())
                {
                    return Err(H2Abuse::ResetFlood);
                }
            }
            SETTINGS | PING if flags & FLAG_ACK == 0 => {
                self.acked_frames += 1;
                if self.acked_frames > MAX_ACKED_FRAMES && !self.window_passed(now_ms()) {
                    return Err(H2Abuse::ControlFlood);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the counts were gathered over more than a window; if so they start again.
    fn window_passed(&mut self, now_ms: u64) -> bool {
        if now_ms.saturating_sub(self.window_start_ms) < WINDOW_MS {
            return false;
        }
        self.window_start_ms = now_ms;
        self.acked_frames = 0;
        self.resets = 0;
        self.streams = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn ping() -> Vec<u8> {
        frame(PING, 0, 0, &[0; 8])
    }

    #[test]
    fn ping_flood_is_cut_after_the_limit_within_a_window() {
        let mut guard = H2FloodGuard::starting_at(1);
        guard.feed_at(PREFACE, || 1).unwrap();
        for _ in 0..MAX_ACKED_FRAMES {
            guard.feed_at(&ping(), || 5).unwrap();
        }
        assert_eq!(guard.feed_at(&ping(), || 5), Err(H2Abuse::ControlFlood));
    }

    #[test]
    fn settings_and_pings_spread_over_windows_are_fine() {
        let mut guard = H2FloodGuard::starting_at(1);
        guard.feed_at(PREFACE, || 1).unwrap();
        let settings = frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
        for round in 0..5u64 {
            for _ in 0..MAX_ACKED_FRAMES {
                guard.feed_at(&settings, || 1 + round * WINDOW_MS).unwrap();
            }
        }
        // ACKs answer the server's own frames and are never counted.
        for _ in 0..1000 {
            guard
                .feed_at(&frame(PING, FLAG_ACK, 0, &[0; 8]), || 2)
                .unwrap();
        }
    }

    #[test]
    fn frames_split_across_reads_at_every_byte_are_counted() {
        let mut wire = PREFACE.to_vec();
        for _ in 0..=MAX_ACKED_FRAMES {
            wire.extend(frame(0x0, 0, 1, b"data that is skipped"));
            wire.extend(ping());
        }
        let mut guard = H2FloodGuard::starting_at(1);
        let mut result = Ok(());
        for byte in &wire {
            result = guard.feed_at(std::slice::from_ref(byte), || 2);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(H2Abuse::ControlFlood));
    }

    #[test]
    fn rapid_reset_is_cut_but_resets_among_many_streams_are_not() {
        let headers = frame(HEADERS, 0x5, 1, &[0x82, 0x86, 0x84]);
        let reset = frame(RST_STREAM, 0, 1, &8u32.to_be_bytes());

        let mut attacker = H2FloodGuard::starting_at(1);
        attacker.feed_at(PREFACE, || 1).unwrap();
        let mut cut = None;
        for n in 0..1000 {
            let mut pair = headers.clone();
            pair.extend(&reset);
            if attacker.feed_at(&pair, || 2).is_err() {
                cut = Some(n);
                break;
            }
        }
        assert_eq!(cut, Some(MAX_RESETS as usize));

        // A browser leaving pages: many streams, a fraction of them cancelled.
        let mut browser = H2FloodGuard::starting_at(1);
        browser.feed_at(PREFACE, || 1).unwrap();
        for n in 0..2000 {
            browser.feed_at(&headers, || 2).unwrap();
            if n % 3 == 0 {
                browser.feed_at(&reset, || 2).unwrap();
            }
        }
    }

    #[test]
    fn large_payloads_are_skipped_without_being_read_as_frames() {
        let mut guard = H2FloodGuard::starting_at(1);
        guard.feed_at(PREFACE, || 1).unwrap();
        // A DATA frame whose payload is made of bytes that would look like PING frames.
        let fake_pings: Vec<u8> = (0..=MAX_ACKED_FRAMES).flat_map(|_| ping()).collect();
        guard.feed_at(&frame(0x0, 0, 1, &fake_pings), || 2).unwrap();
    }
}

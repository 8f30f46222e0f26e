//! The HTTP/2 fingerprint: the client's opening SETTINGS frame and the WINDOW_UPDATE that may
//! follow it on stream 0, written as the first two parts of Akamai's HTTP/2 fingerprint
//! (Shuster, "Passive Fingerprinting of HTTP/2 Clients", Black Hat EU 2017):
//!
//! ```text
//! 1:65536;2:0;4:6291456;6:262144|15663105
//! └ each setting as id:value (decimal), in the order sent, ";" between
//!                                └ the WINDOW_UPDATE's increment, or "00" when the next frame
//!                                  is something else
//! ```
//!
//! Akamai's last two parts (PRIORITY frames, and the order of the pseudo-headers) are left out:
//! the pseudo-header order is decided inside h2's HPACK decoder, which gives the edge a header
//! map with no order, and a fingerprint without it is one the whole edge can compute the same
//! way. Browsers differ in the settings they send and their values already.
//!
//! The frames are read from the bytes on their way to h2, never held back or changed: the
//! first frame after SETTINGS settles the fingerprint, so it is known before h2 sees the
//! frame of any request.

use super::Progress;

/// The most settings kept: browsers send four to seven. A SETTINGS frame with more gives no
/// fingerprint (h2 itself accepts up to its frame size, 16 KiB).
pub const MAX_SETTINGS: usize = 32;

/// The fingerprint's greatest length: [`MAX_SETTINGS`] times `65535:4294967295` joined by
/// `;`, then `|2147483647`.
pub const MAX_H2_FINGERPRINT_LEN: usize = MAX_SETTINGS * 17 - 1 + 11;

const PREFACE_LEN: u8 = 24;
const FRAME_HEADER_LEN: usize = 9;
const SETTING_LEN: usize = 6;
const SETTINGS: u8 = 0x4;
const WINDOW_UPDATE: u8 = 0x8;
const FLAG_ACK: u8 = 0x1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Skipping the client connection preface.
    Preface {
        left: u8,
    },
    /// Reading the first frame's header: it must be SETTINGS.
    SettingsHeader,
    /// Reading the SETTINGS payload; this many bytes are left.
    Settings {
        left: u32,
    },
    /// Reading the next frame's header.
    NextHeader,
    /// Reading a WINDOW_UPDATE's 4-byte increment.
    WindowUpdate {
        have: u8,
    },
    Finished(Progress),
}

/// Reads a client's HTTP/2 connection from its first byte (the preface) until its fingerprint
/// is settled, in pieces of any size.
#[derive(Debug)]
pub struct H2SettingsReader {
    stage: Stage,
    buf: [u8; FRAME_HEADER_LEN],
    buf_len: u8,
    text: String,
}

impl Default for H2SettingsReader {
    fn default() -> Self {
        H2SettingsReader::new()
    }
}

impl H2SettingsReader {
    /// A reader for a connection whose first bytes are the client connection preface (already
    /// checked by whoever chose HTTP/2; this one skips it).
    pub fn new() -> H2SettingsReader {
        H2SettingsReader {
            stage: Stage::Preface { left: PREFACE_LEN },
            buf: [0; FRAME_HEADER_LEN],
            buf_len: 0,
            text: String::new(),
        }
    }

    /// Reads the next bytes the client sent; once complete or abandoned, bytes are ignored.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Progress {
        while !bytes.is_empty() {
            match self.stage {
                Stage::Finished(progress) => return progress,
                Stage::Preface { left } => {
                    let skip = bytes.len().min(usize::from(left));
                    bytes = &bytes[skip..];
                    let left = left - skip as u8;
                    self.stage = if left == 0 {
                        Stage::SettingsHeader
                    } else {
                        Stage::Preface { left }
                    };
                }
                Stage::SettingsHeader | Stage::NextHeader => {
                    let Some([l0, l1, l2, kind, flags, s0, s1, s2, s3]) =
                        self.fill::<FRAME_HEADER_LEN>(&mut bytes)
                    else {
                        continue;
                    };
                    let len = u32::from_be_bytes([0, l0, l1, l2]);
                    let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
                    self.stage = if self.stage == Stage::SettingsHeader {
                        // RFC 9113 §3.4: the preface's SETTINGS comes first, on stream 0, not
                        // an ACK, in whole settings.
                        if kind != SETTINGS
                            || flags & FLAG_ACK != 0
                            || stream != 0
                            || !(len as usize).is_multiple_of(SETTING_LEN)
                            || len as usize > MAX_SETTINGS * SETTING_LEN
                        {
                            return self.finish(Progress::Abandoned);
                        }
                        self.text
                            .reserve_exact(len as usize / SETTING_LEN * 17 + 11);
                        Stage::Settings { left: len }
                    } else if kind == WINDOW_UPDATE && stream == 0 {
                        if len != 4 {
                            return self.finish(Progress::Abandoned);
                        }
                        Stage::WindowUpdate { have: 0 }
                    } else {
                        self.text.push_str("|00");
                        return self.finish(Progress::Complete);
                    };
                }
                Stage::Settings { left: 0 } => self.stage = Stage::NextHeader,
                Stage::Settings { left } => {
                    let Some([i0, i1, v0, v1, v2, v3]) = self.fill::<SETTING_LEN>(&mut bytes)
                    else {
                        continue;
                    };
                    if !self.text.is_empty() {
                        self.text.push(';');
                    }
                    push_decimal(&mut self.text, u32::from(u16::from_be_bytes([i0, i1])));
                    self.text.push(':');
                    push_decimal(&mut self.text, u32::from_be_bytes([v0, v1, v2, v3]));
                    self.stage = Stage::Settings {
                        left: left - SETTING_LEN as u32,
                    };
                }
                Stage::WindowUpdate { .. } => {
                    let Some([w0, w1, w2, w3]) = self.fill::<4>(&mut bytes) else {
                        continue;
                    };
                    self.text.push('|');
                    // The reserved bit is not part of the increment (RFC 9113 §6.9).
                    push_decimal(&mut self.text, u32::from_be_bytes([w0 & 0x7f, w1, w2, w3]));
                    return self.finish(Progress::Complete);
                }
            }
        }
        // A SETTINGS frame read to its end settles nothing yet: the next frame does.
        if self.stage == (Stage::Settings { left: 0 }) {
            self.stage = Stage::NextHeader;
        }
        match self.stage {
            Stage::Finished(progress) => progress,
            _ => Progress::NeedMore,
        }
    }

    /// Gathers `N` bytes across reads; `Some` once they are all there.
    fn fill<const N: usize>(&mut self, bytes: &mut &[u8]) -> Option<[u8; N]> {
        let have = usize::from(self.buf_len);
        let take = bytes.len().min(N - have);
        self.buf[have..have + take].copy_from_slice(&bytes[..take]);
        *bytes = &bytes[take..];
        if have + take < N {
            self.buf_len = (have + take) as u8;
            return None;
        }
        self.buf_len = 0;
        let mut out = [0; N];
        out.copy_from_slice(&self.buf[..N]);
        Some(out)
    }

    fn finish(&mut self, progress: Progress) -> Progress {
        if progress != Progress::Complete {
            self.text = String::new();
        }
        self.stage = Stage::Finished(progress);
        progress
    }

    /// The fingerprint, once complete.
    pub fn fingerprint(&self) -> Option<&str> {
        (self.stage == Stage::Finished(Progress::Complete)).then_some(self.text.as_str())
    }
}

fn push_decimal(out: &mut String, n: u32) {
    let mut digits = itoa::Buffer::new();
    out.push_str(digits.format(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> = pairs
            .iter()
            .flat_map(|(id, value)| {
                let mut entry = id.to_be_bytes().to_vec();
                entry.extend_from_slice(&value.to_be_bytes());
                entry
            })
            .collect();
        frame(SETTINGS, 0, 0, &payload)
    }

    fn window_update(stream: u32, increment: u32) -> Vec<u8> {
        frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
    }

    fn headers(stream: u32) -> Vec<u8> {
        frame(0x1, 0x5, stream, &[0x82, 0x86, 0x84])
    }

    /// Reads `stream` in pieces of `piece` bytes; the outcome and the fingerprint.
    fn read(stream: &[u8], piece: usize) -> (Progress, Option<String>) {
        let mut reader = H2SettingsReader::new();
        let mut progress = Progress::NeedMore;
        for chunk in stream.chunks(piece) {
            progress = reader.feed(chunk);
        }
        (progress, reader.fingerprint().map(str::to_owned))
    }

    /// Every piece size from 1 to the whole: the same outcome.
    fn read_every_way(stream: &[u8]) -> (Progress, Option<String>) {
        let whole = read(stream, stream.len().max(1));
        for piece in 1..stream.len() {
            assert_eq!(read(stream, piece), whole, "pieces of {piece}");
        }
        whole
    }

    /// Chromium's opening, as it sends it.
    fn chromium() -> Vec<u8> {
        let mut stream = PREFACE.to_vec();
        stream.extend(settings(&[(1, 65536), (2, 0), (4, 6291456), (6, 262144)]));
        stream.extend(window_update(0, 15663105));
        stream.extend(headers(1));
        stream
    }

    #[test]
    fn settings_in_the_order_sent_then_the_window_update() {
        assert_eq!(
            read_every_way(&chromium()),
            (
                Progress::Complete,
                Some("1:65536;2:0;4:6291456;6:262144|15663105".into())
            )
        );
    }

    #[test]
    fn the_fingerprint_is_settled_by_the_frame_after_settings_before_any_request_is_read() {
        let stream = chromium();
        let settings_end = PREFACE.len() + 9 + 4 * 6;
        let mut reader = H2SettingsReader::new();
        assert_eq!(reader.feed(&stream[..settings_end]), Progress::NeedMore);
        assert_eq!(reader.fingerprint(), None);
        // The WINDOW_UPDATE alone settles it: the request's HEADERS comes after.
        let update_end = settings_end + 9 + 4;
        assert_eq!(
            reader.feed(&stream[settings_end..update_end]),
            Progress::Complete
        );
        assert!(reader.fingerprint().is_some());
    }

    #[test]
    fn without_a_window_update_the_increment_is_00() {
        let mut stream = PREFACE.to_vec();
        stream.extend(settings(&[(2, 0), (3, 100), (4, 65535)]));
        stream.extend(headers(1));
        assert_eq!(
            read_every_way(&stream),
            (Progress::Complete, Some("2:0;3:100;4:65535|00".into()))
        );
        // A WINDOW_UPDATE for a stream is not the connection's.
        let mut stream = PREFACE.to_vec();
        stream.extend(settings(&[(2, 0)]));
        stream.extend(window_update(1, 1000));
        assert_eq!(
            read_every_way(&stream),
            (Progress::Complete, Some("2:0|00".into()))
        );
        // An empty SETTINGS frame is a fingerprint too.
        let mut stream = PREFACE.to_vec();
        stream.extend(settings(&[]));
        stream.extend(window_update(0, 1 << 30));
        assert_eq!(
            read_every_way(&stream),
            (Progress::Complete, Some("|1073741824".into()))
        );
    }

    #[test]
    fn the_reserved_bits_are_not_read_as_values() {
        let mut stream = PREFACE.to_vec();
        let mut first = settings(&[(1, 4096)]);
        first[5] |= 0x80; // the stream id's reserved bit
        stream.extend(first);
        stream.extend(window_update(0, 0x8000_0000 | 5));
        assert_eq!(
            read_every_way(&stream),
            (Progress::Complete, Some("1:4096|5".into()))
        );
    }

    #[test]
    fn a_wrong_first_frame_gives_no_fingerprint() {
        let abandoned = |frame: Vec<u8>| {
            let mut stream = PREFACE.to_vec();
            stream.extend(frame);
            stream.extend(window_update(0, 1000));
            assert_eq!(read_every_way(&stream), (Progress::Abandoned, None));
        };
        // Not SETTINGS, an ACK, on a stream, a length not in whole settings, too many settings.
        abandoned(headers(1));
        abandoned(frame(SETTINGS, FLAG_ACK, 0, &[]));
        abandoned(frame(SETTINGS, 0, 3, &[0, 1, 0, 0, 0, 1]));
        abandoned(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0]));
        let many: Vec<(u16, u32)> = (0..=MAX_SETTINGS as u16).map(|i| (i, 1)).collect();
        abandoned(settings(&many));
        // A connection-level WINDOW_UPDATE whose length is not 4.
        let mut stream = PREFACE.to_vec();
        stream.extend(settings(&[(1, 1)]));
        stream.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1]));
        assert_eq!(read_every_way(&stream), (Progress::Abandoned, None));
    }

    #[test]
    fn the_most_settings_kept_fit_the_documented_length() {
        let many: Vec<(u16, u32)> = (0..MAX_SETTINGS).map(|_| (u16::MAX, u32::MAX)).collect();
        let mut stream = PREFACE.to_vec();
        stream.extend(settings(&many));
        stream.extend(window_update(0, 0x7fff_ffff));
        let (progress, fingerprint) = read(&stream, stream.len());
        assert_eq!(progress, Progress::Complete);
        assert_eq!(fingerprint.map(|f| f.len()), Some(MAX_H2_FINGERPRINT_LEN));
    }

    #[test]
    fn a_connection_that_stops_early_settles_nothing() {
        let stream = chromium();
        for cut in 0..PREFACE.len() + 9 + 4 * 6 + 9 {
            let (progress, fingerprint) = read(&stream[..cut], cut.max(1));
            assert_eq!(
                (progress, fingerprint),
                (Progress::NeedMore, None),
                "cut {cut}"
            );
        }
    }
}

//! One request's line, written straight into the buffer it will be sent in.
//!
//! The bytes are an interface (people and tests parse them): the same fields in the same order,
//! written as `serde_json` wrote them before (its string escapes, its shortest round-trip
//! floats through the same `zmij` crate, `null` for an absent value), plus `sample_rate` at the
//! end, an added field that JSON readers ignore until they want it. Writing it by hand does away
//! with what serialising cost per line: the growing `String`, the formatting machinery behind
//! the timestamp and the address, and the escaping pass over strings that need none.

use super::AccessRecord;
use super::timestamp::SecondStamp;
use std::io::Write;
use std::net::IpAddr;

/// What ends every line: `sample_rate`, the closing brace and the newline, written out once
/// (the rate does not change while the edge runs).
pub(super) struct LineEnd(Vec<u8>);

impl LineEnd {
    pub(super) fn new(sample_rate: f64) -> LineEnd {
        let mut end = b",\"sample_rate\":".to_vec();
        float(&mut end, sample_rate);
        end.extend_from_slice(b"}\n");
        LineEnd(end)
    }
}

/// Appends `record`'s line, newline included, to `out`.
pub(super) fn write_line(
    out: &mut Vec<u8>,
    record: &AccessRecord<'_>,
    end: &LineEnd,
    stamp: &mut SecondStamp,
) {
    out.extend_from_slice(b"{\"time\":\"");
    stamp.write(record.time, out);
    out.extend_from_slice(b"\",\"site\":");
    string(out, record.site);
    out.extend_from_slice(b",\"client_ip\":\"");
    address(out, record.client_ip);
    out.extend_from_slice(b"\",\"method\":");
    string(out, record.method);
    out.extend_from_slice(b",\"host\":");
    string(out, record.host);
    out.extend_from_slice(b",\"path\":");
    string(out, record.path);
    out.extend_from_slice(b",\"protocol\":");
    string(out, record.protocol);
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.status).as_bytes());
    out.extend_from_slice(b",\"bytes_in\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.bytes_in).as_bytes());
    out.extend_from_slice(b",\"bytes_out\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.bytes_out).as_bytes());
    out.extend_from_slice(b",\"duration_ms\":");
    float(out, record.duration_ms);
    out.extend_from_slice(b",\"origin\":");
    match record.origin {
        Some(origin) => string(out, origin),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"upstream_ms\":");
    match record.upstream_ms {
        Some(ms) => float(out, ms),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(&end.0);
}

/// A JSON number as serde_json writes an `f64`; not a number (NaN, infinite) is `null`.
fn float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn address(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let mut digits = itoa::Buffer::new();
            out.extend_from_slice(digits.format(a).as_bytes());
            for octet in [b, c, d] {
                out.push(b'.');
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        // Rare enough on the hot path to leave to `Display` (which compresses zeros as
        // RFC 5952 says); writing into a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A JSON string with serde_json's escapes: `\"`, `\\`, the short forms `\b \t \n \f \r`, and
/// `\u00XX` (lower-case hex) for the other control characters. Everything else, non-ASCII
/// included, is copied as it is (it is valid UTF-8, being a `str`).
fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut clean_from = 0;
    // Paths and hosts seldom need an escape: one table lookup per byte finds the few that do.
    for (i, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[clean_from..i]);
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        clean_from = i + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

/// For each byte, the letter after the backslash that escapes it (`u` for `\u00XX`), or 0 when
/// it is written as it is: serde_json's table.
const ESCAPE: [u8; 256] = {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// The line as it was written before: serde_json over this struct (the old
    /// `AccessRecord`), one line per `to_string`. The new writer must match it byte for byte,
    /// `sample_rate` aside.
    #[derive(Serialize)]
    struct SerdeLine<'a> {
        #[serde(serialize_with = "rfc3339")]
        time: SystemTime,
        site: &'a str,
        client_ip: IpAddr,
        method: &'a str,
        host: &'a str,
        path: &'a str,
        protocol: &'a str,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
        duration_ms: f64,
        origin: Option<&'a str>,
        upstream_ms: Option<f64>,
    }

    fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    fn serde_line(r: &AccessRecord<'_>) -> String {
        serde_json::to_string(&SerdeLine {
            time: r.time,
            site: r.site,
            client_ip: r.client_ip,
            method: r.method,
            host: r.host,
            path: r.path,
            protocol: r.protocol,
            status: r.status,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration_ms: r.duration_ms,
            origin: r.origin,
            upstream_ms: r.upstream_ms,
        })
        .unwrap()
    }

    fn our_line(r: &AccessRecord<'_>, sample_rate: f64) -> String {
        let mut out = Vec::new();
        write_line(
            &mut out,
            r,
            &LineEnd::new(sample_rate),
            &mut SecondStamp::new(),
        );
        String::from_utf8(out).unwrap()
    }

    fn record<'a>(path: &'a str, host: &'a str) -> AccessRecord<'a> {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_795_621_111_638),
            site: "blog",
            client_ip: "127.0.0.1".parse().unwrap(),
            method: "GET",
            host,
            path,
            protocol: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 6,
            duration_ms: 3.36,
            origin: Some("127.0.0.1:3999"),
            upstream_ms: Some(2.34),
        }
    }

    #[test]
    fn the_documented_line_is_written_with_sample_rate_added_last() {
        assert_eq!(
            our_line(&record("/index.html", "blog.example"), 1.0),
            "{\"time\":\"2026-11-25T15:38:31.638Z\",\"site\":\"blog\",\"client_ip\":\"127.0.0.1\",\
             \"method\":\"GET\",\"host\":\"blog.example\",\"path\":\"/index.html\",\
             \"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes_in\":0,\"bytes_out\":6,\
             \"duration_ms\":3.36,\"origin\":\"127.0.0.1:3999\",\"upstream_ms\":2.34,\
             \"sample_rate\":1.0}\n"
        );
    }

    #[test]
    fn every_field_is_the_bytes_serde_json_wrote_for_it() {
        let every_ascii: String = (0u8..128).map(char::from).collect();
        let strings = [
            "",
            "/",
            "/a\"b\\c",
            "/tab\there/nl\nthere",
            every_ascii.as_str(),
            "/caf\u{e9}/\u{1f600}/\u{2028}",
            "\u{7f}\u{0}\u{1f}",
        ];
        let floats = [
            0.0,
            -0.0,
            0.001,
            0.361909,
            1.0,
            1e-7,
            123456.789,
            1e21,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ];
        let addresses: [IpAddr; 5] = [
            "0.0.0.0".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "10.20.3.40".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::ff00:42:8329".parse().unwrap(),
        ];
        for (i, text) in strings.iter().enumerate() {
            let float = floats[i % floats.len()];
            let mut r = record(text, text);
            r.site = text;
            r.method = text;
            r.protocol = text;
            r.origin = if i % 2 == 0 { Some(text) } else { None };
            r.duration_ms = float;
            r.upstream_ms = if i % 3 == 0 { None } else { Some(float) };
            r.client_ip = addresses[i % addresses.len()];
            r.status = [0, 200, 404, 65535][i % 4];
            r.bytes_in = [0, 1, u64::MAX][i % 3];
            r.bytes_out = [u64::MAX, 10, 0][i % 3];
            assert_same_as_serde(&r);
        }
        for float in floats {
            let mut r = record("/", "h");
            r.duration_ms = float;
            r.upstream_ms = Some(-float);
            assert_same_as_serde(&r);
        }
        for ip in addresses {
            let mut r = record("/", "h");
            r.client_ip = ip;
            assert_same_as_serde(&r);
        }
    }

    fn assert_same_as_serde(r: &AccessRecord<'_>) {
        let ours = our_line(r, 0.25);
        let expected = format!(
            "{},\"sample_rate\":0.25}}\n",
            serde_line(r).trim_end_matches('}')
        );
        assert_eq!(ours, expected);
        // And it is one line of JSON that serde_json reads back.
        assert_eq!(ours.matches('\n').count(), 1, "{ours}");
        let parsed: serde_json::Value = serde_json::from_str(&ours).unwrap();
        assert_eq!(parsed["path"], r.path);
    }
}

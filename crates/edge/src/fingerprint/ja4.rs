//! JA4, FoxIO's TLS client fingerprint, as its specification describes it
//! (<https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md>):
//!
//! ```text
//! t13d1516h2_8daaf6152771_e5627efa2ab1
//! │ │ │ │ │ │ │            └ SHA-256 of the sorted extensions (SNI and ALPN left out), "_",
//! │ │ │ │ │ │ │              the signature algorithms in the client's order; first 12 hex
//! │ │ │ │ │ │ └ SHA-256 of the sorted cipher suites, first 12 hex
//! │ │ │ │ │ └ first and last character of the first ALPN value ("00": none)
//! │ │ │ │ └ extensions, counted (SNI and ALPN included), at most 99
//! │ │ │ └ cipher suites, counted, at most 99
//! │ │ └ "d": SNI present, "i": absent
//! │ └ TLS version: the highest in supported_versions, else the hello's legacy_version
//! └ "t": TLS over TCP
//! ```
//!
//! GREASE values (RFC 8701: `0x?a?a`) are ignored wherever they appear. Lists are written as
//! lowercase 4-digit hex joined by commas; an empty list hashes to `000000000000`.
//!
//! One place where this follows the specification rather than FoxIO's tools: a first ALPN
//! value whose first or last byte is not an ASCII letter or digit is written as the first and
//! last hex digit of the value (`0xba 0xad` → `bd`), as the specification says; the reference
//! implementations still print `99` there
//! (`tests::a_non_alphanumeric_alpn_is_written_in_hex_as_the_spec_says`).
//!
//! And one where FoxIO's tools disagree among themselves: Chromium (156 here) lists a GREASE
//! value among its signature algorithms. It is dropped, as the specification ("ignore GREASE
//! values anywhere") and FoxIO's Python tool do; their Rust tool and Wireshark plugin keep it,
//! and so give Chromium another last part (`_61307d0e143d` rather than `_cb7bf5808d99`)
//! (`tests::chromium_greases_its_signature_algorithms_and_the_grease_is_dropped`).

use super::client_hello::{ClientHello, Reader};
use ring::digest;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// The length of a JA4 fingerprint.
pub const JA4_LEN: usize = 36;

/// RFC 8701's reserved values: both bytes alike, each `0x?a`.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// The JA4 fingerprint of a parsed ClientHello (over TCP: it starts with `t`).
pub fn ja4(hello: &ClientHello<'_>) -> Box<str> {
    let mut ciphers: Vec<u16> = hello.cipher_suites().filter(|c| !is_grease(*c)).collect();
    let mut extensions: Vec<u16> = Vec::with_capacity(24);
    let mut extension_count = 0usize;
    let mut sni = false;
    let mut versions: Option<&[u8]> = None;
    let mut alpn: Option<&[u8]> = None;
    let mut signature_algorithms: Option<&[u8]> = None;
    for (kind, data) in hello.extensions() {
        if is_grease(kind) {
            continue;
        }
        extension_count += 1;
        match kind {
            EXT_SERVER_NAME => sni = true,
            EXT_ALPN => {
                alpn.get_or_insert(data);
            }
            EXT_SIGNATURE_ALGORITHMS => {
                signature_algorithms.get_or_insert(data);
            }
            EXT_SUPPORTED_VERSIONS => {
                versions.get_or_insert(data);
            }
            _ => {}
        }
        if kind != EXT_SERVER_NAME && kind != EXT_ALPN {
            extensions.push(kind);
        }
    }
    let version = versions
        .and_then(highest_supported_version)
        .unwrap_or(hello.legacy_version);

    let mut out = String::with_capacity(JA4_LEN);
    out.push('t');
    out.push_str(version_code(version));
    out.push(if sni { 'd' } else { 'i' });
    push_count(&mut out, ciphers.len());
    push_count(&mut out, extension_count);
    let [first, last] = alpn.and_then(first_alpn_value).map_or(*b"00", alpn_code);
    out.push(char::from(first));
    out.push(char::from(last));

    out.push('_');
    ciphers.sort_unstable();
    let mut hash = ListHash::new();
    hash.list(&ciphers);
    hash.finish_into(&mut out);

    out.push('_');
    extensions.sort_unstable();
    let mut hash = ListHash::new();
    hash.list(&extensions);
    // "If there are no signature algorithms in the hello packet, then the string ends without
    // an underscore."
    let mut algorithms = signature_algorithms
        .and_then(|data| u16_list(data))
        .into_iter()
        .flatten()
        .filter(|a| !is_grease(*a))
        .peekable();
    if algorithms.peek().is_some() {
        hash.separator(b"_");
        hash.items(algorithms);
    }
    hash.finish_into(&mut out);
    out.into_boxed_str()
}

/// The highest version in a `supported_versions` extension, GREASE ignored; `None` when it
/// lists none or does not parse (the hello's `legacy_version` is used then).
fn highest_supported_version(data: &[u8]) -> Option<u16> {
    let mut r = Reader(data);
    let list = r.u8_prefixed().ok()?;
    r.end().ok()?;
    if !list.len().is_multiple_of(2) {
        return None;
    }
    list.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .filter(|v| !is_grease(*v))
        .max()
}

/// A u16-length-prefixed list of u16 values filling `data` exactly.
fn u16_list(data: &[u8]) -> Option<impl Iterator<Item = u16> + '_> {
    let mut r = Reader(data);
    let list = r.u16_prefixed().ok()?;
    r.end().ok()?;
    if !list.len().is_multiple_of(2) {
        return None;
    }
    Some(
        list.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]])),
    )
}

/// The first protocol name of an ALPN extension, when there is a non-empty one.
fn first_alpn_value(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader(data);
    let mut list = Reader(r.u16_prefixed().ok()?);
    let first = list.u8_prefixed().ok()?;
    (!first.is_empty()).then_some(first)
}

/// The two characters for the first ALPN value: its first and last bytes when both are ASCII
/// letters or digits (one byte counts as both), else the first and last hex digits of the
/// whole value.
fn alpn_code(value: &[u8]) -> [u8; 2] {
    let (first, last) = match value {
        [] => return *b"00",
        [only] => (*only, *only),
        [first, .., last] => (*first, *last),
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        [first, last]
    } else {
        [HEX[usize::from(first >> 4)], HEX[usize::from(last & 0xf)]]
    }
}

fn version_code(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// Two digits, at most 99.
fn push_count(out: &mut String, n: usize) {
    let n = n.min(99) as u8;
    out.push(char::from(b'0' + n / 10));
    out.push(char::from(b'0' + n % 10));
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// SHA-256 over a comma-joined list of 4-digit hex values, fed as they are written: no string
/// is built for it.
struct ListHash {
    context: digest::Context,
    empty: bool,
}

impl ListHash {
    fn new() -> ListHash {
        ListHash {
            context: digest::Context::new(&digest::SHA256),
            empty: true,
        }
    }

    fn list(&mut self, values: &[u16]) {
        self.items(values.iter().copied());
    }

    fn items(&mut self, values: impl Iterator<Item = u16>) {
        for (i, v) in values.enumerate() {
            let [hi, lo] = v.to_be_bytes();
            let item = [
                b',',
                HEX[usize::from(hi >> 4)],
                HEX[usize::from(hi & 0xf)],
                HEX[usize::from(lo >> 4)],
                HEX[usize::from(lo & 0xf)],
            ];
            self.context.update(if i == 0 { &item[1..] } else { &item });
            self.empty = false;
        }
    }

    fn separator(&mut self, bytes: &[u8]) {
        self.context.update(bytes);
    }

    /// The first 12 hex digits of the hash; twelve zeros when nothing was listed.
    fn finish_into(self, out: &mut String) {
        if self.empty {
            out.push_str("000000000000");
            return;
        }
        let digest = self.context.finish();
        for byte in &digest.as_ref()[..6] {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClientHello, ClientHelloReader, Progress};
    use super::*;

    /// A ClientHello as raw TLS records and its JA4: captured by FoxIO (FoxIO-LLC/ja4 `pcap/`,
    /// with the JA4 their tools give in `python/test/testdata/*.json`), or over loopback from
    /// the browser and tools named (with the JA4 of an independent implementation of the
    /// specification, `testdata/ja4ref.py`).
    struct Vector {
        what: &'static str,
        records: &'static str,
        ja4: &'static str,
    }

    include!("testdata/vectors.rs");

    fn ja4_of_records(records: &[u8]) -> Option<Box<str>> {
        let mut reader = ClientHelloReader::new();
        if reader.feed(records) != Progress::Complete {
            return None;
        }
        Some(ja4(&ClientHello::parse(reader.message()?).ok()?))
    }

    fn hex(text: &str) -> Vec<u8> {
        let text: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        text.chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn captured_client_hellos_give_the_reference_ja4() {
        for v in VECTORS {
            let got = ja4_of_records(&hex(v.records));
            assert_eq!(got.as_deref(), Some(v.ja4), "{}", v.what);
            assert_eq!(v.ja4.len(), JA4_LEN);
        }
    }

    #[test]
    fn the_specifications_worked_example() {
        // JA4.md's example: its cipher, extension and signature-algorithm lists.
        let mut ciphers = vec![
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ];
        ciphers.sort_unstable();
        let mut hash = ListHash::new();
        hash.list(&ciphers);
        let mut out = String::new();
        hash.finish_into(&mut out);
        assert_eq!(out, "8daaf6152771");

        let mut extensions = vec![
            0x001b, 0x0033, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01,
            0x000b, 0x000a, 0x0015,
        ];
        extensions.sort_unstable();
        let mut hash = ListHash::new();
        hash.list(&extensions);
        hash.separator(b"_");
        hash.list(&[
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ]);
        let mut out = String::new();
        hash.finish_into(&mut out);
        assert_eq!(out, "e5627efa2ab1");

        // Without signature algorithms the string ends without an underscore.
        let mut hash = ListHash::new();
        hash.list(&extensions);
        let mut out = String::new();
        hash.finish_into(&mut out);
        assert_eq!(out, "6d807ffa2a79");

        let mut out = String::new();
        ListHash::new().finish_into(&mut out);
        assert_eq!(out, "000000000000");
    }

    /// A ClientHello message built from parts.
    struct Hello {
        legacy_version: u16,
        ciphers: Vec<u16>,
        extensions: Vec<(u16, Vec<u8>)>,
    }

    impl Hello {
        fn message(&self) -> Vec<u8> {
            let mut body = self.legacy_version.to_be_bytes().to_vec();
            body.extend_from_slice(&[0x11; 32]);
            body.push(0);
            body.extend_from_slice(&((self.ciphers.len() * 2) as u16).to_be_bytes());
            for c in &self.ciphers {
                body.extend_from_slice(&c.to_be_bytes());
            }
            body.extend_from_slice(&[1, 0]);
            let mut block = Vec::new();
            for (kind, data) in &self.extensions {
                block.extend_from_slice(&kind.to_be_bytes());
                block.extend_from_slice(&(data.len() as u16).to_be_bytes());
                block.extend_from_slice(data);
            }
            if !self.extensions.is_empty() {
                body.extend_from_slice(&(block.len() as u16).to_be_bytes());
                body.extend_from_slice(&block);
            }
            let mut message = vec![1];
            message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            message.extend_from_slice(&body);
            message
        }

        fn ja4(&self) -> String {
            let message = self.message();
            ja4(&ClientHello::parse(&message).expect("a well-formed hello")).into()
        }
    }

    fn alpn(values: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for v in values {
            list.push(v.len() as u8);
            list.extend_from_slice(v);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        (EXT_ALPN, data)
    }

    fn supported_versions(versions: &[u16]) -> (u16, Vec<u8>) {
        let mut data = vec![(versions.len() * 2) as u8];
        for v in versions {
            data.extend_from_slice(&v.to_be_bytes());
        }
        (EXT_SUPPORTED_VERSIONS, data)
    }

    fn signature_algorithms(algorithms: &[u16]) -> (u16, Vec<u8>) {
        let mut data = ((algorithms.len() * 2) as u16).to_be_bytes().to_vec();
        for a in algorithms {
            data.extend_from_slice(&a.to_be_bytes());
        }
        (EXT_SIGNATURE_ALGORITHMS, data)
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        (EXT_SERVER_NAME, data)
    }

    fn browser_like() -> Hello {
        Hello {
            legacy_version: 0x0303,
            ciphers: vec![0x1301, 0x1302, 0xc02b],
            extensions: vec![
                sni("blog.example"),
                (0x0017, vec![]),
                supported_versions(&[0x0304, 0x0303]),
                signature_algorithms(&[0x0403, 0x0804]),
                alpn(&[b"h2", b"http/1.1"]),
            ],
        }
    }

    #[test]
    fn grease_is_ignored_wherever_it_appears() {
        let plain = browser_like();
        let mut greased = browser_like();
        greased.ciphers.insert(0, 0x7a7a);
        greased.ciphers.push(0xfafa);
        greased.extensions.insert(0, (0x0a0a, vec![]));
        greased.extensions.push((0xdada, vec![0]));
        greased.extensions[3] = supported_versions(&[0x3a3a, 0x0304, 0x0303]);
        greased.extensions[4] = signature_algorithms(&[0x0403, 0x2a2a, 0x0804]);
        assert_eq!(greased.ja4(), plain.ja4());
        assert!(plain.ja4().starts_with("t13d0305h2_"), "{}", plain.ja4());
    }

    #[test]
    fn the_extension_hash_leaves_out_sni_and_alpn_but_the_count_does_not() {
        let with = browser_like();
        let mut without = browser_like();
        without
            .extensions
            .retain(|(kind, _)| *kind != EXT_SERVER_NAME);
        without.extensions.retain(|(kind, _)| *kind != EXT_ALPN);
        let (with, without) = (with.ja4(), without.ja4());
        assert_eq!(&with[..10], "t13d0305h2");
        assert_eq!(&without[..10], "t13i030300");
        assert_eq!(with[10..], without[10..]);
    }

    #[test]
    fn without_supported_versions_the_legacy_version_counts() {
        let mut hello = browser_like();
        hello.extensions.remove(2);
        assert!(hello.ja4().starts_with("t12d"));
        hello.legacy_version = 0x0301;
        assert!(hello.ja4().starts_with("t10d"));
        hello.legacy_version = 0x0300;
        assert!(hello.ja4().starts_with("ts3d"));
        hello.legacy_version = 0x1234;
        assert!(hello.ja4().starts_with("t00d"));
        // Present but holding only GREASE, or not parsing: the legacy version too.
        hello.legacy_version = 0x0303;
        hello.extensions.push(supported_versions(&[0x1a1a]));
        assert!(hello.ja4().starts_with("t12d"));
        hello.extensions.pop();
        hello
            .extensions
            .push((EXT_SUPPORTED_VERSIONS, vec![3, 3, 4]));
        assert!(hello.ja4().starts_with("t12d"));
    }

    #[test]
    fn alpn_is_the_first_and_last_character_of_the_first_value() {
        for (values, code) in [
            (&[&b"h2"[..], b"http/1.1"][..], "h2"),
            (&[&b"http/1.1"[..]][..], "h1"),
            (&[&b"h3"[..]][..], "h3"),
            (&[&b"x"[..]][..], "xx"),
            (&[&b""[..], b"h2"][..], "00"),
            (&[][..], "00"),
        ] {
            let mut hello = browser_like();
            hello.extensions[4] = alpn(values);
            assert_eq!(&hello.ja4()[8..10], code, "{values:?}");
        }
        let mut hello = browser_like();
        hello.extensions.remove(4);
        assert_eq!(&hello.ja4()[8..10], "00");
        // An ALPN extension that does not parse says nothing either.
        hello.extensions.push((EXT_ALPN, vec![0, 9, 2, b'h']));
        assert_eq!(&hello.ja4()[8..10], "00");
    }

    #[test]
    fn a_non_alphanumeric_alpn_is_written_in_hex_as_the_spec_says() {
        // JA4.md's examples, one by one.
        for (value, code) in [
            (&[0xab][..], "ab"),
            (&[0x20], "20"),
            (&[0xab, 0xcd], "ad"),
            (&[0x20, 0x61], "21"),
            (&[0x30, 0xab], "3b"),
            (&[0x61, 0x20], "60"),
            (&[0x30, 0x31, 0xab, 0xcd], "3d"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
        ] {
            assert_eq!(alpn_code(value), code.as_bytes(), "{value:02x?}");
        }
        // The capture FoxIO made for this case (`tls-non-ascii-alpn.pcapng`, first ALPN
        // value 0xba 0xad): its tools print `99`, an older rule; the specification says `bd`.
        assert_eq!(
            ja4_of_records(&hex(NON_ASCII_ALPN.records)).as_deref(),
            Some("t13d1516bd_8daaf6152771_e5627efa2ab1")
        );
        assert_eq!(NON_ASCII_ALPN.ja4, "t13d1516bd_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn chromium_greases_its_signature_algorithms_and_the_grease_is_dropped() {
        let chromium = VECTORS
            .iter()
            .find(|v| v.what.starts_with("Chromium"))
            .expect("the Chromium capture");
        let records = hex(chromium.records);
        let mut reader = ClientHelloReader::new();
        assert_eq!(reader.feed(&records), Progress::Complete);
        let hello = ClientHello::parse(reader.message().unwrap()).unwrap();
        let (_, data) = hello
            .extensions()
            .find(|(kind, _)| *kind == EXT_SIGNATURE_ALGORITHMS)
            .expect("signature_algorithms");
        assert!(u16_list(data).unwrap().any(is_grease));
        assert!(hello.cipher_suites().any(is_grease));
        assert!(hello.extensions().any(|(kind, _)| is_grease(kind)));
        assert_eq!(ja4(&hello).as_ref(), "t13d1517h2_8daaf6152771_cb7bf5808d99");
    }

    #[test]
    fn counts_stop_at_99_and_empty_lists_hash_to_zeros() {
        let hello = Hello {
            legacy_version: 0x0303,
            ciphers: (1..=150).collect(),
            extensions: (0x100..0x100 + 120).map(|kind| (kind, vec![])).collect(),
        };
        assert!(hello.ja4().starts_with("t12i999900_"), "{}", hello.ja4());
        let bare = Hello {
            legacy_version: 0x0303,
            ciphers: vec![0x0a0a],
            extensions: vec![],
        };
        assert_eq!(bare.ja4(), "t12i000000_000000000000_000000000000");
        // SNI and ALPN alone: counted, but the extension list hashed is empty.
        let named = Hello {
            legacy_version: 0x0303,
            ciphers: vec![0x1301],
            extensions: vec![sni("a.example"), alpn(&[b"h2"])],
        };
        assert!(
            named.ja4().starts_with("t12d0102h2_") && named.ja4().ends_with("_000000000000"),
            "{}",
            named.ja4()
        );
    }

    #[test]
    fn signature_algorithms_keep_their_order_and_only_that_extensions_count() {
        let mut a = browser_like();
        let mut b = browser_like();
        b.extensions[3] = signature_algorithms(&[0x0804, 0x0403]);
        assert_ne!(a.ja4(), b.ja4(), "the order of signature algorithms counts");
        // delegated_credentials (0x0022) also lists signature schemes: not read.
        let before = a.ja4();
        let mut c = browser_like();
        c.extensions
            .push((0x0022, signature_algorithms(&[0x0601]).1));
        a.extensions
            .push((0x0022, signature_algorithms(&[0x0503]).1));
        assert_eq!(a.ja4(), c.ja4());
        assert_ne!(a.ja4(), before, "the extension itself is listed");
    }

    #[test]
    fn damaged_hellos_never_panic_and_give_no_fingerprint_or_a_well_formed_one() {
        for v in VECTORS.iter().chain([&NON_ASCII_ALPN]) {
            let records = hex(v.records);
            // Every truncation.
            for cut in 0..records.len() {
                assert_eq!(
                    ja4_of_records(&records[..cut]),
                    None,
                    "{} cut at {cut}",
                    v.what
                );
            }
            // Every byte flipped in turn: whatever parses gives a fingerprint of the right shape.
            for at in 0..records.len() {
                let mut damaged = records.clone();
                damaged[at] ^= 0xff;
                if let Some(ja4) = ja4_of_records(&damaged) {
                    assert_eq!(ja4.len(), JA4_LEN, "{} flipped at {at}", v.what);
                    assert!(ja4.is_ascii());
                }
            }
        }
    }
}

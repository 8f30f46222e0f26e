//! What a connection's fingerprints cost the edge, once per connection: the JA4 of a
//! ClientHello (kept as rustls reads it, parsed, hashed) and the HTTP/2 fingerprint of an
//! opening (preface, SETTINGS, WINDOW_UPDATE, the first HEADERS), beside what the server's side
//! of the TLS handshake itself costs on the same machine (rustls, ring, an ECDSA P-256
//! certificate, X25519, TLS 1.3, the client's work left out).
//!
//! `cargo bench -p edge --bench fingerprint` (release build). Prints nanoseconds per
//! connection, best of five rounds, for:
//! - keeping Chromium's ClientHello (1,952 bytes, one read) and making its JA4;
//! - the same, the hello arriving in reads of 100 bytes;
//! - parsing and hashing alone (the hello already kept);
//! - the HTTP/2 fingerprint of Chromium's opening, in one read;
//! - the server's side of a full TLS 1.3 handshake, for scale.
//!
//! `FINGERPRINT_BENCH_ITERATIONS` (default 200,000) per round for the fingerprints; the
//! handshake runs a fiftieth as many.

use edge::fingerprint::{ClientHello, ClientHelloReader, H2SettingsReader, Progress, ja4};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The JA4 tests' vectors; only Chromium's is used here.
mod vectors {
    #![allow(dead_code)]

    pub struct Vector {
        pub what: &'static str,
        pub records: &'static str,
        pub ja4: &'static str,
    }

    include!("../src/fingerprint/testdata/vectors.rs");

    pub fn chromium() -> &'static Vector {
        VECTORS
            .iter()
            .find(|v| v.what.starts_with("Chromium"))
            .expect("Chromium's hello")
    }
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let nibble = |b: u8| (b as char).to_digit(16).expect("hex") as u8;
            nibble(pair[0]) << 4 | nibble(pair[1])
        })
        .collect()
}

/// Nanoseconds per call of `f`, best of five rounds of `iterations`.
fn ns_per(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / iterations as f64);
    }
    best
}

fn ja4_of(records: &[u8], piece: usize) -> Option<Box<str>> {
    let mut reader = ClientHelloReader::new();
    for chunk in records.chunks(piece) {
        reader.feed(chunk);
    }
    Some(ja4(&ClientHello::parse(reader.message()?).ok()?))
}

/// Chromium's HTTP/2 opening: preface, SETTINGS, WINDOW_UPDATE, the first HEADERS' header.
fn chromium_opening() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 24, 4, 0, 0, 0, 0, 0]);
    for (id, value) in [(1u16, 65536u32), (2, 0), (4, 6291456), (6, 262144)] {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&15663105u32.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 1, 0x25, 0, 0, 0, 1]);
    out.extend_from_slice(&[0; 256]);
    out
}

/// Accepts the example certificate without checking its chain (it is self-signed) but checks
/// the handshake's signatures, as a client would.
#[derive(Debug)]
struct AcceptExampleCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptExampleCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads a flight of records into either side of a connection.
fn read_flight<D>(conn: &mut rustls::ConnectionCommon<D>, mut wire: &[u8]) {
    while !wire.is_empty() {
        conn.read_tls(&mut wire).expect("read_tls");
        conn.process_new_packets().expect("a good handshake");
    }
}

/// Nanoseconds of server-side work per full handshake (only the server's calls are timed),
/// best of five rounds.
fn server_handshake_ns(iterations: usize) -> f64 {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/certs/");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{root}blog.example.pem"))
            .expect("example certificate")
            .collect::<Result<_, _>>()
            .expect("example certificate");
    let key = PrivateKeyDer::from_pem_file(format!("{root}blog.example.key")).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Every handshake a full one, as a new visitor's.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let server = Arc::new(server);
    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptExampleCert(provider)))
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let name = ServerName::try_from("blog.example").expect("name");

    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut server_time = Duration::ZERO;
        for _ in 0..iterations {
            let mut c = rustls::ClientConnection::new(client.clone(), name.clone()).expect("c");
            let start = Instant::now();
            let mut s = rustls::ServerConnection::new(server.clone()).expect("s");
            server_time += start.elapsed();
            let mut hello = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut hello).expect("hello");
            }
            let start = Instant::now();
            read_flight(&mut s, &hello);
            let mut flight = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut flight).expect("server flight");
            }
            server_time += start.elapsed();
            read_flight(&mut c, &flight);
            let mut finished = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut finished).expect("finished");
            }
            let start = Instant::now();
            read_flight(&mut s, &finished);
            server_time += start.elapsed();
            assert!(!s.is_handshaking());
            black_box((&mut s, &mut c));
        }
        best = best.min(server_time.as_nanos() as f64 / iterations as f64);
    }
    best
}

fn main() {
    let iterations: usize = std::env::var("FINGERPRINT_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let chromium = vectors::chromium();
    let records = hex(chromium.records);
    assert_eq!(
        ja4_of(&records, records.len()).as_deref(),
        Some(chromium.ja4)
    );

    let whole = ns_per(iterations, || {
        black_box(ja4_of(black_box(&records), records.len()));
    });
    println!(
        "JA4 of Chromium's ClientHello ({} bytes), kept in one read: {whole:.0} ns per connection",
        records.len()
    );
    let pieces = ns_per(iterations, || {
        black_box(ja4_of(black_box(&records), 100));
    });
    println!("the same, arriving in reads of 100 bytes: {pieces:.0} ns per connection");
    let mut reader = ClientHelloReader::new();
    assert_eq!(reader.feed(&records), Progress::Complete);
    let message = reader.message().expect("complete").to_vec();
    let parse = ns_per(iterations, || {
        let hello = ClientHello::parse(black_box(&message)).expect("parses");
        black_box(ja4(&hello));
    });
    println!("parsing and hashing alone: {parse:.0} ns per connection");

    let opening = chromium_opening();
    let h2 = ns_per(iterations, || {
        let mut reader = H2SettingsReader::new();
        black_box(reader.feed(black_box(&opening)));
        black_box(reader.fingerprint().map(Box::<str>::from));
    });
    println!("HTTP/2 fingerprint of Chromium's opening: {h2:.0} ns per connection");

    let handshake = server_handshake_ns((iterations / 50).max(1));
    println!(
        "for scale, the server's side of a full TLS 1.3 handshake (rustls, ring, P-256, \
         X25519): {handshake:.0} ns; JA4 is {:.2}% of it",
        whole / handshake * 100.0
    );
}

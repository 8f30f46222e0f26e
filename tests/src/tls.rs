//! A throwaway certificate authority, its leaf certificates as PEM files, and TLS clients that
//! trust only it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A CA made for one test; its files live in a temp dir that goes away with it.
///
/// ```no_run
/// let ca = palisade_blackbox::TestCa::new();
/// let blog = ca.issue(&["blog.example", "*.blog.example"]);
/// // tls = { cert = "<blog.cert_path>", key = "<blog.key_path>" }
/// ```
pub struct TestCa {
    dir: TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate issued by a [`TestCa`].
#[derive(Debug, Clone)]
pub struct LeafCert {
    /// PEM: the leaf, then the CA (the chain a server presents).
    pub cert_path: PathBuf,
    /// PEM: the leaf's PKCS#8 private key.
    pub key_path: PathBuf,
    /// The leaf alone, to compare with what a server presented.
    pub der: CertificateDer<'static>,
}

impl LeafCert {
    /// `{ cert = "...", key = "..." }`, for a site's `tls` key.
    pub fn toml(&self) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            self.cert_path.display(),
            self.key_path.display()
        )
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Palisade test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
        TestCa {
            dir: tempfile::tempdir().expect("temp dir for certificates"),
            issuer,
        }
    }

    /// Issues a leaf for `names` (DNS names, wildcards allowed) and writes its files.
    pub fn issue(&self, names: &[&str]) -> LeafCert {
        let first = names.first().expect("a leaf needs at least one name");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, *first);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        let stem = first.replace('*', "wildcard");
        let cert_path = self.dir.path().join(format!("{stem}.pem"));
        let key_path = self.dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.issuer.pem()))
            .expect("write leaf chain");
        std::fs::write(&key_path, key.serialize_pem()).expect("write leaf key");
        LeafCert {
            cert_path,
            key_path,
            der: cert.der().clone(),
        }
    }

    /// A client config trusting only this CA, offering `alpn` (e.g. `["h2"]`, `["http/1.1"]`).
    pub fn client_config(&self, alpn: &[&str]) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.issuer.der().clone())
            .expect("add test CA to the root store");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// Connects to `addr`, sending `sni` as the server name and offering `alpn`; the handshake
    /// verifies the server's chain against this CA and its name against `sni`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        sni: &str,
        alpn: &[&str],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        TlsConnector::from(self.client_config(alpn))
            .connect(name, tcp)
            .await
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// The leaf certificate the server presented on `stream`.
pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned())
}

/// The protocol ALPN settled on, if any.
pub fn negotiated_alpn(stream: &TlsStream<TcpStream>) -> Option<String> {
    let (_, connection) = stream.get_ref();
    connection
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

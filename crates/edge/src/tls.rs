//! TLS termination: certificates loaded per site, chosen by SNI with the same host rules as
//! routing, so a certificate is offered exactly for the names its site claims.

use crate::router::HostRouter;
use model::{Site, TlsFiles};
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// Picks a site's certificate from the SNI name.
#[derive(Debug)]
struct SniResolver {
    router: HostRouter,
    /// Indexed like the snapshot's sites; `None` for sites without `tls`.
    certs: Vec<Option<Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI (an IP-literal client) gets no certificate: the handshake fails rather than
        // guessing a site.
        let name = model::normalize_host(hello.server_name()?)?;
        let site = self.router.route(&name)?;
        self.certs.get(site)?.clone()
    }
}

/// State shared by every TLS config the edge builds, so reloads do not forget sessions.
pub struct TlsShared {
    pub sessions: Arc<dyn StoresServerSessions>,
    pub ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

impl TlsShared {
    pub fn new() -> Result<TlsShared, String> {
        Ok(TlsShared {
            sessions: rustls::server::ServerSessionMemoryCache::new(4096),
            ticketer: rustls::crypto::ring::Ticketer::new()
                .map_err(|e| format!("cannot start TLS session tickets: {e}"))?,
        })
    }
}

/// Builds the TLS server config for `sites`, or `None` when no site has a certificate.
/// Errors name the file and the config line of the failing `tls` key.
pub fn server_config(
    sites: &[Site],
    config_file: &str,
    shared: &TlsShared,
) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let mut certs = Vec::with_capacity(sites.len());
    for (i, site) in sites.iter().enumerate() {
        certs.push(match &site.tls {
            None => None,
            Some(files) => Some(Arc::new(load(files).map_err(|e| {
                let line = files
                    .line
                    .map(|l| format!(": line {l}"))
                    .unwrap_or_default();
                format!("{config_file}{line}: key `site[{i}].tls`: {e}")
            })?)),
        });
    }
    if certs.iter().all(Option::is_none) {
        return Ok(None);
    }
    let resolver = SniResolver {
        router: HostRouter::new(sites),
        certs,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::clone(&shared.sessions);
    config.ticketer = Arc::clone(&shared.ticketer);
    Ok(Some(Arc::new(config)))
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM in {}: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate found in {}", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("cannot read private key {}: {e}", files.key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key in {}: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "{} does not match {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(certified)
}

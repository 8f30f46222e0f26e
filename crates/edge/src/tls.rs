//! TLS termination: certificates loaded per site, chosen by SNI with the same host rules as
//! routing, so a certificate is offered exactly for the names its site claims.

use crate::site_table::SiteTable;
use model::{Site, TlsFiles};
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The session ticket key could not be made (the system's random source failed).
    #[error("cannot start TLS session tickets: {0}")]
    Tickets(rustls::Error),
    /// A site's certificate or private key cannot be used.
    #[error("{config}{}: key `site[{index}].tls`: {error}", line_suffix(*.line))]
    Site {
        /// The configuration's source (its file path), as given to the snapshot.
        config: String,
        /// The line of the site's `tls` key, when the configuration came from a file.
        line: Option<usize>,
        /// The site's position in the configuration.
        index: usize,
        /// What is wrong with the files (boxed: it is large, and errors are rare).
        error: Box<CertError>,
    },
    /// rustls refused the protocol versions it was offered.
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(": line {l}")).unwrap_or_default()
}

/// What is wrong with a site's certificate chain or private key. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate file could not be opened or read.
    #[error("cannot read certificate {}: {error}", .path.display())]
    ReadCert {
        /// The certificate file.
        path: PathBuf,
        /// Why it could not be read.
        error: rustls_pki_types::pem::Error,
    },
    /// A PEM section of the certificate file is malformed.
    #[error("bad certificate PEM in {}: {error}", .path.display())]
    CertPem {
        /// The certificate file.
        path: PathBuf,
        /// What the PEM reader found.
        error: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate found in {}", .path.display())]
    NoCert {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file could not be read, or holds no private key.
    #[error("cannot read private key {}: {error}", .path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// Why no key could be read from it.
        error: rustls_pki_types::pem::Error,
    },
    /// The key is of a type rustls cannot sign with.
    #[error("unsupported private key in {}: {error}", .path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// rustls' refusal.
        error: rustls::Error,
    },
    /// The key is not the certificate's.
    #[error("{} does not match {}: {error}", .key.display(), .cert.display())]
    Mismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// rustls' comparison.
        error: rustls::Error,
    },
}

/// Picks a site's certificate from the SNI name, routed by the snapshot's own table: a name
/// reaches the site its requests will, and no second table has to follow each change.
#[derive(Debug)]
struct SniResolver {
    sites: Arc<SiteTable>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI (an IP-literal client) gets no certificate: the handshake fails rather than
        // guessing a site.
        let name = model::normalize_host(hello.server_name()?)?;
        let site = self.sites.route(&name)?;
        self.sites[site].cert.clone()
    }
}

/// State shared by every TLS config the edge builds, so reloads do not forget sessions.
pub struct TlsShared {
    pub sessions: Arc<dyn StoresServerSessions>,
    pub ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

impl TlsShared {
    pub fn new() -> Result<TlsShared, TlsError> {
        Ok(TlsShared {
            sessions: rustls::server::ServerSessionMemoryCache::new(4096),
            ticketer: rustls::crypto::ring::Ticketer::new().map_err(TlsError::Tickets)?,
        })
    }
}

/// The certificate of `site` (at `index` in its configuration), read from its files; `None`
/// when it has no `tls`. Errors name the file and the config line of the failing `tls` key.
pub fn site_cert(
    site: &Site,
    index: usize,
    config_file: &str,
) -> Result<Option<Arc<CertifiedKey>>, TlsError> {
    let Some(files) = &site.tls else {
        return Ok(None);
    };
    let certified = load(files).map_err(|error| TlsError::Site {
        config: config_file.to_string(),
        line: files.line,
        index,
        error: Box::new(error),
    })?;
    Ok(Some(Arc::new(certified)))
}

/// The TLS server config for `sites`, or `None` when no site has a certificate. Cheap: the
/// certificates are the sites' own, already read.
pub fn server_config(
    sites: &Arc<SiteTable>,
    shared: &TlsShared,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    if !sites.has_certs() {
        return Ok(None);
    }
    let resolver = SniResolver {
        sites: Arc::clone(sites),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::clone(&shared.sessions);
    config.ticketer = Arc::clone(&shared.ticketer);
    Ok(Some(Arc::new(config)))
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, CertError> {
    let cert = || files.cert.clone();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|error| CertError::ReadCert {
            path: cert(),
            error,
        })?
        .collect::<Result<_, _>>()
        .map_err(|error| CertError::CertPem {
            path: cert(),
            error,
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCert { path: cert() });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| CertError::ReadKey {
        path: files.key.clone(),
        error,
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|error| {
        CertError::UnsupportedKey {
            path: files.key.clone(),
            error,
        }
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|error| CertError::Mismatch {
            key: files.key.clone(),
            cert: cert(),
            error,
        })?;
    Ok(certified)
}

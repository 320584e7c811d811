//! TLS for the API on TCP (rustls with the `ring` provider): the server's
//! certificate and key from PEM files (`glint conductor --listen ADDR
//! --tls-cert FILE --tls-key FILE`), and a client that trusts exactly the
//! certificates of a PEM file (`GLINT_CA`) — no system store, so a
//! self-signed conductor is trusted by naming its certificate, and nothing
//! else is.
//!
//! The conductor refuses to listen on an address that is not loopback
//! without TLS: tokens must never cross a network in clear.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind needed.
    #[error("{path} holds no {what} in PEM form (expected `-----BEGIN {what}-----`)")]
    NoPem {
        /// The file.
        path: PathBuf,
        /// `CERTIFICATE`, `PRIVATE KEY`.
        what: &'static str,
    },
    /// rustls refused the configuration.
    #[error("the TLS configuration is not usable: {0}")]
    Config(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            path: path.to_owned(),
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS acceptor for the server's certificate chain and key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let chain = certs(cert)?;
    let key_pem = read(key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoPem {
        path: key.to_owned(),
        what: "PRIVATE KEY",
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TLS connector trusting exactly the certificates in `ca`.
pub fn connector(ca: &Path) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A TLS connector trusting the certificates of a bundle such as the
/// system's (`/etc/ssl/certs/ca-certificates.crt`); certificates rustls
/// cannot use are skipped, but a bundle with none it can is an error.
pub fn connector_from_bundle(bundle: &Path) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _skipped) = roots.add_parsable_certificates(certs(bundle)?);
    if added == 0 {
        return Err(TlsError::Config(format!(
            "{}: no usable certificate",
            bundle.display()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name a certificate must carry for `host` (a DNS name or an IP).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| TlsError::Config(format!("`{host}` is not a host name: {e}")))
}

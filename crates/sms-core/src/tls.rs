//! TLS configuration with rustls: TLS 1.2 and 1.3 only, ring as provider.
//!
//! One place builds client and server configurations so that every daemon
//! gets the same protocol versions and cipher suites, and so that
//! certificate files are read with errors naming the file.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses PEM certificates.
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::File {
            path: what.to_string(),
            reason: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: what.to_string(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A client configuration trusting the CA certificates in `ca_pem`.
pub fn client_config_from_pem(ca_pem: &[u8], what: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(ca_pem, what)? {
        roots.add(cert)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration trusting the CA certificates in the file `ca_file`.
pub fn client_config(ca_file: &Path) -> Result<rustls::ClientConfig, TlsError> {
    client_config_from_pem(&read(ca_file)?, &ca_file.display().to_string())
}

/// A server configuration from PEM certificate chain and private key.
pub fn server_config_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certs_from_pem(chain_pem, "certificate chain")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut BufReader::new(key_pem))
        .map_err(|e| TlsError::File {
            path: "private key".into(),
            reason: format!("bad PEM: {e}"),
        })?
        .ok_or_else(|| TlsError::File {
            path: "private key".into(),
            reason: "no private key found".into(),
        })?;
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?)
}

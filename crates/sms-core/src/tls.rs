//! TLS configuration with rustls: TLS 1.2 and 1.3 only, ring as provider.
//!
//! One place builds client and server configurations so that every daemon
//! gets the same protocol versions and cipher suites, and so that
//! certificate files are read with errors naming the file.

use crate::blob::Digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
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

/// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut BufReader::new(pem))
        .map_err(|e| TlsError::File {
            path: what.to_string(),
            reason: format!("bad PEM: {e}"),
        })?
        .ok_or_else(|| TlsError::File {
            path: what.to_string(),
            reason: "no private key found".into(),
        })
}

/// The certificate chain and key a client shows in mutual TLS (the
/// appliance towards its devices, and towards its HA peer).
#[derive(Debug)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ClientIdentity {
    /// From a PEM certificate chain and its PEM private key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<ClientIdentity, TlsError> {
        Ok(ClientIdentity {
            chain: certs_from_pem(chain_pem, "client certificate")?,
            key: key_from_pem(key_pem, "client key")?,
        })
    }

    /// A client configuration that shows this identity and trusts the CA
    /// certificates in `ca_pem` (the server's name is checked).
    pub fn trusting_ca(&self, ca_pem: &[u8], what: &str) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs_from_pem(ca_pem, what)? {
            roots.add(cert)?;
        }
        Ok(rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?)
    }

    /// A client configuration that shows this identity and accepts exactly
    /// the server certificate whose SHA-256 is `pin`, whatever its name or
    /// issuer (a pinned peer: no CA can vouch for another certificate).
    pub fn trusting_pin(&self, pin: Digest) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider();
        Ok(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier { pin, provider }))
                .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?,
        )
    }
}

/// Accepts exactly the certificate whose SHA-256 is pinned; signatures are
/// still checked with the provider's algorithms.
#[derive(Debug)]
struct PinVerifier {
    pin: Digest,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// What both pinning verifiers check signatures with.
trait Pinned {
    fn provider(&self) -> &rustls::crypto::CryptoProvider;

    fn algorithms(&self) -> &rustls::crypto::WebPkiSupportedAlgorithms {
        &self.provider().signature_verification_algorithms
    }
}

impl Pinned for PinVerifier {
    fn provider(&self) -> &rustls::crypto::CryptoProvider {
        &self.provider
    }
}

impl Pinned for PinnedClient {
    fn provider(&self) -> &rustls::crypto::CryptoProvider {
        &self.provider
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Digest::of(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate does not match the pinned SHA-256".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

/// A server configuration from PEM certificate chain and private key.
pub fn server_config_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certs_from_pem(chain_pem, "certificate chain")?;
    let key = key_from_pem(key_pem, "private key")?;
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?)
}

/// A server configuration for a link between the two appliances of an HA
/// pair: it shows this node's certificate and accepts exactly one client,
/// the one whose certificate's SHA-256 is `pin`; a client without a
/// certificate or with any other one fails the handshake before a byte of
/// payload is read.
pub fn server_config_pinned_client(
    chain_pem: &[u8],
    key_pem: &[u8],
    pin: Digest,
) -> Result<rustls::ServerConfig, TlsError> {
    server_config_pinned_clients(chain_pem, key_pem, &[pin])
}

/// Like [`server_config_pinned_client`] for a server several pinned
/// clients talk to (the HA witness serves the two nodes of a pair).
pub fn server_config_pinned_clients(
    chain_pem: &[u8],
    key_pem: &[u8],
    pins: &[Digest],
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certs_from_pem(chain_pem, "certificate chain")?;
    let key = key_from_pem(key_pem, "private key")?;
    let provider = provider();
    Ok(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(PinnedClient {
                pins: pins.to_vec(),
                provider,
            }))
            .with_single_cert(chain, key)?,
    )
}

/// Accepts exactly the client certificates whose SHA-256 is pinned.
#[derive(Debug)]
struct PinnedClient {
    pins: Vec<Digest>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for PinnedClient {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if self.pins.contains(&Digest::of(end_entity.as_ref())) {
            Ok(rustls::server::danger::ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "client certificate {} is not the pinned peer's",
                crate::identity::fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

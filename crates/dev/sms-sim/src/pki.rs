//! A certificate authority made at start, for the simulated TLS servers.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;

/// A fresh CA that issues server certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate and its key, in PEM.
pub struct IssuedCert {
    /// Leaf certificate followed by the CA certificate.
    pub chain_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

impl TestCa {
    /// Generates a new CA named `name`.
    pub fn generate(name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().context("generating CA key")?;
        Self::with_key(name, key)
    }

    fn with_key(name: &str, key: KeyPair) -> Result<TestCa> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).context("self-signing CA")?;
        Ok(TestCa { cert, key })
    }

    /// Recreates the CA named `name` from its stored key. Certificates it
    /// issues verify against the CA certificate stored earlier: same name,
    /// same key.
    pub fn load(name: &str, key_pem: &str) -> Result<TestCa> {
        Self::with_key(name, KeyPair::from_pem(key_pem).context("CA key")?)
    }

    /// The CA private key in PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The CA certificate in PEM (what clients trust).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a server certificate for DNS names and IP addresses.
    pub fn issue(&self, names: &[&str], ips: &[IpAddr]) -> Result<IssuedCert> {
        let key = KeyPair::generate().context("generating server key")?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .context("certificate names")?;
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing server certificate")?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a client certificate (for mutual TLS) with common name `name`.
    pub fn issue_client(&self, name: &str) -> Result<IssuedCert> {
        let key = KeyPair::generate().context("generating client key")?;
        let mut params = CertificateParams::new(vec![name.to_string()]).context("client name")?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing client certificate")?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
        })
    }
}

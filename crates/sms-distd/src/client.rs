//! HTTPS client towards one managed device (mutual TLS).
//!
//! A device's certificate is checked against the fleet CA with the
//! device's address as the name, or, when the inventory pins one, against
//! the pin alone. Errors are sorted into what a retry can cure (the device
//! is unreachable, the connection broke) and what it cannot (a certificate
//! that must not be trusted, a refusal), which is what the job's retry
//! logic and its report need.

use crate::inventory::Device;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sms_core::blob::Digest;
use sms_core::device::{DeviceStatus, HEADER_ENVELOPE, HEADER_KEY, HEADER_SHA256};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why talking to a device failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// No connection could be made.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Its certificate is not trusted.
    #[error("certificate refused: {0}")]
    Certificate(String),
    /// The connection broke or timed out during the exchange.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// The device refused the request.
    #[error("device refused with HTTP {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The device answered something that is not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl DeviceError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DeviceError::Unreachable(_) | DeviceError::Transfer(_) => true,
            DeviceError::Refused { status, .. } => *status == 409 || *status >= 500,
            DeviceError::Certificate(_) | DeviceError::Protocol(_) => false,
        }
    }
}

/// Accepts exactly the certificate whose SHA-256 is pinned.
#[derive(Debug)]
struct PinVerifier {
    pin: Digest,
    provider: Arc<rustls::crypto::CryptoProvider>,
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS settings for talking to devices.
#[derive(Clone)]
pub struct DeviceTls {
    ca: Arc<rustls::ClientConfig>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<rustls::pki_types::PrivateKeyDer<'static>>,
}

impl DeviceTls {
    /// From the fleet CA and the appliance's client certificate and key (PEM).
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<DeviceTls, String> {
        let chain = sms_core::tls::certs_from_pem(cert_pem, "client certificate")
            .map_err(|e| e.to_string())?;
        let key = rustls_pemfile_key(key_pem)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in sms_core::tls::certs_from_pem(ca_pem, "fleet CA").map_err(|e| e.to_string())? {
            roots.add(c).map_err(|e| format!("fleet CA: {e}"))?;
        }
        let ca = rustls::ClientConfig::builder_with_provider(sms_core::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("client certificate: {e}"))?;
        Ok(DeviceTls {
            ca: Arc::new(ca),
            chain,
            key: Arc::new(key),
        })
    }

    fn config_for(&self, device: &Device) -> Result<Arc<rustls::ClientConfig>, DeviceError> {
        let Some(pin) = &device.pin_sha256 else {
            return Ok(self.ca.clone());
        };
        let pin: Digest = pin
            .parse()
            .map_err(|_| DeviceError::Certificate("pin is not a SHA-256".into()))?;
        let provider = sms_core::tls::provider();
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| DeviceError::Certificate(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier { pin, provider }))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| DeviceError::Certificate(e.to_string()))?;
        Ok(Arc::new(cfg))
    }
}

fn rustls_pemfile_key(pem: &[u8]) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("client key: {e}"))
}

fn tls_or_io(e: std::io::Error) -> DeviceError {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match inner {
            rustls::Error::InvalidCertificate(_) | rustls::Error::General(_) => {
                DeviceError::Certificate(inner.to_string())
            }
            other => DeviceError::Transfer(format!("TLS: {other}")),
        };
    }
    DeviceError::Transfer(e.to_string())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(
    device: &Device,
    tls: &DeviceTls,
    timeout: Duration,
) -> Result<Sender, DeviceError> {
    let addr = std::net::SocketAddr::new(device.address, device.port);
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(DeviceError::Unreachable(format!("no answer from {addr}"))),
        Ok(Err(e)) => return Err(DeviceError::Unreachable(format!("{addr}: {e}"))),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(tls.config_for(device)?);
    let name = ServerName::IpAddress(device.address.into());
    let stream = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => return Err(DeviceError::Transfer("TLS handshake timed out".into())),
        Ok(Err(e)) => return Err(tls_or_io(e)),
        Ok(Ok(s)) => s,
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| DeviceError::Transfer(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn exchange(
    mut sender: Sender,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Bytes), DeviceError> {
    let work = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| DeviceError::Transfer(describe(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| DeviceError::Transfer(describe(&e)))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(DeviceError::Transfer(format!(
            "no answer within {} s",
            timeout.as_secs()
        ))),
    }
}

/// hyper's error with its cause chain ("connection reset by peer").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Asks a device for its status.
pub async fn status(
    device: &Device,
    tls: &DeviceTls,
    timeout: Duration,
) -> Result<DeviceStatus, DeviceError> {
    let sender = connect(device, tls, timeout).await?;
    let req = Request::get("/status")
        .header("host", device.address.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| DeviceError::Protocol(e.to_string()))?;
    let (code, body) = exchange(sender, req, timeout).await?;
    if code != 200 {
        return Err(DeviceError::Refused {
            status: code,
            message: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| DeviceError::Protocol(format!("status: {e}")))
}

/// Sends a package; returns once the device accepted it (202) and began
/// installing.
#[allow(clippy::too_many_arguments)]
pub async fn upload(
    device: &Device,
    tls: &DeviceTls,
    connect_timeout: Duration,
    transfer_timeout: Duration,
    key: &str,
    sha256: &Digest,
    envelope: &[u8],
    body: Bytes,
) -> Result<(), DeviceError> {
    let sender = connect(device, tls, connect_timeout).await?;
    let req = Request::put("/package")
        .header("host", device.address.to_string())
        .header("content-type", "application/octet-stream")
        .header(HEADER_KEY, key)
        .header(HEADER_SHA256, sha256.to_hex())
        .header(
            HEADER_ENVELOPE,
            base64::engine::general_purpose::STANDARD.encode(envelope),
        )
        .body(Full::new(body))
        .map_err(|e| DeviceError::Protocol(e.to_string()))?;
    let (code, body) = exchange(sender, req, transfer_timeout).await?;
    match code {
        202 | 200 => Ok(()),
        _ => Err(DeviceError::Refused {
            status: code,
            message: String::from_utf8_lossy(&body).trim().to_string(),
        }),
    }
}

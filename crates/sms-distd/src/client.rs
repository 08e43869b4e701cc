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
use rustls::pki_types::ServerName;
use sms_core::blob::Digest;
use sms_core::device::{DeviceStatus, HEADER_ENVELOPE, HEADER_KEY, HEADER_SHA256};
use sms_core::tls::{ClientIdentity, TlsError};
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

/// TLS settings for talking to devices.
#[derive(Clone)]
pub struct DeviceTls {
    ca: Arc<rustls::ClientConfig>,
    identity: ClientIdentity,
}

impl DeviceTls {
    /// From the fleet CA and the appliance's client certificate and key (PEM).
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<DeviceTls, TlsError> {
        let identity = ClientIdentity::from_pem(cert_pem, key_pem)?;
        let ca = identity.trusting_ca(ca_pem, "fleet CA")?;
        Ok(DeviceTls {
            ca: Arc::new(ca),
            identity,
        })
    }

    fn config_for(&self, device: &Device) -> Result<Arc<rustls::ClientConfig>, DeviceError> {
        let Some(pin) = &device.pin_sha256 else {
            return Ok(self.ca.clone());
        };
        let pin: Digest = pin
            .parse()
            .map_err(|_| DeviceError::Certificate("pin is not a SHA-256".into()))?;
        let cfg = self
            .identity
            .trusting_pin(pin)
            .map_err(|e| DeviceError::Certificate(e.to_string()))?;
        Ok(Arc::new(cfg))
    }
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

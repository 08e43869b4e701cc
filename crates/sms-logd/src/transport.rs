//! Connections to log servers: TCP, and TLS with the server's certificate
//! checked against the configured CA; octet-counting framing (RFC 6587
//! 3.4.1, the framing RFC 5425 requires), and a check that the server did
//! not close the connection before a batch is written into it.

use crate::config::{Protocol, ServerConfig};
use rustls::pki_types::ServerName;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a connection attempt (TCP and TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a server could not be reached or written to.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No TCP connection.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The connection attempt took too long.
    #[error("no answer within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// The TLS handshake failed (for example, a certificate the CA did
    /// not sign, or one for another name).
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// Writing failed.
    #[error("write failed: {0}")]
    Write(io::Error),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open connection to a TCP or TLS log server.
pub struct Connection {
    stream: Box<dyn Stream>,
}

impl Connection {
    /// Connects to `server` (TCP or TLS; `tls` must be given for TLS).
    pub async fn open(
        server: &ServerConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Connection, TransportError> {
        let connect = async {
            let tcp = TcpStream::connect((server.host.as_str(), server.port()))
                .await
                .map_err(TransportError::Connect)?;
            let _ = tcp.set_nodelay(true);
            match (server.protocol, tls) {
                (Protocol::Tls, Some(cfg)) => {
                    let name = ServerName::try_from(server.host.clone())
                        .map_err(|_| TransportError::ServerName(server.host.clone()))?;
                    let s = tokio_rustls::TlsConnector::from(cfg.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(TransportError::Tls)?;
                    Ok(Connection {
                        stream: Box::new(s),
                    })
                }
                _ => Ok(Connection {
                    stream: Box::new(tcp),
                }),
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| TransportError::Timeout)?
    }

    /// Whether the server is still there: a log server sends nothing, so
    /// anything readable means it closed (or reset) the connection.
    pub async fn check_open(&mut self) -> Result<(), TransportError> {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(5), self.stream.read(&mut buf)).await {
            Err(_) => Ok(()),
            Ok(Ok(0)) | Ok(Err(_)) => Err(TransportError::Closed),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Writes `messages`, each framed as `LEN SP MSG`, and flushes.
    pub async fn send(&mut self, messages: &[Vec<u8>]) -> Result<(), TransportError> {
        let mut out = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
        for m in messages {
            out.extend_from_slice(m.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(m);
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(TransportError::Write)?;
        self.stream.flush().await.map_err(TransportError::Write)
    }
}

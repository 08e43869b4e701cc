//! The pinned TLS links of sms-had, one way to dial and one way to accept,
//! for the replication stream, the heartbeats and the witness alike.

use rustls::pki_types::ServerName;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection this node dialled.
pub type Dialled = tokio_rustls::client::TlsStream<TcpStream>;
/// A connection this node accepted.
pub type Accepted = tokio_rustls::server::TlsStream<TcpStream>;

/// Dials `addr` and completes the handshake; `connector` trusts only the
/// pinned certificate.
pub async fn dial(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<Dialled> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}

/// Accepts connections on `listener` until the task is dropped. Each one
/// that passes the pinned handshake within [`HANDSHAKE_TIMEOUT`] is given
/// to `serve` in a task of its own; the others are logged as `"{what}
/// connection refused: ..."` before a byte of payload is read.
pub async fn accept_pinned<F, Fut>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    what: &'static str,
    serve: F,
) where
    F: Fn(Accepted, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accepting a {what} connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, serve) = (acceptor.clone(), serve.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => serve(tls, addr).await,
                Ok(Err(e)) => tracing::warn!(peer = %addr, "{what} connection refused: {e}"),
                Err(_) => tracing::warn!(
                    peer = %addr,
                    "{what} connection refused: no TLS handshake within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ),
            }
        });
    }
}

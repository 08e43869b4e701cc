//! UDP for the simulated devices, whether they live on loopback (kernel
//! sockets) or on the virtual segment (smoltcp hosts of `sms-lan`): the
//! SNMP agent, trap sending and the NTP client are written once against
//! this trait.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// A bound UDP socket.
pub trait Datagram: Send + Sync + 'static {
    /// Waits for a datagram; its length and sender.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    /// Sends `data` to `to`.
    fn send_to(
        &self,
        data: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;
}

impl Datagram for tokio::net::UdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        tokio::net::UdpSocket::recv_from(self, buf).await
    }

    async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        tokio::net::UdpSocket::send_to(self, data, to).await
    }
}

impl Datagram for sms_lan::UdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = sms_lan::UdpSocket::recv_from(self, buf).await?;
        Ok((n, SocketAddr::V4(from)))
    }

    async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        let SocketAddr::V4(to) = to else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{to}: the segment's hosts speak IPv4 only"),
            ));
        };
        sms_lan::UdpSocket::send_to(self, data, to).await
    }
}

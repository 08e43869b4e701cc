//! UDP of the simulated hosts: SNMP agents, traps and NTP clients.

use crate::lan::{HostId, Lan, Shared};
use crate::LanError;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::task::Poll;

/// Datagrams a socket queues each way.
const QUEUED: usize = 16;

/// Bytes of payload a socket queues each way.
const QUEUED_BYTES: usize = 16 * 1024;

/// A UDP socket of a simulated host.
pub struct UdpSocket {
    shared: Arc<Shared>,
    host: HostId,
    handle: SocketHandle,
    port: u16,
}

impl UdpSocket {
    /// The local port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for a datagram; returns its length and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4)> {
        let (n, from, _) = self.recv_from_to(buf).await?;
        Ok((n, from))
    }

    /// Like [`UdpSocket::recv_from`], with the address the datagram was
    /// sent to (on a gateway, the server the peer meant to reach).
    pub async fn recv_from_to(
        &self,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddrV4, Option<std::net::Ipv4Addr>)> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            let h = inner.host(self.host).map_err(io::Error::other)?;
            let s = h.sockets.get_mut::<udp::Socket>(self.handle);
            match s.recv_slice(buf) {
                Ok((n, meta)) => {
                    let IpAddress::Ipv4(a) = meta.endpoint.addr;
                    let to = meta.local_address.map(|IpAddress::Ipv4(l)| l);
                    Poll::Ready(Ok((n, SocketAddrV4::new(a, meta.endpoint.port), to)))
                }
                Err(udp::RecvError::Truncated) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "datagram larger than the buffer",
                ))),
                Err(udp::RecvError::Exhausted) => {
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Sends a datagram to `to`, waiting while the send queue is full.
    pub async fn send_to(&self, data: &[u8], to: SocketAddrV4) -> io::Result<usize> {
        self.send_from_to(data, None, to).await
    }

    /// Like [`UdpSocket::send_to`] from source address `from` (a gateway
    /// answering for the server the peer asked).
    pub async fn send_from_to(
        &self,
        data: &[u8],
        from: Option<std::net::Ipv4Addr>,
        to: SocketAddrV4,
    ) -> io::Result<usize> {
        let mut remote =
            udp::UdpMetadata::from(IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port()));
        remote.local_address = from.map(IpAddress::Ipv4);
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            let h = inner.host(self.host).map_err(io::Error::other)?;
            let s = h.sockets.get_mut::<udp::Socket>(self.handle);
            match s.send_slice(data, remote) {
                Ok(()) => {
                    inner.touch(self.host.index());
                    drop(inner);
                    self.shared.wake.notify_one();
                    Poll::Ready(Ok(data.len()))
                }
                Err(udp::SendError::BufferFull) => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(io::Error::other(format!("sending to {to}: {e}")))),
            }
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Ok(h) = inner.host(self.host) {
            // Datagrams already queued (a reply waiting on ARP) still go out.
            h.orphan(self.handle, true);
        }
        inner.touch(self.host.index());
    }
}

impl Lan {
    /// Binds UDP `port` of host `host` (0 picks an ephemeral port).
    pub fn bind_udp(&self, host: HostId, port: u16) -> Result<UdpSocket, LanError> {
        let mut inner = self.shared.lock();
        let h = inner.host(host)?;
        let port = if port == 0 { h.ephemeral_port() } else { port };
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; QUEUED],
                vec![0u8; QUEUED_BYTES],
            ),
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; QUEUED],
                vec![0u8; QUEUED_BYTES],
            ),
        );
        s.bind(port)
            .map_err(|e| LanError::Config(format!("binding UDP port {port}: {e}")))?;
        let handle = h.sockets.add(s);
        Ok(UdpSocket {
            shared: self.shared.clone(),
            host,
            handle,
            port,
        })
    }
}

//! TCP of the simulated hosts, with tokio's I/O traits so that rustls,
//! hyper and the device logic of the loopback fleet run over it unchanged.

use crate::lan::{HostId, Lan, Shared};
use crate::LanError;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a connection attempt waits for the handshake.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TCP connection of a simulated host.
pub struct TcpStream {
    shared: Arc<Shared>,
    host: HostId,
    handle: SocketHandle,
    peer: SocketAddrV4,
    reset_on_drop: bool,
}

impl TcpStream {
    /// Makes dropping the stream send a reset instead of a FIN, the way a
    /// zero linger does on a kernel socket.
    pub fn set_reset_on_drop(&mut self, reset: bool) {
        self.reset_on_drop = reset;
    }

    /// The other end of the connection.
    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.peer
    }

    /// This end of the connection: on a gateway, the address the peer
    /// meant to reach.
    pub fn local_addr(&self) -> Option<SocketAddrV4> {
        let mut inner = self.shared.lock();
        let h = inner.host(self.host).ok()?;
        h.sockets
            .get::<tcp::Socket>(self.handle)
            .local_endpoint()
            .map(endpoint_v4)
    }

    /// The host this connection belongs to.
    pub fn host(&self) -> HostId {
        self.host
    }

    /// Ends the connection with a reset instead of a FIN (a crashing
    /// device, a middlebox cutting the line).
    pub fn abort(mut self) {
        self.reset_on_drop = true;
    }
}

fn endpoint_v4(e: IpEndpoint) -> SocketAddrV4 {
    let IpAddress::Ipv4(a) = e.addr;
    SocketAddrV4::new(a, e.port)
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Ok(h) = inner.host(self.host) {
            let s = h.sockets.get_mut::<tcp::Socket>(self.handle);
            if self.reset_on_drop {
                s.abort();
            } else {
                s.close();
            }
            h.orphan(self.handle, false);
        }
        inner.touch(self.host.0);
        drop(inner);
        self.shared.wake.notify_one();
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        let h = inner.host(this.host).map_err(io::Error::other)?;
        let s = h.sockets.get_mut::<tcp::Socket>(this.handle);
        if s.can_recv() {
            let n = s
                .recv_slice(buf.initialize_unfilled())
                .map_err(|e| io::Error::new(io::ErrorKind::ConnectionReset, e.to_string()))?;
            buf.advance(n);
            inner.touch(this.host.0);
            drop(inner);
            this.shared.wake.notify_one();
            return Poll::Ready(Ok(()));
        }
        if !s.may_recv() {
            if s.state() == tcp::State::Closed {
                // Closed without the peer's FIN having been read: a reset
                // or a timeout.
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            return Poll::Ready(Ok(()));
        }
        s.register_recv_waker(cx.waker());
        Poll::Pending
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        let h = inner.host(this.host).map_err(io::Error::other)?;
        let s = h.sockets.get_mut::<tcp::Socket>(this.handle);
        if !s.may_send() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if s.can_send() {
            let n = s
                .send_slice(data)
                .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()))?;
            inner.touch(this.host.0);
            drop(inner);
            this.shared.wake.notify_one();
            return Poll::Ready(Ok(n));
        }
        s.register_send_waker(cx.waker());
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        let h = inner.host(this.host).map_err(io::Error::other)?;
        h.sockets.get_mut::<tcp::Socket>(this.handle).close();
        inner.touch(this.host.0);
        drop(inner);
        this.shared.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

/// A listening TCP port of a simulated host. smoltcp has no backlog, so a
/// listener keeps `backlog` sockets listening and replaces each one that
/// becomes a connection.
pub struct TcpListener {
    shared: Arc<Shared>,
    host: HostId,
    port: u16,
    endpoint: IpListenEndpoint,
    listening: Vec<SocketHandle>,
}

impl TcpListener {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for the next established connection.
    pub async fn accept(&mut self) -> io::Result<TcpStream> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        let mut inner = self.shared.lock();
        let buffers = inner.buffers;
        let h = inner.host(self.host).map_err(io::Error::other)?;
        for slot in 0..self.listening.len() {
            let handle = self.listening[slot];
            let s = h.sockets.get_mut::<tcp::Socket>(handle);
            match s.state() {
                tcp::State::Listen | tcp::State::SynReceived => {
                    s.register_recv_waker(cx.waker());
                }
                tcp::State::Closed => {
                    // Reset during the handshake: listen again.
                    s.listen(self.endpoint)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    s.register_recv_waker(cx.waker());
                }
                _ => {
                    let peer = s.remote_endpoint().map(endpoint_v4);
                    // Made only here: a listener is polled on every wake.
                    let mut fresh = crate::lan::tcp_socket(buffers);
                    fresh
                        .listen(self.endpoint)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    self.listening[slot] = h.sockets.add(fresh);
                    inner.touch(self.host.0);
                    drop(inner);
                    self.shared.wake.notify_one();
                    return Poll::Ready(Ok(TcpStream {
                        shared: self.shared.clone(),
                        host: self.host,
                        handle,
                        reset_on_drop: false,
                        peer: peer.unwrap_or(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0)),
                    }));
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Ok(h) = inner.host(self.host) {
            for handle in self.listening.drain(..) {
                h.sockets.remove(handle);
            }
        }
    }
}

impl Lan {
    /// Listens on `port` of host `host` with `backlog` sockets waiting for
    /// connections at once (at least one).
    pub fn listen(&self, host: HostId, port: u16, backlog: usize) -> Result<TcpListener, LanError> {
        self.listen_on(host, None, port, backlog)
    }

    /// Like [`Lan::listen`] for connections to address `addr` only (on a
    /// gateway, which answers for any address, one public server).
    pub fn listen_on(
        &self,
        host: HostId,
        addr: Option<std::net::Ipv4Addr>,
        port: u16,
        backlog: usize,
    ) -> Result<TcpListener, LanError> {
        let endpoint = IpListenEndpoint {
            addr: addr.map(IpAddress::Ipv4),
            port,
        };
        let mut inner = self.shared.lock();
        let mut listening = Vec::new();
        for _ in 0..backlog.max(1) {
            let mut s = inner.new_tcp_socket();
            s.listen(endpoint)
                .map_err(|e| LanError::Config(format!("listening on port {port}: {e}")))?;
            let h = inner.host(host)?;
            listening.push(h.sockets.add(s));
        }
        inner.touch(host.0);
        Ok(TcpListener {
            shared: self.shared.clone(),
            host,
            port,
            endpoint,
            listening,
        })
    }

    /// Opens a TCP connection from host `host` to `to`; fails with
    /// `ConnectionRefused` on a reset and `TimedOut` when nothing answers.
    pub async fn connect(&self, host: HostId, to: SocketAddrV4) -> io::Result<TcpStream> {
        let started = std::time::Instant::now();
        let handle = {
            let mut inner = self.shared.lock();
            let mut s = inner.new_tcp_socket();
            s.set_timeout(Some(smoltcp::time::Duration::from_micros(
                CONNECT_TIMEOUT.as_micros() as u64,
            )));
            let h = inner.host(host).map_err(io::Error::other)?;
            let local = h.ephemeral_port();
            let remote = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
            s.connect(h.iface.context(), remote, local)
                .map_err(|e| io::Error::other(format!("connecting to {to}: {e}")))?;
            let handle = h.sockets.add(s);
            inner.touch(host.0);
            handle
        };
        self.shared.wake.notify_one();
        let stream = TcpStream {
            shared: self.shared.clone(),
            host,
            handle,
            peer: to,
            reset_on_drop: false,
        };
        poll_fn(|cx| {
            let mut inner = stream.shared.lock();
            let h = inner.host(host).map_err(io::Error::other)?;
            let s = h.sockets.get_mut::<tcp::Socket>(handle);
            match s.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed => {
                    let (kind, why) = if started.elapsed() >= CONNECT_TIMEOUT {
                        (io::ErrorKind::TimedOut, "no answer")
                    } else {
                        (io::ErrorKind::ConnectionRefused, "refused")
                    };
                    Poll::Ready(Err(io::Error::new(
                        kind,
                        format!("connecting to {to}: {why}"),
                    )))
                }
                _ => Poll::Ready(Ok(())),
            }
        })
        .await?;
        {
            let mut inner = self.shared.lock();
            if let Ok(h) = inner.host(host) {
                h.sockets
                    .get_mut::<tcp::Socket>(handle)
                    .set_timeout(Some(smoltcp::time::Duration::from_secs(60)));
            }
        }
        Ok(stream)
    }
}

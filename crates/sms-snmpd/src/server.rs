//! UDP serving threads shared by the agent and the trap receiver.
//!
//! Each listening address gets its own blocking thread(s) on
//! `SO_REUSEPORT` sockets with a large kernel receive buffer: traps come in
//! bursts (a fleet reacting to one event) and every trap lost by a
//! receiver is an overflowing socket buffer. `SO_RCVBUFFORCE` is tried
//! first (it needs CAP_NET_ADMIN), then `SO_RCVBUF` (capped by
//! `net.core.rmem_max`; the image raises that cap).

use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// What answers a datagram: (datagram, source, local port) -> answer.
pub type Handler = Arc<dyn Fn(&[u8], SocketAddr, u16) -> Option<Vec<u8>> + Send + Sync>;

/// Opens one socket on `addr` with a receive buffer of `rcvbuf` octets.
pub fn open_socket(addr: SocketAddr, rcvbuf: usize) -> io::Result<UdpSocket> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    if rcvbuf > 0 && setsockopt(&fd, sockopt::RcvBufForce, &rcvbuf).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &rcvbuf);
    }
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(UdpSocket::from(fd))
}

/// The receive buffer the kernel granted (it reports twice the request).
pub fn receive_buffer(sock: &UdpSocket) -> usize {
    nix::sys::socket::getsockopt(sock, sockopt::RcvBuf).unwrap_or(0) / 2
}

fn serve_loop(sock: UdpSocket, handler: Handler) {
    let mut buf = vec![0u8; 65536];
    let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (len, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("SNMP receive failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if let Some(out) = handler(&buf[..len], src, port) {
            if let Err(e) = sock.send_to(&out, src) {
                tracing::debug!(%src, "SNMP send failed: {e}");
            }
        }
    }
}

/// Opens every address, starts `threads` threads on each, returns the bound
/// addresses (the real port when 0 was asked for).
pub fn start(
    name: &str,
    listen: &[SocketAddr],
    threads: usize,
    rcvbuf: usize,
    handler: Handler,
) -> io::Result<Vec<SocketAddr>> {
    let mut bound = Vec::new();
    for addr in listen {
        let first = open_socket(*addr, rcvbuf)
            .map_err(|e| io::Error::new(e.kind(), format!("listening on {addr}: {e}")))?;
        let local = first.local_addr()?;
        tracing::debug!(%local, rcvbuf = receive_buffer(&first), "{name} socket open");
        let mut socks = vec![first];
        for _ in 1..threads.max(1) {
            socks.push(
                open_socket(local, rcvbuf)
                    .map_err(|e| io::Error::new(e.kind(), format!("listening on {local}: {e}")))?,
            );
        }
        for (i, s) in socks.into_iter().enumerate() {
            let h = handler.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{}-{i}", local.port()))
                .spawn(move || serve_loop(s, h))?;
        }
        bound.push(local);
    }
    Ok(bound)
}

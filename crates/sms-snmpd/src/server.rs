//! UDP serving threads shared by the agent and the trap receiver.
//!
//! Each listening address gets its own blocking thread(s) on
//! `SO_REUSEPORT` sockets with a large kernel receive buffer: traps come in
//! bursts (a fleet reacting to one event) and every trap lost by a
//! receiver is an overflowing socket buffer. `SO_RCVBUFFORCE` is tried
//! first (it needs CAP_NET_ADMIN), then `SO_RCVBUF` (capped by
//! `net.core.rmem_max`; the image raises that cap).

use nix::sys::socket::sockopt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// What answers a datagram: (datagram, source, local port) -> answer.
pub type Handler = Arc<dyn Fn(&[u8], SocketAddr, u16) -> Option<Vec<u8>> + Send + Sync>;

/// Opens one socket on `addr` with a receive buffer of `rcvbuf` octets.
pub fn open_socket(addr: SocketAddr, rcvbuf: usize) -> io::Result<UdpSocket> {
    sms_core::daemon::open_udp(
        addr,
        sms_core::daemon::UdpOptions {
            receive_buffer: rcvbuf,
            timestamps: false,
        },
    )
}

/// The receive buffer the kernel granted (it reports twice the request).
pub fn receive_buffer(sock: &UdpSocket) -> usize {
    nix::sys::socket::getsockopt(sock, sockopt::RcvBuf).unwrap_or(0) / 2
}

/// Datagrams taken from the kernel per system call.
const BATCH: usize = 32;
/// Largest datagram received.
const DATAGRAM: usize = 65536;

/// `sockaddr_storage` to a socket address.
fn to_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: the kernel filled `ss` with the address family it names.
    unsafe {
        match ss.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(ss as *const _ as *const libc::sockaddr_in);
                Some(SocketAddr::from((
                    u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a = &*(ss as *const _ as *const libc::sockaddr_in6);
                Some(SocketAddr::from((
                    a.sin6_addr.s6_addr,
                    u16::from_be(a.sin6_port),
                )))
            }
            _ => None,
        }
    }
}

/// Receives up to [`BATCH`] datagrams with one `recvmmsg` (waiting for the
/// first only); returns (length, source) per datagram received.
fn receive_batch(
    fd: i32,
    bufs: &mut [Vec<u8>],
    addrs: &mut [libc::sockaddr_storage],
) -> io::Result<Vec<(usize, Option<SocketAddr>)>> {
    let n = bufs.len().min(addrs.len());
    let mut iovs: Vec<libc::iovec> = bufs[..n]
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: zeroed mmsghdr is a valid "empty" header; every pointer set
    // below points into `iovs` and `addrs`, which outlive the call.
    let mut hdrs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    for i in 0..n {
        hdrs[i].msg_hdr.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
        hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `hdrs` holds `n` initialised headers as described above.
    let got = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as u32,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..got as usize)
        .map(|i| (hdrs[i].msg_len as usize, to_addr(&addrs[i])))
        .collect())
}

fn serve_loop(sock: UdpSocket, handler: Handler) {
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; DATAGRAM]).collect();
    // SAFETY: an all-zero sockaddr_storage is valid (family AF_UNSPEC).
    let mut addrs: Vec<libc::sockaddr_storage> =
        (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    let fd = sock.as_raw_fd();
    loop {
        let got = match receive_batch(fd, &mut bufs, &mut addrs) {
            Ok(g) => g,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("SNMP receive failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        for (i, (len, src)) in got.into_iter().enumerate() {
            let Some(src) = src else { continue };
            if let Some(out) = handler(&bufs[i][..len], src, port) {
                if let Err(e) = sock.send_to(&out, src) {
                    tracing::debug!(%src, "SNMP send failed: {e}");
                }
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

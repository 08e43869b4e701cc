//! Serving time on UDP (123 on the appliance).
//!
//! Each listening address gets its own blocking thread(s) with
//! `SO_REUSEPORT` sockets: the receive timestamp comes from the kernel
//! (`SO_TIMESTAMPNS`), the transmit timestamp is taken just before the send,
//! so the answer's timestamps are as close to the wire as user space allows.
//! Clients outside the allow list get nothing; clients over their rate get
//! a kiss-o'-death RATE; anything that is not a client request is dropped
//! and counted.

use crate::access::{AllowList, RateLimiter};
use crate::packet::{to_short, Leap, Mode, NtpTimestamp, Packet};
use crate::state::{Counters, Shared};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Precision announced in answers (log2 seconds): about a microsecond.
pub const PRECISION: i8 = -20;

/// Opens one serving socket on `addr`: kernel receive timestamps, and a
/// buffer large enough that bursts from many devices do not overflow it.
pub fn open_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    sms_core::daemon::open_udp(
        addr,
        sms_core::daemon::UdpOptions {
            receive_buffer: 4 << 20,
            timestamps: true,
        },
    )
}

fn to_socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

use sms_core::daemon::unix_now_f64 as unix_now;

/// Builds the answer to one datagram, or `None` when it gets no answer.
pub fn answer(
    shared: &Shared,
    allow: &AllowList,
    limiter: Option<&Mutex<RateLimiter>>,
    src: SocketAddr,
    datagram: &[u8],
    rx_unix: f64,
) -> Option<[u8; 48]> {
    let c = &shared.counters;
    Counters::bump(&c.received);
    if !allow.allows(src.ip()) {
        Counters::bump(&c.denied);
        return None;
    }
    let req = match Packet::parse(datagram) {
        Ok(p) if p.mode == Mode::Client => p,
        _ => {
            Counters::bump(&c.malformed);
            return None;
        }
    };
    let info = shared.serve_info();
    let over = limiter.is_some_and(|l| !sms_core::daemon::lock(l).allow(src.ip(), Instant::now()));
    let mut resp = Packet {
        leap: info.leap,
        version: req.version.clamp(3, 4),
        mode: Mode::Server,
        stratum: info.stratum,
        poll: req.poll.clamp(4, 17),
        precision: PRECISION,
        root_delay: to_short(info.root_delay),
        root_dispersion: to_short(info.root_dispersion),
        reference_id: info.reference_id,
        reference_ts: info.reference_ts,
        origin_ts: req.transmit_ts,
        receive_ts: NtpTimestamp::from_unix_f64(rx_unix + info.offset),
        transmit_ts: NtpTimestamp(0),
    };
    if over {
        Counters::bump(&c.rate_limited);
        resp.leap = Leap::Unsynchronized;
        resp.stratum = 0;
        resp.reference_id = *b"RATE";
    }
    resp.transmit_ts = NtpTimestamp::from_unix_f64(unix_now() + info.offset);
    Counters::bump(&c.served);
    Some(resp.to_bytes())
}

/// Serves on `sock` until the process ends.
pub fn serve_loop(
    sock: UdpSocket,
    shared: Arc<Shared>,
    allow: Arc<AllowList>,
    limiter: Arc<Mutex<RateLimiter>>,
) {
    let mut buf = [0u8; 1024];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let fd = sock.as_raw_fd();
    // Without rate limiting the limiter's lock is never taken.
    let enabled = sms_core::daemon::lock(&limiter).enabled();
    let limiter = enabled.then_some(&*limiter);
    loop {
        let (len, src, rx) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("NTP receive failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let mut rx = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        rx = Some(ts.tv_sec() as f64 + ts.tv_nsec() as f64 * 1e-9);
                    }
                }
            }
            let src = msg.address.as_ref().and_then(to_socket_addr);
            (msg.bytes, src, rx)
        };
        let Some(src) = src else { continue };
        let rx = rx.unwrap_or_else(unix_now);
        if let Some(out) = answer(&shared, &allow, limiter, src, &buf[..len], rx) {
            let _ = sock.send_to(&out, src);
        }
    }
}

/// Opens every listening address and starts its threads. Returns the bound
/// addresses (with the real port when 0 was asked for).
pub fn start(
    listen: &[SocketAddr],
    threads: usize,
    shared: Arc<Shared>,
    allow: Arc<AllowList>,
    limiter: Arc<Mutex<RateLimiter>>,
) -> io::Result<Vec<SocketAddr>> {
    let mut bound = Vec::new();
    for addr in listen {
        let first = open_socket(*addr)
            .map_err(|e| io::Error::new(e.kind(), format!("listening on {addr}: {e}")))?;
        let local = first.local_addr()?;
        let mut socks = vec![first];
        for _ in 1..threads.max(1) {
            socks.push(
                open_socket(local)
                    .map_err(|e| io::Error::new(e.kind(), format!("listening on {local}: {e}")))?,
            );
        }
        for (i, s) in socks.into_iter().enumerate() {
            let (shared, allow, limiter) = (shared.clone(), allow.clone(), limiter.clone());
            std::thread::Builder::new()
                .name(format!("ntp-serve-{i}"))
                .spawn(move || serve_loop(s, shared, allow, limiter))?;
        }
        bound.push(local);
    }
    Ok(bound)
}

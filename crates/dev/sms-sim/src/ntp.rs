//! Simulated upstream NTP servers.
//!
//! Each answers NTP client requests with "system clock + offset", plus
//! optional random jitter, at a configurable stratum: three agreeing
//! servers and one far off make a falseticker test. The packet code here is
//! written independently of the relay's, so that each checks the other.

use anyhow::{Context, Result};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;

/// How a simulated server behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtpSimConfig {
    /// Seconds added to the system clock.
    pub offset: f64,
    /// Uniform random jitter, ± seconds.
    pub jitter: f64,
    /// Stratum announced.
    pub stratum: u8,
    /// Answer every request with this kiss-o'-death code instead of time.
    pub kiss: Option<[u8; 4]>,
}

impl Default for NtpSimConfig {
    fn default() -> Self {
        NtpSimConfig {
            offset: 0.0,
            jitter: 0.0,
            stratum: 1,
            kiss: None,
        }
    }
}

/// A running simulated NTP server.
pub struct NtpSimServer {
    /// Address it answers on.
    pub addr: SocketAddr,
    /// Requests answered.
    pub answered: Arc<AtomicU64>,
    offset_bits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NtpSimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ntp_ts(unix: f64) -> u64 {
    let t = unix + NTP_UNIX_OFFSET;
    let secs = t.floor();
    ((secs as u64) << 32) | (((t - secs) * 4_294_967_296.0) as u64).min(0xffff_ffff)
}

use sms_core::daemon::unix_now_f64 as now;

impl NtpSimServer {
    /// Starts a server on `bind`.
    pub async fn start(bind: SocketAddr, cfg: NtpSimConfig) -> Result<NtpSimServer> {
        let sock = UdpSocket::bind(bind)
            .await
            .with_context(|| format!("binding NTP server to {bind}"))?;
        Self::serve(sock, cfg)
    }

    /// Serves on a socket bound elsewhere (in another network namespace,
    /// for a server on a virtual segment).
    pub fn from_std(sock: std::net::UdpSocket, cfg: NtpSimConfig) -> Result<NtpSimServer> {
        sock.set_nonblocking(true)?;
        Self::serve(UdpSocket::from_std(sock)?, cfg)
    }

    fn serve(sock: UdpSocket, cfg: NtpSimConfig) -> Result<NtpSimServer> {
        let addr = sock.local_addr()?;
        let answered = Arc::new(AtomicU64::new(0));
        let count = answered.clone();
        let offset_bits = Arc::new(AtomicU64::new(cfg.offset.to_bits()));
        let offset_now = offset_bits.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let rx = now();
                let mut cfg = cfg;
                cfg.offset = f64::from_bits(offset_now.load(Ordering::Relaxed));
                // Client mode (3) requests of at least 48 bytes only.
                if n < 48 || buf[0] & 7 != 3 {
                    continue;
                }
                let jitter = if cfg.jitter > 0.0 {
                    rand::thread_rng().gen_range(-cfg.jitter..cfg.jitter)
                } else {
                    0.0
                };
                let mut out = [0u8; 48];
                let version = (buf[0] >> 3) & 7;
                out[0] = (version << 3) | 4;
                out[1] = cfg.stratum;
                out[2] = buf[2];
                out[3] = (-20i8) as u8;
                out[4..8].copy_from_slice(&0u32.to_be_bytes());
                out[8..12].copy_from_slice(&(65536u32 / 1000).to_be_bytes());
                out[12..16].copy_from_slice(b"GPS\0");
                out[16..24].copy_from_slice(&ntp_ts(rx + cfg.offset - 1.0).to_be_bytes());
                out[24..32].copy_from_slice(&buf[40..48]);
                out[32..40].copy_from_slice(&ntp_ts(rx + cfg.offset + jitter).to_be_bytes());
                out[40..48].copy_from_slice(&ntp_ts(now() + cfg.offset + jitter).to_be_bytes());
                if let Some(code) = cfg.kiss {
                    out[0] = (3 << 6) | (version << 3) | 4;
                    out[1] = 0;
                    out[12..16].copy_from_slice(&code);
                }
                if sock.send_to(&out, peer).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(NtpSimServer {
            addr,
            answered,
            offset_bits,
            task,
        })
    }

    /// Moves the server's clock: from now on it answers with `offset`
    /// seconds added to the system clock (an upstream that jumps, or an
    /// attacker answering in its place).
    pub fn set_offset(&self, offset: f64) {
        self.offset_bits.store(offset.to_bits(), Ordering::Relaxed);
    }
}

fn unix_of(ts: u64) -> f64 {
    (ts >> 32) as f64 + (ts & 0xffff_ffff) as f64 / 4_294_967_296.0 - NTP_UNIX_OFFSET
}

/// What a managed device learned from one exchange with its time server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtpSample {
    /// Server clock minus ours, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
    /// The server's stratum.
    pub stratum: u8,
}

/// Asks `server` for the time once, as a device's SNTP client does
/// (RFC 4330): the answer must be server mode, echo our transmit timestamp
/// as its origin and carry a stratum of 1 to 15; anything else is an
/// error naming what was wrong.
pub async fn query(
    sock: &impl crate::datagram::Datagram,
    server: SocketAddr,
    wait: std::time::Duration,
) -> Result<NtpSample> {
    let mut req = [0u8; 48];
    req[0] = (4 << 3) | 3;
    let t1 = now();
    let t1_ts = ntp_ts(t1);
    req[40..48].copy_from_slice(&t1_ts.to_be_bytes());
    sock.send_to(&req, server)
        .await
        .with_context(|| format!("sending an NTP query to {server}"))?;
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .with_context(|| format!("no NTP answer from {server} within {wait:?}"))??;
        let t4 = now();
        if from != server || n < 48 {
            continue;
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            u64::from_be_bytes(b)
        };
        if buf[0] & 7 != 4 {
            anyhow::bail!(
                "{server} answered in mode {}, not server mode 4",
                buf[0] & 7
            );
        }
        if field(24) != t1_ts {
            // A late answer to an earlier query, or a forgery.
            continue;
        }
        let stratum = buf[1];
        if !(1..=15).contains(&stratum) {
            let code = String::from_utf8_lossy(&buf[12..16]).into_owned();
            anyhow::bail!("{server} is not synchronised (stratum {stratum}, code {code:?})");
        }
        let (t2, t3) = (unix_of(field(32)), unix_of(field(40)));
        return Ok(NtpSample {
            offset: ((t2 - t1) + (t3 - t4)) / 2.0,
            delay: (t4 - t1) - (t3 - t2),
            stratum,
        });
    }
}

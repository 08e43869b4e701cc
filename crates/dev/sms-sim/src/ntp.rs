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

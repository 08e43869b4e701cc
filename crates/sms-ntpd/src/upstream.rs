//! The client side: polling upstream servers and choosing the time.

use crate::clock::{check_step, Clock, MAX_DRIFT};
use crate::config::{ClockConfig, UpstreamConfig};
use crate::packet::{Leap, Mode, NtpTimestamp, Packet};
use crate::select::{Selection, PHI};
use crate::source::{choose, PollLimits, PollOutcome, Source};
use crate::state::{ServeInfo, Shared};
use sms_core::bus::{NtpSourceStatus, NtpStatus};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Why a query got no usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// Socket error.
    #[error("{0}")]
    Io(String),
    /// No answer in time.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The server sent a kiss-o'-death.
    #[error("kiss-o'-death {0}")]
    Kiss(String),
    /// The server is not synchronised.
    #[error("server is not synchronised (leap 3, stratum {0})")]
    Unsynchronised(u8),
}

/// One query's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Offset of the server's clock from the system clock, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
    /// The answer.
    pub response: Packet,
}

use sms_core::daemon::unix_now_f64 as unix_now;

/// Sends one client request on a connected socket and waits for the
/// matching answer (same origin timestamp); stray datagrams are ignored.
/// A kiss-o'-death or an unsynchronised server is an error; the packet is
/// in the error only as its code.
pub async fn query(
    sock: &UdpSocket,
    timeout: Duration,
    poll: i8,
) -> Result<Measurement, QueryError> {
    let t1 = unix_now();
    let tx = NtpTimestamp::from_unix_f64(t1);
    sock.send(&Packet::client_request(tx, poll).to_bytes())
        .await
        .map_err(|e| QueryError::Io(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(QueryError::Timeout(timeout.as_millis() as u64)),
            Ok(Err(e)) => return Err(QueryError::Io(e.to_string())),
            Ok(Ok(n)) => n,
        };
        let t4 = unix_now();
        let Ok(p) = Packet::parse(&buf[..n]) else {
            continue;
        };
        if p.mode != Mode::Server || p.origin_ts != tx {
            continue;
        }
        if let Some(code) = p.kiss_code() {
            return Err(QueryError::Kiss(String::from_utf8_lossy(&code).to_string()));
        }
        if p.leap == Leap::Unsynchronized || p.stratum >= 16 || p.transmit_ts.0 == 0 {
            return Err(QueryError::Unsynchronised(p.stratum));
        }
        let t2 = p.receive_ts.to_unix_f64();
        let t3 = p.transmit_ts.to_unix_f64();
        let offset = ((t2 - t1) + (t3 - t4)) / 2.0;
        let delay = ((t4 - t1) - (t3 - t2)).max(0.0);
        return Ok(Measurement {
            offset,
            delay,
            response: p,
        });
    }
}

/// Opens a socket to `server` and queries it once.
pub async fn query_once(server: SocketAddr, timeout: Duration) -> Result<Measurement, QueryError> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|e: std::net::AddrParseError| QueryError::Io(e.to_string()))?;
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| QueryError::Io(e.to_string()))?;
    sock.connect(server)
        .await
        .map_err(|e| QueryError::Io(e.to_string()))?;
    query(&sock, timeout, 6).await
}

/// Parses an upstream server entry: `address:port` or `address`.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 123))
        .map_err(|_| format!("upstream server {s:?} is not an address or address:port"))
}

/// The engine: sources, selection, clock, and what the server serves.
pub struct Engine {
    cfg: UpstreamConfig,
    clock_cfg: ClockConfig,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    sources: Mutex<Vec<Source>>,
    start: Instant,
    inner: Mutex<EngineState>,
    /// Samples taken so far (all sources): a new one means the clock may
    /// be given a fresh offset.
    samples: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct EngineState {
    last_sync: Option<f64>,
    /// Sample count when the clock was last given an offset.
    last_applied: u64,
    selection: Option<Selection>,
    synced_to: Option<SocketAddr>,
    /// Served time minus the monotonic clock, and the monotonic time, at
    /// the first applied correction: where the panic threshold is measured
    /// from.
    anchor: Option<(f64, f64)>,
    /// Corrections refused (panic threshold or time floor).
    refused_steps: u64,
    /// Why the last one was refused.
    last_refusal: Option<String>,
    /// When a refusal was last logged (monotonic seconds).
    refusal_logged_at: Option<f64>,
}

use sms_core::daemon::lock;

fn limits(cfg: &UpstreamConfig) -> PollLimits {
    PollLimits {
        min: cfg.min_poll,
        max: cfg.max_poll,
    }
}

fn reference_id(addr: SocketAddr) -> [u8; 4] {
    match addr.ip() {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let d = sms_core::blob::Digest::of(&v6.octets());
            [d.0[0], d.0[1], d.0[2], d.0[3]]
        }
    }
}

impl Engine {
    /// An engine for the configured sources.
    pub fn new(
        cfg: UpstreamConfig,
        clock_cfg: ClockConfig,
        clock: Arc<dyn Clock>,
        shared: Arc<Shared>,
    ) -> Result<Arc<Engine>, String> {
        let mut sources = Vec::new();
        for s in &cfg.servers {
            sources.push(Source::new(parse_server(s)?, limits(&cfg)));
        }
        if clock_cfg.local_stratum > 15 {
            return Err(format!(
                "clock.local_stratum {} is not between 0 and 15",
                clock_cfg.local_stratum
            ));
        }
        let engine = Arc::new(Engine {
            cfg,
            clock_cfg,
            clock,
            shared,
            sources: Mutex::new(sources),
            start: Instant::now(),
            inner: Mutex::new(EngineState::default()),
            samples: std::sync::atomic::AtomicU64::new(0),
        });
        engine.update();
        Ok(engine)
    }

    fn mono(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Starts a polling task per source and the periodic re-evaluation.
    pub fn spawn(self: &Arc<Self>) {
        let n = lock(&self.sources).len();
        for i in 0..n {
            let e = self.clone();
            tokio::spawn(async move { e.poll_source(i).await });
        }
        let e = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                e.update();
            }
        });
    }

    async fn poll_source(self: Arc<Self>, i: usize) {
        let addr = lock(&self.sources)[i].addr;
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot open a socket for upstream {addr}: {e}");
                return;
            }
        };
        if let Err(e) = sock.connect(addr).await {
            tracing::error!("cannot reach upstream {addr}: {e}");
            return;
        }
        let mut burst = if self.cfg.iburst { 8 } else { 0 };
        let timeout = Duration::from_millis(self.cfg.timeout_ms.max(10));
        loop {
            let poll = {
                let mut sources = lock(&self.sources);
                sources[i].reach.poll_sent();
                sources[i].poll
            };
            let result = query(&sock, timeout, poll as i8).await;
            let now = self.mono();
            let outcome =
                lock(&self.sources)[i].on_result(&result, now, burst > 0, limits(&self.cfg));
            match outcome {
                PollOutcome::Sample => {
                    self.samples.fetch_add(1, Ordering::Relaxed);
                    self.update();
                }
                PollOutcome::SlowDown(poll) => {
                    tracing::warn!(
                        "upstream {addr} asks to slow down (KoD RATE); poll now 2^{poll} s"
                    );
                    burst = 0;
                }
                PollOutcome::Denied(code) => {
                    tracing::error!(
                        "upstream {addr} denies service (KoD {code}); it will not be polled again"
                    );
                    self.update();
                    return;
                }
                PollOutcome::Failed(e) => tracing::debug!("upstream {addr}: {e}"),
            }
            let wait = if burst > 0 {
                burst -= 1;
                Duration::from_millis(self.cfg.iburst_spacing_ms.max(10))
            } else {
                Duration::from_secs(1u64 << lock(&self.sources)[i].poll.min(17))
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Re-runs selection and updates what is served.
    pub fn update(&self) {
        let now = self.mono();
        let mut sources = lock(&self.sources);
        let (cands, sel) = choose(&mut sources, now);
        let mut st = lock(&self.inner);
        let sel = match sel {
            Some(sel) => {
                let change = sel.offset - self.clock.serve_offset();
                let floor = sms_core::time_floor::read(&self.clock_cfg.time_floor_file);
                let served_minus_mono = unix_now() + self.clock.serve_offset() - now;
                let panic = self.clock_cfg.panic_threshold_s as f64;
                let (movement, limit) = match st.anchor {
                    Some((at, since)) => (
                        served_minus_mono + change - at,
                        panic + MAX_DRIFT * (now - since).max(0.0),
                    ),
                    None => (change, panic),
                };
                match check_step(
                    movement,
                    unix_now() + sel.offset,
                    st.anchor.is_some(),
                    if panic > 0.0 { limit } else { 0.0 },
                    floor,
                ) {
                    Ok(()) => Some(sel),
                    Err(why) => {
                        let taken = self.samples.load(Ordering::Relaxed);
                        if taken > st.last_applied {
                            st.last_applied = taken;
                            st.refused_steps += 1;
                        }
                        let why = why.to_string();
                        let log_again = st.refusal_logged_at.is_none_or(|t| now - t >= 60.0)
                            || st.last_refusal.as_deref() != Some(why.as_str());
                        if log_again {
                            tracing::error!("time not applied: {why}");
                            st.refusal_logged_at = Some(now);
                        }
                        st.last_refusal = Some(why);
                        None
                    }
                }
            }
            None => None,
        };
        match &sel {
            Some(sel) => {
                let peer = sel.system_peer;
                let peer_addr = sources[peer.id].addr;
                let peer_at = sources[peer.id].filter.best().map(|b| b.at).unwrap_or(now);
                let taken = self.samples.load(Ordering::Relaxed);
                if taken > st.last_applied || st.selection.is_none() {
                    st.last_applied = taken;
                    match self.clock.apply(sel.offset) {
                        Ok(true) => {
                            for s in sources.iter_mut() {
                                s.filter.clear();
                            }
                        }
                        Ok(false) => {}
                        Err(e) => tracing::error!("cannot apply time: {e}"),
                    }
                    if st.anchor.is_none() {
                        st.anchor = Some((unix_now() + self.clock.serve_offset() - now, now));
                    }
                }
                if st.synced_to.is_none() {
                    tracing::info!(
                        "synchronised to {peer_addr} (stratum {}, offset {:+.6} s, {} of {} source(s) agree)",
                        peer.stratum,
                        sel.offset,
                        sel.survivors.len(),
                        cands.len()
                    );
                } else if st.synced_to != Some(peer_addr) {
                    tracing::debug!("system peer now {peer_addr} (offset {:+.6} s)", sel.offset);
                }
                st.synced_to = Some(peer_addr);
                for f in &sel.falsetickers {
                    if let Some(c) = cands.iter().find(|c| c.id == *f) {
                        tracing::debug!("falseticker {} at {:+.6} s", sources[*f].addr, c.offset);
                    }
                }
                st.last_sync = Some(now);
                self.shared.set_serve_info(ServeInfo {
                    leap: Leap::None,
                    stratum: peer.stratum.saturating_add(1).min(15),
                    reference_id: reference_id(peer_addr),
                    reference_ts: NtpTimestamp::from_unix_f64(
                        unix_now() + self.clock.serve_offset(),
                    ),
                    root_delay: peer.root_delay + peer.delay,
                    root_dispersion: peer.root_dispersion
                        + sel.jitter
                        + PHI * (now - peer_at).max(0.0),
                    offset: self.clock.serve_offset(),
                });
                st.selection = Some(sel.clone());
            }
            None => {
                let holdover = 4.0 * (1u64 << self.cfg.max_poll.min(17)) as f64;
                let expired = st.last_sync.is_none_or(|t| now - t > holdover);
                if expired {
                    if st.synced_to.take().is_some() {
                        tracing::warn!(
                            "lost synchronisation: no majority of upstream sources agrees"
                        );
                    }
                    st.selection = None;
                    let info = if self.clock_cfg.local_stratum > 0 {
                        ServeInfo {
                            leap: Leap::None,
                            stratum: self.clock_cfg.local_stratum,
                            reference_id: *b"LOCL",
                            reference_ts: NtpTimestamp::from_unix_f64(
                                unix_now() + self.clock.serve_offset(),
                            ),
                            root_delay: 0.0,
                            root_dispersion: 0.0,
                            offset: self.clock.serve_offset(),
                        }
                    } else {
                        ServeInfo::unsynchronised(self.clock.serve_offset())
                    };
                    self.shared.set_serve_info(info);
                }
            }
        }
    }

    /// The status for D-Bus.
    pub fn status(&self, listening: &[SocketAddr]) -> NtpStatus {
        let info = self.shared.serve_info();
        let sources = lock(&self.sources);
        let st = lock(&self.inner);
        let c = &self.shared.counters;
        NtpStatus {
            synchronised: info.synchronised() && st.selection.is_some(),
            leap: info.leap as u8,
            stratum: info.stratum,
            reference: match st.synced_to {
                Some(a) => a.to_string(),
                None => String::from_utf8_lossy(&info.reference_id).to_string(),
            },
            offset: st.selection.as_ref().map(|s| s.offset).unwrap_or(0.0),
            jitter: st.selection.as_ref().map(|s| s.jitter).unwrap_or(0.0),
            root_delay: info.root_delay,
            root_dispersion: info.root_dispersion,
            clock_mode: self.clock.name().to_string(),
            listening: listening.iter().map(|a| a.to_string()).collect(),
            sources: sources
                .iter()
                .map(|s| {
                    let best = s.filter.best();
                    NtpSourceStatus {
                        address: s.addr.to_string(),
                        reach: s.reach.bits(),
                        samples: s.filter.len(),
                        offset: best.map(|b| b.offset),
                        delay: best.map(|b| b.delay),
                        jitter: best.map(|_| s.filter.jitter()),
                        stratum: best.map(|b| b.stratum),
                        poll: s.poll,
                        state: s.state.as_str().to_string(),
                        last_error: s.last_error.clone(),
                    }
                })
                .collect(),
            received: c.received.load(Ordering::Relaxed),
            served: c.served.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            refused_steps: st.refused_steps,
            last_refusal: st.last_refusal.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;
    use crate::select::Sample;

    impl Engine {
        fn inject(&self, i: usize, offset: f64, delay: f64, at: f64) {
            self.samples.fetch_add(1, Ordering::Relaxed);
            let mut sources = lock(&self.sources);
            sources[i].reach.answered();
            sources[i].filter.add(Sample {
                offset,
                delay,
                root_delay: 0.0,
                root_dispersion: 0.0,
                stratum: 1,
                at,
            });
        }
    }

    /// The served time follows the selection even when the system peer's
    /// best sample is older than a sample applied before.
    #[test]
    fn served_offset_follows_the_majority_whatever_the_order_of_samples() {
        let clock = Arc::new(OffsetClock::default());
        let cfg = UpstreamConfig {
            servers: vec![
                "127.0.0.1:1".into(),
                "127.0.0.1:2".into(),
                "127.0.0.1:3".into(),
                "127.0.0.1:4".into(),
            ],
            ..Default::default()
        };
        let engine = Engine::new(
            cfg,
            ClockConfig::default(),
            clock.clone(),
            Arc::new(Shared::new()),
        )
        .unwrap();
        // Good sources: one fast sample each, early.
        for i in 0..3 {
            engine.inject(i, 3.25, 0.0001, 0.1);
        }
        // The falseticker gets two samples first.
        engine.inject(3, -40.0, 0.0001, 0.2);
        engine.inject(3, -40.0, 0.0001, 0.3);
        engine.update();
        assert!(
            clock.serve_offset() > -1.0,
            "a lone falseticker was applied"
        );
        // The good sources' second samples are slower: their best stays the early one.
        for i in 0..3 {
            engine.inject(i, 3.25, 0.01, 0.4);
        }
        engine.update();
        assert!(
            (clock.serve_offset() - 3.25).abs() < 0.001,
            "served {}",
            clock.serve_offset()
        );
        assert!((engine.shared.serve_info().offset - 3.25).abs() < 0.001);
    }
}

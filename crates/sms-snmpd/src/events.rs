//! Received traps and informs, kept as events with a bounded retention.
//!
//! The receiving threads hand events, as decoded, to one writer thread
//! through a bounded channel, so a burst never waits on formatting or the
//! disk; the writer numbers them, turns them into records, forwards them
//! (syslog) and stores each batch as one chunk (sled, keyed by the
//! big-endian sequence number of its first event; the value is the number
//! of events, four octets, then a zstd frame of a JSON array), so a burst
//! of a hundred thousand traps costs a few dozen small writes. The oldest chunks go when the
//! retention is exceeded. Events are local observations of this
//! appliance and are not replicated.

use crate::mib::oids;

use sms_snmp::message::TrapV1;
use sms_snmp::{Oid, Value, VarBind};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use thiserror::Error;

pub use sms_core::bus::{EventVarBind, TrapEvent};

/// What a notification carried, as decoded.
#[derive(Debug, Clone)]
pub enum Body {
    /// An SNMPv1 trap.
    V1(TrapV1),
    /// An SNMPv2 trap or inform's bindings.
    V2(Vec<VarBind>),
}

/// A notification as the receiving thread hands it over.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// Reception time.
    pub time: std::time::SystemTime,
    /// Sender.
    pub source: SocketAddr,
    /// Local port.
    pub port: u16,
    /// `v1`, `v2c`, `v3`.
    pub version: &'static str,
    /// `trap` or `inform`.
    pub kind: &'static str,
    /// Community or user.
    pub principal: String,
    /// The notification.
    pub body: Body,
}

/// What is done with every record besides storing it (syslog forwarding).
pub type Forward = Box<dyn Fn(&TrapEvent) + Send>;

/// Why the event store failed.
#[derive(Debug, Error)]
pub enum EventError {
    /// The database.
    #[error("event store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record that does not decode.
    #[error("event store record: {0}")]
    Record(#[from] serde_json::Error),
}

/// The event log.
#[derive(Debug)]
pub struct EventLog {
    db: sled::Tree,
    stored: Arc<AtomicU64>,
    kept: Arc<AtomicU64>,
    tx: mpsc::SyncSender<RawEvent>,
    dropped: AtomicU64,
}

/// Events waiting for the writer at most; beyond that they are counted as
/// dropped rather than blocking the receiving threads.
pub const QUEUE: usize = 262_144;

/// Most events in one stored chunk.
pub const CHUNK: usize = 4096;

fn chunk_len(v: &[u8]) -> u64 {
    v.get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0) as u64
}

fn chunk_events(v: &[u8]) -> Result<Vec<TrapEvent>, EventError> {
    let json = zstd::decode_all(v.get(4..).unwrap_or_default())
        .map_err(|e| EventError::Store(sled::Error::Io(e)))?;
    Ok(serde_json::from_slice(&json)?)
}

fn seq_of(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

impl EventLog {
    /// Opens (or creates) the log in `dir` and starts its writer thread;
    /// `forward` sees every record as it is stored.
    pub fn open(
        dir: &Path,
        retention: usize,
        forward: Option<Forward>,
    ) -> Result<Arc<EventLog>, EventError> {
        let db = sled::Config::new()
            .path(dir.join("events"))
            .flush_every_ms(Some(500))
            .open()?;
        let tree = db.open_tree("events")?;
        let mut kept = 0u64;
        let mut next = 1u64;
        for kv in tree.iter() {
            let (k, v) = kv?;
            let n = chunk_len(&v);
            kept += n;
            next = next.max(seq_of(&k) + n);
        }
        let (tx, rx) = mpsc::sync_channel::<RawEvent>(QUEUE);
        let stored = Arc::new(AtomicU64::new(0));
        let kept = Arc::new(AtomicU64::new(kept));
        let log = Arc::new(EventLog {
            db: tree.clone(),
            stored: stored.clone(),
            kept: kept.clone(),
            tx,
            dropped: AtomicU64::new(0),
        });
        let w = Writer {
            tree,
            retention: retention.max(1) as u64,
            stored,
            kept,
            next,
            forward,
            clock: SecondClock::default(),
            _db: db,
        };
        std::thread::Builder::new()
            .name("snmp-events".into())
            .spawn(move || w.run(rx))
            .map_err(|e| EventError::Store(sled::Error::Io(e)))?;
        Ok(log)
    }

    /// Queues an event for storing; false when the queue is full.
    pub fn push(&self, ev: RawEvent) -> bool {
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Events stored since start.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events with a sequence number above `after`, oldest first, at most
    /// `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<TrapEvent>, EventError> {
        let from = after.saturating_add(1);
        // The chunk holding `from` starts at or before it.
        let start = match self.db.range(..=from.to_be_bytes()).next_back() {
            Some(kv) => kv?.0.to_vec(),
            None => from.to_be_bytes().to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.db.range(start..) {
            let (_, v) = kv?;
            for e in chunk_events(&v)? {
                if e.seq >= from {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The newest `limit` events, oldest first.
    pub fn latest(&self, limit: usize) -> Result<Vec<TrapEvent>, EventError> {
        let mut out: Vec<TrapEvent> = Vec::new();
        for kv in self.db.iter().rev() {
            let (_, v) = kv?;
            let mut chunk = chunk_events(&v)?;
            chunk.append(&mut out);
            out = chunk;
            if out.len() >= limit {
                break;
            }
        }
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }

    /// Number of events kept.
    pub fn len(&self) -> usize {
        self.kept.load(Ordering::Relaxed) as usize
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Writer {
    tree: sled::Tree,
    retention: u64,
    stored: Arc<AtomicU64>,
    kept: Arc<AtomicU64>,
    next: u64,
    forward: Option<Forward>,
    clock: SecondClock,
    _db: sled::Db,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<RawEvent>) {
        while let Ok(first) = rx.recv() {
            let mut chunk = Vec::with_capacity(64);
            let mut ev = Some(first);
            while let Some(raw) = ev.take() {
                let e = record(raw, self.next, &mut self.clock);
                self.next += 1;
                if let Some(f) = &self.forward {
                    f(&e);
                }
                chunk.push(e);
                if chunk.len() < CHUNK {
                    ev = rx.try_recv().ok();
                }
            }
            if let Err(e) = self.store(&chunk) {
                tracing::error!(
                    "storing {} events (from {}) failed: {e}",
                    chunk.len(),
                    chunk[0].seq
                );
            }
        }
    }

    fn store(&mut self, chunk: &[TrapEvent]) -> Result<(), EventError> {
        let n = chunk.len() as u64;
        let json = serde_json::to_vec(chunk)?;
        let mut value = (n as u32).to_be_bytes().to_vec();
        zstd::stream::copy_encode(json.as_slice(), &mut value, 1)
            .map_err(|e| EventError::Store(sled::Error::Io(e)))?;
        let mut batch = sled::Batch::default();
        batch.insert(&chunk[0].seq.to_be_bytes(), value);
        // Drop whole old chunks while what stays is still at least the
        // retention.
        let mut kept = self.kept.load(Ordering::Relaxed) + n;
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let len = chunk_len(&v);
            if kept - len < self.retention {
                break;
            }
            batch.remove(k);
            kept -= len;
        }
        self.tree.apply_batch(batch)?;
        self.kept.store(kept, Ordering::Relaxed);
        self.stored.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

/// RFC 3339 formatting with the date and time of day cached per second.
#[derive(Default)]
struct SecondClock {
    second: u64,
    prefix: String,
}

impl SecondClock {
    fn format(&mut self, t: std::time::SystemTime) -> String {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if d.as_secs() != self.second || self.prefix.is_empty() {
            self.second = d.as_secs();
            self.prefix = time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64)
                .ok()
                .and_then(|t| {
                    t.format(time::macros::format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second]"
                    ))
                    .ok()
                })
                .unwrap_or_default();
        }
        format!("{}.{:03}Z", self.prefix, d.subsec_millis())
    }
}

fn record(raw: RawEvent, seq: u64, clock: &mut SecondClock) -> TrapEvent {
    let p = match &raw.body {
        Body::V1(t) => v1_event(t),
        Body::V2(v) => v2_event(v),
    };
    TrapEvent {
        seq,
        time: clock.format(raw.time),
        source: raw.source.to_string(),
        port: raw.port,
        version: raw.version.into(),
        kind: raw.kind.into(),
        principal: raw.principal,
        trap_oid: p.trap_oid,
        uptime: p.uptime,
        varbinds: p.varbinds,
    }
}

/// An event before it gets its sequence number and envelope.
#[derive(Debug, Default)]
pub struct Partial {
    trap_oid: String,
    uptime: Option<u32>,
    varbinds: Vec<EventVarBind>,
}

fn text_vb(vb: &VarBind) -> EventVarBind {
    EventVarBind {
        oid: vb.oid.to_string(),
        kind: vb.value.type_name().into(),
        value: vb.value.display(),
    }
}

/// The event of an SNMPv2 notification's bindings.
pub fn v2_event(vbs: &[VarBind]) -> Partial {
    let mut p = Partial::default();
    for vb in vbs {
        match (vb.oid.arcs(), &vb.value) {
            (a, Value::TimeTicks(t)) if a == oids::SYS_UPTIME => p.uptime = Some(*t),
            (a, Value::Oid(o)) if a == oids::SNMP_TRAP_OID => p.trap_oid = o.to_string(),
            _ => p.varbinds.push(text_vb(vb)),
        }
    }
    p
}

/// The event of an SNMPv1 trap, translated as RFC 3584 section 3.1 says.
pub fn v1_event(t: &TrapV1) -> Partial {
    let trap_oid = if (0..6).contains(&t.generic) {
        Oid::new(oids::SNMP_TRAPS.to_vec()).child(&[t.generic as u32 + 1])
    } else {
        t.enterprise.child(&[0, t.specific.max(0) as u32])
    };
    let mut varbinds: Vec<EventVarBind> = t.varbinds.iter().map(text_vb).collect();
    varbinds.push(EventVarBind {
        oid: Oid::new(oids::SNMP_TRAP_ENTERPRISE.to_vec()).to_string(),
        kind: "OBJECT IDENTIFIER".into(),
        value: t.enterprise.to_string(),
    });
    varbinds.push(EventVarBind {
        oid: "agent-addr".into(),
        kind: "IpAddress".into(),
        value: Value::IpAddress(t.agent_addr).display(),
    });
    Partial {
        trap_oid: trap_oid.to_string(),
        uptime: Some(t.timestamp),
        varbinds,
    }
}

/// An RFC 5424 line for an event (facility local0, severity notice),
/// control characters removed from everything that came from outside.
pub fn syslog_line(host: &str, ev: &TrapEvent) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let vbs: Vec<String> = ev
        .varbinds
        .iter()
        .map(|v| format!("{}={}", v.oid, clean(&v.value)))
        .collect();
    format!(
        "<133>1 {} {} sms-snmpd - snmptrap - {} {} from {} ({}): {} {}",
        ev.time,
        host,
        ev.version,
        ev.kind,
        clean(&ev.source),
        clean(&ev.principal),
        ev.trap_oid,
        vbs.join(" ")
    )
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Forwards every record to a syslog server as an RFC 5424 line over UDP.
pub fn syslog_forwarder(addr: SocketAddr) -> std::io::Result<Forward> {
    let bind: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let sock = std::net::UdpSocket::bind(bind)?;
    let host = match sms_core::daemon::host_name() {
        h if h.is_empty() => "-".to_string(),
        h => h,
    };
    Ok(Box::new(move |e: &TrapEvent| {
        let _ = sock.send_to(syslog_line(&host, e).as_bytes(), addr);
    }))
}

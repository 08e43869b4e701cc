//! Received traps and informs, kept as events with a bounded retention.
//!
//! The receiving threads hand events to one writer thread through a
//! channel, so a burst never waits on the disk; the writer stores them in
//! batches (sled, keyed by a big-endian sequence number) and drops the
//! oldest beyond the retention. Events are local observations of this
//! appliance and are not replicated.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// One variable binding of an event, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventVarBind {
    /// OID, dotted.
    pub oid: String,
    /// SMI type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Value as text (hex for binary octet strings).
    pub value: String,
}

/// A received trap or inform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrapEvent {
    /// Sequence number (increasing).
    pub seq: u64,
    /// Reception time, RFC 3339 UTC.
    pub time: String,
    /// Sender address.
    pub source: String,
    /// Local port it arrived on.
    pub port: u16,
    /// `v1`, `v2c` or `v3`.
    pub version: String,
    /// `trap` or `inform`.
    pub kind: String,
    /// Community (v1/v2c) or user (v3).
    pub principal: String,
    /// snmpTrapOID (v1 traps translated per RFC 3584).
    pub trap_oid: String,
    /// sysUpTime of the sender, hundredths.
    pub uptime: Option<u32>,
    /// Other bindings.
    pub varbinds: Vec<EventVarBind>,
}

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
    next: AtomicU64,
    stored: Arc<AtomicU64>,
    tx: mpsc::SyncSender<TrapEvent>,
    dropped: AtomicU64,
}

/// Events waiting for the writer at most; beyond that they are counted as
/// dropped rather than blocking the receiving threads.
pub const QUEUE: usize = 262_144;

impl EventLog {
    /// Opens (or creates) the log in `dir` and starts its writer thread.
    pub fn open(dir: &Path, retention: usize) -> Result<Arc<EventLog>, EventError> {
        let db = sled::Config::new()
            .path(dir.join("events"))
            .flush_every_ms(Some(500))
            .open()?;
        let tree = db.open_tree("events")?;
        let next = match tree.last()? {
            Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])) + 1,
            None => 1,
        };
        let (tx, rx) = mpsc::sync_channel::<TrapEvent>(QUEUE);
        let stored = Arc::new(AtomicU64::new(0));
        let log = Arc::new(EventLog {
            db: tree.clone(),
            next: AtomicU64::new(next),
            stored: stored.clone(),
            tx,
            dropped: AtomicU64::new(0),
        });
        let retention = retention.max(1);
        std::thread::Builder::new()
            .name("snmp-events".into())
            .spawn(move || writer(tree, rx, retention, stored))
            .map_err(|e| EventError::Store(sled::Error::Io(e)))?;
        let _keep_db_open = db;
        Ok(log)
    }

    /// The next sequence number (for a new event).
    pub fn next_seq(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues an event for storing; false when the queue is full.
    pub fn push(&self, ev: TrapEvent) -> bool {
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
        let mut out = Vec::new();
        for kv in self.db.range((after.saturating_add(1)).to_be_bytes()..) {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The newest `limit` events, oldest first.
    pub fn latest(&self, limit: usize) -> Result<Vec<TrapEvent>, EventError> {
        let mut out = Vec::new();
        for kv in self.db.iter().rev() {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v)?);
            if out.len() >= limit {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Number of events kept.
    pub fn len(&self) -> usize {
        self.db.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.db.is_empty()
    }
}

fn writer(
    tree: sled::Tree,
    rx: mpsc::Receiver<TrapEvent>,
    retention: usize,
    stored: Arc<AtomicU64>,
) {
    let mut count = tree.len();
    loop {
        let first = match rx.recv() {
            Ok(e) => e,
            Err(_) => return,
        };
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        let mut ev = Some(first);
        while let Some(e) = ev.take() {
            match serde_json::to_vec(&e) {
                Ok(v) => {
                    batch.insert(&e.seq.to_be_bytes(), v);
                    n += 1;
                }
                Err(err) => tracing::error!("event {} not stored: {err}", e.seq),
            }
            if n < 4096 {
                ev = rx.recv_timeout(Duration::from_millis(0)).ok();
            }
        }
        count += n as usize;
        if count > retention {
            let mut excess = count - retention;
            for kv in tree.iter() {
                if excess == 0 {
                    break;
                }
                if let Ok((k, _)) = kv {
                    batch.remove(k);
                    excess -= 1;
                    count -= 1;
                }
            }
        }
        if let Err(e) = tree.apply_batch(batch) {
            tracing::error!("storing {n} events failed: {e}");
            continue;
        }
        stored.fetch_add(n, Ordering::Relaxed);
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

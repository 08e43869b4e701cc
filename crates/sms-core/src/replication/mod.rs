//! HA replication as a daemon sees it: every commit of its [`Store`] is
//! shipped to the local HA daemon (sms-had) over a Unix socket and waits
//! until the peer appliance durably applied it, or until the sync timeout
//! says the pair is DEGRADED (ADR 20).
//!
//! The client works from the store's outbox, never from what a caller
//! passed: after any failure it asks where the peer stands and sends what
//! follows, so the stream is gap-free whatever was lost on the way. A
//! commit is reported [`Replication::Sync`] only on the peer's
//! acknowledgement of a sequence number at or beyond it.

pub mod wire;

use crate::store::{Replication, Store};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wire::Message;

/// Where sms-had listens for the daemons on the appliance.
pub const LOCAL_SOCKET: &str = "/run/sms-ha/ha.sock";
/// Default time a commit waits for the peer before the pair is DEGRADED.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failure, commits go on locally without asking sms-had again
/// for this long (so a silent peer costs one timeout, not one per write).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The outbox is trimmed once this many changes were acknowledged.
const TRIM_EVERY: u64 = 1024;
/// The end of a snapshot (the peer replaces its replica) may take this
/// many sync timeouts.
pub const SNAPSHOT_END_FACTOR: u32 = 10;
/// A daemon asks sms-had again whether this node may take writes at
/// least this often, so a step-down reaches it within this time.
pub const GATE_REFRESH: Duration = Duration::from_secs(1);

/// Ships one store's commits to sms-had (one per store, shared by its
/// clones; commits of concurrent writers ride together).
#[derive(Debug, Clone)]
pub struct ReplicationClient {
    name: String,
    socket: PathBuf,
    sync_timeout: Duration,
    state: Arc<Mutex<ClientState>>,
    gate: Arc<Mutex<GateState>>,
}

#[derive(Debug, Default)]
struct ClientState {
    conn: Option<UnixStream>,
    /// Last sequence number the peer acknowledged.
    peer_seq: u64,
    trimmed: u64,
    /// Why the pair is degraded, while it is.
    degraded: Option<String>,
    retry_at: Option<Instant>,
}

/// What sms-had last said about taking writes (its own lock, so the
/// check never waits behind a commit being shipped).
#[derive(Debug, Default)]
struct GateState {
    /// The write gate's own connection (no Hello on it).
    gate_conn: Option<UnixStream>,
    /// Writes may be taken until then, as sms-had last said.
    write_until: Option<Instant>,
    /// sms-had last said "active, no witness": writes go on while it is
    /// unreachable (it restarts), as on an unpaired node.
    unconditional: bool,
}

/// One request and its answer on `conn`, both within `deadline`; each
/// [`Message::Progress`] of the peer (a blob on its way) moves the
/// deadline to `keepalive` from its arrival, so a long transfer that
/// moves is waited for and one that stalls is not.
fn exchange(
    conn: &mut UnixStream,
    msg: &Message,
    deadline: Instant,
    keepalive: Duration,
    too_late: &dyn Fn() -> String,
) -> Result<Message, String> {
    let left = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(too_late)
    };
    let t = left(deadline)?;
    conn.set_write_timeout(Some(t)).map_err(|e| e.to_string())?;
    wire::write_frame(conn, 0, msg).map_err(|e| format!("HA daemon: {e}"))?;
    let mut deadline = deadline;
    loop {
        conn.set_read_timeout(Some(left(deadline)?))
            .map_err(|e| e.to_string())?;
        match wire::read_frame(conn) {
            Ok((_, Message::Progress { .. })) => deadline = Instant::now() + keepalive,
            Ok((_, m)) => return Ok(m),
            Err(wire::WireError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(too_late())
            }
            Err(e) => return Err(format!("HA daemon: {e}")),
        }
    }
}

impl ReplicationClient {
    /// A client for the store called `name` (the replica's name on the
    /// peer), talking to sms-had at `socket`.
    pub fn new(name: &str, socket: &Path, sync_timeout: Duration) -> ReplicationClient {
        ReplicationClient {
            name: name.to_string(),
            socket: socket.to_path_buf(),
            sync_timeout,
            state: Arc::new(Mutex::new(ClientState::default())),
            gate: Arc::new(Mutex::new(GateState::default())),
        }
    }

    /// Whether this node may take a write now (sms-had holds the active
    /// role and, with a witness, its lease). The answer is kept until it
    /// runs out (at most [`GATE_REFRESH`]); a fenced or standby node gets
    /// the reason, and nothing is written.
    pub fn may_write(&self) -> Result<(), String> {
        let mut st = crate::daemon::lock(&self.gate);
        let sent = Instant::now();
        if st.write_until.is_some_and(|t| sent < t) {
            return Ok(());
        }
        let too_late = || {
            format!(
                "the HA daemon did not say within {} ms whether this node is active",
                self.sync_timeout.as_millis()
            )
        };
        let deadline = sent + self.sync_timeout;
        let ask = |conn: Option<UnixStream>| {
            match conn {
                Some(conn) => Ok(conn),
                None => UnixStream::connect(&self.socket)
                    .map_err(|e| format!("HA daemon at {}: {e}", self.socket.display())),
            }
            .and_then(|mut conn| {
                let m = exchange(
                    &mut conn,
                    &Message::MayWrite,
                    deadline,
                    Duration::ZERO,
                    &too_late,
                )?;
                Ok((conn, m))
            })
        };
        // A kept connection may be to an sms-had that restarted since:
        // one fresh try before the answer counts.
        let answer = match st.gate_conn.take() {
            Some(conn) => ask(Some(conn)).or_else(|_| ask(None)),
            None => ask(None),
        };
        match answer {
            Ok((conn, Message::WriteFor { ms })) => {
                st.gate_conn = Some(conn);
                st.unconditional = ms == u32::MAX;
                let granted = Duration::from_millis(u64::from(ms)).min(GATE_REFRESH);
                st.write_until = Some(sent + granted);
                Ok(())
            }
            Ok((conn, Message::Refused { reason, .. })) => {
                st.gate_conn = Some(conn);
                st.unconditional = false;
                st.write_until = None;
                Err(reason)
            }
            Ok((_, other)) => {
                st.write_until = None;
                Err(format!("HA daemon answered {other:?} to may-write"))
            }
            Err(reason) if st.unconditional => {
                tracing::debug!(store = %self.name, "{reason}; writes go on (active without a witness)");
                Ok(())
            }
            Err(reason) => {
                st.write_until = None;
                Err(reason)
            }
        }
    }

    /// Waits until the peer holds `store` up to `upto`, within the sync
    /// timeout; otherwise reports why the commit is local only.
    pub fn replicate(&self, store: &Store, upto: u64) -> Replication {
        let deadline = Instant::now() + self.sync_timeout;
        let mut st = crate::daemon::lock(&self.state);
        if st.peer_seq >= upto && st.conn.is_some() {
            return Replication::Sync;
        }
        if let (Some(reason), Some(at)) = (&st.degraded, st.retry_at) {
            if Instant::now() < at {
                return Replication::Degraded(reason.clone());
            }
        }
        match self.ship(&mut st, store, upto, deadline) {
            Ok(()) => {
                if let Some(was) = st.degraded.take() {
                    tracing::info!(
                        store = %self.name,
                        seq = st.peer_seq,
                        "HA replication in SYNC again (was degraded: {was})"
                    );
                }
                st.retry_at = None;
                if st.peer_seq >= st.trimmed + TRIM_EVERY {
                    let upto = st.peer_seq;
                    match store.trim_outbox(upto) {
                        Ok(_) => st.trimmed = upto,
                        Err(e) => tracing::warn!(store = %self.name, "trimming the outbox: {e}"),
                    }
                }
                Replication::Sync
            }
            Err(reason) => {
                st.conn = None;
                if st.degraded.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        store = %self.name,
                        seq = upto,
                        "HA replication DEGRADED: {reason}; commits go on locally and are shipped when the peer confirms again"
                    );
                }
                st.degraded = Some(reason.clone());
                st.retry_at = Some(Instant::now() + RETRY_AFTER);
                Replication::Degraded(reason)
            }
        }
    }

    /// Sends a snapshot of `store` in chunks, each within the sync
    /// timeout; returns the change it ends at, once the peer replaced its
    /// replica with it.
    fn send_snapshot(&self, conn: &mut UnixStream, store: &Store) -> Result<u64, String> {
        let mut bytes = Vec::new();
        let summary = store
            .export(&mut bytes)
            .map_err(|e| format!("snapshot for the peer: {e}"))?;
        tracing::info!(
            store = %self.name,
            seq = summary.seq,
            bytes = bytes.len(),
            "the peer is behind this node's outbox: sending a snapshot"
        );
        let too_late = || {
            format!(
                "the peer did not take a snapshot chunk within the sync timeout of {} ms",
                self.sync_timeout.as_millis()
            )
        };
        let mut offset = 0usize;
        for chunk in bytes.chunks(wire::SNAPSHOT_CHUNK) {
            let msg = Message::SnapshotChunk {
                store: self.name.clone(),
                offset: offset as u64,
                data: chunk.to_vec(),
            };
            let deadline = Instant::now() + self.sync_timeout;
            offset += chunk.len();
            match exchange(conn, &msg, deadline, self.sync_timeout, &too_late)? {
                Message::Ack { seq, .. } if seq == offset as u64 => {}
                Message::Refused { reason, .. } => return Err(reason),
                other => return Err(format!("the peer answered {other:?} to a snapshot chunk")),
            }
        }
        let end = Message::SnapshotEnd {
            store: self.name.clone(),
            seq: summary.seq,
        };
        // Replacing the replica takes longer than a chunk.
        let deadline = Instant::now() + self.sync_timeout * SNAPSHOT_END_FACTOR;
        match exchange(conn, &end, deadline, self.sync_timeout, &too_late)? {
            Message::Ack { seq, .. } if seq == summary.seq => {
                tracing::info!(store = %self.name, seq, "the peer holds the snapshot");
                Ok(seq)
            }
            Message::Refused { reason, .. } => Err(reason),
            other => Err(format!("the peer answered {other:?} to the snapshot's end")),
        }
    }

    fn ship(
        &self,
        st: &mut ClientState,
        store: &Store,
        upto: u64,
        deadline: Instant,
    ) -> Result<(), String> {
        let too_late = || {
            format!(
                "the peer did not confirm within the sync timeout of {} ms",
                self.sync_timeout.as_millis()
            )
        };
        let exchange = |conn: &mut UnixStream, msg: &Message| -> Result<Message, String> {
            exchange(conn, msg, deadline, self.sync_timeout, &too_late)
        };
        if st.conn.is_none() {
            let mut conn = UnixStream::connect(&self.socket)
                .map_err(|e| format!("HA daemon at {}: {e}", self.socket.display()))?;
            let hello = Message::Hello {
                store: self.name.clone(),
                last: upto,
            };
            match exchange(&mut conn, &hello)? {
                Message::Position { seq, .. } if seq > upto => {
                    return Err(format!(
                        "the peer holds this store up to change {seq}, beyond this node's {upto}: it must be resynchronised from a snapshot"
                    ))
                }
                Message::Position { seq, .. } => st.peer_seq = seq,
                Message::Refused { reason, .. } => return Err(reason),
                other => return Err(format!("HA daemon answered {other:?} to hello")),
            }
            st.conn = Some(conn);
        }
        let Some(mut conn) = st.conn.take() else {
            return Err("no connection".into());
        };
        while st.peer_seq < upto {
            let changes = store
                .outbox_after(st.peer_seq, wire::MAX_CHANGES)
                .map_err(|e| e.to_string())?;
            match changes.first() {
                Some(c) if c.seq == st.peer_seq + 1 => {}
                _ => {
                    // The outbox no longer covers the peer (a new or
                    // replaced peer, or one away for long): a snapshot,
                    // then the changes after it.
                    st.peer_seq = self.send_snapshot(&mut conn, store)?;
                    continue;
                }
            }
            let last = changes.last().map(|c| c.seq).unwrap_or(st.peer_seq);
            let msg = Message::Changes {
                store: self.name.clone(),
                changes,
            };
            match exchange(&mut conn, &msg)? {
                Message::Ack { seq, .. } if seq == last => st.peer_seq = seq,
                Message::Ack { seq, .. } => {
                    return Err(format!("the peer acknowledged {seq}, {last} was sent"))
                }
                Message::Refused { reason, .. } => return Err(reason),
                other => return Err(format!("HA daemon answered {other:?} to changes")),
            }
        }
        st.conn = Some(conn);
        Ok(())
    }
}

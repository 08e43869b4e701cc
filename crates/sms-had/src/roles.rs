//! Who of the pair takes writes (ADR 21).
//!
//! The two nodes heartbeat each other every [`HEARTBEAT`] on the control
//! link (port 4444, mutual TLS with the pinned peer); a node that sees a
//! higher epoch steps down. With a witness, the active node takes writes
//! only while it holds the witness's lease, renewed every heartbeat; when
//! renewals stop reaching the witness the lease runs out and the node
//! fences itself (its daemons' commits are refused). A standby that heard
//! the active node in SYNC and then nothing for [`PEER_DEAD`] asks the
//! witness for the lease at epoch + 1, which is granted only once the old
//! lease ran out: at most one node takes writes at any time. Without a
//! witness, the configured primary is active and promotion is manual.

use crate::epoch::Epoch;
use sms_core::replication::wire::{self, Message};
use sms_core::replication::GATE_REFRESH;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How often each node tells the other it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// Silence after which the peer is taken for dead.
pub const PEER_DEAD: Duration = Duration::from_secs(3);

/// This node's view of the pair.
#[derive(Debug)]
pub struct Roles {
    epoch: Arc<Epoch>,
    /// A witness decides promotions (else they are manual).
    witness: bool,
    /// The lease length asked of the witness.
    lease: Duration,
    state: Mutex<RoleState>,
}

#[derive(Debug, Default)]
struct RoleState {
    active: bool,
    /// With a witness: writes are taken until then.
    lease_until: Option<Instant>,
    /// The fence was logged (once per lease lost).
    fence_logged: bool,
    peer_heard: Option<Instant>,
    peer_active: bool,
    peer_degraded: bool,
    /// Since this process started, the peer was heard active and in SYNC
    /// (its last heartbeat said so): a standby that never was is stale
    /// and never promotes itself.
    peer_in_sync: bool,
    /// The replication link of this node failed on its last use.
    degraded: bool,
    /// When it began (seconds since the Unix epoch).
    degraded_since: Option<i64>,
    /// The active node has not heard its peer for [`PEER_DEAD`] since
    /// then (seconds since the Unix epoch): DEGRADED even while no commit
    /// tried the link.
    silent_since: Option<i64>,
    /// Without a witness: the configured primary after a cold start,
    /// not active until it heard its peer standing by (or the admin
    /// forces a failover).
    waiting_for_peer: bool,
    /// The admin asked for a failover (with a witness: promote at the
    /// next lease request, whatever the peer's last word).
    forced: bool,
    /// `ha swap` on the active node: since when it hands over.
    handing_over: Option<Instant>,
    /// With a witness: a higher epoch the peer claimed, not yet confirmed
    /// by the witness (which alone grants epochs).
    claimed: Option<u64>,
}

/// What the lease loop should do next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Renew(u64),
    Promote(u64),
    Wait,
}

impl Roles {
    /// A node at `epoch` that starts as the standby: with a witness it is
    /// active once granted the lease; without one, the configured
    /// `primary` becomes active once it heard its peer standing by, so a
    /// primary that restarts alone never takes writes beside a peer that
    /// took over meanwhile.
    pub fn new(epoch: Arc<Epoch>, witness: bool, lease: Duration, primary: bool) -> Roles {
        if primary && !witness {
            tracing::info!("waiting for the peer before taking writes (no witness: after a cold start the primary becomes active once it heard its peer, or by `ha failover`)");
        }
        Roles {
            epoch,
            witness,
            lease,
            state: Mutex::new(RoleState {
                waiting_for_peer: primary && !witness,
                ..Default::default()
            }),
        }
    }

    /// An unpaired node: active at once, no witness, nothing to wait for.
    pub fn standalone(epoch: Arc<Epoch>) -> Roles {
        Roles {
            epoch,
            witness: false,
            lease: Duration::ZERO,
            state: Mutex::new(RoleState {
                active: true,
                ..Default::default()
            }),
        }
    }

    /// How long a planned swap may take before this node takes writes again.
    pub const SWAP_TIMEOUT: Duration = Duration::from_secs(10);

    /// `ha swap` on the active node: it stops taking writes at once and
    /// tells its peer (heartbeat), which takes over at epoch + 1; with a
    /// witness this node releases its lease first. Refused unless the
    /// peer is heard and the pair is in SYNC, so nothing is left behind.
    pub fn swap(&self) -> Result<String, String> {
        let epoch = self.epoch.current();
        let mut st = self.st();
        if !st.active {
            return Err(format!(
                "this node is not the active one (epoch {epoch}): swap on the active node"
            ));
        }
        if st.handing_over.is_some() {
            return Err("a swap is already under way".into());
        }
        if st.peer_heard.is_none_or(|t| t.elapsed() > PEER_DEAD) {
            return Err(
                "the peer is not heard: nothing to swap with (ha failover is for a dead peer)"
                    .into(),
            );
        }
        if st.degraded {
            return Err(
                "replication is DEGRADED: the peer does not hold every commit; swap refused".into(),
            );
        }
        st.handing_over = Some(Instant::now());
        tracing::warn!(
            epoch,
            "SWAP: handing the active role over to the peer; writes stop here"
        );
        Ok(format!(
            "handing over: this node takes no more writes; the peer takes over at epoch {}",
            epoch + 1
        ))
    }

    /// True while a swap is under way on this node and its daemons can
    /// no longer hold a permission to write given before it began (they
    /// keep one for at most [`GATE_REFRESH`]): only then is the peer told
    /// (heartbeat) and the witness lease released, so the peer never
    /// takes writes while a daemon here still may.
    pub fn handing_over(&self) -> bool {
        self.st()
            .handing_over
            .is_some_and(|t| t.elapsed() > GATE_REFRESH)
    }

    /// Gives up a swap the peer did not complete in time: writes resume.
    pub fn check_handover(&self) {
        let mut st = self.st();
        if let Some(t) = st.handing_over {
            if t.elapsed() > Self::SWAP_TIMEOUT && st.active {
                st.handing_over = None;
                tracing::error!(
                    "swap failed: the peer did not take over within {} s; this node takes writes again",
                    Self::SWAP_TIMEOUT.as_secs()
                );
            }
        }
    }

    /// The active peer at `epoch` hands over: take the active role at
    /// epoch + 1 (with a witness, once it grants the lease).
    pub fn peer_hands_over(&self, epoch: u64) {
        let ours = self.epoch.current();
        {
            let st = self.st();
            if st.active || epoch < ours || !st.peer_in_sync {
                return;
            }
        }
        if self.witness {
            self.st().forced = true;
            return;
        }
        if let Err(e) = self.epoch.raise(ours + 1) {
            tracing::error!("persisting epoch {}: {e}; not taking over", ours + 1);
            return;
        }
        let mut st = self.st();
        st.active = true;
        st.waiting_for_peer = false;
        tracing::warn!(
            epoch = ours + 1,
            "ACTIVE: the peer handed the active role over (swap)"
        );
    }

    /// `ha failover` on this node: it takes the active role at epoch + 1.
    /// Without a witness at once (the admin vouches that the peer is
    /// down); with one, at the next lease request, once the witness grants
    /// it (never while the peer holds it).
    pub fn failover(&self) -> Result<String, String> {
        let epoch = self.epoch.current();
        if self.is_active() {
            return Err(format!("this node is already active (epoch {epoch})"));
        }
        if self.witness {
            self.st().forced = true;
            tracing::warn!(
                epoch,
                "failover asked by the admin: asking the witness for the lease at epoch {}",
                epoch + 1
            );
            return Ok(format!(
                "asking the witness for the lease at epoch {}: this node becomes active as soon as the peer's lease ran out",
                epoch + 1
            ));
        }
        self.epoch
            .raise(epoch + 1)
            .map_err(|e| format!("persisting epoch {}: {e}", epoch + 1))?;
        let mut st = self.st();
        st.active = true;
        st.waiting_for_peer = false;
        tracing::warn!(
            epoch = epoch + 1,
            "ACTIVE: failover by the admin at epoch {}",
            epoch + 1
        );
        Ok(format!("this node is active at epoch {}", epoch + 1))
    }

    fn st(&self) -> std::sync::MutexGuard<'_, RoleState> {
        sms_core::daemon::lock(&self.state)
    }

    /// The node's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.current()
    }

    /// True while this node holds the active role.
    pub fn is_active(&self) -> bool {
        self.st().active
    }

    /// True while this node takes writes (active and, with a witness,
    /// within its lease).
    pub fn accepting_writes(&self) -> bool {
        matches!(self.write_answer(), Message::WriteFor { .. })
    }

    /// Marks the replication link failed (DEGRADED) or working.
    pub fn set_degraded(&self, degraded: bool) {
        let mut st = self.st();
        if degraded && !st.degraded {
            st.degraded_since = Some(sms_core::daemon::unix_now());
        } else if !degraded {
            st.degraded_since = None;
        }
        st.degraded = degraded;
    }

    /// The node's part of `show ha` (the daemon adds its configuration).
    pub fn status(&self) -> sms_core::bus::HaStatus {
        let accepting_writes = self.accepting_writes();
        let epoch = self.epoch.current();
        let st = self.st();
        let now = Instant::now();
        let lease_ms = if self.witness {
            st.lease_until
                .and_then(|u| u.checked_duration_since(now))
                .map(|d| d.as_millis() as u64)
        } else {
            None
        };
        let state = match (st.active, accepting_writes) {
            (true, _) if st.handing_over.is_some() => "handing over",
            (true, true) => "active",
            (true, false) => "fenced",
            (false, _) if st.waiting_for_peer => "waiting for the peer",
            (false, _) => "standby",
        };
        sms_core::bus::HaStatus {
            state: state.into(),
            accepting_writes,
            epoch,
            peer_heard_ms_ago: st.peer_heard.map(|t| t.elapsed().as_millis() as u64),
            peer_active: st.peer_active,
            degraded: st.degraded || st.silent_since.is_some(),
            degraded_since: match (st.degraded_since, st.silent_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            lease_ms,
            ..Default::default()
        }
    }

    /// What the heartbeat says about this node's commits: the link
    /// failed, or (active) the peer fell silent.
    pub fn degraded(&self) -> bool {
        let st = self.st();
        st.degraded || st.silent_since.is_some()
    }

    /// Every heartbeat: an active node that has not heard its peer for
    /// [`PEER_DEAD`] is DEGRADED (logged once), and no longer once heard.
    pub fn check_peer(&self) {
        let mut st = self.st();
        let silent = st.peer_heard.is_none_or(|t| t.elapsed() > PEER_DEAD);
        if st.active && silent && st.silent_since.is_none() {
            st.silent_since = Some(sms_core::daemon::unix_now());
            tracing::warn!(
                "HA DEGRADED: the peer has not been heard for {} s; commits are this node's only",
                PEER_DEAD.as_secs()
            );
        }
    }

    /// The answer to a daemon's [`Message::MayWrite`].
    pub fn write_answer(&self) -> Message {
        let epoch = self.epoch.current();
        let mut st = self.st();
        let refused = |reason: String| Message::Refused {
            store: String::new(),
            reason,
        };
        if st.waiting_for_peer {
            return refused(format!(
                "this node waits to hear its peer before it takes writes (epoch {epoch}; `ha failover` forces it)"
            ));
        }
        if !st.active {
            return refused(format!(
                "this node is the standby at epoch {epoch}: the active node takes writes"
            ));
        }
        if st.handing_over.is_some() {
            return refused(format!(
                "this node hands the active role over to its peer (ha swap, epoch {epoch})"
            ));
        }
        if !self.witness {
            return Message::WriteFor { ms: u32::MAX };
        }
        let now = Instant::now();
        match st.lease_until {
            Some(until) if now < until => Message::WriteFor {
                ms: (until - now).as_millis().min(u128::from(u32::MAX - 1)) as u32,
            },
            _ => {
                if !st.fence_logged {
                    st.fence_logged = true;
                    tracing::warn!(
                        epoch,
                        "FENCED: the witness lease ran out without a renewal; this node takes no writes until the witness grants it again"
                    );
                }
                refused(format!(
                    "fenced: this node's witness lease at epoch {epoch} ran out (the witness is unreachable)"
                ))
            }
        }
    }

    /// A frame of `epoch` from the peer or the witness: a higher epoch is
    /// persisted and makes this node step down.
    pub fn saw_epoch(&self, epoch: u64, from: &str) {
        let ours = self.epoch.current();
        if epoch <= ours {
            return;
        }
        if let Err(e) = self.epoch.raise(epoch) {
            tracing::error!("persisting epoch {epoch} seen from {from}: {e}");
        }
        self.st().claimed = None;
        self.step_down(&format!(
            "{from} is at epoch {epoch}, beyond this node's {ours}"
        ));
    }

    /// Leaves the active role (no more writes).
    pub fn step_down(&self, why: &str) {
        let mut st = self.st();
        if st.active {
            tracing::warn!("stepping down to standby: {why}");
        }
        st.active = false;
        st.lease_until = None;
        st.handing_over = None;
        st.silent_since = None;
    }

    /// A heartbeat of the peer at `epoch`. With a witness, a higher epoch
    /// is the witness's to grant: the peer's word for it is not enough to
    /// step down (a peer with a stale or broken state, or a stolen key,
    /// would depose a healthy node). The next lease round tells: refused
    /// at the witness's higher epoch, this node steps down; granted, the
    /// claim was false and is logged.
    pub fn heard_peer(&self, epoch: u64, active: bool, degraded: bool) {
        let ours = self.epoch.current();
        if self.witness && epoch > ours {
            let mut st = self.st();
            if st.claimed != Some(epoch) {
                tracing::warn!(
                    epoch = ours,
                    "the peer claims epoch {epoch}, beyond this node's {ours}: believed once the witness confirms it"
                );
            }
            st.claimed = Some(epoch);
        } else {
            self.saw_epoch(epoch, "the peer");
        }
        let ours = self.epoch.current();
        let mut st = self.st();
        if st.peer_heard.is_none() {
            tracing::info!(peer_active = active, "the peer is heard");
        }
        st.peer_heard = Some(Instant::now());
        if st.silent_since.take().is_some() {
            tracing::info!("the peer is heard again");
        }
        st.peer_active = active && epoch >= ours;
        st.peer_degraded = degraded;
        if st.peer_active {
            st.peer_in_sync = !degraded;
        }
        if st.waiting_for_peer {
            st.waiting_for_peer = false;
            if st.peer_active {
                tracing::info!(epoch = ours, "the peer is active: this node stands by");
            } else {
                st.active = true;
                tracing::warn!(epoch = ours, "ACTIVE: the peer is heard standing by");
            }
        }
    }

    fn next(&self, cold_primary: bool) -> Next {
        let epoch = self.epoch.current();
        let st = self.st();
        if st.active {
            return Next::Renew(epoch);
        }
        let silent = st.peer_heard.is_none_or(|t| t.elapsed() > PEER_DEAD);
        if (st.peer_in_sync && silent) || st.forced {
            return Next::Promote(epoch + 1);
        }
        // At start, the configured primary takes the lease at its own
        // epoch when the witness still has it (or has none).
        if cold_primary && !st.peer_active {
            return Next::Renew(epoch);
        }
        Next::Wait
    }

    /// The witness granted the lease at `epoch`, asked at `sent`.
    fn granted(&self, epoch: u64, sent: Instant) {
        let ours = self.epoch.current();
        if epoch < ours {
            // Deposed while the request was on its way.
            return;
        }
        if epoch > ours {
            if let Err(e) = self.epoch.raise(epoch) {
                tracing::error!("persisting epoch {epoch}: {e}; not promoted");
                return;
            }
        }
        // The witness counts the lease from when it received the request:
        // ending it here a tenth earlier, from when it was sent, keeps this
        // node's view inside the witness's.
        let until = sent + self.lease - self.lease / 10;
        let mut st = self.st();
        if let Some(claim) = st.claimed.take() {
            if claim > epoch {
                tracing::error!(
                    epoch,
                    "the peer's claim of epoch {claim} is not confirmed by the witness, which granted this node the lease at epoch {epoch}: ignored"
                );
            }
        }
        if st.handing_over.is_some() && st.active {
            // The release of a swap: no lease held from now.
            st.lease_until = None;
            return;
        }
        if !st.active {
            tracing::warn!(
                epoch,
                "ACTIVE: granted the witness lease at epoch {epoch}{}",
                if epoch > ours {
                    " after the peer fell silent"
                } else {
                    ""
                }
            );
        } else if st.fence_logged {
            tracing::info!(epoch, "the witness lease is renewed again: writes resume");
        }
        st.active = true;
        st.peer_in_sync = false;
        st.forced = false;
        st.fence_logged = false;
        st.lease_until = Some(until);
    }
}

/// How this node reaches the witness.
#[derive(Clone)]
pub struct WitnessLink {
    /// The witness's address.
    pub addr: SocketAddr,
    /// TLS with this node's identity, trusting only the pinned witness.
    pub connector: TlsConnector,
}

/// Asks the witness for the lease (or renews it) every heartbeat while
/// this node is active or may become so; runs until dropped.
pub async fn lease_loop(roles: Arc<Roles>, witness: WitnessLink, cold_primary: bool) {
    let mut conn: Option<crate::link::Dialled> = None;
    let mut cold = cold_primary;
    let mut last_error = String::new();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let epoch = match roles.next(cold) {
            Next::Renew(e) | Next::Promote(e) => e,
            Next::Wait => continue,
        };
        let sent = Instant::now();
        // A swap releases the lease (length 0), so the peer is granted
        // it at once.
        let ttl_ms = if roles.handing_over() {
            0
        } else {
            roles.lease.as_millis().min(u128::from(u32::MAX)) as u32
        };
        let request = Message::LeaseRequest { ttl_ms };
        let round = async {
            if conn.is_none() {
                conn = Some(crate::link::dial(witness.addr, &witness.connector).await?);
            }
            let Some(c) = conn.as_mut() else {
                return Err(std::io::Error::other("no connection"));
            };
            wire::write_frame_async(c, epoch, &request).await?;
            wire::read_frame_async(c)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        // A reply later than a heartbeat is no use to a lease.
        match tokio::time::timeout(HEARTBEAT, round).await {
            Ok(Ok((at, Message::LeaseGranted { .. }))) => {
                cold = false;
                last_error.clear();
                roles.granted(at, sent);
            }
            Ok(Ok((at, Message::Refused { reason, .. }))) => {
                cold = false;
                if reason != last_error {
                    tracing::info!(epoch, "the witness refused the lease: {reason}");
                    last_error = reason;
                }
                roles.saw_epoch(at, "the witness");
            }
            Ok(Ok((_, other))) => {
                conn = None;
                tracing::warn!(witness = %witness.addr, "the witness answered {other:?}");
            }
            Ok(Err(e)) => {
                conn = None;
                let why = format!("witness {}: {e}", witness.addr);
                if why != last_error {
                    tracing::warn!("{why}");
                    last_error = why;
                }
            }
            Err(_) => {
                conn = None;
                let why = format!("witness {}: no answer within a heartbeat", witness.addr);
                if why != last_error {
                    tracing::warn!("{why}");
                    last_error = why;
                }
            }
        }
    }
}

/// Sends this node's heartbeat to the peer's control port every
/// [`HEARTBEAT`], reconnecting as needed; runs until dropped.
pub async fn send_heartbeats(roles: Arc<Roles>, peer: SocketAddr, connector: TlsConnector) {
    let mut conn: Option<crate::link::Dialled> = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down = false;
    loop {
        tick.tick().await;
        roles.check_handover();
        roles.check_peer();
        let beat = Message::Heartbeat {
            active: roles.is_active(),
            degraded: roles.degraded(),
            handover: roles.handing_over(),
        };
        let epoch = roles.epoch();
        let round = async {
            if conn.is_none() {
                conn = Some(crate::link::dial(peer, &connector).await?);
            }
            let Some(c) = conn.as_mut() else {
                return Err(std::io::Error::other("no connection"));
            };
            wire::write_frame_async(c, epoch, &beat).await
        };
        match tokio::time::timeout(HEARTBEAT, round).await {
            Ok(Ok(())) => {
                if down {
                    tracing::info!(peer = %peer, "heartbeats reach the peer again");
                }
                down = false;
            }
            Ok(Err(e)) => {
                conn = None;
                if !down {
                    tracing::warn!(peer = %peer, "heartbeat: {e}");
                }
                down = true;
            }
            Err(_) => {
                conn = None;
                if !down {
                    tracing::warn!(peer = %peer, "heartbeat: not sent within {} ms", HEARTBEAT.as_millis());
                }
                down = true;
            }
        }
    }
}

/// Takes the peer's heartbeats on the control port; runs until dropped.
pub async fn take_heartbeats(listener: TcpListener, acceptor: TlsAcceptor, roles: Arc<Roles>) {
    crate::link::accept_pinned(listener, acceptor, "control", move |mut tls, addr| {
        let roles = roles.clone();
        async move {
            loop {
                // A peer silent for longer than it takes to call it dead
                // is dropped; its next connection starts afresh.
                let frame = tokio::time::timeout(PEER_DEAD, wire::read_frame_async(&mut tls));
                match frame.await {
                    Ok(Ok((
                        epoch,
                        Message::Heartbeat {
                            active,
                            degraded,
                            handover,
                        },
                    ))) => {
                        roles.heard_peer(epoch, active, degraded);
                        if handover {
                            roles.peer_hands_over(epoch);
                        }
                    }
                    Ok(Ok((_, other))) => {
                        tracing::warn!(peer = %addr, "the control port takes heartbeats only, got {other:?}; closed");
                        return;
                    }
                    Ok(Err(wire::WireError::Io(_))) | Err(_) => return,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %addr, "control connection: {e}; closed");
                        return;
                    }
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn roles(witness: bool, active: bool) -> (tempfile::TempDir, Roles) {
        let dir = tempfile::tempdir().unwrap();
        let epoch = Arc::new(Epoch::load(dir.path()).unwrap());
        let r = Roles::new(epoch, witness, Duration::from_secs(3), active);
        (dir, r)
    }

    #[test]
    fn a_standby_that_never_heard_its_peer_in_sync_does_not_promote_itself() {
        let (_d, r) = roles(true, false);
        assert_eq!(r.next(false), Next::Wait);
        r.heard_peer(1, true, true);
        assert_eq!(r.next(false), Next::Wait, "peer alive");
        r.st().peer_heard = Some(Instant::now() - PEER_DEAD * 2);
        assert_eq!(r.next(false), Next::Wait, "peer's last word: DEGRADED");
        r.heard_peer(1, true, false);
        r.st().peer_heard = Some(Instant::now() - PEER_DEAD * 2);
        assert_eq!(r.next(false), Next::Promote(2));
    }

    #[test]
    fn a_lease_grants_writes_until_it_runs_out_and_a_higher_epoch_deposes() {
        let (_d, r) = roles(true, true);
        assert!(
            !r.accepting_writes(),
            "with a witness, active only once granted"
        );
        r.granted(1, Instant::now());
        assert!(r.accepting_writes());
        r.granted(1, Instant::now() - Duration::from_secs(3));
        let Message::Refused { reason, .. } = r.write_answer() else {
            panic!("a lapsed lease still takes writes");
        };
        assert!(reason.contains("fenced"), "{reason}");
        r.granted(1, Instant::now());
        // The peer's word for a higher epoch is not the witness's.
        r.heard_peer(2, true, false);
        assert!(r.is_active() && r.accepting_writes());
        assert_eq!(r.epoch(), 1);
        r.saw_epoch(2, "the witness");
        assert!(!r.is_active() && !r.accepting_writes());
        assert_eq!(r.epoch(), 2);
        // Without a witness the pinned peer's epoch is the word there is.
        let (_d, r) = roles(false, false);
        r.failover().unwrap();
        assert!(r.is_active());
        r.heard_peer(r.epoch() + 1, true, false);
        assert!(!r.is_active());
    }

    #[test]
    fn without_a_witness_a_restarted_primary_waits_for_its_peer() {
        let (_d, r) = roles(false, true);
        let Message::Refused { reason, .. } = r.write_answer() else {
            panic!("a cold primary took writes before hearing its peer");
        };
        assert!(reason.contains("waits to hear its peer"), "{reason}");
        r.heard_peer(1, false, false);
        assert!(r.accepting_writes(), "the peer stands by: active");
        // Had the peer taken over meanwhile, this node stands by.
        let (_d, r) = roles(false, true);
        r.heard_peer(2, true, false);
        assert!(!r.accepting_writes());
        assert_eq!(r.epoch(), 2);
        // The admin forces a failover: epoch + 1, active.
        assert!(r.failover().unwrap().contains("epoch 3"));
        assert!(r.accepting_writes());
        assert!(r.failover().is_err(), "already active");
    }

    #[test]
    fn with_a_witness_a_forced_failover_still_needs_the_lease() {
        let (_d, r) = roles(true, false);
        r.heard_peer(1, true, false);
        assert_eq!(r.next(false), Next::Wait);
        r.failover().unwrap();
        assert_eq!(r.next(false), Next::Promote(2));
        assert!(!r.accepting_writes(), "not before the witness granted it");
        r.granted(2, Instant::now());
        assert!(r.accepting_writes());
    }

    #[test]
    fn an_active_node_whose_peer_falls_silent_is_degraded() {
        let (_d, r) = roles(false, true);
        r.heard_peer(1, false, false);
        assert!(r.is_active());
        r.check_peer();
        assert!(!r.degraded(), "the peer was just heard");
        r.st().peer_heard = Some(Instant::now() - PEER_DEAD * 2);
        r.check_peer();
        assert!(r.degraded() && r.status().degraded);
        assert!(r.status().degraded_since.is_some());
        r.heard_peer(1, false, false);
        assert!(!r.degraded(), "heard again");
        // A standby's silent peer is no DEGRADED of its own.
        let (_d, s) = roles(false, false);
        s.check_peer();
        assert!(!s.degraded());
    }
}

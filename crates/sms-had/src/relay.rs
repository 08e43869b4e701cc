//! The primary's side: the daemons' commits, taken on the local Unix
//! socket and carried to the secondary over mutual TLS.
//!
//! Each daemon connection gets its own peer connection, so one store's
//! stream never waits behind another's and replies come back in order.
//! Whatever cannot reach the peer within the sync timeout is answered
//! `Refused` with the reason, which the daemon reports as DEGRADED; after
//! a failed connect the peer is not dialled again for
//! [`sms_core::replication::RETRY_AFTER`], so a dead peer costs commits
//! one timeout, not one each.

use crate::epoch::Epoch;
use crate::link::Dialled;
use crate::roles::Roles;
use sms_core::replication::wire::{self, Message};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};
use tokio_rustls::TlsConnector;

/// How this node reaches its peer.
#[derive(Clone)]
pub struct PeerLink {
    /// The peer's replication address.
    pub addr: SocketAddr,
    /// TLS with this node's identity, trusting only the pinned peer.
    pub connector: TlsConnector,
    /// How long one exchange may take.
    pub sync_timeout: Duration,
    /// This node's epoch, carried by every frame.
    pub epoch: Arc<Epoch>,
    /// Why the last connect failed, and until when not to retry.
    down: Arc<Mutex<Option<(String, Instant)>>>,
    /// Told when the link fails or works again, and of a higher epoch.
    roles: Arc<Roles>,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("addr", &self.addr)
            .finish()
    }
}

impl PeerLink {
    /// A link to `addr`.
    pub fn new(
        addr: SocketAddr,
        connector: TlsConnector,
        sync_timeout: Duration,
        epoch: Arc<Epoch>,
        roles: Arc<Roles>,
    ) -> PeerLink {
        PeerLink {
            addr,
            connector,
            sync_timeout,
            epoch,
            down: Arc::new(Mutex::new(None)),
            roles,
        }
    }

    async fn connect(&self) -> Result<Dialled, String> {
        if let Some((why, until)) = sms_core::daemon::lock(&self.down).clone() {
            if Instant::now() < until {
                return Err(why);
            }
        }
        let attempt = async {
            crate::link::dial(self.addr, &self.connector)
                .await
                .map_err(|e| format!("peer {}: {e}", self.addr))
        };
        let result = match tokio::time::timeout(self.sync_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "peer {}: no connection within {} ms",
                self.addr,
                self.sync_timeout.as_millis()
            )),
        };
        let mut down = sms_core::daemon::lock(&self.down);
        match &result {
            Ok(_) => {
                if down.take().is_some() {
                    tracing::info!(peer = %self.addr, "peer reachable again");
                }
            }
            Err(why) => {
                if down.is_none() {
                    tracing::warn!("{why}");
                }
                *down = Some((
                    why.clone(),
                    Instant::now() + sms_core::replication::RETRY_AFTER,
                ));
            }
        }
        result
    }
}

/// Serves the daemons on `listener` until the task is dropped: whether
/// they may write (from `roles`) and, on the primary (`link`), their
/// commits relayed to the peer.
pub async fn serve_local(listener: UnixListener, link: Option<PeerLink>, roles: Arc<Roles>) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let (link, roles) = (link.clone(), roles.clone());
                tokio::spawn(async move { local_session(conn, link, roles).await });
            }
            Err(e) => {
                tracing::warn!("accepting a daemon connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn local_session(mut conn: UnixStream, link: Option<PeerLink>, roles: Arc<Roles>) {
    let mut peer: Option<Dialled> = None;
    loop {
        let msg = match wire::read_frame_async(&mut conn).await {
            Ok((_, m)) => m,
            Err(wire::WireError::Io(_)) => return,
            Err(e) => {
                tracing::warn!("daemon connection: {e}; closed");
                return;
            }
        };
        let store = msg.store().to_string();
        let forward = match msg {
            Message::MayWrite => {
                if wire::write_frame_async(&mut conn, 0, &roles.write_answer())
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Message::Hello { store, .. } => Message::Where { store },
            m @ (Message::Changes { .. }
            | Message::SnapshotChunk { .. }
            | Message::SnapshotEnd { .. }) => m,
            other => {
                tracing::warn!(store = %store, "a daemon sent {other:?}; closed");
                return;
            }
        };
        let reply = match &link {
            None => Message::Refused {
                store,
                reason: "this node ships no commits: it is configured as the secondary".into(),
            },
            Some(link) => match exchange(link, &mut peer, &forward, &mut conn).await {
                Ok(r) => {
                    link.roles.set_degraded(false);
                    r
                }
                Err(reason) => {
                    peer = None;
                    link.roles.set_degraded(true);
                    Message::Refused { store, reason }
                }
            },
        };
        if wire::write_frame_async(&mut conn, 0, &reply).await.is_err() {
            return;
        }
    }
}

/// Sends `msg` to the peer and returns its answer; the peer's
/// [`Message::Progress`] frames (a blob on its way) are passed on to the
/// daemon and each gives the answer another sync timeout.
async fn exchange(
    link: &PeerLink,
    peer: &mut Option<Dialled>,
    msg: &Message,
    daemon: &mut UnixStream,
) -> Result<Message, String> {
    if peer.is_none() {
        *peer = Some(link.connect().await?);
    }
    let Some(conn) = peer.as_mut() else {
        return Err("no peer connection".into());
    };
    let epoch = link.epoch.current();
    // Replacing a replica with a snapshot takes longer than a batch.
    let mut limit = match msg {
        Message::SnapshotEnd { .. } => {
            link.sync_timeout * sms_core::replication::SNAPSHOT_END_FACTOR
        }
        _ => link.sync_timeout,
    };
    let late = |limit: Duration| {
        format!(
            "peer {} did not answer within {} ms",
            link.addr,
            limit.as_millis()
        )
    };
    match tokio::time::timeout(limit, wire::write_frame_async(conn, epoch, msg)).await {
        Ok(r) => r.map_err(|e| format!("peer {}: {e}", link.addr))?,
        Err(_) => return Err(late(limit)),
    }
    let (peer_epoch, reply) = loop {
        let (e, m) = match tokio::time::timeout(limit, wire::read_frame_async(conn)).await {
            Ok(r) => r.map_err(|e| format!("peer {}: {e}", link.addr))?,
            Err(_) => return Err(late(limit)),
        };
        if let Message::Progress { .. } = &m {
            // The daemon may have given up; the answer still counts here.
            let _ = wire::write_frame_async(daemon, 0, &m).await;
            limit = link.sync_timeout;
            continue;
        }
        break (e, m);
    };
    if peer_epoch > epoch {
        link.roles.saw_epoch(peer_epoch, "the secondary");
        return Err(format!(
            "the peer is at epoch {peer_epoch}, beyond this node's {epoch}: this node was replaced as primary"
        ));
    }
    Ok(match reply {
        Message::Position { store, seq } => Message::Position { store, seq },
        m @ (Message::Ack { .. } | Message::Refused { .. }) => m,
        other => {
            return Err(format!(
                "peer {} answered with an unexpected {other:?}",
                link.addr
            ))
        }
    })
}

//! The secondary's side: the replication stream from the pinned primary,
//! applied to replica stores (one per daemon store, named as the daemon
//! calls it) and acknowledged only once flushed.
//!
//! Every connection passes the mutual TLS handshake with the pinned peer
//! certificate before a frame is read; a malformed frame, a frame of an
//! older epoch or a gap in the changes closes the connection with a log
//! line saying why, applies nothing, and the listener goes on serving.

use crate::epoch::Epoch;
use sms_core::replication::wire::{self, Message};
use sms_core::store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The replica stores of this node, opened on first use.
#[derive(Debug)]
pub struct Replicas {
    dir: PathBuf,
    open: Mutex<HashMap<String, Store>>,
}

/// True for a store name a replica may carry: `[a-z][a-z0-9-]{0,31}`.
pub fn valid_store_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Replicas {
    /// Replica stores under `dir` (`dir/<store name>`).
    pub fn new(dir: &Path) -> Replicas {
        Replicas {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The replica store called `name`, opened or created.
    pub fn get(&self, name: &str) -> Result<Store, String> {
        if !valid_store_name(name) {
            return Err(format!("`{name}` is not a store name"));
        }
        let mut open = sms_core::daemon::lock(&self.open);
        if let Some(s) = open.get(name) {
            return Ok(s.clone());
        }
        let store = Store::open(&self.dir.join(name)).map_err(|e| e.to_string())?;
        open.insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// Flushes and closes every replica (before the daemons take them).
    pub fn close_all(&self) {
        sms_core::daemon::lock(&self.open).clear();
    }
}

/// Serves the replication stream on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    replicas: Arc<Replicas>,
    epoch: Arc<Epoch>,
) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accepting a replication connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let replicas = replicas.clone();
        let epoch = epoch.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, "replication connection refused: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "replication connection refused: no TLS handshake within {} s", HANDSHAKE_TIMEOUT.as_secs());
                    return;
                }
            };
            tracing::info!(peer = %addr, "primary connected");
            let why = session(tls, addr, &replicas, &epoch).await;
            tracing::info!(peer = %addr, "replication connection closed: {why}");
        });
    }
}

async fn session<S>(
    mut conn: S,
    addr: SocketAddr,
    replicas: &Arc<Replicas>,
    epoch: &Epoch,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let (frame_epoch, msg) = match wire::read_frame_async(&mut conn).await {
            Ok(f) => f,
            Err(wire::WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return "the primary closed it".into()
            }
            Err(e) => {
                tracing::warn!(peer = %addr, "{e}; nothing of it applied");
                return e.to_string();
            }
        };
        let ours = epoch.current();
        if frame_epoch < ours {
            let why = format!(
                "frame of epoch {frame_epoch} from a primary this node already saw replaced (epoch {ours}): refused, nothing applied"
            );
            tracing::warn!(peer = %addr, "{why}");
            let _ = wire::write_frame_async(
                &mut conn,
                ours,
                &Message::Refused {
                    store: msg.store().to_string(),
                    reason: why.clone(),
                },
            )
            .await;
            return why;
        }
        if frame_epoch > ours {
            if let Err(e) = epoch.raise(frame_epoch) {
                return format!("persisting epoch {frame_epoch}: {e}");
            }
        }
        let reply = answer(msg, replicas).await;
        if let Message::Refused { store, reason } = &reply {
            tracing::warn!(peer = %addr, store = %store, "refused: {reason}");
        }
        if let Err(e) = wire::write_frame_async(&mut conn, epoch.current(), &reply).await {
            return format!("answering: {e}");
        }
    }
}

async fn answer(msg: Message, replicas: &Arc<Replicas>) -> Message {
    let store_name = msg.store().to_string();
    let refused = |reason: String| Message::Refused {
        store: store_name.clone(),
        reason,
    };
    match msg {
        Message::Where { store } => match replicas
            .get(&store)
            .and_then(|s| s.last_seq().map_err(|e| e.to_string()))
        {
            Ok(seq) => Message::Position { store, seq },
            Err(e) => refused(e),
        },
        Message::Changes { store, changes } => {
            let replicas = replicas.clone();
            let name = store.clone();
            let applied = tokio::task::spawn_blocking(move || {
                let replica = replicas.get(&name)?;
                replica
                    .apply_replicated(&changes)
                    .map_err(|e| e.to_string())
            })
            .await;
            match applied {
                Ok(Ok(seq)) => Message::Ack { store, seq },
                Ok(Err(e)) => refused(e),
                Err(e) => refused(format!("applying: {e}")),
            }
        }
        other => refused(format!(
            "a secondary does not take {} frames",
            match other {
                Message::Hello { .. } => "hello",
                Message::Position { .. } => "position",
                Message::Ack { .. } => "ack",
                _ => "refused",
            }
        )),
    }
}

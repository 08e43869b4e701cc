//! The secondary's side: the replication stream from the pinned primary,
//! applied to replica stores (one per daemon store, named as the daemon
//! calls it) and acknowledged only once flushed.
//!
//! Every connection passes the mutual TLS handshake with the pinned peer
//! certificate before a frame is read; a malformed frame, a frame of an
//! older epoch or a gap in the changes closes the connection with a log
//! line saying why, applies nothing, and the listener goes on serving.

use crate::blobs::BlobSource;
use crate::epoch::Epoch;
use sms_core::blob::BlobStore;
use sms_core::replication::wire::{self, Message};
use sms_core::store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The replica stores of this node, opened on first use, and the blobs
/// their entries name.
#[derive(Debug)]
pub struct Replicas {
    dir: PathBuf,
    open: Mutex<HashMap<String, Store>>,
    blobs: BlobStore,
    blob_source: Option<BlobSource>,
    /// One fetch per blob at a time: a primary that reconnects while an
    /// earlier session still fetches sends the same batch again, and two
    /// writers of one partial file would interleave.
    fetching: Mutex<HashMap<sms_core::blob::Digest, Arc<Mutex<()>>>>,
}

/// True for a store name a replica may carry: `[a-z][a-z0-9-]{0,31}`.
pub fn valid_store_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Replicas {
    /// Replica stores under `dir` (`dir/<store name>`); blobs in
    /// `blob_dir`, fetched from `blob_source` (without one, a batch that
    /// names a blob this node lacks is refused).
    pub fn new(dir: &Path, blob_dir: &Path, blob_source: Option<BlobSource>) -> Replicas {
        Replicas {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            blobs: BlobStore::at(blob_dir),
            blob_source,
            fetching: Mutex::new(HashMap::new()),
        }
    }

    /// Fetches blob `digest` from `source` unless it is here, one fetch
    /// per blob at a time (a second caller waits and then finds it).
    /// Blocking.
    pub fn fetch_blob(
        &self,
        source: &BlobSource,
        digest: &sms_core::blob::Digest,
        len: u64,
        progress: &std::sync::atomic::AtomicU64,
    ) -> Result<(), String> {
        let lock = sms_core::daemon::lock(&self.fetching)
            .entry(*digest)
            .or_default()
            .clone();
        // (The entry stays: removing it while a waiter holds the lock
        // would let a third caller start a second fetch beside it.)
        let _only = sms_core::daemon::lock(&lock);
        if self.blobs.contains(digest) {
            return Ok(());
        }
        crate::blobs::fetch(source, &self.blobs, digest, len, progress)
    }

    /// The blob store of the replicas.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
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

    /// Closes the replica `name` (before it is replaced).
    pub fn close(&self, name: &str) {
        sms_core::daemon::lock(&self.open).remove(name);
    }

    /// Where a snapshot for replica `name` is received.
    fn incoming(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".incoming-{name}"))
    }

    /// Writes a chunk of a snapshot of `name` at `offset` (0 starts a new
    /// one); returns the bytes received so far.
    pub fn snapshot_chunk(&self, name: &str, offset: u64, data: &[u8]) -> Result<u64, String> {
        use std::io::Write;
        if !valid_store_name(name) {
            return Err(format!("`{name}` is not a store name"));
        }
        let path = self.incoming(name);
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let have = match std::fs::metadata(&path) {
            Ok(m) if offset > 0 => m.len(),
            _ => 0,
        };
        if have != offset {
            return Err(format!(
                "snapshot chunk at byte {offset}, {have} received: the snapshot starts again at 0"
            ));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(offset > 0)
            .truncate(offset == 0)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(data)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(offset + data.len() as u64)
    }

    /// Replaces replica `name` with the snapshot received, which must end
    /// at change `seq`; the received file is checked whole before the
    /// replica is touched (a damaged one changes nothing).
    pub fn snapshot_end(&self, name: &str, seq: u64) -> Result<u64, String> {
        if !valid_store_name(name) {
            return Err(format!("`{name}` is not a store name"));
        }
        let path = self.incoming(name);
        let mut f = std::fs::File::open(&path)
            .map_err(|e| format!("no snapshot received for {name}: {e}"))?;
        self.close(name);
        let summary = sms_core::store::restore_store(&self.dir.join(name), &mut f)
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&path);
        if summary.seq != seq {
            return Err(format!(
                "the snapshot ends at change {}, {seq} was announced",
                summary.seq
            ));
        }
        tracing::info!(
            store = name,
            seq,
            records = summary.records,
            "replica replaced by the primary's snapshot"
        );
        Ok(seq)
    }
}

/// Serves the replication stream on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    replicas: Arc<Replicas>,
    epoch: Arc<Epoch>,
) {
    crate::link::accept_pinned(listener, acceptor, "replication", move |tls, addr| {
        let (replicas, epoch) = (replicas.clone(), epoch.clone());
        async move {
            tracing::info!(peer = %addr, "primary connected");
            let why = session(tls, addr, &replicas, &epoch).await;
            tracing::info!(peer = %addr, "replication connection closed: {why}");
        }
    })
    .await
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
        if let Message::Changes { store, changes } = &msg {
            if let Err(reason) = fetch_named_blobs(store, changes, replicas, &mut conn).await {
                tracing::warn!(peer = %addr, store = %store, "refused: {reason}");
                let refused = Message::Refused {
                    store: store.clone(),
                    reason,
                };
                if let Err(e) = wire::write_frame_async(&mut conn, epoch.current(), &refused).await
                {
                    return format!("answering: {e}");
                }
                continue;
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

/// How often a secondary fetching blobs tells the primary how far it got.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Fetches the blobs `changes` name that this node lacks, telling the
/// primary how far it got every [`PROGRESS_EVERY`] ([`Message::Progress`]);
/// Err says why the batch cannot be acknowledged (nothing is applied).
async fn fetch_named_blobs<S>(
    store: &str,
    changes: &[sms_core::store::Change],
    replicas: &Arc<Replicas>,
    conn: &mut S,
) -> Result<(), String>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    let named = sms_core::store::named_blobs(changes)?;
    let missing: Vec<_> = named
        .into_iter()
        .filter(|(d, _)| !replicas.blobs.contains(d))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let Some(source) = replicas.blob_source.clone() else {
        return Err(format!(
            "the batch names blob {}, which this node lacks, and no blob_source is configured to fetch it from",
            missing[0].0.to_hex()
        ));
    };
    let total: u64 = missing.iter().map(|(_, l)| l).sum();
    tracing::info!(
        store,
        blobs = missing.len(),
        bytes = total,
        "fetching the blobs a batch names before acknowledging it"
    );
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (r, p) = (replicas.clone(), progress.clone());
    let started = std::time::Instant::now();
    let job = tokio::task::spawn_blocking(move || {
        for (digest, len) in &missing {
            r.fetch_blob(&source, digest, *len, &p)?;
        }
        Ok::<(), String>(())
    });
    tokio::pin!(job);
    // Often enough for the shortest sync timeout the primary may run with.
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let outcome = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = tick.tick() => {
                let beat = Message::Progress {
                    store: store.to_string(),
                    bytes: progress.load(std::sync::atomic::Ordering::Relaxed),
                };
                // A primary that is gone is seen by the next read; the
                // transfer finishes (or stops) by itself, its partial file kept.
                let _ = wire::write_frame_async(conn, 0, &beat).await;
            }
        }
    };
    match outcome {
        Ok(Ok(())) => {
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                store,
                bytes = total,
                "blobs fetched and verified in {secs:.1} s ({:.0} MB/s)",
                total as f64 / 1e6 / secs.max(1e-3)
            );
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(format!("fetching blobs: {e}")),
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
        Message::SnapshotChunk {
            store,
            offset,
            data,
        } => {
            let replicas = replicas.clone();
            let name = store.clone();
            match tokio::task::spawn_blocking(move || replicas.snapshot_chunk(&name, offset, &data))
                .await
            {
                Ok(Ok(have)) => Message::Ack { store, seq: have },
                Ok(Err(e)) => refused(e),
                Err(e) => refused(format!("writing: {e}")),
            }
        }
        Message::SnapshotEnd { store, seq } => {
            let replicas = replicas.clone();
            let name = store.clone();
            match tokio::task::spawn_blocking(move || replicas.snapshot_end(&name, seq)).await {
                Ok(Ok(seq)) => Message::Ack { store, seq },
                Ok(Err(e)) => refused(e),
                Err(e) => refused(format!("restoring: {e}")),
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

//! `org.smsos.Store1`: a daemon's store, copied for a backup while the
//! daemon runs.
//!
//! Each daemon that owns a [`Store`] serves this interface at
//! [`STORE_PATH`] beside its own, under its own bus name. The caller (the
//! backup tool, root) passes a file descriptor it opened; the daemon writes
//! the snapshot into it ([`Store::export`]), so nothing of size crosses the
//! bus and the daemon needs no write access to where the backup goes.

use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::io::Write;

/// Object path of the store interface, the same under every daemon's name.
pub const STORE_PATH: &str = "/org/smsos/Store";

/// What an export wrote, as returned by `Export()`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreExport {
    /// The store's sequence counter at the copy.
    pub seq: u64,
    /// Data trees copied.
    pub trees: u32,
    /// Records copied.
    pub records: u64,
    /// Bytes written to the descriptor.
    pub bytes: u64,
}

/// A daemon's store, typed (`zbus` generates `Store1Proxy`; the daemon's
/// own bus name is the destination).
#[zbus::proxy(interface = "org.smsos.Store1", default_path = "/org/smsos/Store")]
pub trait Store1 {
    /// Writes a consistent snapshot of the store into `fd`.
    fn export(&self, fd: zbus::zvariant::Fd<'_>) -> zbus::Result<super::Json<StoreExport>>;
}

/// The server side: the daemon's store, exported on request.
#[derive(Debug, Clone)]
pub struct StoreIface {
    store: Store,
}

impl StoreIface {
    /// Serves `store` (a clone of the daemon's handle).
    pub fn new(store: Store) -> Self {
        StoreIface { store }
    }
}

/// Counts what passes to the descriptor.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[zbus::interface(name = "org.smsos.Store1")]
impl StoreIface {
    /// Writes a consistent snapshot of the store into `fd` (a file the
    /// caller opened for writing) and says what it held.
    async fn export(
        &self,
        fd: zbus::zvariant::OwnedFd,
    ) -> zbus::fdo::Result<super::Json<StoreExport>> {
        let store = self.store.clone();
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
        let done = tokio::task::spawn_blocking(move || {
            let mut out = Counting {
                inner: std::io::BufWriter::new(file),
                bytes: 0,
            };
            let summary = store.export(&mut out)?;
            Ok::<_, crate::store::StoreError>(StoreExport {
                seq: summary.seq,
                trees: summary.trees,
                records: summary.records,
                bytes: out.bytes,
            })
        })
        .await
        .map_err(|e| zbus::fdo::Error::Failed(format!("store export stopped: {e}")))?;
        match done {
            Ok(export) => {
                tracing::info!(
                    "store copied for a backup: {} records in {} trees, {} bytes",
                    export.records,
                    export.trees,
                    export.bytes
                );
                Ok(super::Json(export))
            }
            Err(e) => {
                tracing::warn!("store copy for a backup failed: {e}");
                Err(zbus::fdo::Error::Failed(e.to_string()))
            }
        }
    }
}

//! The pull server, in the GUTS2 manner, over HTTP and HTTPS.
//!
//! Paths (a *stream* is `dv` or `tos/<family>`):
//!
//! - `/<channel>/index.json`: the versions on offer (newest first), with
//!   the SHA-256 and length of each payload; `/<channel>/catalog.json`:
//!   the vendor-signed catalog, so a client can check those digests.
//! - `/<stream>/<version>`: the full archive (the payload in one zstd frame).
//! - `/<stream>/delta/<from>`: a delta from the client's version to the
//!   newest; `/<stream>/delta/<from>/<to>`: an exact one (immutable).
//!
//! A delta that is cached is served; a missing one is built, inside the
//! request when that is quick (small payloads, fast setting), otherwise in
//! the background with **503 + Retry-After** meanwhile (one build per
//! delta however many ask); **301** to the full archive when there is no
//! delta path (unknown base, or a delta over half the archive). The
//! N-1 -> N delta and the newest archive are precomputed at the best
//! setting. Range, ETag/If-None-Match and Cache-Control (immutable for
//! versioned resources) let a standard HTTP cache front the appliance.
//!
//! Request paths are never used to name files: they are parsed into
//! versions and family ids, and artifacts are looked up by digest, so no
//! request can reach outside the cache. Anything but plain ASCII letters,
//! digits, `.`, `-`, `_` and `/` (percent escapes, backslashes, NUL,
//! non-ASCII) is refused with 400.

use crate::config::PullConfig;
use crate::delta;
use crate::distributor::Distributor;
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sms_core::blob::{BlobStore, Digest};
use sms_core::bus::InstalledPackage;
use sms_core::package::{Channel, Family, Version};
use sms_core::store::{Batch, Store};

pub use sms_core::bus::PullStatus;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

mod cache;
mod http;
mod route;

use http::AddressCounts;
pub use http::SlotBody;
pub use route::*;

/// Store tree of the cache index.
pub const PULL: &str = "pull";

/// A built artifact as indexed in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Artifact {
    /// A file in the cache directory.
    File {
        /// SHA-256 of the file (its name and ETag).
        sha256: Digest,
        /// Its size in octets.
        length: u64,
        /// zstd level it was built at.
        level: i32,
        /// Unix time built.
        built: i64,
    },
    /// A delta was built and found larger than allowed: serve the full.
    TooLarge {
        /// Its length.
        length: u64,
    },
}

/// One version of a stream on offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offered {
    /// The package version it concerns.
    pub version: String,
    /// SHA-256 of the payload.
    pub sha256: String,
    /// Payload length.
    pub length: u64,
    /// Path of the full archive.
    pub full: String,
}

#[derive(Default)]
struct Offer {
    /// Per stream, versions oldest first (at most keep_versions).
    streams: BTreeMap<Stream, Vec<(Version, Digest, u64)>>,
    /// Per channel, index.json bytes and the newest catalog envelope blob.
    index: BTreeMap<Channel, (Bytes, Digest)>,
    catalog: BTreeMap<Channel, Digest>,
}

/// Why a delta or archive could not be built (cloned to every request
/// waiting for the same build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The version is not (or no longer) on offer.
    #[error("{0} is not on offer")]
    NotOffered(String),
    /// The payload could not be read from the blob store.
    #[error("reading a payload: {0}")]
    Read(String),
    /// The stored payload does not match its digest or length.
    #[error("stored payload of {0} does not match its digest")]
    Damaged(String),
    /// zstd failed.
    #[error("compressing: {0}")]
    Compress(String),
    /// The artifact or its index entry could not be stored.
    #[error("storing artifact {0}")]
    Store(String),
    /// The build thread ended without a result.
    #[error("build task: {0}")]
    Task(String),
}

type BuildResult = Option<Result<Artifact, BuildError>>;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    deltas: AtomicU64,
    fulls: AtomicU64,
    unavailable: AtomicU64,
    redirects: AtomicU64,
    refused: AtomicU64,
    builds: AtomicU64,
    bytes: AtomicU64,
    builds_refused: AtomicU64,
    connections_refused: AtomicU64,
    connections_cut: AtomicU64,
}

/// The pull server.
pub struct PullServer {
    cfg: PullConfig,
    store: Store,
    blobs: BlobStore,
    /// Built artifacts by digest.
    artifacts: BlobStore,
    offer: RwLock<Offer>,
    builds: Mutex<HashMap<String, watch::Receiver<BuildResult>>>,
    /// Builds running at once (the rest of `builds` is the queue).
    build_slots: Arc<Semaphore>,
    loaded: Mutex<HashMap<Digest, Bytes>>,
    /// Clients' builds queued or running, per client address.
    client_builds: Arc<AddressCounts>,
    /// Open connections per client address.
    per_address: Arc<AddressCounts>,
    archive_used: Mutex<HashMap<String, u64>>,
    use_clock: AtomicU64,
    slots: Arc<Semaphore>,
    counters: Counters,
}

use sms_core::daemon::lock;

fn delta_key(s: Stream, from: &Version, to: &Version) -> String {
    format!("delta/{s}/{from}/{to}")
}

fn archive_key(s: Stream, v: &Version) -> String {
    format!("archive/{s}/{v}")
}

/// Artifacts of an earlier layout (files named by digest directly in the
/// cache directory) are no longer read: they are removed, and rebuilt in
/// the blob store's layout when asked for.
fn remove_old_layout(cache_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let is_digest = name.to_str().is_some_and(|n| n.parse::<Digest>().is_ok());
        if is_digest && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl PullServer {
    /// A pull server over the daemon's store and the shared blob store.
    pub fn new(dist: &Distributor) -> std::io::Result<Arc<PullServer>> {
        Self::open(
            dist.cfg.pull.clone(),
            dist.store().clone(),
            &dist.cfg.paths.blob_dir,
            &dist.cfg.paths.cache_dir,
        )
    }

    /// A pull server from its parts: settings, the store for its cache
    /// index, the blob store it reads payloads from, its cache directory.
    pub fn open(
        cfg: PullConfig,
        store: Store,
        blob_dir: &std::path::Path,
        cache_dir: &std::path::Path,
    ) -> std::io::Result<Arc<PullServer>> {
        let artifacts = BlobStore::open(cache_dir).map_err(std::io::Error::other)?;
        remove_old_layout(cache_dir);
        Ok(Arc::new(PullServer {
            slots: Arc::new(Semaphore::new(cfg.max_large_downloads.max(1))),
            build_slots: Arc::new(Semaphore::new(cfg.max_builds.max(1))),
            cfg,
            store,
            blobs: BlobStore::at(blob_dir),
            artifacts,
            offer: RwLock::new(Offer::default()),
            builds: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            per_address: Arc::default(),
            client_builds: Arc::default(),
            archive_used: Mutex::new(HashMap::new()),
            use_clock: AtomicU64::new(0),
            counters: Counters::default(),
        }))
    }

    /// Waits until every build under way has finished (benchmarks, tests).
    pub async fn builds_settled(&self) {
        loop {
            let pending: Vec<watch::Receiver<BuildResult>> =
                lock(&self.builds).values().cloned().collect();
            if pending.is_empty() {
                return;
            }
            for mut rx in pending {
                let _ = rx.wait_for(|r| r.is_some()).await;
            }
        }
    }

    /// Counters and cache contents.
    pub fn status(&self) -> PullStatus {
        let c = &self.counters;
        PullStatus {
            requests: c.requests.load(Ordering::Relaxed),
            deltas_served: c.deltas.load(Ordering::Relaxed),
            fulls_served: c.fulls.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            redirects: c.redirects.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            builds: c.builds.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            large_active: self.cfg.max_large_downloads.max(1) - self.slots.available_permits(),
            cached: self.artifacts("").into_iter().map(|(k, _)| k).collect(),
            builds_refused: c.builds_refused.load(Ordering::Relaxed),
            connections_refused: c.connections_refused.load(Ordering::Relaxed),
            connections_cut: c.connections_cut.load(Ordering::Relaxed),
            memory_cache_bytes: lock(&self.loaded).values().map(|b| b.len() as u64).sum(),
        }
    }
}

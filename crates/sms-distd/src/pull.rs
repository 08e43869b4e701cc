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
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Store tree of the cache index.
pub const PULL: &str = "pull";

/// A payload stream: DV, or TOS of one platform family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stream {
    /// Channel.
    pub channel: Channel,
    /// Family (TOS).
    pub family: Option<Family>,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.family {
            Some(fam) => write!(f, "{}/{}", self.channel, fam.id()),
            None => write!(f, "{}", self.channel),
        }
    }
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/<channel>/index.json`.
    Index(Channel),
    /// `/<channel>/catalog.json`.
    Catalog(Channel),
    /// `/<stream>/<version>`.
    Full(Stream, Version),
    /// `/<stream>/delta/<from>` (to the newest) or `/<stream>/delta/<from>/<to>`.
    Delta(Stream, Version, Option<Version>),
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Characters or forms that are never valid (400).
    Bad(&'static str),
    /// Well-formed but names nothing (404).
    NotFound,
}

/// Parses a request path (without query). Pure, so it is property-tested
/// and fuzzed.
pub fn parse_path(path: &str) -> Result<Route, PathError> {
    if path.len() > 256 {
        return Err(PathError::Bad("path too long"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
    {
        return Err(PathError::Bad(
            "only letters, digits, '.', '-', '_' and '/' are allowed in paths",
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::Bad("path must start with '/'"));
    };
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(PathError::Bad("empty, '.' or '..' path segment"));
    }
    let channel: Channel = segs[0].parse().map_err(|_| PathError::NotFound)?;
    let (stream, tail) = match channel {
        Channel::Dv => (
            Stream {
                channel,
                family: None,
            },
            &segs[1..],
        ),
        Channel::Tos => {
            if segs.len() == 2 && matches!(segs[1], "index.json" | "catalog.json") {
                (
                    Stream {
                        channel,
                        family: None,
                    },
                    &segs[1..],
                )
            } else {
                let fam: Family = segs
                    .get(1)
                    .ok_or(PathError::NotFound)?
                    .parse()
                    .map_err(|_| PathError::NotFound)?;
                (
                    Stream {
                        channel,
                        family: Some(fam),
                    },
                    &segs[2..],
                )
            }
        }
    };
    let v = |s: &str| s.parse::<Version>().map_err(|_| PathError::NotFound);
    match tail {
        ["index.json"] if stream.family.is_none() => Ok(Route::Index(channel)),
        ["catalog.json"] if stream.family.is_none() => Ok(Route::Catalog(channel)),
        [ver] => Ok(Route::Full(stream, v(ver)?)),
        ["delta", from] => Ok(Route::Delta(stream, v(from)?, None)),
        ["delta", from, to] => Ok(Route::Delta(stream, v(from)?, Some(v(to)?))),
        _ => Err(PathError::NotFound),
    }
}

/// A built artifact as indexed in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Artifact {
    /// A file in the cache directory.
    File {
        /// SHA-256 of the file (its name and ETag).
        sha256: Digest,
        /// Length.
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
    /// Version.
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

type BuildResult = Option<Result<Artifact, String>>;

/// Counters, as `PullStatus()` reports them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PullStatus {
    /// Requests answered.
    pub requests: u64,
    /// 200/206 answers with a delta.
    pub deltas_served: u64,
    /// 200/206 answers with a full archive.
    pub fulls_served: u64,
    /// 503 answers (build under way or no download slot).
    pub unavailable: u64,
    /// 301 answers.
    pub redirects: u64,
    /// 400/404/405/416 answers.
    pub refused: u64,
    /// Deltas and archives built.
    pub builds: u64,
    /// Body bytes sent.
    pub bytes: u64,
    /// Large downloads running now.
    pub large_active: usize,
    /// Artifacts in the index.
    pub cached: Vec<String>,
    /// Builds refused because the build queue was full (503).
    #[serde(default)]
    pub builds_refused: u64,
    /// Connections closed at once: their address had too many open.
    #[serde(default)]
    pub connections_refused: u64,
    /// Connections closed for moving less than the minimum rate (slow
    /// clients, idle keep-alives, stalled headers).
    #[serde(default)]
    pub connections_cut: u64,
    /// Bytes of artifacts held in memory.
    #[serde(default)]
    pub memory_cache_bytes: u64,
}

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
    cache_dir: PathBuf,
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

/// Response body: bytes in chunks, holding a download slot until sent.
pub struct SlotBody {
    data: Bytes,
    _slot: Option<OwnedSemaphorePermit>,
}

const CHUNK: usize = 256 * 1024;

impl hyper::body::Body for SlotBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            self._slot = None;
            return Poll::Ready(None);
        }
        let n = self.data.len().min(CHUNK);
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

fn body(data: Bytes) -> SlotBody {
    SlotBody { data, _slot: None }
}

fn plain(status: StatusCode, msg: &str) -> Response<SlotBody> {
    let mut r = Response::new(body(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

enum Cache {
    Immutable,
    Short,
}

/// A parsed single byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReq {
    /// No (usable) Range header: the whole body.
    Whole,
    /// `start..=end`.
    Part(u64, u64),
    /// Cannot be satisfied (416).
    Unsatisfiable,
}

/// Parses a `Range` header against a body of `len` bytes. Multiple ranges
/// and malformed headers are ignored (the whole body is sent), as RFC 9110
/// allows.
pub fn parse_range(h: Option<&str>, len: u64) -> RangeReq {
    let Some(spec) = h.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReq::Whole;
    };
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeReq::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeReq::Whole;
        };
        if n == 0 || len == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Part(len.saturating_sub(n), len - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Whole;
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return RangeReq::Whole,
        }
    };
    if start >= len {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Part(start, end)
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
        std::fs::create_dir_all(cache_dir.join("tmp"))?;
        Ok(Arc::new(PullServer {
            slots: Arc::new(Semaphore::new(cfg.max_large_downloads.max(1))),
            build_slots: Arc::new(Semaphore::new(cfg.max_builds.max(1))),
            cfg,
            store,
            blobs: BlobStore::at(blob_dir),
            cache_dir: cache_dir.to_path_buf(),
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

    /// Takes the update daemon's package lists: keeps the newest
    /// `keep_versions` per stream, drops cache entries of versions no
    /// longer kept, and starts the background builds of the newest version
    /// (its archive and the delta from the one before).
    pub fn set_offer(self: &Arc<Self>, dv: &[InstalledPackage], tos: &[InstalledPackage]) {
        let mut streams: BTreeMap<Stream, Vec<(Version, Digest, u64)>> = BTreeMap::new();
        let mut index = BTreeMap::new();
        let mut catalog = BTreeMap::new();
        for (channel, list) in [(Channel::Dv, dv), (Channel::Tos, tos)] {
            let mut offered: Vec<(Version, Offered)> = Vec::new();
            for p in list {
                let (Ok(v), Ok(d)) = (p.version.parse::<Version>(), p.sha256.parse::<Digest>())
                else {
                    continue;
                };
                let family = p.family.as_deref().and_then(|f| f.parse::<Family>().ok());
                if channel == Channel::Tos && family.is_none() {
                    continue;
                }
                let s = Stream { channel, family };
                streams.entry(s).or_default().push((v.clone(), d, p.length));
                offered.push((
                    v.clone(),
                    Offered {
                        version: v.to_string(),
                        sha256: d.to_hex(),
                        length: p.length,
                        full: format!("/{s}/{v}"),
                    },
                ));
            }
            offered.sort_by(|a, b| b.0.cmp(&a.0));
            if let Some(env) = list
                .iter()
                .filter_map(|p| {
                    Some((
                        p.version.parse::<Version>().ok()?,
                        p.envelope_sha256.as_deref()?.parse::<Digest>().ok()?,
                    ))
                })
                .max_by(|a, b| a.0.cmp(&b.0))
            {
                catalog.insert(channel, env.1);
            }
            let body: Vec<Offered> = offered.into_iter().map(|(_, o)| o).collect();
            let json = serde_json::to_vec_pretty(&body).unwrap_or_default();
            let digest = Digest::of(&json);
            index.insert(channel, (Bytes::from(json), digest));
        }
        for list in streams.values_mut() {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            let extra = list.len().saturating_sub(self.cfg.keep_versions.max(1));
            list.drain(..extra);
        }
        let newest: Vec<(Stream, Option<Version>, Version)> = streams
            .iter()
            .filter_map(|(s, l)| {
                let n = l.last()?.0.clone();
                let prev = l.len().checked_sub(2).map(|i| l[i].0.clone());
                Some((*s, prev, n))
            })
            .collect();
        {
            let mut o = sms_core::daemon::write(&self.offer);
            o.streams = streams;
            o.index = index;
            o.catalog = catalog;
        }
        self.evict_unkept();
        for (s, prev, n) in newest {
            let level = self.cfg.best_level;
            let _ = self.start_archive(s, &n, level, None);
            if let Some(p) = prev {
                let _ = self.start_delta(s, &p, &n, level, None);
            }
        }
    }

    fn payload(&self, s: Stream, v: &Version) -> Option<(Digest, u64)> {
        let o = sms_core::daemon::read(&self.offer);
        o.streams
            .get(&s)?
            .iter()
            .find(|(x, _, _)| x == v)
            .map(|(_, d, l)| (*d, *l))
    }

    fn newest(&self, s: Stream) -> Option<Version> {
        let o = sms_core::daemon::read(&self.offer);
        o.streams.get(&s)?.last().map(|(v, _, _)| v.clone())
    }

    fn evict_unkept(&self) {
        let entries = self.artifacts("");
        let mut doomed = Vec::new();
        for (key, art) in entries {
            let parts: Vec<&str> = key.split('/').collect();
            let kept = |stream: Stream, vs: &[&str]| {
                vs.iter().all(|v| {
                    v.parse::<Version>()
                        .ok()
                        .is_some_and(|v| self.payload(stream, &v).is_some())
                })
            };
            let stream_of = |parts: &[&str]| -> Option<(Stream, usize)> {
                let channel: Channel = parts.get(1)?.parse().ok()?;
                if channel == Channel::Tos {
                    Some((
                        Stream {
                            channel,
                            family: Some(parts.get(2)?.parse().ok()?),
                        },
                        3,
                    ))
                } else {
                    Some((
                        Stream {
                            channel,
                            family: None,
                        },
                        2,
                    ))
                }
            };
            let keep = match stream_of(&parts) {
                Some((s, i)) => kept(s, &parts[i..]),
                None => false,
            };
            if !keep {
                doomed.push((key, art));
            }
        }
        for (key, art) in doomed {
            self.drop_artifact(&key, &art);
            tracing::info!("pull cache: evicted {key} (version no longer kept)");
        }
    }

    fn drop_artifact(&self, key: &str, art: &Artifact) {
        let mut b = Batch::new();
        b.delete(PULL, key);
        if let Err(e) = self.store.apply(&b) {
            tracing::error!("pull cache index: {e}");
            return;
        }
        if let Artifact::File { sha256, .. } = art {
            let still = self
                .artifacts("")
                .iter()
                .any(|(_, a)| matches!(a, Artifact::File { sha256: s, .. } if s == sha256));
            if !still {
                lock(&self.loaded).remove(sha256);
                let _ = std::fs::remove_file(self.cache_dir.join(sha256.to_hex()));
            }
        }
        lock(&self.archive_used).remove(key);
    }

    /// Index entries under `prefix`, key and record read in one scan.
    fn artifacts(&self, prefix: &str) -> Vec<(String, Artifact)> {
        let Ok(kvs) = self.store.scan(PULL, prefix.as_bytes()) else {
            return Vec::new();
        };
        kvs.into_iter()
            .filter_map(|(k, v)| {
                Some((
                    String::from_utf8_lossy(&k).into_owned(),
                    serde_json::from_slice(&v).ok()?,
                ))
            })
            .collect()
    }

    fn artifact(&self, key: &str) -> Option<Artifact> {
        self.store.get_json(PULL, key).ok().flatten()
    }

    fn bytes_of(&self, sha256: &Digest) -> Option<Bytes> {
        if let Some(b) = lock(&self.loaded).get(sha256) {
            return Some(b.clone());
        }
        let data = std::fs::read(self.cache_dir.join(sha256.to_hex())).ok()?;
        if Digest::of(&data) != *sha256 {
            tracing::error!("pull cache: {sha256} is corrupt; it will be rebuilt");
            return None;
        }
        let b = Bytes::from(data);
        self.remember(*sha256, b.clone());
        Some(b)
    }

    /// Keeps an artifact's bytes in memory, within `memory_cache_bytes`:
    /// others are let go first (they are re-read from the cache directory
    /// when asked for again).
    fn remember(&self, sha256: Digest, data: Bytes) {
        let limit = self.cfg.memory_cache_bytes;
        let mut loaded = lock(&self.loaded);
        loaded.insert(sha256, data);
        let mut total: u64 = loaded.values().map(|b| b.len() as u64).sum();
        while total > limit {
            let Some(victim) = loaded.keys().find(|k| **k != sha256).copied() else {
                break;
            };
            if let Some(b) = loaded.remove(&victim) {
                total -= b.len() as u64;
            }
        }
    }

    fn read_payload(&self, s: Stream, v: &Version) -> Result<Vec<u8>, String> {
        let (d, len) = self
            .payload(s, v)
            .ok_or_else(|| format!("{s} {v} is not on offer"))?;
        let path = self.blobs.path(&d);
        let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if data.len() as u64 != len || Digest::of(&data) != d {
            return Err(format!(
                "stored payload of {s} {v} does not match its digest"
            ));
        }
        Ok(data)
    }

    fn store_artifact(&self, key: &str, data: &[u8], level: i32) -> Result<Artifact, String> {
        let sha256 = Digest::of(data);
        let tmp = self
            .cache_dir
            .join("tmp")
            .join(format!("{}.part", sha256.to_hex()));
        let path = self.cache_dir.join(sha256.to_hex());
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.cache_dir)?.sync_all()
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))?;
        let art = Artifact::File {
            sha256,
            length: data.len() as u64,
            level,
            built: crate::job::now(),
        };
        let mut b = Batch::new();
        b.put_json(PULL, key, &art);
        self.store.apply(&b).map_err(|e| e.to_string())?;
        self.remember(sha256, Bytes::copy_from_slice(data));
        self.counters.builds.fetch_add(1, Ordering::Relaxed);
        Ok(art)
    }

    /// Starts (or joins) the one build of `key`; the receiver yields its
    /// result. An artifact, once built, is never replaced: its URL is
    /// immutable for caches and a ranged download can resume across
    /// requests.
    ///
    /// At most `max_builds` run at once; clients' builds may wait beyond
    /// that up to `build_queue`, and one client address has at most
    /// `builds_per_address` of them; a build beyond is refused (`None`:
    /// the caller answers 503), so that asking for every pair of versions
    /// queues no unbounded work and does not crowd out other devices. The
    /// server's own builds (`client` `None`: the newest delta and archive)
    /// are always admitted.
    fn start_build<F>(
        self: &Arc<Self>,
        key: String,
        client: Option<std::net::IpAddr>,
        work: F,
    ) -> Option<watch::Receiver<BuildResult>>
    where
        F: FnOnce(&PullServer) -> Result<Artifact, String> + Send + 'static,
    {
        let mut builds = lock(&self.builds);
        if let Some(rx) = builds.get(&key) {
            return Some(rx.clone());
        }
        let place = match client {
            Some(ip) => {
                let place = self.client_builds.take(
                    ip,
                    self.cfg.builds_per_address.max(1),
                    Some(self.cfg.max_builds.max(1) + self.cfg.build_queue),
                );
                if place.is_none() {
                    self.counters.builds_refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                place
            }
            None => None,
        };
        let (tx, rx) = watch::channel(None);
        builds.insert(key.clone(), rx.clone());
        drop(builds);
        let me = self.clone();
        let slots = self.build_slots.clone();
        tokio::spawn(async move {
            let Ok(permit) = slots.acquire_owned().await else {
                return;
            };
            let me2 = me.clone();
            let key2 = key.clone();
            let built = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                me2.build_logged(&key2, work)
            })
            .await;
            let r = built.unwrap_or_else(|e| Err(format!("build task: {e}")));
            lock(&me.builds).remove(&key);
            drop(place);
            let _ = tx.send(Some(r));
        });
        Some(rx)
    }

    fn build_logged<F>(&self, key: &str, work: F) -> Result<Artifact, String>
    where
        F: FnOnce(&PullServer) -> Result<Artifact, String>,
    {
        let started = std::time::Instant::now();
        let r = work(self);
        match &r {
            Ok(Artifact::File { length, level, .. }) => tracing::info!(
                "pull cache: built {key} ({length} bytes, level {level}) in {:.2} s",
                started.elapsed().as_secs_f64()
            ),
            Ok(Artifact::TooLarge { length }) => tracing::info!(
                "pull cache: {key} would be {length} bytes, over the limit; clients get the full archive"
            ),
            Err(e) => tracing::error!("pull cache: building {key} failed: {e}"),
        }
        r
    }

    fn start_archive(
        self: &Arc<Self>,
        s: Stream,
        v: &Version,
        level: i32,
        client: Option<std::net::IpAddr>,
    ) -> Option<watch::Receiver<BuildResult>> {
        let key = archive_key(s, v);
        if let Some(a) = self.artifact(&key) {
            let (_tx, rx) = watch::channel(Some(Ok(a)));
            return Some(rx);
        }
        let v = v.clone();
        self.start_build(key.clone(), client, move |me| {
            let payload = me.read_payload(s, &v)?;
            let data = delta::archive(&payload, level).map_err(|e| e.to_string())?;
            let art = me.store_artifact(&key, &data, level)?;
            me.limit_archives(s, &key);
            Ok(art)
        })
    }

    fn limit_archives(&self, s: Stream, keep: &str) {
        let mut archives = self.artifacts(&format!("archive/{s}/"));
        let max = self.cfg.max_full_archives.max(1);
        if archives.len() <= max {
            return;
        }
        let used = lock(&self.archive_used).clone();
        // Least recently used first; never the one just built.
        archives.sort_by_key(|(k, a)| {
            let built = match a {
                Artifact::File { built, .. } => *built as u64,
                Artifact::TooLarge { .. } => 0,
            };
            (k == keep, used.get(k).copied().unwrap_or(0), built)
        });
        let n = archives.len() - max;
        for (k, a) in archives.into_iter().take(n) {
            self.drop_artifact(&k, &a);
            tracing::info!("pull cache: evicted full archive {k} (at most {max} per stream)");
        }
    }

    fn start_delta(
        self: &Arc<Self>,
        s: Stream,
        from: &Version,
        to: &Version,
        level: i32,
        client: Option<std::net::IpAddr>,
    ) -> Option<watch::Receiver<BuildResult>> {
        let key = delta_key(s, from, to);
        if let Some(a) = self.artifact(&key) {
            let (_tx, rx) = watch::channel(Some(Ok(a)));
            return Some(rx);
        }
        let (from, to) = (from.clone(), to.clone());
        let max_fraction = self.cfg.max_delta_fraction;
        self.start_build(key.clone(), client, move |me| {
            let old = me.read_payload(s, &from)?;
            let new = me.read_payload(s, &to)?;
            let data = delta::make(&old, &new, level).map_err(|e| e.to_string())?;
            // Compare with the full download: the archive if built, else
            // the payload compressed at the fast setting.
            let full = match me.artifact(&archive_key(s, &to)) {
                Some(Artifact::File { length, .. }) => length,
                _ => delta::archive(&new, 3)
                    .map(|a| a.len() as u64)
                    .unwrap_or(new.len() as u64),
            };
            if data.len() as f64 > full as f64 * max_fraction {
                let art = Artifact::TooLarge {
                    length: data.len() as u64,
                };
                let mut b = Batch::new();
                b.put_json(PULL, &key, &art);
                me.store.apply(&b).map_err(|e| e.to_string())?;
                return Ok(art);
            }
            me.store_artifact(&key, &data, level)
        })
    }

    /// Waits for a build when it may finish within the inline budget.
    async fn wait_build(
        mut rx: watch::Receiver<BuildResult>,
        budget: Duration,
    ) -> Option<Result<Artifact, String>> {
        if let Some(r) = rx.borrow().clone() {
            return Some(r);
        }
        if budget.is_zero() {
            return None;
        }
        let waited = tokio::time::timeout(budget, rx.wait_for(|r| r.is_some())).await;
        match waited {
            Ok(Ok(r)) => r.clone(),
            _ => None,
        }
    }

    fn inline_budget(&self, sizes: &[u64]) -> Duration {
        if sizes.iter().all(|s| *s <= self.cfg.inline_delta_max_bytes) {
            Duration::from_millis(2000)
        } else {
            Duration::ZERO
        }
    }

    fn unavailable(&self, what: &str) -> Response<SlotBody> {
        self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, what);
        if let Ok(v) = HeaderValue::from_str(&self.cfg.retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }

    fn redirect(&self, location: String) -> Response<SlotBody> {
        self.counters.redirects.fetch_add(1, Ordering::Relaxed);
        let mut r = plain(
            StatusCode::MOVED_PERMANENTLY,
            &format!("no delta path; full archive at {location}"),
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        r
    }

    fn refused(&self, status: StatusCode, msg: &str) -> Response<SlotBody> {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        plain(status, msg)
    }

    /// Answers one request.
    pub async fn handle(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        client: std::net::IpAddr,
    ) -> Response<SlotBody> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let head = match *req.method() {
            hyper::Method::GET => false,
            hyper::Method::HEAD => true,
            _ => {
                let mut r = self.refused(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return r;
            }
        };
        let route = match parse_path(req.uri().path()) {
            Ok(r) => r,
            Err(PathError::Bad(why)) => return self.refused(StatusCode::BAD_REQUEST, why),
            Err(PathError::NotFound) => return self.refused(StatusCode::NOT_FOUND, "not found"),
        };
        let mut resp = self.route(req, route, head, client).await;
        if head {
            let len = resp.body().data.len();
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let b = resp.body_mut();
            b.data = Bytes::new();
            b._slot = None;
        }
        resp
    }

    async fn route(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        route: Route,
        head: bool,
        client: std::net::IpAddr,
    ) -> Response<SlotBody> {
        match route {
            Route::Index(c) => {
                let data = {
                    let o = sms_core::daemon::read(&self.offer);
                    o.index.get(&c).cloned()
                };
                match data {
                    Some((d, digest)) => {
                        self.send(req, d, digest, "application/json", Cache::Short, false)
                            .await
                    }
                    None => self.refused(StatusCode::NOT_FOUND, "nothing on offer"),
                }
            }
            Route::Catalog(c) => {
                let digest = {
                    let o = sms_core::daemon::read(&self.offer);
                    o.catalog.get(&c).copied()
                };
                let data = digest.and_then(|d| Some((std::fs::read(self.blobs.path(&d)).ok()?, d)));
                match data {
                    Some((d, digest)) => {
                        self.send(
                            req,
                            Bytes::from(d),
                            digest,
                            "application/json",
                            Cache::Short,
                            false,
                        )
                        .await
                    }
                    None => self.refused(StatusCode::NOT_FOUND, "no signed catalog on offer"),
                }
            }
            Route::Full(s, v) => {
                let Some((_, len)) = self.payload(s, &v) else {
                    return self.refused(StatusCode::NOT_FOUND, "version not on offer");
                };
                let key = archive_key(s, &v);
                let art = match self.artifact(&key) {
                    Some(a) => Some(a),
                    // HEAD never starts work.
                    None if head => None,
                    None => {
                        let Some(rx) =
                            self.start_archive(s, &v, self.cfg.inline_level, Some(client))
                        else {
                            return self.unavailable("busy preparing other files; retry later");
                        };
                        match Self::wait_build(rx, self.inline_budget(&[len])).await {
                            Some(Ok(a)) => Some(a),
                            Some(Err(e)) => {
                                return self.refused(StatusCode::NOT_FOUND, &e);
                            }
                            None => None,
                        }
                    }
                };
                let Some(Artifact::File { sha256, .. }) = art else {
                    return self.unavailable("the full archive is being prepared; retry later");
                };
                let n = self.use_clock.fetch_add(1, Ordering::Relaxed) + 1;
                lock(&self.archive_used).insert(key, n);
                match self.bytes_of(&sha256) {
                    Some(d) => {
                        self.counters.fulls.fetch_add(1, Ordering::Relaxed);
                        self.send(
                            req,
                            d,
                            sha256,
                            "application/octet-stream",
                            Cache::Immutable,
                            true,
                        )
                        .await
                    }
                    None => {
                        let _ = self
                            .store
                            .apply(Batch::new().delete(PULL, archive_key(s, &v)));
                        self.unavailable("the full archive is being rebuilt; retry later")
                    }
                }
            }
            Route::Delta(s, from, to) => self.delta(req, s, from, to, head, client).await,
        }
    }

    async fn delta(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        s: Stream,
        from: Version,
        to: Option<Version>,
        head: bool,
        client: std::net::IpAddr,
    ) -> Response<SlotBody> {
        let exact = to.is_some();
        let Some(to) = to.or_else(|| self.newest(s)) else {
            return self.refused(StatusCode::NOT_FOUND, "nothing on offer");
        };
        let Some((to_sha, to_len)) = self.payload(s, &to) else {
            return self.refused(StatusCode::NOT_FOUND, "target version not on offer");
        };
        let full = format!("/{s}/{to}");
        if from == to {
            let mut r = plain(StatusCode::NO_CONTENT, "");
            *r.body_mut() = body(Bytes::new());
            set_target(&mut r, &to, &to_sha);
            return r;
        }
        let Some((_, from_len)) = self.payload(s, &from) else {
            return self.redirect(full);
        };
        if from > to {
            return self.redirect(full);
        }
        let key = delta_key(s, &from, &to);
        let art = match self.artifact(&key) {
            Some(a) => Some(a),
            // HEAD never starts work.
            None if head => None,
            None => {
                let Some(rx) = self.start_delta(s, &from, &to, self.cfg.inline_level, Some(client))
                else {
                    return self.unavailable("busy building other deltas; retry later");
                };
                match Self::wait_build(rx, self.inline_budget(&[from_len, to_len])).await {
                    Some(Ok(a)) => Some(a),
                    Some(Err(_)) => return self.redirect(full),
                    None => None,
                }
            }
        };
        match art {
            None => self.unavailable("the delta is being built; retry later"),
            Some(Artifact::TooLarge { .. }) => self.redirect(full),
            Some(Artifact::File { sha256, .. }) => match self.bytes_of(&sha256) {
                None => {
                    let _ = self.store.apply(Batch::new().delete(PULL, &key));
                    self.unavailable("the delta is being rebuilt; retry later")
                }
                Some(d) => {
                    self.counters.deltas.fetch_add(1, Ordering::Relaxed);
                    let cache = if exact {
                        Cache::Immutable
                    } else {
                        Cache::Short
                    };
                    let mut r = self
                        .send(req, d, sha256, "application/octet-stream", cache, true)
                        .await;
                    set_target(&mut r, &to, &to_sha);
                    r
                }
            },
        }
    }

    async fn send(
        &self,
        req: &Request<Incoming>,
        data: Bytes,
        digest: Digest,
        content_type: &'static str,
        cache: Cache,
        large_ok: bool,
    ) -> Response<SlotBody> {
        let etag = format!("\"{digest}\"");
        let mut r = Response::new(body(Bytes::new()));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(match cache {
                Cache::Immutable => "public, max-age=31536000, immutable",
                Cache::Short => "public, max-age=60",
            }),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        let inm = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        if let Some(inm) = inm {
            if inm.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str())
            }) {
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                return r;
            }
        }
        let len = data.len() as u64;
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        // If-Range with another validator means: send it all.
        let if_range_ok = req
            .headers()
            .get(header::IF_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == etag);
        let (status, part) = match parse_range(range.filter(|_| if_range_ok), len) {
            RangeReq::Whole => (StatusCode::OK, data),
            RangeReq::Part(a, b) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                (
                    StatusCode::PARTIAL_CONTENT,
                    data.slice(a as usize..=b as usize),
                )
            }
            RangeReq::Unsatisfiable => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                return r;
            }
        };
        let mut slot = None;
        if large_ok
            && part.len() as u64 >= self.cfg.large_bytes
            && req.method() != hyper::Method::HEAD
        {
            let wait =
                tokio::time::timeout(self.cfg.slot_wait_ms, self.slots.clone().acquire_owned())
                    .await;
            match wait {
                Ok(Ok(p)) => slot = Some(p),
                _ => {
                    return self.unavailable(&format!(
                        "{} large downloads are running; retry later",
                        self.cfg.max_large_downloads
                    ))
                }
            }
        }
        self.counters
            .bytes
            .fetch_add(part.len() as u64, Ordering::Relaxed);
        *r.status_mut() = status;
        *r.body_mut() = SlotBody {
            data: part,
            _slot: slot,
        };
        r
    }

    /// Serves plain HTTP on `listener` until the task is dropped.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener) {
        self.serve(listener, None).await
    }

    /// Serves HTTPS on `listener` until the task is dropped.
    pub async fn serve_https(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) {
        self.serve(listener, Some(tokio_rustls::TlsAcceptor::from(tls)))
            .await
    }

    async fn serve(self: Arc<Self>, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors and the like: pause, keep serving.
                    tracing::warn!("pull server accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(guard) = self.admit(peer.ip()) else {
                self.counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "pull server: too many connections from this address");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let progress = Arc::new(AtomicU64::new(0));
                let stream = CountingIo {
                    inner: stream,
                    progress: progress.clone(),
                };
                let handler = me.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let me = handler.clone();
                    async move { Ok::<_, Infallible>(me.handle(&req, peer.ip()).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(me.cfg.header_timeout);
                let counters = &me.counters;
                let served = async {
                    let r = match tls {
                        Some(acc) => {
                            match tokio::time::timeout(me.cfg.header_timeout, acc.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), svc).await,
                                Ok(Err(_)) => Ok(()),
                                Err(_) => {
                                    counters.connections_cut.fetch_add(1, Ordering::Relaxed);
                                    Ok(())
                                }
                            }
                        }
                        None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    };
                    if r.is_err_and(|e| e.is_timeout()) {
                        // The request headers did not arrive in time.
                        counters.connections_cut.fetch_add(1, Ordering::Relaxed);
                    }
                };
                tokio::pin!(served);
                // A connection must move `min_rate_bps` over each window:
                // slow readers cannot hold a download slot, idle
                // keep-alives and trickled headers are closed.
                let window = me.cfg.rate_window.max(Duration::from_secs(1));
                let floor = me.cfg.min_rate_bps.saturating_mul(window.as_secs().max(1));
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + window, window);
                let mut last = 0u64;
                loop {
                    tokio::select! {
                        _ = &mut served => break,
                        _ = tick.tick() => {
                            let now = progress.load(Ordering::Relaxed);
                            if me.cfg.min_rate_bps > 0 && now - last < floor {
                                me.counters.connections_cut.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%peer, bytes = now - last, "pull server: connection below the minimum rate; closed");
                                break;
                            }
                            last = now;
                        }
                    }
                }
            });
        }
    }

    /// Counts a connection from `ip`, unless it already has the most
    /// allowed; the guard gives the place back when dropped.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressGuard> {
        self.per_address
            .take(ip, self.cfg.max_connections_per_address.max(1), None)
    }

    /// Refreshes the offer from the update daemon now.
    pub async fn refresh(self: &Arc<Self>, conn: &zbus::Connection) -> Result<(), String> {
        let dv = crate::source::installed(conn, Channel::Dv)
            .await
            .map_err(|e| e.to_string())?;
        let tos = crate::source::installed(conn, Channel::Tos)
            .await
            .map_err(|e| e.to_string())?;
        self.set_offer(&dv, &tos);
        Ok(())
    }

    /// Refreshes the offer every `refresh_interval` forever.
    pub async fn refresh_forever(self: Arc<Self>, conn: zbus::Connection) {
        loop {
            if let Err(e) = self.refresh(&conn).await {
                tracing::warn!("pull server: package list not refreshed: {e}");
            }
            tokio::time::sleep(self.cfg.refresh_interval).await;
        }
    }
}

fn set_target(r: &mut Response<SlotBody>, to: &Version, sha: &Digest) {
    if let Ok(v) = HeaderValue::from_str(&to.to_string()) {
        r.headers_mut().insert("x-sms-target-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&sha.to_hex()) {
        r.headers_mut().insert("x-sms-target-sha256", v);
    }
}

/// Places held per client address (open connections, queued builds),
/// with a limit per address and one for all together.
#[derive(Default)]
struct AddressCounts {
    counts: Mutex<HashMap<std::net::IpAddr, usize>>,
}

impl AddressCounts {
    /// A place for `ip`, unless it holds `per_address` already or all
    /// addresses hold `total` (when given); given back when the guard is
    /// dropped.
    fn take(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        per_address: usize,
        total: Option<usize>,
    ) -> Option<AddressGuard> {
        let mut m = lock(&self.counts);
        let full = total.is_some_and(|t| m.values().sum::<usize>() >= t);
        let n = m.entry(ip).or_insert(0);
        if *n >= per_address || full {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(AddressGuard {
            counts: self.clone(),
            ip,
        })
    }
}

/// One place in an [`AddressCounts`].
struct AddressGuard {
    counts: Arc<AddressCounts>,
    ip: std::net::IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut m = lock(&self.counts.counts);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A socket that counts the bytes it moves either way, for the minimum
/// rate watchdog.
struct CountingIo<T> {
    inner: T,
    progress: Arc<AtomicU64>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            self.progress.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_parse() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        let dv = Stream {
            channel: Channel::Dv,
            family: None,
        };
        assert_eq!(parse_path("/dv/index.json"), Ok(Route::Index(Channel::Dv)));
        assert_eq!(
            parse_path("/tos/index.json"),
            Ok(Route::Index(Channel::Tos))
        );
        assert_eq!(parse_path("/dv/1.2.3"), Ok(Route::Full(dv, v("1.2.3"))));
        assert_eq!(
            parse_path("/dv/delta/1.2"),
            Ok(Route::Delta(dv, v("1.2"), None))
        );
        assert_eq!(
            parse_path("/dv/delta/1.2/1.3"),
            Ok(Route::Delta(dv, v("1.2"), Some(v("1.3"))))
        );
        let fam = Family::ALL[0];
        assert_eq!(
            parse_path(&format!("/tos/{}/5.0", fam.id())),
            Ok(Route::Full(
                Stream {
                    channel: Channel::Tos,
                    family: Some(fam)
                },
                v("5.0")
            ))
        );
    }

    #[test]
    fn traversal_forms_are_refused() {
        for p in [
            "/dv/../../etc/passwd",
            "/dv/%2e%2e/%2e%2e/etc/passwd",
            "/dv/%252e%252e/etc",
            "/dv/..%5c..%5cetc",
            "/dv\\..\\etc",
            "/dv/%c0%ae%c0%ae/etc",
            "/dv/1.0%00",
            "/dv/1.0\0",
            "/dv//1.0",
            "/dv/./1.0",
            "//etc/passwd",
            "dv/1.0",
            "/dv/\u{2215}etc",
        ] {
            assert!(
                matches!(parse_path(p), Err(PathError::Bad(_))),
                "{p:?} -> {:?}",
                parse_path(p)
            );
        }
        for p in [
            "/etc/passwd",
            "/dv/passwd",
            "/dv/1.0/extra",
            "/tos/9999/1.0",
            "/",
        ] {
            assert!(parse_path(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range(None, 100), RangeReq::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeReq::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeReq::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeReq::Part(90, 99));
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100),
            RangeReq::Part(50, 99)
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeReq::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeReq::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeReq::Whole);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), RangeReq::Whole);
    }

    proptest! {
        #[test]
        fn any_path_either_parses_to_a_route_or_is_refused(p in "\\PC{0,80}") {
            if parse_path(&p).is_ok() {
                prop_assert!(!p.contains(".."));
                prop_assert!(p.is_ascii());
                prop_assert!(!p.contains('%'));
            }
        }

        #[test]
        fn ranges_stay_inside_the_body(h in "bytes=[0-9]{0,4}-[0-9]{0,4}", len in 0u64..5000) {
            if let RangeReq::Part(a, b) = parse_range(Some(&h), len) {
                prop_assert!(a <= b && b < len);
            }
        }
    }
}

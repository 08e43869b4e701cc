//! Verified, resumable downloads into the blob store.
//!
//! A file is fetched into `<blobs>/tmp/<digest>.part`. An interrupted
//! transfer resumes with an HTTP Range request from the bytes already there;
//! retries back off exponentially with jitter. A writer thread hashes while
//! it writes, so the digest is known the moment the last byte lands, and the
//! file enters the store only if its length and SHA-256 match the signed
//! catalog entry. Errors that make the partial file worthless (wrong digest,
//! truncated or over-long content, full disk) remove it.

use crate::config::DownloadConfig;
use crate::net::{Net, NetError};
use crate::url::Url;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use sms_core::blob::{BlobError, BlobStore, Digest};
use sms_core::bus::DownloadProgress;
use sms_core::package::PackageEntry;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Network failure (after all attempts).
    #[error("{0}")]
    Net(#[from] NetError),
    /// The server answered with an error status.
    #[error("CDN answered {status} for {url}")]
    Status {
        /// The address that was asked.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// No byte arrived for too long.
    #[error("transfer stalled: no data for {secs} s from {url}")]
    Stalled {
        /// The address that was asked.
        url: String,
        /// Stall limit.
        secs: u64,
    },
    /// Bytes arrived, but too slowly: a server trickling a byte now and
    /// then would otherwise hold the updater's operation lock for hours.
    #[error("transfer too slow: {bytes} bytes in the last {secs} s from {url}, below the minimum of {min_bps} bytes/s")]
    TooSlow {
        /// The address that was asked.
        url: String,
        /// Bytes received in the window.
        bytes: u64,
        /// Window length.
        secs: u64,
        /// Configured minimum rate.
        min_bps: u64,
    },
    /// The server's copy is shorter than the signed length.
    #[error("truncated download: the server sent {got} of {expected} bytes and no more")]
    Truncated {
        /// Bytes received in all.
        got: u64,
        /// Signed length.
        expected: u64,
    },
    /// The server sent more than the signed length.
    #[error("download longer than the signed length of {expected} bytes")]
    TooLong {
        /// Signed length.
        expected: u64,
    },
    /// The content does not match the signed digest or length.
    #[error("verification failed, package refused: {0}")]
    Verify(BlobError),
    /// Not enough disk space.
    #[error("disk full: {needed} bytes needed on {path}, {available} available")]
    DiskFull {
        /// File system.
        path: String,
        /// Bytes needed (including the reserve).
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// Local storage failed.
    #[error("storage error: {0}")]
    Storage(BlobError),
}

impl DownloadError {
    fn retryable(&self) -> bool {
        match self {
            DownloadError::Net(NetError::Config(_))
            | DownloadError::Net(NetError::NoDnsServers { .. }) => false,
            DownloadError::Net(_)
            | DownloadError::Stalled { .. }
            | DownloadError::TooSlow { .. } => true,
            DownloadError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    fn poisons_partial(&self) -> bool {
        matches!(
            self,
            DownloadError::Truncated { .. }
                | DownloadError::TooLong { .. }
                | DownloadError::Verify(_)
                | DownloadError::DiskFull { .. }
                | DownloadError::Storage(_)
        )
    }

    fn from_blob(e: BlobError, path: &Path, needed: u64) -> DownloadError {
        if e.is_disk_full() {
            DownloadError::DiskFull {
                path: path.display().to_string(),
                needed,
                available: free_bytes(path).unwrap_or(0),
            }
        } else {
            match e {
                BlobError::LengthMismatch { .. } | BlobError::DigestMismatch { .. } => {
                    DownloadError::Verify(e)
                }
                other => DownloadError::Storage(other),
            }
        }
    }
}

/// Bytes available to unprivileged writers on the file system of `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Capped exponential backoff with jitter (50–100 % of the step).
pub fn backoff(cfg: &DownloadConfig, attempt: u32) -> Duration {
    let base = cfg.backoff_initial_ms.as_millis() as u64;
    let step = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let capped = step.min(cfg.backoff_max_ms.as_millis() as u64).max(1);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    Duration::from_millis((capped as f64 * jitter) as u64)
}

/// Tracks the rate and logs progress every few seconds.
struct Progress<'a> {
    key: String,
    total: u64,
    bytes: u64,
    started_at: u64,
    started: Instant,
    last_log: Instant,
    last_report: Instant,
    report: &'a (dyn Fn(DownloadProgress) + Send + Sync),
}

impl Progress<'_> {
    fn snapshot(&self) -> DownloadProgress {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.05 {
            ((self.bytes - self.started_at) as f64 / secs) as u64
        } else {
            0
        };
        DownloadProgress {
            key: self.key.clone(),
            bytes: self.bytes,
            total: self.total,
            rate_bps: rate,
            eta_secs: (rate > 0).then(|| (self.total.saturating_sub(self.bytes)) / rate),
        }
    }

    fn advance(&mut self, n: u64) {
        self.bytes += n;
        // The status (D-Bus) every 0.5 s; the log every 2 s, once a rate
        // can be told (not in the first second).
        if self.last_report.elapsed() >= Duration::from_millis(500) {
            let snap = self.snapshot();
            (self.report)(snap.clone());
            self.last_report = Instant::now();
            if self.last_log.elapsed() >= Duration::from_secs(2)
                && self.started.elapsed() >= Duration::from_secs(1)
            {
                log_progress(&snap);
                self.last_log = Instant::now();
            }
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn log_progress(p: &DownloadProgress) {
    let pct = (p.bytes * 100).checked_div(p.total).unwrap_or(100);
    tracing::info!(
        "downloading {}: {:.1}/{:.1} MiB ({pct}%), {:.1} MiB/s, ETA {}",
        p.key,
        mib(p.bytes),
        mib(p.total),
        mib(p.rate_bps),
        p.eta_secs
            .map(|s| format!("{s} s"))
            .unwrap_or_else(|| "unknown".into())
    );
}

/// What the writer thread reports when done.
struct Written {
    len: u64,
    digest: Digest,
}

/// Writes chunks to the partial file of `digest` on a blocking thread,
/// hashing as it goes (after hashing the prefix already on disk when
/// resuming).
fn spawn_writer(
    blobs: BlobStore,
    digest: Digest,
    resume_from: u64,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> tokio::task::JoinHandle<io::Result<Written>> {
    tokio::task::spawn_blocking(move || {
        let mut w = blobs.resume_partial(&digest, resume_from)?;
        let mut result = Ok(());
        while let Some(chunk) = rx.blocking_recv() {
            result = w.write(&chunk);
            if result.is_err() {
                break;
            }
        }
        let (len, digest) = w.finish()?;
        result?;
        Ok(Written { len, digest })
    })
}

/// Downloads `entry` from `url` into the blob store and verifies it.
/// Returns the stored file's path.
pub async fn fetch_verified(
    net: &Net,
    url: &Url,
    entry: &PackageEntry,
    blobs: &BlobStore,
    cfg: &DownloadConfig,
    report: &(dyn Fn(DownloadProgress) + Send + Sync),
) -> Result<PathBuf, DownloadError> {
    if blobs.contains(&entry.sha256) {
        return Ok(blobs.path(&entry.sha256));
    }
    let attempts = cfg.attempts.max(1);
    let mut attempt = 0;
    let written = loop {
        attempt += 1;
        match attempt_once(net, url, entry, blobs, cfg, report).await {
            Ok(w) => break w,
            Err(e) if e.retryable() && attempt < attempts => {
                let delay = backoff(cfg, attempt);
                tracing::warn!(
                    "download of {} interrupted (attempt {attempt}/{attempts}): {e}; resuming in {:.1} s",
                    entry.key(),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                // A partial file is kept only when it can help a later
                // resume: not when it is poisoned, not when it is empty.
                let part_len = std::fs::metadata(blobs.partial_path(&entry.sha256))
                    .map(|m| m.len())
                    .unwrap_or(0);
                if e.poisons_partial() || part_len == 0 {
                    let _ = blobs.discard_partial(&entry.sha256);
                }
                return Err(e);
            }
        }
    };
    let blobs2 = blobs.clone();
    let digest = entry.sha256;
    let length = entry.length;
    let committed = tokio::task::spawn_blocking(move || {
        blobs2.commit_measured(&digest, length, written.len, written.digest)
    })
    .await
    .map_err(|e| {
        DownloadError::Storage(BlobError::Io {
            path: blobs.root().to_path_buf(),
            op: "verify",
            source: io::Error::other(e.to_string()),
        })
    })?;
    committed.map_err(|e| DownloadError::from_blob(e, blobs.root(), length))
}

async fn attempt_once(
    net: &Net,
    url: &Url,
    entry: &PackageEntry,
    blobs: &BlobStore,
    cfg: &DownloadConfig,
    report: &(dyn Fn(DownloadProgress) + Send + Sync),
) -> Result<Written, DownloadError> {
    let part = blobs.partial_path(&entry.sha256);
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if have > entry.length {
        let _ = blobs.discard_partial(&entry.sha256);
        have = 0;
    }
    let needed = entry.length - have + cfg.reserve_bytes;
    if let Some(available) = free_bytes(blobs.root()) {
        if available < needed {
            return Err(DownloadError::DiskFull {
                path: blobs.root().display().to_string(),
                needed,
                available,
            });
        }
    }
    if have == entry.length {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(tx);
        let w = spawn_writer(blobs.clone(), entry.sha256, have, rx)
            .await
            .map_err(|e| storage(blobs, e.to_string()))?;
        return w.map_err(|e| DownloadError::from_blob(io_blob(blobs, e), blobs.root(), needed));
    }
    let headers: Vec<(&str, String)> = if have > 0 {
        tracing::info!(
            "resuming {} at byte {have} of {}",
            entry.key(),
            entry.length
        );
        vec![("range", format!("bytes={have}-"))]
    } else {
        Vec::new()
    };
    let resp = net
        .request(
            Method::GET,
            url,
            &headers,
            Bytes::new(),
            cfg.stall_timeout.max(Duration::from_secs(1)),
        )
        .await?;
    let status = resp.status().as_u16();
    let start = match status {
        200 => 0,
        206 => {
            let cr = resp
                .headers()
                .get(hyper::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let start = cr
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if start != Some(have) {
                return Err(DownloadError::Net(NetError::Http {
                    url: url.to_string(),
                    reason: format!("asked for bytes from {have}, got range {cr:?}"),
                }));
            }
            have
        }
        416 => {
            return Err(DownloadError::Truncated {
                got: have,
                expected: entry.length,
            })
        }
        s => {
            return Err(DownloadError::Status {
                url: url.to_string(),
                status: s,
            })
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    let writer = spawn_writer(blobs.clone(), entry.sha256, start, rx);
    let mut progress = Progress {
        key: entry.key(),
        total: entry.length,
        bytes: start,
        started_at: start,
        started: Instant::now(),
        last_log: Instant::now() - Duration::from_secs(10),
        last_report: Instant::now() - Duration::from_secs(10),
        report,
    };
    let mut body = resp.into_body();
    let mut got = start;
    let mut rate = RateFloor::new(cfg.min_rate_bps, cfg.min_rate_window);
    let outcome: Result<(), DownloadError> = loop {
        if let Err(bytes) = rate.check(got, Instant::now()) {
            break Err(DownloadError::TooSlow {
                url: url.to_string(),
                bytes,
                secs: cfg.min_rate_window.as_secs(),
                min_bps: cfg.min_rate_bps,
            });
        }
        let frame = match tokio::time::timeout(cfg.stall_timeout, body.frame()).await {
            Err(_) => {
                break Err(DownloadError::Stalled {
                    url: url.to_string(),
                    secs: cfg.stall_timeout.as_secs(),
                })
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                break Err(DownloadError::Net(NetError::Http {
                    url: url.to_string(),
                    reason: format!("connection lost after {got} of {} bytes: {e}", entry.length),
                }))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        got += data.len() as u64;
        if got > entry.length {
            break Err(DownloadError::TooLong {
                expected: entry.length,
            });
        }
        let n = data.len() as u64;
        if tx.send(data).await.is_err() {
            // The writer stopped: its error is reported below.
            break Ok(());
        }
        progress.advance(n);
    };
    drop(tx);
    let written = writer.await.map_err(|e| storage(blobs, e.to_string()))?;
    let written =
        written.map_err(|e| DownloadError::from_blob(io_blob(blobs, e), blobs.root(), needed))?;
    outcome?;
    if written.len < entry.length {
        return Err(DownloadError::Truncated {
            got: written.len,
            expected: entry.length,
        });
    }
    let snap = progress.snapshot();
    report(snap.clone());
    log_progress(&snap);
    Ok(written)
}

fn io_blob(blobs: &BlobStore, e: io::Error) -> BlobError {
    BlobError::Io {
        path: blobs.root().join("tmp"),
        op: "write partial download",
        source: e,
    }
}

fn storage(blobs: &BlobStore, msg: String) -> DownloadError {
    DownloadError::Storage(io_blob(blobs, io::Error::other(msg)))
}

/// The minimum transfer rate, judged over whole windows: a transfer that
/// receives fewer than `min_bps` × window bytes in a window is ended (and
/// resumed with Range on the next attempt). Judging whole windows lets a
/// momentary dip pass while a trickle cannot hold a transfer open.
#[derive(Debug)]
pub(crate) struct RateFloor {
    min_bps: u64,
    window: Duration,
    window_start: Option<(Instant, u64)>,
}

impl RateFloor {
    /// `min_bps` 0 turns the check off.
    pub(crate) fn new(min_bps: u64, window: Duration) -> RateFloor {
        RateFloor {
            min_bps,
            window: window.max(Duration::from_secs(1)),
            window_start: None,
        }
    }

    /// `got` is the byte count so far; an error carries the bytes of the
    /// window that fell short.
    pub(crate) fn check(&mut self, got: u64, now: Instant) -> Result<(), u64> {
        if self.min_bps == 0 {
            return Ok(());
        }
        let Some((since, at)) = self.window_start else {
            self.window_start = Some((now, got));
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < self.window {
            return Ok(());
        }
        let bytes = got.saturating_sub(at);
        let needed = (self.min_bps as f64 * elapsed.as_secs_f64()) as u64;
        if bytes < needed {
            return Err(bytes);
        }
        self.window_start = Some((now, got));
        Ok(())
    }
}

#[cfg(test)]
mod rate_floor_tests {
    use super::RateFloor;
    use std::time::{Duration, Instant};

    #[test]
    fn a_trickle_is_ended_after_one_window_and_a_steady_transfer_is_not() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut trickle = RateFloor::new(1024, Duration::from_secs(60));
        let mut ended = None;
        // One byte every 25 s: never a stall, but far below 1 KiB/s.
        for i in 0..10u64 {
            let got = i;
            if let Err(bytes) = trickle.check(got, s(i * 25)) {
                ended = Some((i * 25, bytes));
                break;
            }
        }
        assert_eq!(ended, Some((75, 3)));

        let mut steady = RateFloor::new(1024, Duration::from_secs(60));
        for i in 0..100u64 {
            assert_eq!(steady.check(i * 2048, s(i)), Ok(()));
        }
        let mut off = RateFloor::new(0, Duration::from_secs(60));
        assert_eq!(off.check(0, s(0)), Ok(()));
        assert_eq!(off.check(0, s(1000)), Ok(()));
    }
}

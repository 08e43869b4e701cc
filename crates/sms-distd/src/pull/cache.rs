//! The artifact cache: what is on offer, deltas and archives built once
//! (one build per artifact however many ask, bounded in number and per
//! client), kept by digest in a blob store, evicted when no longer on
//! offer, and held in memory within a byte budget.

use super::*;
use sms_core::blob::BlobError;

impl PullServer {
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

    pub(super) fn payload(&self, s: Stream, v: &Version) -> Option<(Digest, u64)> {
        let o = sms_core::daemon::read(&self.offer);
        o.streams
            .get(&s)?
            .iter()
            .find(|(x, _, _)| x == v)
            .map(|(_, d, l)| (*d, *l))
    }

    pub(super) fn newest(&self, s: Stream) -> Option<Version> {
        let o = sms_core::daemon::read(&self.offer);
        o.streams.get(&s)?.last().map(|(v, _, _)| v.clone())
    }

    pub(super) fn evict_unkept(&self) {
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

    pub(super) fn drop_artifact(&self, key: &str, art: &Artifact) {
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
                if let Err(e) = self.artifacts.remove(sha256) {
                    tracing::warn!("pull cache: removing {sha256}: {e}");
                }
            }
        }
        lock(&self.archive_used).remove(key);
    }

    /// Index entries under `prefix`, key and record read in one scan.
    pub(super) fn artifacts(&self, prefix: &str) -> Vec<(String, Artifact)> {
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

    pub(super) fn artifact(&self, key: &str) -> Option<Artifact> {
        self.store.get_json(PULL, key).ok().flatten()
    }

    pub(super) fn bytes_of(&self, sha256: &Digest) -> Option<Bytes> {
        if let Some(b) = lock(&self.loaded).get(sha256) {
            return Some(b.clone());
        }
        let data = match self.artifacts.read_verified(sha256) {
            Ok(d) => d,
            Err(BlobError::DigestMismatch { .. }) => {
                tracing::error!("pull cache: {sha256} is corrupt; it will be rebuilt");
                return None;
            }
            Err(_) => return None,
        };
        let b = Bytes::from(data);
        self.remember(*sha256, b.clone());
        Some(b)
    }

    /// Keeps an artifact's bytes in memory, within `memory_cache_bytes`:
    /// others are let go first (they are re-read from the cache directory
    /// when asked for again).
    pub(super) fn remember(&self, sha256: Digest, data: Bytes) {
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

    pub(super) fn read_payload(&self, s: Stream, v: &Version) -> Result<Vec<u8>, BuildError> {
        let (d, len) = self
            .payload(s, v)
            .ok_or_else(|| BuildError::NotOffered(format!("{s} {v}")))?;
        let data = self.blobs.read_verified(&d).map_err(|e| match e {
            BlobError::DigestMismatch { .. } => BuildError::Damaged(format!("{s} {v}")),
            other => BuildError::Read(other.to_string()),
        })?;
        if data.len() as u64 != len {
            return Err(BuildError::Damaged(format!("{s} {v}")));
        }
        Ok(data)
    }

    pub(super) fn store_artifact(
        &self,
        key: &str,
        data: &[u8],
        level: i32,
    ) -> Result<Artifact, BuildError> {
        let sha256 = self
            .artifacts
            .put_bytes(data)
            .map_err(|e| BuildError::Store(format!("{key}: {e}")))?;
        let art = Artifact::File {
            sha256,
            length: data.len() as u64,
            level,
            built: crate::job::now(),
        };
        let mut b = Batch::new();
        b.put_json(PULL, key, &art);
        self.store
            .apply(&b)
            .map_err(|e| BuildError::Store(e.to_string()))?;
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
    pub(super) fn start_build<F>(
        self: &Arc<Self>,
        key: String,
        client: Option<std::net::IpAddr>,
        work: F,
    ) -> Option<watch::Receiver<BuildResult>>
    where
        F: FnOnce(&PullServer) -> Result<Artifact, BuildError> + Send + 'static,
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
            let r = built.unwrap_or_else(|e| Err(BuildError::Task(e.to_string())));
            lock(&me.builds).remove(&key);
            drop(place);
            let _ = tx.send(Some(r));
        });
        Some(rx)
    }

    pub(super) fn build_logged<F>(&self, key: &str, work: F) -> Result<Artifact, BuildError>
    where
        F: FnOnce(&PullServer) -> Result<Artifact, BuildError>,
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

    pub(super) fn start_archive(
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
            let data =
                delta::archive(&payload, level).map_err(|e| BuildError::Compress(e.to_string()))?;
            let art = me.store_artifact(&key, &data, level)?;
            me.limit_archives(s, &key);
            Ok(art)
        })
    }

    pub(super) fn limit_archives(&self, s: Stream, keep: &str) {
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

    pub(super) fn start_delta(
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
            let data =
                delta::make(&old, &new, level).map_err(|e| BuildError::Compress(e.to_string()))?;
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
                me.store
                    .apply(&b)
                    .map_err(|e| BuildError::Store(e.to_string()))?;
                return Ok(art);
            }
            me.store_artifact(&key, &data, level)
        })
    }

    /// Waits for a build when it may finish within the inline budget.
    pub(super) async fn wait_build(
        mut rx: watch::Receiver<BuildResult>,
        budget: Duration,
    ) -> Option<Result<Artifact, BuildError>> {
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

    pub(super) fn inline_budget(&self, sizes: &[u64]) -> Duration {
        if sizes.iter().all(|s| *s <= self.cfg.inline_delta_max_bytes) {
            Duration::from_millis(2000)
        } else {
            Duration::ZERO
        }
    }
}

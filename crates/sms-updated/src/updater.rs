//! The update logic: catalog checks, downloads, activation, confirmation,
//! retention, and the automatic DV schedule.
//!
//! State lives in the daemon's own store (trees below), written through
//! `sms_core::store` so that every change is in the outbox for HA:
//! - `seen`: newest accepted catalog per channel (rollback protection);
//! - `catalog`: last verified catalog per channel (what can be downloaded);
//! - `packages`: downloaded and verified files, by package key;
//! - `active`: active version per channel;
//! - `confirm`: downloads still to be confirmed to the update centre.
//!
//! A package record is written only after its file is verified and in the
//! blob store, and the active pointer only names a version whose files were
//! re-verified just before; a crash at any point leaves either the old or
//! the new state, never a mix.

use crate::config::UpdaterConfig;
use crate::download;
use crate::net::Net;
use crate::tmc::{TmcClient, TmcError};
use serde::{Deserialize, Serialize};
use sms_core::blob::{BlobStore, Digest};
use sms_core::bus::{AvailableVersion, DownloadProgress, InstalledPackage, UpdaterStatus};
use sms_core::metadata::{self, Catalog, SeenCatalog, TrustRoot};
use sms_core::package::{Channel, Family, PackageEntry, Version};
use sms_core::store::{Batch, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

const SEEN: &str = "seen";
const CATALOG: &str = "catalog";
const PACKAGES: &str = "packages";
const ACTIVE: &str = "active";
const CONFIRM: &str = "confirm";

pub use crate::error::UpdateError;

/// Something other parts of the appliance may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A version became active.
    Activated {
        /// Which feed it comes from (`dv` or `tos`).
        channel: Channel,
        /// The package version it concerns.
        version: Version,
        /// Digest of its file (the first family's for TOS).
        sha256: Digest,
    },
    /// A requested download ended.
    DownloadFinished {
        /// Which feed it comes from (`dv` or `tos`).
        channel: Channel,
        /// The package version it concerns.
        version: Version,
        /// Whether it succeeded.
        ok: bool,
        /// Result in words.
        message: String,
    },
}

/// A downloaded, verified package as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackageRecord {
    entry: PackageEntry,
    downloaded: i64,
    /// Blob holding the signed catalog envelope that vouched for the file,
    /// so that the distributor can hand devices the vendor's own signature.
    #[serde(default)]
    envelope: Option<Digest>,
}

/// Key in the catalog tree under which the blob digest of a channel's
/// newest verified envelope is kept.
fn envelope_key(channel: Channel) -> String {
    format!("{channel}.envelope")
}

/// The update daemon's state and operations.
pub struct Updater {
    cfg: UpdaterConfig,
    tmc: TmcClient,
    store: Store,
    blobs: BlobStore,
    trust: TrustRoot,
    status: Mutex<UpdaterStatus>,
    events: broadcast::Sender<Event>,
    op: tokio::sync::Mutex<()>,
    wake: Notify,
}

use sms_core::daemon::lock;

/// The format of this daemon's store: raised with a migration when its
/// data layout changes, so an older firmware refuses a newer store
/// instead of misreading it.
pub const STORE_SCHEMA: sms_core::store::Schema = sms_core::store::Schema {
    owner: "sms-updated",
    version: 1,
    migrations: &[],
};
pub use sms_core::daemon::unix_now as now_unix;

impl Updater {
    /// The daemon's store, served on the bus for backups
    /// (`sms_core::bus::StoreIface`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens stores, loads the trust root and TLS anchors, and repairs what
    /// a crash may have left behind.
    pub fn open(cfg: UpdaterConfig) -> Result<Arc<Updater>, UpdateError> {
        let trust = TrustRoot::load(&cfg.tmc.trust_root)
            .map_err(|e| UpdateError::Setup(format!("tmc.trust_root: {e}")))?;
        let tls = sms_core::tls::client_config(&cfg.tmc.ca_file)
            .map_err(|e| UpdateError::Setup(format!("tmc.ca_file: {e}")))?;
        let net = Net::new(&cfg.dns, &cfg.proxy, tls, cfg.tmc.request_timeout)
            .map_err(|e| UpdateError::Setup(e.to_string()))?;
        let tmc = TmcClient::new(
            net,
            &cfg.tmc.host,
            cfg.tmc.port,
            cfg.tmc.request_timeout,
            &cfg.tmc.appliance_id,
        )?;
        let store = Store::open_with_schema(&cfg.paths.state_dir, &STORE_SCHEMA)?;
        let blobs = BlobStore::open(&cfg.paths.blob_dir)?;
        let (events, _) = broadcast::channel(64);
        let up = Arc::new(Updater {
            cfg,
            tmc,
            store,
            blobs,
            trust,
            status: Mutex::new(UpdaterStatus {
                state: "idle".into(),
                ..Default::default()
            }),
            events,
            op: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        });
        up.recover()?;
        up.refresh_status_from_store()?;
        Ok(up)
    }

    /// Subscribes to events (activations, finished downloads).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The configuration in force.
    pub fn config(&self) -> &UpdaterConfig {
        &self.cfg
    }

    /// A snapshot of the status.
    pub fn status(&self) -> UpdaterStatus {
        lock(&self.status).clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut UpdaterStatus)) {
        f(&mut lock(&self.status));
    }

    /// Asks the scheduler to run a DV check now.
    pub fn check_now(&self) {
        self.wake.notify_one();
    }

    fn records(&self, prefix: &str) -> Result<Vec<PackageRecord>, UpdateError> {
        Ok(self.store.scan_json::<PackageRecord>(PACKAGES, prefix)?)
    }

    /// Active version of `channel`.
    pub fn active(&self, channel: Channel) -> Result<Option<Version>, UpdateError> {
        Ok(self
            .store
            .get(ACTIVE, channel.as_str())?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok()))
    }

    fn refresh_status_from_store(&self) -> Result<(), UpdateError> {
        let dv = self.active(Channel::Dv)?.map(|v| v.to_string());
        let tos = self.active(Channel::Tos)?.map(|v| v.to_string());
        let pending = self.store.scan(CONFIRM, [])?.len();
        self.set_status(|s| {
            s.active_dv = dv;
            s.active_tos = tos;
            s.pending_confirmations = pending;
        });
        Ok(())
    }

    /// Brings store and blob store into agreement after a crash: package
    /// records whose file is missing are dropped (never the active one's,
    /// which is reported), blobs and partial files that nothing refers to
    /// are removed.
    fn recover(&self) -> Result<(), UpdateError> {
        let records = self.records("")?;
        let mut referenced: BTreeSet<Digest> = BTreeSet::new();
        let mut batch = Batch::new();
        for r in &records {
            if self.blobs.contains(&r.entry.sha256) {
                referenced.insert(r.entry.sha256);
                // The envelope that vouched for the file is what devices and
                // the pull server's catalog.json get: it lives as long as
                // the package does.
                referenced.extend(r.envelope);
            } else {
                tracing::error!(
                    "stored package {} has no file in the blob store; forgetting it",
                    r.entry.key()
                );
                batch.delete(PACKAGES, r.entry.key());
            }
        }
        self.store.apply(&batch)?;
        let mut wanted: BTreeSet<Digest> = BTreeSet::new();
        for ch in Channel::ALL {
            if let Some(cat) = self.store.get_json::<Catalog>(CATALOG, ch.as_str())? {
                wanted.extend(cat.packages.iter().map(|p| p.sha256));
            }
            referenced.extend(self.store.get_json::<Digest>(CATALOG, envelope_key(ch))?);
        }
        for d in self.blobs.list()? {
            if !referenced.contains(&d) && !wanted.contains(&d) {
                tracing::info!("removing unreferenced blob {d}");
                self.blobs.remove(&d)?;
            }
        }
        self.clean_stale_partials()?;
        Ok(())
    }

    /// Removes partial downloads that will never be resumed: the automatic
    /// DV cycle only fetches the newest DV, so a partial of an older one
    /// (left by a restart while it was downloading) would otherwise stay
    /// on the data partition forever. Partial TOS images in the catalog
    /// are kept: the admin may ask for them again.
    fn clean_stale_partials(&self) -> Result<(), UpdateError> {
        let mut keep: Vec<Digest> = Vec::new();
        for ch in Channel::ALL {
            let Some(cat) = self.store.get_json::<Catalog>(CATALOG, ch.as_str())? else {
                continue;
            };
            if ch == Channel::Dv {
                keep.extend(
                    cat.packages
                        .iter()
                        .max_by(|a, b| a.version.cmp(&b.version))
                        .map(|p| p.sha256),
                );
            } else {
                keep.extend(cat.packages.iter().map(|p| p.sha256));
            }
        }
        let removed = self.blobs.clean_partials(&keep)?;
        if removed > 0 {
            tracing::info!("removed {removed} stale partial download(s)");
        }
        Ok(())
    }

    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, TmcError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TmcError>>,
    {
        let attempts = self.cfg.download.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < attempts => {
                    let delay = download::backoff(&self.cfg.download, attempt);
                    tracing::warn!(
                        "{what} failed (attempt {attempt}/{attempts}): {e}; retrying in {:.1} s",
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fetches, verifies and stores the catalog of `channel`.
    async fn fetch_catalog(&self, channel: Channel) -> Result<Catalog, UpdateError> {
        let bytes = self
            .retry(&format!("fetching the {channel} catalog"), || {
                self.tmc.catalog(channel)
            })
            .await?;
        let seen = self.store.get_json::<SeenCatalog>(SEEN, channel.as_str())?;
        let verified = metadata::verify_catalog(&bytes, &self.trust, channel, now_unix(), seen)
            .map_err(|source| UpdateError::Metadata { channel, source })?;
        let envelope = self.blobs.put_bytes(&bytes)?;
        let mut b = Batch::new();
        b.put_json(SEEN, channel.as_str(), &verified.seen)
            .put_json(CATALOG, channel.as_str(), &verified.catalog)
            .put_json(CATALOG, envelope_key(channel), &envelope);
        self.store.apply(&b)?;
        // A signed catalog proves its issue time has passed: the NTP relay
        // never sets the clock before it.
        let floor = self
            .cfg
            .paths
            .state_dir
            .join(sms_core::time_floor::FILE_NAME);
        if let Err(e) = sms_core::time_floor::raise(&floor, verified.catalog.issued) {
            tracing::warn!("cannot record the time floor in {}: {e}", floor.display());
        }
        tracing::info!(
            "{channel} catalog version {} verified: {} package file(s), expires {}",
            verified.catalog.version,
            verified.catalog.packages.len(),
            metadata::rfc3339(verified.catalog.expires)
        );
        Ok(verified.catalog)
    }

    /// Downloads one catalog entry (if not already stored), records it and
    /// queues its confirmation. Returns whether anything was downloaded.
    async fn fetch_entry(&self, entry: &PackageEntry) -> Result<bool, UpdateError> {
        let key = entry.key();
        if self.store.get(PACKAGES, &key)?.is_some() && self.blobs.contains(&entry.sha256) {
            return Ok(false);
        }
        let url = self
            .retry(&format!("asking where to download {key}"), || {
                self.tmc.download_url(entry)
            })
            .await?;
        tracing::info!("downloading {key} ({} bytes) from {url}", entry.length);
        self.set_status(|s| {
            s.state = "downloading".into();
            s.downloads.push(DownloadProgress {
                key: key.clone(),
                total: entry.length,
                ..Default::default()
            });
        });
        let report = |p: DownloadProgress| {
            self.set_status(|s| {
                if let Some(slot) = s.downloads.iter_mut().find(|d| d.key == p.key) {
                    *slot = p;
                }
            })
        };
        let result = download::fetch_verified(
            self.tmc.net(),
            &url,
            entry,
            &self.blobs,
            &self.cfg.download,
            &report,
        )
        .await;
        self.set_status(|s| s.downloads.retain(|d| d.key != key));
        result.map_err(|source| UpdateError::Download {
            key: key.clone(),
            source,
        })?;
        let envelope = self
            .store
            .get_json::<Digest>(CATALOG, envelope_key(entry.channel))?;
        let mut b = Batch::new();
        b.put_json(
            PACKAGES,
            &key,
            &PackageRecord {
                entry: entry.clone(),
                downloaded: now_unix(),
                envelope,
            },
        )
        .put_json(CONFIRM, &key, entry);
        self.store.apply(&b)?;
        tracing::info!("{key} verified (sha256 {}) and stored", entry.sha256);
        Ok(true)
    }

    /// Confirms every pending download to the update centre; failures stay
    /// queued for the next attempt.
    pub async fn confirm_pending(&self) {
        let pending = match self.store.scan_json::<PackageEntry>(CONFIRM, []) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("reading pending confirmations: {e}");
                return;
            }
        };
        for entry in pending {
            match self.tmc.confirm(&entry).await {
                Ok(()) => {
                    let mut b = Batch::new();
                    b.delete(CONFIRM, entry.key());
                    if let Err(e) = self.store.apply(&b) {
                        tracing::error!("recording confirmation of {}: {e}", entry.key());
                    } else {
                        tracing::info!("confirmed {} to the update centre", entry.key());
                    }
                }
                Err(e) => tracing::warn!("confirmation of {} failed, will retry: {e}", entry.key()),
            }
        }
        let _ = self.refresh_status_from_store();
    }

    /// One automatic DV cycle: newest version wins.
    pub async fn check_dv(&self) -> Result<String, UpdateError> {
        let _op = self.op.lock().await;
        self.set_status(|s| {
            s.state = "checking".into();
            s.last_check = Some(now_unix());
        });
        let result = self.check_dv_locked().await;
        self.finish(&result);
        result
    }

    async fn check_dv_locked(&self) -> Result<String, UpdateError> {
        self.confirm_pending().await;
        let catalog = self.fetch_catalog(Channel::Dv).await?;
        let Some(newest) = catalog
            .packages
            .iter()
            .max_by(|a, b| a.version.cmp(&b.version))
        else {
            return Ok("the update centre offers no DV".into());
        };
        let active = self.active(Channel::Dv)?;
        if active.as_ref().is_some_and(|a| *a >= newest.version) {
            return Ok(format!("DV {} is current", newest.version));
        }
        self.fetch_entry(newest).await?;
        if let Err(e) = self.clean_stale_partials() {
            tracing::warn!("could not remove stale partial downloads: {e}");
        }
        self.confirm_pending().await;
        let msg = if self.cfg.dv.auto_activate {
            self.activate_locked(Channel::Dv, &newest.version).await?;
            format!("DV {} downloaded and activated", newest.version)
        } else {
            format!("DV {} downloaded; activation is manual", newest.version)
        };
        self.apply_retention(Channel::Dv)?;
        Ok(msg)
    }

    fn finish<T: std::fmt::Display, E: std::fmt::Display>(&self, result: &Result<T, E>) {
        let (text, err) = match result {
            Ok(m) => (m.to_string(), false),
            Err(e) => (e.to_string(), true),
        };
        if err {
            tracing::error!("{text}");
        } else {
            tracing::info!("{text}");
        }
        self.set_status(|s| {
            s.state = "idle".into();
            s.last_result = Some(text);
            s.last_error = err;
            s.completed_operations += 1;
        });
        let _ = self.refresh_status_from_store();
    }

    /// Refreshes the list of versions of `channel` from the update centre.
    pub async fn refresh(&self, channel: Channel) -> Result<Vec<AvailableVersion>, UpdateError> {
        let _op = self.op.lock().await;
        self.set_status(|s| s.state = format!("refreshing {channel}"));
        let result = self.fetch_catalog(channel).await;
        let summary = result
            .as_ref()
            .map(|c| format!("{channel} list refreshed: {} version(s)", versions(c).len()));
        self.finish(&summary);
        result?;
        self.available(channel)
    }

    /// Versions in the last verified catalog of `channel`.
    pub fn available(&self, channel: Channel) -> Result<Vec<AvailableVersion>, UpdateError> {
        let Some(cat) = self.store.get_json::<Catalog>(CATALOG, channel.as_str())? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (version, entries) in versions(&cat).into_iter().rev() {
            let mut downloaded = true;
            for e in &entries {
                downloaded &= self.store.get(PACKAGES, e.key())?.is_some();
            }
            out.push(AvailableVersion {
                channel: channel.to_string(),
                version: version.to_string(),
                families: entries
                    .iter()
                    .filter_map(|e| e.family.map(|f| f.to_string()))
                    .collect(),
                length: entries.iter().map(|e| e.length).sum(),
                downloaded,
            });
        }
        Ok(out)
    }

    /// Downloads every file of `version` (one for DV, one per platform
    /// family for TOS) and confirms them. Does not activate.
    pub async fn download(
        &self,
        channel: Channel,
        version: &Version,
    ) -> Result<String, UpdateError> {
        let _op = self.op.lock().await;
        let result = self.download_locked(channel, version).await;
        self.finish(&result);
        let _ = self.events.send(Event::DownloadFinished {
            channel,
            version: version.clone(),
            ok: result.is_ok(),
            message: match &result {
                Ok(m) => m.clone(),
                Err(e) => e.to_string(),
            },
        });
        result
    }

    async fn download_locked(
        &self,
        channel: Channel,
        version: &Version,
    ) -> Result<String, UpdateError> {
        let mut catalog = self.store.get_json::<Catalog>(CATALOG, channel.as_str())?;
        if !catalog
            .as_ref()
            .is_some_and(|c| c.packages.iter().any(|p| p.version == *version))
        {
            catalog = Some(self.fetch_catalog(channel).await?);
        }
        let entries: Vec<PackageEntry> = catalog
            .map(|c| {
                c.packages
                    .into_iter()
                    .filter(|p| p.version == *version)
                    .collect()
            })
            .unwrap_or_default();
        if entries.is_empty() {
            return Err(UpdateError::NotInCatalog {
                channel,
                version: version.clone(),
            });
        }
        let mut fetched = 0;
        for e in &entries {
            if self.fetch_entry(e).await? {
                fetched += 1;
            }
        }
        self.confirm_pending().await;
        self.apply_retention(channel)?;
        Ok(match channel {
            Channel::Tos => format!(
                "TOS {version} downloaded for {} platform famil{} ({fetched} new)",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" }
            ),
            Channel::Dv => format!("DV {version} downloaded"),
        })
    }

    /// Makes `version` the active one of `channel`, after re-verifying its
    /// stored files.
    pub async fn activate(
        &self,
        channel: Channel,
        version: &Version,
    ) -> Result<String, UpdateError> {
        let _op = self.op.lock().await;
        let result = self
            .activate_locked(channel, version)
            .await
            .map(|_| format!("{channel} {version} activated"));
        self.finish(&result);
        result
    }

    async fn activate_locked(
        &self,
        channel: Channel,
        version: &Version,
    ) -> Result<(), UpdateError> {
        self.set_status(|s| s.state = "activating".into());
        let prefix = format!("{channel}/{version}");
        let records: Vec<PackageRecord> = self
            .records(&prefix)?
            .into_iter()
            .filter(|r| r.entry.version == *version)
            .collect();
        if records.is_empty() {
            return Err(UpdateError::NotDownloaded {
                channel,
                version: version.clone(),
            });
        }
        if channel == Channel::Tos {
            // The families the verified catalog lists for this version;
            // every family when the catalog no longer lists it.
            let mut expected: Vec<Family> = self
                .store
                .get_json::<Catalog>(CATALOG, channel.as_str())?
                .map(|c| {
                    c.packages
                        .iter()
                        .filter(|p| p.version == *version)
                        .filter_map(|p| p.family)
                        .collect()
                })
                .unwrap_or_default();
            if expected.is_empty() {
                expected = Family::ALL.to_vec();
            }
            let missing: Vec<&str> = expected
                .iter()
                .filter(|f| !records.iter().any(|r| r.entry.family == Some(**f)))
                .map(|f| f.id())
                .collect();
            if !missing.is_empty() {
                return Err(UpdateError::Incomplete {
                    channel,
                    version: version.clone(),
                    missing: missing.join(", "),
                });
            }
        }
        for r in &records {
            let blobs = self.blobs.clone();
            let digest = r.entry.sha256;
            let checked = tokio::task::spawn_blocking(move || blobs.verify(&digest))
                .await
                .map_err(|e| UpdateError::Setup(format!("verification task: {e}")))?;
            if let Err(source) = checked {
                return Err(UpdateError::Corrupt {
                    key: r.entry.key(),
                    source,
                });
            }
        }
        let mut b = Batch::new();
        b.put(ACTIVE, channel.as_str(), version.to_string().into_bytes());
        self.store.apply(&b)?;
        tracing::info!("{channel} {version} is now active");
        let _ = self.events.send(Event::Activated {
            channel,
            version: version.clone(),
            sha256: records[0].entry.sha256,
        });
        self.refresh_status_from_store()?;
        Ok(())
    }

    /// Keeps the newest `retention.keep_versions` versions of `channel` and
    /// the active one; removes the rest (records first, then files).
    fn apply_retention(&self, channel: Channel) -> Result<(), UpdateError> {
        let keep = self.cfg.retention.keep_versions.max(1);
        let active = self.active(channel)?;
        let mut by_version: BTreeMap<Version, Vec<PackageRecord>> = BTreeMap::new();
        for r in self.records(&format!("{channel}/"))? {
            by_version
                .entry(r.entry.version.clone())
                .or_default()
                .push(r);
        }
        let doomed: Vec<PackageRecord> = by_version
            .into_iter()
            .rev()
            .skip(keep)
            .filter(|(v, _)| Some(v) != active.as_ref())
            .flat_map(|(_, rs)| rs)
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let mut b = Batch::new();
        for r in &doomed {
            b.delete(PACKAGES, r.entry.key());
        }
        self.store.apply(&b)?;
        let mut still: BTreeSet<Digest> = BTreeSet::new();
        for r in self.records("")? {
            still.insert(r.entry.sha256);
            still.extend(r.envelope);
        }
        for c in [Channel::Dv, Channel::Tos] {
            still.extend(self.store.get_json::<Digest>(CATALOG, envelope_key(c))?);
        }
        for r in &doomed {
            if !still.contains(&r.entry.sha256) {
                self.blobs.remove(&r.entry.sha256)?;
            }
            if let Some(env) = r.envelope.filter(|e| !still.contains(e)) {
                self.blobs.remove(&env)?;
            }
            tracing::info!("retention: removed {}", r.entry.key());
        }
        Ok(())
    }

    /// Packages of `channel` on the appliance.
    pub fn list(&self, channel: Channel) -> Result<Vec<InstalledPackage>, UpdateError> {
        let active = self.active(channel)?;
        let mut out: Vec<InstalledPackage> = self
            .records(&format!("{channel}/"))?
            .into_iter()
            .map(|r| InstalledPackage {
                key: r.entry.key(),
                channel: channel.to_string(),
                version: r.entry.version.to_string(),
                family: r.entry.family.map(|f| f.to_string()),
                length: r.entry.length,
                sha256: r.entry.sha256.to_hex(),
                downloaded: r.downloaded,
                active: Some(&r.entry.version) == active.as_ref(),
                envelope_sha256: r.envelope.map(|d| d.to_hex()),
            })
            .collect();
        out.sort_by(|a, b| {
            let va: Option<Version> = a.version.parse().ok();
            let vb: Option<Version> = b.version.parse().ok();
            vb.cmp(&va).then(a.key.cmp(&b.key))
        });
        Ok(out)
    }

    /// Path of the stored file of a package (for other daemons and tests).
    pub fn blob_path(&self, digest: &Digest) -> std::path::PathBuf {
        self.blobs.path(digest)
    }

    /// Runs the automatic DV schedule forever.
    pub async fn run_scheduler(self: Arc<Self>) {
        let interval = self.cfg.dv.check_interval.max(Duration::from_secs(1));
        let mut delay = self.cfg.dv.initial_delay;
        let mut failures = 0u32;
        loop {
            let next = now_unix() + delay.as_secs() as i64;
            self.set_status(|s| s.next_check = self.cfg.dv.auto_check.then_some(next));
            tokio::select! {
                _ = tokio::time::sleep(delay), if self.cfg.dv.auto_check => {}
                _ = self.wake.notified() => {}
            }
            match self.check_dv().await {
                Ok(_) => {
                    failures = 0;
                    delay = interval;
                }
                Err(_) => {
                    failures += 1;
                    // Retry sooner after a failure, backing off up to the interval.
                    let retry =
                        Duration::from_secs(30u64.saturating_mul(1 << (failures - 1).min(10)));
                    delay = retry.min(interval);
                }
            }
        }
    }
}

fn versions(c: &Catalog) -> BTreeMap<Version, Vec<PackageEntry>> {
    let mut m: BTreeMap<Version, Vec<PackageEntry>> = BTreeMap::new();
    for p in &c.packages {
        m.entry(p.version.clone()).or_default().push(p.clone());
    }
    m
}

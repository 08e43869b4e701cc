//! Packages to distribute: what the update daemon holds, read over D-Bus,
//! with the bytes from the shared blob store, checked again here against
//! the vendor's signature before anything goes out.

use bytes::Bytes;
use sms_core::blob::{BlobStore, Digest};
use sms_core::bus::{InstalledPackage, Json, Updater1Proxy};
use sms_core::metadata::{self, TrustRoot};
use sms_core::package::{Channel, Family, Version};
use std::path::{Path, PathBuf};

/// Why a package cannot be distributed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The update daemon could not be asked.
    #[error("asking the update daemon: {0}")]
    Bus(String),
    /// It does not hold that version.
    #[error("{0} is not on the appliance (download it first)")]
    Missing(String),
    /// It holds it without the signed catalog.
    #[error("{0} has no signed catalog on record; download it again")]
    NoEnvelope(String),
    /// Reading a stored file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The signature or digest check failed.
    #[error("{key} refused for distribution: {reason}")]
    Refused {
        /// Package key.
        key: String,
        /// What is wrong with it, for the log.
        reason: String,
    },
}

/// A verified package file, ready to send.
#[derive(Debug, Clone)]
pub struct Package {
    /// Key (`dv/<version>` or `tos/<version>/<family>`).
    pub key: String,
    /// Which feed it comes from (`dv` or `tos`).
    pub channel: Channel,
    /// The package version it concerns.
    pub version: Version,
    /// Family (TOS).
    pub family: Option<Family>,
    /// SHA-256.
    pub sha256: Digest,
    /// Where the file lives.
    pub path: PathBuf,
    /// The vendor-signed catalog envelope that lists it.
    pub envelope: Bytes,
}

impl Package {
    /// Reads the whole file and checks it against its digest.
    pub fn read_verified(&self) -> Result<Bytes, SourceError> {
        let bytes = std::fs::read(&self.path).map_err(|source| SourceError::Io {
            path: self.path.clone(),
            source,
        })?;
        if Digest::of(&bytes) != self.sha256 {
            return Err(SourceError::Refused {
                key: self.key.clone(),
                reason: "stored file does not match its digest".into(),
            });
        }
        Ok(Bytes::from(bytes))
    }
}

/// Lists the update daemon's packages of `channel` over D-Bus.
pub async fn installed(
    conn: &zbus::Connection,
    channel: Channel,
) -> Result<Vec<InstalledPackage>, SourceError> {
    let updater = Updater1Proxy::new(conn)
        .await
        .map_err(|e| SourceError::Bus(e.to_string()))?;
    updater
        .list(channel.as_str())
        .await
        .map(Json::into_inner)
        .map_err(|e| SourceError::Bus(format!("List(): {e}")))
}

/// Turns the update daemon's records into verified [`Package`]s: the
/// signed envelope is read from the blob store and must vouch for the file.
pub fn resolve(
    records: &[InstalledPackage],
    blob_dir: &Path,
    trust: &TrustRoot,
) -> Result<Vec<Package>, SourceError> {
    let mut out = Vec::new();
    for r in records {
        let bad = |reason: String| SourceError::Refused {
            key: r.key.clone(),
            reason,
        };
        let sha256: Digest = r.sha256.parse().map_err(|_| bad("bad digest".into()))?;
        let env_digest: Digest = r
            .envelope_sha256
            .as_deref()
            .ok_or_else(|| SourceError::NoEnvelope(r.key.clone()))?
            .parse()
            .map_err(|_| bad("bad envelope digest".into()))?;
        let blobs = BlobStore::at(blob_dir);
        let env_path = blobs.path(&env_digest);
        let envelope = std::fs::read(&env_path).map_err(|source| SourceError::Io {
            path: env_path,
            source,
        })?;
        let entry = metadata::verify_package(&envelope, trust, &r.key, &sha256, r.length)
            .map_err(|e| bad(e.to_string()))?;
        out.push(Package {
            key: r.key.clone(),
            channel: entry.channel,
            version: entry.version,
            family: entry.family,
            sha256,
            path: blobs.path(&sha256),
            envelope: Bytes::from(envelope),
        });
    }
    Ok(out)
}

/// The verified files of one version of `channel` (one per family for TOS).
pub async fn version_files(
    conn: &zbus::Connection,
    channel: Channel,
    version: &Version,
    blob_dir: &Path,
    trust: &TrustRoot,
) -> Result<Vec<Package>, SourceError> {
    let records: Vec<InstalledPackage> = installed(conn, channel)
        .await?
        .into_iter()
        .filter(|p| p.version.parse::<Version>().ok().as_ref() == Some(version))
        .collect();
    if records.is_empty() {
        return Err(SourceError::Missing(format!("{channel} {version}")));
    }
    resolve(&records, blob_dir, trust)
}

//! `org.smsos.Updater1`: the update daemon's interface and the records it
//! answers with.

use super::Json;
use serde::{Deserialize, Serialize};

/// Well-known bus name of the update daemon.
pub const UPDATER_NAME: &str = "org.smsos.Updater1";
/// Object path of the update daemon.
pub const UPDATER_PATH: &str = "/org/smsos/Updater1";
/// Interface of the update daemon.
pub const UPDATER_INTERFACE: &str = "org.smsos.Updater1";

/// Progress of a running download.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DownloadProgress {
    /// Package key (`dv/<version>` or `tos/<version>/<family>`).
    pub key: String,
    /// Bytes present so far (including a resumed prefix).
    pub bytes: u64,
    /// Total length.
    pub total: u64,
    /// Current rate in bytes per second.
    pub rate_bps: u64,
    /// Estimated seconds left, when the rate is known.
    pub eta_secs: Option<u64>,
}

/// The update daemon's status, as returned by `Status()`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdaterStatus {
    /// What the daemon is doing now (`idle`, `checking`, `downloading`, ...).
    pub state: String,
    /// Active DV version.
    pub active_dv: Option<String>,
    /// Active TOS version.
    pub active_tos: Option<String>,
    /// Unix time of the last DV check.
    pub last_check: Option<i64>,
    /// Result of the last operation, in words.
    pub last_result: Option<String>,
    /// Whether the last operation failed.
    pub last_error: bool,
    /// Unix time of the next automatic DV check.
    pub next_check: Option<i64>,
    /// Downloads under way.
    pub downloads: Vec<DownloadProgress>,
    /// Package activations still to be confirmed to the update centre.
    pub pending_confirmations: usize,
    /// Operations (checks, refreshes, downloads, activations) finished since
    /// start, successful or not: lets a caller wait for the one it started.
    pub completed_operations: u64,
}

/// A package the appliance holds, as returned by `List()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// Package key.
    pub key: String,
    /// Channel (`dv`, `tos`).
    pub channel: String,
    /// The package version it concerns.
    pub version: String,
    /// Platform family (TOS).
    pub family: Option<String>,
    /// Length in bytes.
    pub length: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Unix time of the download.
    pub downloaded: i64,
    /// Whether this version is the active one of its channel.
    pub active: bool,
    /// Blob (SHA-256, hex) of the vendor-signed catalog envelope that lists
    /// this file: devices verify the package against it.
    #[serde(default)]
    pub envelope_sha256: Option<String>,
}

/// A version the update centre offers, as returned by `Available()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailableVersion {
    /// Which feed it comes from (`dv` or `tos`).
    pub channel: String,
    /// The package version it concerns.
    pub version: String,
    /// Platform families with a file (TOS).
    pub families: Vec<String>,
    /// Total bytes of its files.
    pub length: u64,
    /// Whether all its files are already on the appliance.
    pub downloaded: bool,
}

pub use proxy::*;

/// The proxy and the signal argument types `zbus` generates for it.
#[allow(missing_docs)]
mod proxy {
    use super::*;

    /// The update daemon's methods, typed (`zbus` generates `Updater1Proxy`).
    #[zbus::proxy(
        interface = "org.smsos.Updater1",
        default_service = "org.smsos.Updater1",
        default_path = "/org/smsos/Updater1"
    )]
    pub trait Updater1 {
        /// The daemon's status.
        fn status(&self) -> zbus::Result<Json<UpdaterStatus>>;
        /// Starts a DV check now; answers a sentence.
        fn check_now(&self) -> zbus::Result<String>;
        /// Refreshes the version list of a channel (`dv`, `tos`).
        fn refresh(&self, channel: &str) -> zbus::Result<Json<Vec<AvailableVersion>>>;
        /// The last verified version list of a channel.
        fn available(&self, channel: &str) -> zbus::Result<Json<Vec<AvailableVersion>>>;
        /// Packages on the appliance for a channel.
        fn list(&self, channel: &str) -> zbus::Result<Json<Vec<InstalledPackage>>>;
        /// Starts downloading a version; answers a sentence.
        fn download(&self, channel: &str, version: &str) -> zbus::Result<String>;
        /// Activates a downloaded version; answers a sentence.
        fn activate(&self, channel: &str, version: &str) -> zbus::Result<String>;
        /// Active DV version (empty when none).
        #[zbus(property)]
        fn active_dv(&self) -> zbus::Result<String>;
        /// Active TOS version (empty when none).
        #[zbus(property)]
        fn active_tos(&self) -> zbus::Result<String>;
        /// A version became active.
        #[zbus(signal)]
        fn package_activated(&self, channel: &str, version: &str, sha256: &str)
            -> zbus::Result<()>;
        /// A download requested over D-Bus ended.
        #[zbus(signal)]
        fn download_finished(
            &self,
            channel: &str,
            version: &str,
            ok: bool,
            message: &str,
        ) -> zbus::Result<()>;
    }
}

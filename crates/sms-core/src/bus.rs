//! Names and payload types of the D-Bus control plane.
//!
//! The daemons expose their operations on the system bus; the admin CLI and
//! the other daemons call them. Structured results travel as JSON strings of
//! the types below, so that the CLI, tests and `busctl` see one schema.

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
    /// Version.
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
    /// Channel.
    pub channel: String,
    /// Version.
    pub version: String,
    /// Platform families with a file (TOS).
    pub families: Vec<String>,
    /// Total bytes of its files.
    pub length: u64,
    /// Whether all its files are already on the appliance.
    pub downloaded: bool,
}

/// Well-known bus name of the NTP relay.
pub const NTP_NAME: &str = "org.smsos.Ntp1";
/// Object path of the NTP relay.
pub const NTP_PATH: &str = "/org/smsos/Ntp1";
/// Interface of the NTP relay.
pub const NTP_INTERFACE: &str = "org.smsos.Ntp1";

/// One upstream NTP source, as returned in [`NtpStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NtpSourceStatus {
    /// Address of the source.
    pub address: String,
    /// Reachability register (last 8 polls, newest in bit 0), as in ntpq.
    pub reach: u8,
    /// Samples in the clock filter.
    pub samples: usize,
    /// Offset of its best sample, seconds.
    pub offset: Option<f64>,
    /// Round-trip delay of its best sample, seconds.
    pub delay: Option<f64>,
    /// Jitter, seconds.
    pub jitter: Option<f64>,
    /// Its stratum.
    pub stratum: Option<u8>,
    /// Current poll interval, log2 seconds.
    pub poll: u8,
    /// `selected`, `candidate`, `falseticker`, `unreachable`, `denied` or `new`.
    pub state: String,
    /// Last problem seen, in words.
    pub last_error: Option<String>,
}

/// The NTP relay's status, as returned by `Status()`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NtpStatus {
    /// Whether the relay serves synchronised time.
    pub synchronised: bool,
    /// Leap indicator served (3: unsynchronised).
    pub leap: u8,
    /// Stratum served.
    pub stratum: u8,
    /// Reference (system peer address, `LOCL` or `INIT`).
    pub reference: String,
    /// Combined offset of the upstream sources from the system clock, seconds.
    pub offset: f64,
    /// Combined jitter, seconds.
    pub jitter: f64,
    /// Root delay served, seconds.
    pub root_delay: f64,
    /// Root dispersion served, seconds.
    pub root_dispersion: f64,
    /// `system` or `offset`.
    pub clock_mode: String,
    /// Addresses the server answers on.
    pub listening: Vec<String>,
    /// Upstream sources.
    pub sources: Vec<NtpSourceStatus>,
    /// Datagrams received.
    pub received: u64,
    /// Answers sent.
    pub served: u64,
    /// Malformed datagrams dropped.
    pub malformed: u64,
    /// Requests from outside the allow list dropped.
    pub denied: u64,
    /// Requests answered with KoD RATE.
    pub rate_limited: u64,
    /// Corrections refused: beyond the panic threshold once synchronised,
    /// or before the newest signed catalog's issue time.
    #[serde(default)]
    pub refused_steps: u64,
    /// Why the last correction was refused.
    #[serde(default)]
    pub last_refusal: Option<String>,
}

/// Well-known name of the SNMP daemon.
pub const SNMP_NAME: &str = "org.smsos.Snmp1";
/// Object path of the SNMP daemon.
pub const SNMP_PATH: &str = "/org/smsos/Snmp1";
/// Interface of the SNMP daemon.
pub const SNMP_INTERFACE: &str = "org.smsos.Snmp1";

/// Well-known bus name of the distribution daemon.
pub const DISTRIBUTOR_NAME: &str = "org.smsos.Distributor1";
/// Object path of the distribution daemon.
pub const DISTRIBUTOR_PATH: &str = "/org/smsos/Distributor1";
/// Interface of the distribution daemon.
pub const DISTRIBUTOR_INTERFACE: &str = "org.smsos.Distributor1";

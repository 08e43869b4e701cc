//! `org.smsos.Ntp1`: the NTP relay's interface and its status record.

use super::Json;
use serde::{Deserialize, Serialize};

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

/// The NTP relay's methods, typed (`zbus` generates `Ntp1Proxy`).
#[zbus::proxy(
    interface = "org.smsos.Ntp1",
    default_service = "org.smsos.Ntp1",
    default_path = "/org/smsos/Ntp1"
)]
pub trait Ntp1 {
    /// Synchronisation state, sources and counters.
    fn status(&self) -> zbus::Result<Json<NtpStatus>>;
    /// Whether the relay serves synchronised time.
    #[zbus(property)]
    fn synchronised(&self) -> zbus::Result<bool>;
    /// Stratum served.
    #[zbus(property)]
    fn stratum(&self) -> zbus::Result<u8>;
}

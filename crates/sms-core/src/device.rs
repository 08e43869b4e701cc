//! The management protocol between the appliance and a managed IPS device,
//! as far as distribution needs it.
//!
//! A device serves HTTPS (mutual TLS): `GET /status` answers a
//! [`DeviceStatus`] in JSON; `PUT /package` takes a package body with the
//! headers below and answers 202 once the body is verified and the install
//! has started. Shared here so that the distributor and the simulated
//! fleet speak exactly the same protocol.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Header naming the package key (`dv/<version>`, `tos/<version>/<family>`).
pub const HEADER_KEY: &str = "x-sms-key";
/// Header with the SHA-256 (hex) of the body.
pub const HEADER_SHA256: &str = "x-sms-sha256";
/// Header with the vendor-signed catalog envelope (base64 of its JSON)
/// that lists the package: the device checks the vendor's signature itself.
pub const HEADER_ENVELOPE: &str = "x-sms-envelope";

/// What a device reports on `GET /status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Device name.
    pub name: String,
    /// Platform family id.
    pub family: String,
    /// Installed DV version.
    pub dv: Option<String>,
    /// Installed TOS version.
    pub tos: Option<String>,
    /// Package key being installed.
    pub installing: Option<String>,
    /// Why the last install failed.
    pub last_error: Option<String>,
    /// Complete, verified uploads received, per package key.
    #[serde(default)]
    pub uploads: BTreeMap<String, u32>,
    /// The device's last time synchronisation, when it has a time server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSync>,
}

/// A device's last exchange with its time server (the appliance's NTP).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSync {
    /// The server it asked.
    pub server: String,
    /// Server clock minus the device's, milliseconds.
    pub offset_ms: f64,
    /// The server's stratum.
    pub stratum: u8,
    /// When (Unix seconds).
    pub at_unix: u64,
    /// Successful exchanges so far.
    pub exchanges: u64,
}

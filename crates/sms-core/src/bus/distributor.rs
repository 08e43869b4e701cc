//! `org.smsos.Distributor1`: the distribution daemon's interface and the
//! records it answers with (devices, jobs, the pull server's counters).

use super::Json;
use crate::package::{Channel, Family, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Well-known bus name of the distribution daemon.
pub const DISTRIBUTOR_NAME: &str = "org.smsos.Distributor1";
/// Object path of the distribution daemon.
pub const DISTRIBUTOR_PATH: &str = "/org/smsos/Distributor1";
/// Interface of the distribution daemon.
pub const DISTRIBUTOR_INTERFACE: &str = "org.smsos.Distributor1";

pub use proxy::*;

/// The proxy and the signal argument types `zbus` generates for it.
#[allow(missing_docs)]
mod proxy {
    use super::*;

    /// The distribution daemon's methods, typed: what the CLI and the other
    /// daemons call (`zbus` generates `Distributor1Proxy`).
    #[zbus::proxy(
        interface = "org.smsos.Distributor1",
        default_service = "org.smsos.Distributor1",
        default_path = "/org/smsos/Distributor1"
    )]
    pub trait Distributor1 {
        /// Every device of the inventory.
        fn devices(&self) -> zbus::Result<Json<Vec<Device>>>;
        /// One device.
        fn device(&self, name: &str) -> zbus::Result<Json<Device>>;
        /// Adds devices (all or none); answers how many.
        fn add_devices(&self, devices: Json<Vec<Device>>) -> zbus::Result<u32>;
        /// Replaces one device's record.
        fn edit_device(&self, device: Json<Device>) -> zbus::Result<()>;
        /// Removes a device.
        fn remove_device(&self, name: &str) -> zbus::Result<()>;
        /// Starts distributing a version of a channel to a target.
        fn distribute(
            &self,
            channel: &str,
            version: &str,
            target: &str,
        ) -> zbus::Result<Json<JobRecord>>;
        /// Every job.
        fn jobs(&self) -> zbus::Result<Json<Vec<JobRecord>>>;
        /// Progress and report of one job.
        fn job(&self, id: u64) -> zbus::Result<Json<JobReport>>;
        /// Cancels a running job.
        fn cancel_job(&self, id: u64) -> zbus::Result<()>;
        /// The pull server's counters (none when it does not run).
        fn pull_status(&self) -> zbus::Result<Json<Option<PullStatus>>>;
        /// A job ended: id, state, one-line summary.
        #[zbus(signal)]
        fn job_finished(&self, id: u64, state: &str, summary: &str) -> zbus::Result<()>;
    }
}

/// A device or group name, or a target, that breaks the naming rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {why}")]
pub struct NameError {
    /// Field name.
    pub field: &'static str,
    /// Value given (shown escaped).
    pub value: String,
    /// Rule broken.
    pub why: &'static str,
}

/// What the appliance last knew of a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceState {
    /// Never contacted.
    #[default]
    Unknown,
    /// Answered at the last contact.
    Ok,
    /// A package is being sent or installed.
    Updating,
    /// Could not be reached at the last attempt.
    Unreachable,
    /// The last distribution to it failed.
    Failed,
}

impl DeviceState {
    /// The state's name, as the JSON record and the MIB show it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Unknown => "unknown",
            DeviceState::Ok => "ok",
            DeviceState::Updating => "updating",
            DeviceState::Unreachable => "unreachable",
            DeviceState::Failed => "failed",
        }
    }
}

/// One managed IPS device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Unique name (letters, digits, `.`, `_`, `-`; 1 to 63 characters).
    pub name: String,
    /// Management address.
    pub address: IpAddr,
    /// HTTPS port of its management endpoint.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Platform family (which TOS images fit it).
    pub family: Family,
    /// Group name, for distributing to a group.
    #[serde(default = "default_group")]
    pub group: String,
    /// SHA-256 (hex) of its certificate, when pinned instead of checked
    /// against the fleet CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<String>,
    /// Installed DV version, as last reported.
    #[serde(default)]
    pub dv: Option<String>,
    /// Installed TOS version, as last reported.
    #[serde(default)]
    pub tos: Option<String>,
    /// Unix time of the last successful contact.
    #[serde(default)]
    pub last_contact: Option<i64>,
    /// State at the last contact.
    #[serde(default)]
    pub state: DeviceState,
    /// Reason of the last failure.
    #[serde(default)]
    pub last_error: Option<String>,
}

fn default_port() -> u16 {
    443
}

fn default_group() -> String {
    "default".into()
}

/// Checks a device or group name: it ends up in logs, the CLI and SNMP.
pub fn check_name(field: &'static str, s: &str) -> Result<(), NameError> {
    let bad = |why| NameError {
        field,
        value: s.escape_default().to_string(),
        why,
    };
    if s.is_empty() || s.len() > 63 {
        return Err(bad("must be 1 to 63 characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("only letters, digits, '.', '_' and '-' are allowed"));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    Ok(())
}

impl Device {
    /// A device not yet contacted, with the fields a person or an import sets.
    pub fn new(name: String, address: IpAddr, port: u16, family: Family, group: String) -> Device {
        Device {
            name,
            address,
            port,
            family,
            group,
            pin_sha256: None,
            dv: None,
            tos: None,
            last_contact: None,
            state: DeviceState::Unknown,
            last_error: None,
        }
    }

    /// Validates every field a person or an import can set.
    pub fn validate(&self) -> Result<(), NameError> {
        check_name("device name", &self.name)?;
        check_name("group", &self.group)?;
        if self.port == 0 {
            return Err(NameError {
                field: "port",
                value: "0".into(),
                why: "must be 1 to 65535",
            });
        }
        if let Some(pin) = &self.pin_sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(NameError {
                    field: "pin_sha256",
                    value: pin.escape_default().to_string(),
                    why: "must be 64 hex digits",
                });
            }
        }
        Ok(())
    }
}

/// Which devices a distribution is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum Target {
    /// Every device.
    All,
    /// The devices of a group.
    Group(String),
    /// One device.
    Device(String),
}

impl std::str::FromStr for Target {
    type Err = NameError;

    /// `all`, `group:NAME` or `device:NAME`.
    fn from_str(s: &str) -> Result<Target, NameError> {
        match s.split_once(':') {
            None if s == "all" => Ok(Target::All),
            Some(("group", g)) => check_name("group", g).map(|_| Target::Group(g.into())),
            Some(("device", d)) => check_name("device name", d).map(|_| Target::Device(d.into())),
            _ => Err(NameError {
                field: "target",
                value: s.escape_default().to_string(),
                why: "use all, group:NAME or device:NAME",
            }),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Group(g) => write!(f, "group:{g}"),
            Target::Device(d) => write!(f, "device:{d}"),
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Devices are being served (or will be after a restart).
    Running,
    /// Every device reached an end state.
    Completed,
    /// A wave crossed the failure threshold; later waves were not started.
    Stopped,
    /// Cancelled by a person.
    Cancelled,
}

/// Where one device of a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// Not started.
    Queued,
    /// The package is being sent.
    Transferring,
    /// The device accepted it and is installing.
    Installing,
    /// The device reports the target version.
    Done,
    /// The device already had the target version.
    Skipped,
    /// It failed; the reason says why.
    Failed,
}

impl TaskState {
    /// Whether the device is finished with.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Skipped | TaskState::Failed
        )
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: u64,
    /// Which feed it comes from (`dv` or `tos`).
    pub channel: Channel,
    /// Version distributed.
    pub version: Version,
    /// Target as given.
    pub target: Target,
    /// Where it stands now.
    pub state: JobState,
    /// Why it stopped, when it did.
    pub reason: Option<String>,
    /// Unix time of creation.
    pub created: i64,
    /// Unix time of the end.
    pub finished: Option<i64>,
    /// Device names per wave (canary first).
    pub waves: Vec<Vec<String>>,
    /// Index of the wave being served.
    pub wave: usize,
    /// Failure threshold per wave (fraction).
    pub max_failure_rate: f64,
    /// Devices left out, with the reason (TOS without an image for their family).
    pub excluded: Vec<(String, String)>,
}

/// A stored per-device step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Device name.
    pub device: String,
    /// Package key sent to it.
    pub key: String,
    /// Wave it belongs to.
    pub wave: usize,
    /// Where it stands now.
    pub state: TaskState,
    /// Upload attempts made.
    pub attempts: u32,
    /// Why it failed, or the last transient error.
    pub reason: Option<String>,
    /// Unix time of the last change.
    pub updated: i64,
}

/// Progress and report of a job, as `Job()` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// The job.
    #[serde(flatten)]
    pub job: JobRecord,
    /// Devices per task state.
    pub counts: BTreeMap<String, usize>,
    /// Package bytes sent by this daemon run.
    pub bytes_sent: u64,
    /// Failed devices with their reasons.
    pub failures: Vec<(String, String)>,
}

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

//! `org.smsos.Ha1`: the HA daemon's interface and its status record.

use super::Json;
use serde::{Deserialize, Serialize};

/// Well-known bus name of the HA daemon.
pub const HA_NAME: &str = "org.smsos.Ha1";
/// Object path of the HA daemon.
pub const HA_PATH: &str = "/org/smsos/Ha1";

/// The pair as this node sees it, as returned by `Status()`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaStatus {
    /// `standalone`, `primary` or `secondary`: the configured role.
    pub configured_role: String,
    /// `active`, `standby`, `fenced` or `standalone`: what the node does now.
    pub state: String,
    /// Whether this node takes writes now.
    pub accepting_writes: bool,
    /// The persisted epoch (term).
    pub epoch: u64,
    /// SHA-256 fingerprint of this node's HA certificate (`show ha identity`).
    pub fingerprint: String,
    /// The peer's replication address, when paired.
    pub peer: Option<String>,
    /// The peer's pinned fingerprint.
    pub peer_fingerprint: Option<String>,
    /// Milliseconds since the peer's last heartbeat (None: not heard).
    pub peer_heard_ms_ago: Option<u64>,
    /// The peer's last heartbeat said it was active.
    pub peer_active: bool,
    /// This node's commits are not all on the peer (DEGRADED).
    pub degraded: bool,
    /// Seconds since the Unix epoch when DEGRADED began.
    pub degraded_since: Option<i64>,
    /// The witness's address, when one is configured.
    pub witness: Option<String>,
    /// Milliseconds the witness lease still runs (None: not held).
    pub lease_ms: Option<u64>,
    /// The pair's virtual address (`192.0.2.100/24`), on this node while
    /// it takes writes.
    #[serde(default)]
    pub virtual_address: Option<String>,
}

/// The HA daemon's methods, typed (`zbus` generates `Ha1Proxy`).
#[zbus::proxy(
    interface = "org.smsos.Ha1",
    default_service = "org.smsos.Ha1",
    default_path = "/org/smsos/Ha1"
)]
pub trait Ha1 {
    /// Role, state, epoch, peer, heartbeat, witness.
    fn status(&self) -> zbus::Result<Json<HaStatus>>;
    /// This node's HA certificate fingerprint, for the peer's admin to
    /// pin (`show ha identity`).
    fn identity(&self) -> zbus::Result<String>;
    /// `ha failover`: this standby takes the active role at epoch + 1
    /// (with a witness, once it grants the lease). Says what happens.
    fn failover(&self) -> zbus::Result<String>;
    /// `ha swap` on the active node: it stops taking writes and its peer,
    /// in SYNC, takes over at epoch + 1. Says what happens.
    fn swap(&self) -> zbus::Result<String>;
}

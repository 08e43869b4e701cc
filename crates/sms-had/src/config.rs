//! The HA daemon's configuration file (`/etc/sms/had.toml`) with the
//! administrator's settings put over it.

use serde::Deserialize;
use sms_core::settings::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The port of the replication stream between the two nodes.
pub const REPLICATION_PORT: u16 = 3306;

/// The port of heartbeats, roles and fencing (the control link), and of
/// the witness.
pub const CONTROL_PORT: u16 = 4444;

/// What this node does in the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Not paired: nothing is replicated, commits are local.
    Standalone,
    /// Ships its daemons' commits to the peer.
    Primary,
    /// Applies the primary's commits to its replica stores.
    Secondary,
}

/// `/etc/sms/had.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaConfig {
    /// Role of this node.
    pub role: Role,
    /// Identity, epoch and replica stores.
    pub state_dir: PathBuf,
    /// Where the daemons of this node reach sms-had.
    pub local_socket: PathBuf,
    /// Address the replication stream is served on (secondary).
    pub listen: SocketAddr,
    /// The peer's replication address (primary).
    pub peer: Option<SocketAddr>,
    /// The SHA-256 fingerprint of the peer's certificate, as its
    /// `show ha identity` prints it; nothing is exchanged without it.
    pub peer_fingerprint: Option<String>,
    /// Milliseconds a commit waits for the peer before the pair is DEGRADED.
    pub sync_timeout_ms: u64,
    /// Address the peer's heartbeats are taken on.
    pub control_listen: SocketAddr,
    /// The peer's control address (default: the peer's address, port
    /// [`CONTROL_PORT`]).
    pub peer_control: Option<SocketAddr>,
    /// The witness (`sms-had witness`); without one promotion is manual.
    pub witness: Option<SocketAddr>,
    /// The SHA-256 fingerprint of the witness's certificate.
    pub witness_fingerprint: Option<String>,
    /// Length of the witness lease in milliseconds: a node cut off from
    /// the witness fences itself within it.
    pub lease_ms: u64,
    /// The pair's virtual address (`192.0.2.100/24`), held by the node
    /// that takes writes; on the interface with an address in its subnet.
    pub virtual_address: Option<String>,
    /// Secondary: where the blobs a batch names are fetched (the
    /// primary's blob account over SSH); without it such a batch is
    /// refused.
    pub blob_source: Option<crate::blobs::BlobSource>,
    /// Primary: the blob stores `sms-had blob-serve` serves from.
    pub blob_dirs: Vec<PathBuf>,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            role: Role::Standalone,
            state_dir: PathBuf::from("/var/lib/sms/ha"),
            local_socket: PathBuf::from(sms_core::replication::LOCAL_SOCKET),
            listen: SocketAddr::from(([0, 0, 0, 0], REPLICATION_PORT)),
            peer: None,
            peer_fingerprint: None,
            sync_timeout_ms: sms_core::replication::SYNC_TIMEOUT.as_millis() as u64,
            control_listen: SocketAddr::from(([0, 0, 0, 0], CONTROL_PORT)),
            peer_control: None,
            witness: None,
            witness_fingerprint: None,
            lease_ms: 3000,
            virtual_address: None,
            blob_source: None,
            blob_dirs: Vec::new(),
        }
    }
}

impl HaConfig {
    /// The node's certificate file.
    pub fn cert_path(&self) -> PathBuf {
        self.state_dir.join("identity/cert.pem")
    }

    /// The node's private key file.
    pub fn key_path(&self) -> PathBuf {
        self.state_dir.join("identity/key.pem")
    }

    /// Where this node sends its heartbeats.
    pub fn peer_control(&self) -> Option<SocketAddr> {
        self.peer_control
            .or_else(|| self.peer.map(|p| SocketAddr::new(p.ip(), CONTROL_PORT)))
    }

    /// The witness lease as a duration (at least 1 s).
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_ms.max(1000))
    }

    /// The sync timeout as a duration.
    pub fn sync_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.sync_timeout_ms)
    }
}

impl sms_core::daemon::WithSettings for HaConfig {
    /// The pairing the admin committed (`set ha peer ... fingerprint ...
    /// role ...`, `set ha witness ...`) replaces the file's.
    fn apply_settings(&mut self, settings: &Settings) {
        if let Some(ip) = settings.ha_peer {
            self.peer = Some(SocketAddr::new(ip, REPLICATION_PORT));
        }
        if let (Some(fp), Some(role)) = (&settings.ha_peer_fingerprint, settings.ha_role) {
            self.peer_fingerprint = Some(fp.clone());
            self.role = match role {
                sms_core::settings::HaRole::Primary => Role::Primary,
                sms_core::settings::HaRole::Secondary => Role::Secondary,
            };
        }
        if let (Some(ip), Some(fp)) = (settings.ha_witness, &settings.ha_witness_fingerprint) {
            self.witness = Some(SocketAddr::new(ip, CONTROL_PORT));
            self.witness_fingerprint = Some(fp.clone());
        }
        if let Some(v) = &settings.ha_virtual_address {
            self.virtual_address = Some(v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sms_core::daemon::WithSettings;

    #[test]
    fn the_committed_pairing_replaces_the_files() {
        let mut cfg = HaConfig::default();
        let s = Settings::example();
        cfg.apply_settings(&s);
        assert_eq!(cfg.role, Role::Primary);
        assert_eq!(cfg.peer, Some("192.0.2.11:3306".parse().unwrap()));
        assert_eq!(cfg.peer_control(), Some("192.0.2.11:4444".parse().unwrap()));
        assert_eq!(cfg.peer_fingerprint, s.ha_peer_fingerprint);
        assert_eq!(cfg.witness, Some("192.0.2.99:4444".parse().unwrap()));
        // An address alone pairs nothing.
        let mut cfg = HaConfig::default();
        let s = Settings {
            ha_peer: Some("192.0.2.11".parse().unwrap()),
            ..Default::default()
        };
        cfg.apply_settings(&s);
        assert_eq!((cfg.role, cfg.peer_fingerprint), (Role::Standalone, None));
    }
}

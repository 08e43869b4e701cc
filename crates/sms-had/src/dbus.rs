//! The HA daemon's D-Bus interface, `org.smsos.Ha1`: status and identity.

use crate::roles::Roles;
use sms_core::bus::{HaStatus, HA_NAME, HA_PATH};
use std::sync::Arc;

/// The object served at `/org/smsos/Ha1`.
pub struct HaIface {
    /// The roles of a paired node (None: standalone).
    pub roles: Option<Arc<Roles>>,
    /// What the configuration says (role, peer, witness, fingerprints).
    pub base: HaStatus,
}

#[zbus::interface(name = "org.smsos.Ha1")]
impl HaIface {
    /// Status as JSON (`sms_core::bus::HaStatus`).
    async fn status(&self) -> String {
        serde_json::to_string(&status(self)).unwrap_or_default()
    }

    /// This node's HA certificate fingerprint.
    async fn identity(&self) -> String {
        self.base.fingerprint.clone()
    }

    /// `ha failover`: this standby takes the active role at epoch + 1.
    async fn failover(&self) -> zbus::fdo::Result<String> {
        match &self.roles {
            None => Err(zbus::fdo::Error::Failed(
                "this appliance is not paired (set ha peer ... fingerprint ... role ...)".into(),
            )),
            Some(r) => r.failover().map_err(zbus::fdo::Error::Failed),
        }
    }

    /// `ha swap`: the active node hands the active role to its peer.
    async fn swap(&self) -> zbus::fdo::Result<String> {
        match &self.roles {
            None => Err(zbus::fdo::Error::Failed(
                "this appliance is not paired (set ha peer ... fingerprint ... role ...)".into(),
            )),
            Some(r) => r.swap().map_err(zbus::fdo::Error::Failed),
        }
    }
}

/// The configuration's fields with the roles' live state over them.
pub fn status(iface: &HaIface) -> HaStatus {
    match &iface.roles {
        None => HaStatus {
            state: "standalone".into(),
            accepting_writes: true,
            ..iface.base.clone()
        },
        Some(r) => {
            let live = r.status();
            HaStatus {
                configured_role: iface.base.configured_role.clone(),
                fingerprint: iface.base.fingerprint.clone(),
                peer: iface.base.peer.clone(),
                peer_fingerprint: iface.base.peer_fingerprint.clone(),
                witness: iface.base.witness.clone(),
                virtual_address: iface.base.virtual_address.clone(),
                ..live
            }
        }
    }
}

/// Serves the interface on the system bus (`DBUS_SYSTEM_BUS_ADDRESS` honoured).
pub async fn serve(iface: HaIface) -> zbus::Result<zbus::Connection> {
    serve_with(iface, zbus::connection::Builder::system()?).await
}

/// Like [`serve`], on the bus `builder` connects to (a private bus in
/// tests that run the HA roles next to another daemon).
pub async fn serve_with(
    iface: HaIface,
    builder: zbus::connection::Builder<'_>,
) -> zbus::Result<zbus::Connection> {
    builder
        .name(HA_NAME)?
        .serve_at(HA_PATH, iface)?
        .build()
        .await
}

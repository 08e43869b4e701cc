//! The relay's D-Bus interface, `org.smsos.Ntp1`: status only.

use crate::upstream::Engine;
use sms_core::bus::{NTP_NAME, NTP_PATH};
use std::net::SocketAddr;
use std::sync::Arc;

/// The object served at `/org/smsos/Ntp1`.
pub struct NtpIface {
    engine: Arc<Engine>,
    listening: Vec<SocketAddr>,
}

#[zbus::interface(name = "org.smsos.Ntp1")]
impl NtpIface {
    /// Status as JSON (`sms_core::bus::NtpStatus`): sources, selection,
    /// offset, jitter, stratum, synchronisation, server counters.
    async fn status(&self) -> String {
        serde_json::to_string(&self.engine.status(&self.listening)).unwrap_or_default()
    }

    /// Whether synchronised time is being served.
    #[zbus(property)]
    async fn synchronised(&self) -> bool {
        self.engine.status(&self.listening).synchronised
    }

    /// Stratum being served.
    #[zbus(property)]
    async fn stratum(&self) -> u8 {
        self.engine.status(&self.listening).stratum
    }
}

/// Serves the interface on the system bus (`DBUS_SYSTEM_BUS_ADDRESS` honoured).
pub async fn serve(
    engine: Arc<Engine>,
    listening: Vec<SocketAddr>,
) -> zbus::Result<zbus::Connection> {
    zbus::connection::Builder::system()?
        .name(NTP_NAME)?
        .serve_at(NTP_PATH, NtpIface { engine, listening })?
        .build()
        .await
}

//! The update daemon's D-Bus interface, `org.smsos.Updater1`.
//!
//! Quick operations (status, lists, refresh, activation) answer directly;
//! downloads, which can take minutes, start in the background and end with
//! the `DownloadFinished` signal. `PackageActivated` tells the distributor
//! that a new version is ready to go out.

// zbus generates undocumented helper methods for the interface's signals.
#![allow(missing_docs)]

use crate::updater::{Event, UpdateError, Updater};
use sms_core::bus::{UPDATER_NAME, UPDATER_PATH};
use sms_core::package::{Channel, Version};
use std::sync::Arc;
use zbus::fdo;
use zbus::object_server::SignalEmitter;

/// The object served at `/org/smsos/Updater1`.
pub struct UpdaterIface {
    up: Arc<Updater>,
}

fn channel(s: &str) -> fdo::Result<Channel> {
    s.parse().map_err(fdo::Error::InvalidArgs)
}

fn version(s: &str) -> fdo::Result<Version> {
    s.parse().map_err(fdo::Error::InvalidArgs)
}

fn failed(e: UpdateError) -> fdo::Error {
    fdo::Error::Failed(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[zbus::interface(name = "org.smsos.Updater1")]
impl UpdaterIface {
    /// The daemon's status as JSON (`sms_core::bus::UpdaterStatus`).
    async fn status(&self) -> String {
        to_json(&self.up.status())
    }

    /// Starts a DV check now (the result shows in `Status`).
    async fn check_now(&self) -> String {
        self.up.check_now();
        "DV check started".into()
    }

    /// Refreshes the version list of a channel; returns it as JSON.
    async fn refresh(&self, channel_name: &str) -> fdo::Result<String> {
        let ch = channel(channel_name)?;
        self.up
            .refresh(ch)
            .await
            .map(|v| to_json(&v))
            .map_err(failed)
    }

    /// The last verified version list of a channel as JSON.
    async fn available(&self, channel_name: &str) -> fdo::Result<String> {
        let ch = channel(channel_name)?;
        self.up.available(ch).map(|v| to_json(&v)).map_err(failed)
    }

    /// Packages on the appliance for a channel, as JSON.
    async fn list(&self, channel_name: &str) -> fdo::Result<String> {
        let ch = channel(channel_name)?;
        self.up.list(ch).map(|v| to_json(&v)).map_err(failed)
    }

    /// Starts downloading a version (all platform families for TOS).
    async fn download(&self, channel_name: &str, version_name: &str) -> fdo::Result<String> {
        let ch = channel(channel_name)?;
        let v = version(version_name)?;
        let up = self.up.clone();
        let msg = format!("download of {ch} {v} started");
        tokio::spawn(async move {
            let _ = up.download(ch, &v).await;
        });
        Ok(msg)
    }

    /// Activates a downloaded version.
    async fn activate(&self, channel_name: &str, version_name: &str) -> fdo::Result<String> {
        let ch = channel(channel_name)?;
        let v = version(version_name)?;
        self.up.activate(ch, &v).await.map_err(failed)
    }

    /// Active DV version (empty when none).
    #[zbus(property)]
    async fn active_dv(&self) -> String {
        self.up.status().active_dv.unwrap_or_default()
    }

    /// Active TOS version (empty when none).
    #[zbus(property)]
    async fn active_tos(&self) -> String {
        self.up.status().active_tos.unwrap_or_default()
    }

    /// A version became active.
    #[zbus(signal)]
    async fn package_activated(
        emitter: &SignalEmitter<'_>,
        channel: &str,
        version: &str,
        sha256: &str,
    ) -> zbus::Result<()>;

    /// A download requested over D-Bus ended.
    #[zbus(signal)]
    async fn download_finished(
        emitter: &SignalEmitter<'_>,
        channel: &str,
        version: &str,
        ok: bool,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured),
/// takes the well-known name, serves the interface and forwards events as
/// signals. Returns the connection, which must be kept alive.
pub async fn serve(up: Arc<Updater>) -> zbus::Result<zbus::Connection> {
    serve_with(up, zbus::connection::Builder::system()?).await
}

/// Like [`serve`], on the bus `builder` connects to (a private bus in
/// tests that run the updater next to another daemon).
pub async fn serve_with(
    up: Arc<Updater>,
    builder: zbus::connection::Builder<'_>,
) -> zbus::Result<zbus::Connection> {
    let conn = builder
        .name(UPDATER_NAME)?
        .serve_at(UPDATER_PATH, UpdaterIface { up: up.clone() })?
        .serve_at(
            sms_core::bus::STORE_PATH,
            sms_core::bus::StoreIface::new(up.store().clone()),
        )?
        .build()
        .await?;
    sms_core::bus::forward_signals(
        &conn,
        UPDATER_PATH,
        up.subscribe(),
        |emitter, ev| async move {
            match ev {
                Event::Activated {
                    channel,
                    version,
                    sha256,
                } => {
                    UpdaterIface::package_activated(
                        &emitter,
                        channel.as_str(),
                        &version.to_string(),
                        &sha256.to_hex(),
                    )
                    .await
                }
                Event::DownloadFinished {
                    channel,
                    version,
                    ok,
                    message,
                } => {
                    UpdaterIface::download_finished(
                        &emitter,
                        channel.as_str(),
                        &version.to_string(),
                        ok,
                        &message,
                    )
                    .await
                }
            }
        },
    )?;
    Ok(conn)
}

//! The daemon's D-Bus interface, `org.smsos.Distributor1`: inventory,
//! distribution jobs, pull server status; the `JobFinished` signal.
//! Structured values travel as JSON strings.

// zbus generates undocumented helper methods for the interface's signals.
#![allow(missing_docs)]

use crate::distributor::{DistEvent, Distributor};
use crate::inventory::{Device, InventoryError, Target};
use crate::job::JobError;
use crate::pull::PullServer;
use sms_core::bus::{DISTRIBUTOR_NAME, DISTRIBUTOR_PATH};
use sms_core::package::{Channel, Version};
use std::sync::Arc;
use zbus::fdo;
use zbus::object_server::SignalEmitter;

/// The object served at `/org/smsos/Distributor1`.
pub struct DistributorIface {
    dist: Arc<Distributor>,
    pull: Option<Arc<PullServer>>,
}

fn inv(e: InventoryError) -> fdo::Error {
    match e {
        InventoryError::Store(e) => fdo::Error::Failed(e.to_string()),
        other => fdo::Error::InvalidArgs(other.to_string()),
    }
}

fn job_err(e: JobError) -> fdo::Error {
    match e {
        JobError::Invalid(m) => fdo::Error::InvalidArgs(m),
        JobError::Inventory(e) => inv(e),
        other => fdo::Error::Failed(other.to_string()),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[zbus::interface(name = "org.smsos.Distributor1")]
impl DistributorIface {
    /// Every device as a JSON array (`inventory::Device`).
    async fn devices(&self) -> fdo::Result<String> {
        self.dist
            .inventory()
            .list()
            .map(|l| to_json(&l))
            .map_err(inv)
    }

    /// One device as JSON.
    async fn device(&self, name: &str) -> fdo::Result<String> {
        match self.dist.inventory().get(name).map_err(inv)? {
            Some(d) => Ok(to_json(&d)),
            None => Err(fdo::Error::InvalidArgs(format!("no device named {name}"))),
        }
    }

    /// Adds devices given as a JSON array (all or none); returns the count.
    async fn add_devices(&self, devices_json: &str) -> fdo::Result<u32> {
        let devices: Vec<Device> = serde_json::from_str(devices_json)
            .map_err(|e| fdo::Error::InvalidArgs(format!("device list: {e}")))?;
        self.dist.add_devices(&devices).map_err(inv)?;
        tracing::info!("{} device(s) added to the inventory", devices.len());
        Ok(devices.len() as u32)
    }

    /// Replaces one device's record (JSON), e.g. to change its group.
    async fn edit_device(&self, device_json: &str) -> fdo::Result<()> {
        let d: Device = serde_json::from_str(device_json)
            .map_err(|e| fdo::Error::InvalidArgs(format!("device: {e}")))?;
        if self.dist.inventory().get(&d.name).map_err(inv)?.is_none() {
            return Err(fdo::Error::InvalidArgs(format!(
                "no device named {}",
                d.name
            )));
        }
        self.dist.inventory().put(&d).map_err(inv)
    }

    /// Removes a device.
    async fn remove_device(&self, name: &str) -> fdo::Result<()> {
        self.dist.inventory().remove(name).map_err(inv)
    }

    /// Starts distributing `version` of `channel` (`dv`, `tos`) to
    /// `target` (`all`, `group:NAME`, `device:NAME`); returns the job
    /// (JSON `job::JobRecord`).
    async fn distribute(&self, channel: &str, version: &str, target: &str) -> fdo::Result<String> {
        let channel: Channel = channel.parse().map_err(fdo::Error::InvalidArgs)?;
        let version: Version = version.parse().map_err(fdo::Error::InvalidArgs)?;
        let target: Target = target
            .parse()
            .map_err(|e: sms_core::bus::NameError| inv(e.into()))?;
        self.dist
            .distribute(channel, &version, &target)
            .await
            .map(|j| to_json(&j))
            .map_err(job_err)
    }

    /// Every job (JSON array of `job::JobRecord`).
    async fn jobs(&self) -> fdo::Result<String> {
        self.dist.jobs().map(|j| to_json(&j)).map_err(job_err)
    }

    /// Progress and report of one job (JSON `job::JobReport`).
    async fn job(&self, id: u64) -> fdo::Result<String> {
        match self.dist.report(id).map_err(job_err)? {
            Some(r) => Ok(to_json(&r)),
            None => Err(fdo::Error::InvalidArgs(format!("no job {id}"))),
        }
    }

    /// Cancels a running job (devices under way finish; no new ones start).
    async fn cancel_job(&self, id: u64) -> fdo::Result<()> {
        self.dist.cancel(id).map_err(job_err)
    }

    /// Pull server counters and cache contents (JSON).
    async fn pull_status(&self) -> String {
        match &self.pull {
            Some(p) => to_json(&p.status()),
            None => "null".into(),
        }
    }

    /// A job ended: id, state, one-line summary.
    #[zbus(signal)]
    async fn job_finished(
        emitter: &SignalEmitter<'_>,
        id: u64,
        state: &str,
        summary: &str,
    ) -> zbus::Result<()>;
}

/// Serves the interface on the bus `builder` connects to and forwards
/// events as signals. Returns the connection (keep it alive).
pub async fn serve_with(
    dist: Arc<Distributor>,
    pull: Option<Arc<PullServer>>,
    builder: zbus::connection::Builder<'_>,
) -> zbus::Result<zbus::Connection> {
    let conn = builder
        .name(DISTRIBUTOR_NAME)?
        .serve_at(
            sms_core::bus::STORE_PATH,
            sms_core::bus::StoreIface::new(dist.store().clone()),
        )?
        .serve_at(
            DISTRIBUTOR_PATH,
            DistributorIface {
                dist: dist.clone(),
                pull,
            },
        )?
        .build()
        .await?;
    sms_core::bus::forward_signals(
        &conn,
        DISTRIBUTOR_PATH,
        dist.subscribe(),
        |emitter, ev| async move {
            let DistEvent::JobFinished { id, state, summary } = ev;
            let state = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            DistributorIface::job_finished(&emitter, id, &state, &summary).await
        },
    )?;
    Ok(conn)
}

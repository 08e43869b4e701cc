//! The update daemon set up against the simulated update centre, in the
//! test's own process, serving on a private bus: what the distribution,
//! SNMP and CLI tests need as their peer on the bus.

use crate::DbusDaemon;
use anyhow::{Context, Result};
use sms_sim::tmc::SimInfo;
use sms_updated::config::UpdaterConfig;
use sms_updated::updater::Updater;
use std::path::Path;
use std::sync::Arc;

/// An updater configuration that reaches the simulator described by
/// `info` (its update centre, CA, trust root and DNS), keeps its state and
/// blobs under `dir` (`updated/`, `blobs/`), checks nothing by itself and
/// reserves no disk space.
pub fn updater_config(info: &SimInfo, dir: &Path) -> UpdaterConfig {
    let mut c = UpdaterConfig::default();
    c.tmc.host = info.tmc_host.clone();
    c.tmc.port = info.tmc_port;
    c.tmc.ca_file = info.ca_file.clone();
    c.tmc.trust_root = info.trust_root_file.clone();
    c.dns.servers = vec![info.dns];
    c.dv.auto_check = false;
    c.download.reserve_bytes = 0;
    c.paths.state_dir = dir.join("updated");
    c.paths.blob_dir = dir.join("blobs");
    c
}

/// Opens an updater with `cfg` and serves `org.smsos.Updater1` for it on
/// `bus`; keep the connection for as long as the updater should answer.
pub async fn updater_on_bus(
    cfg: UpdaterConfig,
    bus: &DbusDaemon,
) -> Result<(Arc<Updater>, zbus::Connection)> {
    let updater = Updater::open(cfg).context("opening the updater")?;
    let conn = sms_updated::dbus::serve_with(
        updater.clone(),
        zbus::connection::Builder::address(bus.address())?,
    )
    .await
    .context("serving the updater on the test bus")?;
    Ok((updater, conn))
}

/// Opens a distribution daemon with `cfg` and serves
/// `org.smsos.Distributor1` for it on `bus` (no pull server), with the bus
/// also its own for calling the updater; keep the connection.
pub async fn distributor_on_bus(
    cfg: sms_distd::config::DistdConfig,
    bus: &DbusDaemon,
) -> Result<(Arc<sms_distd::Distributor>, zbus::Connection)> {
    let dist = sms_distd::Distributor::open(cfg).context("opening the distributor")?;
    let conn = sms_distd::dbus::serve_with(
        dist.clone(),
        None,
        zbus::connection::Builder::address(bus.address())?,
    )
    .await
    .context("serving the distributor on the test bus")?;
    dist.set_bus(conn.clone());
    Ok((dist, conn))
}

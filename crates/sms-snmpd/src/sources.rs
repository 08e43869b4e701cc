//! Values of the other daemons, read over D-Bus into a cache.
//!
//! A refresh asks each daemon with a short timeout; a daemon that does not
//! answer keeps its last values (and NTP shows "unknown"), so the agent
//! always has a complete snapshot to serve.

use crate::mib::{DaemonValues, DeviceRow};
use sms_core::bus;
use std::time::Duration;

/// How long one daemon may take to answer a refresh.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits at most [`CALL_TIMEOUT`] for one call; the error names the call.
async fn ask<T>(
    what: &str,
    call: impl std::future::Future<Output = zbus::Result<bus::Json<T>>>,
) -> Result<T, String> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| format!("{what}: no answer"))?
        .map(bus::Json::into_inner)
        .map_err(|e| format!("{what}: {e}"))
}

fn rfc3339(secs: Option<i64>) -> String {
    secs.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The managed devices from the distribution daemon, as MIB rows.
pub fn device_rows(list: &[bus::Device]) -> Vec<DeviceRow> {
    list.iter()
        .map(|d| DeviceRow {
            name: d.name.clone(),
            address: d.address.to_string(),
            platform: d.family.to_string(),
            dv: d.dv.clone().unwrap_or_default(),
            tos: d.tos.clone().unwrap_or_default(),
            state: d.state.as_str().to_string(),
            last_contact: rfc3339(d.last_contact),
            ..DeviceRow::default()
        })
        .collect()
}

/// Refreshes `vals` from the daemons on `conn`; returns the errors met
/// (a daemon not running is not fatal).
pub async fn refresh(conn: &zbus::Connection, vals: &mut DaemonValues) -> Vec<String> {
    let mut errors = Vec::new();
    let updater = bus::Updater1Proxy::new(conn).await;
    let distributor = bus::Distributor1Proxy::new(conn).await;
    let ntp = bus::Ntp1Proxy::new(conn).await;
    let (updater, distributor, ntp) = match (updater, distributor, ntp) {
        (Ok(u), Ok(d), Ok(n)) => (u, d, n),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return vec![e.to_string()],
    };
    match ask("Updater1.Status", updater.status()).await {
        Ok(v) => {
            vals.dv = v.active_dv.unwrap_or_default();
            vals.tos = v.active_tos.unwrap_or_default();
            vals.last_check = rfc3339(v.last_check);
            vals.last_result = v.last_result.unwrap_or_default();
        }
        Err(e) => errors.push(e),
    }
    match ask("Distributor1.Devices", distributor.devices()).await {
        Ok(v) => vals.devices = device_rows(&v),
        Err(e) => errors.push(e),
    }
    match ask("Ntp1.Status", ntp.status()).await {
        Ok(v) => {
            vals.ntp_sync = if v.synchronised { 1 } else { 2 };
            vals.ntp_stratum = i32::from(v.stratum);
            vals.ntp_offset_us = (v.offset * 1e6).clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        }
        Err(e) => {
            vals.ntp_sync = 3;
            errors.push(e)
        }
    }
    match bus::Ha1Proxy::new(conn).await {
        Ok(ha) => match ask("Ha1.Status", ha.status()).await {
            Ok(s) => ha_values(&s, vals),
            Err(e) => errors.push(e),
        },
        Err(e) => errors.push(e.to_string()),
    }
    errors
}

/// smsHaRole and smsHaPeerState from sms-had's status: the active node is
/// the primary, the standby (waiting or fenced too) the secondary; the
/// peer is connected while its heartbeats arrive.
pub fn ha_values(s: &bus::HaStatus, vals: &mut DaemonValues) {
    let paired = s.state != "standalone";
    vals.ha_role = match (paired, s.state.as_str()) {
        (false, _) => 1,
        (true, "active") => 2,
        (true, _) => 3,
    };
    vals.ha_peer = match (paired, s.peer_heard_ms_ago) {
        (false, _) => 1,
        (true, Some(ms)) if ms < 3000 => 2,
        (true, _) => 3,
    };
    vals.ha_state = s.state.clone();
    vals.ha_epoch = s.epoch;
    vals.ha_degraded = s.degraded;
}

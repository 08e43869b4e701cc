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

async fn call_json(
    conn: &zbus::Connection,
    name: &str,
    path: &str,
    method: &str,
) -> Result<serde_json::Value, String> {
    let fut = conn.call_method(Some(name), path, Some(name), method, &());
    let reply = tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{name}.{method}: no answer"))?
        .map_err(|e| format!("{name}.{method}: {e}"))?;
    let s: String = reply
        .body()
        .deserialize()
        .map_err(|e| format!("{name}.{method}: {e}"))?;
    serde_json::from_str(&s).map_err(|e| format!("{name}.{method}: {e}"))
}

fn s(v: &serde_json::Value, k: &str) -> String {
    match v.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string().trim_matches('"').to_string(),
    }
}

fn rfc3339(secs: Option<i64>) -> String {
    secs.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The managed devices from the distribution daemon: rows and addresses.
pub fn device_rows(list: &serde_json::Value) -> Vec<DeviceRow> {
    let Some(arr) = list.as_array() else {
        return Vec::new();
    };
    arr.iter()
        .map(|d| DeviceRow {
            name: s(d, "name"),
            address: s(d, "address"),
            platform: s(d, "family"),
            dv: s(d, "dv"),
            tos: s(d, "tos"),
            state: s(d, "state"),
            last_contact: rfc3339(d.get("last_contact").and_then(|v| v.as_i64())),
            ..DeviceRow::default()
        })
        .collect()
}

/// Refreshes `vals` from the daemons on `conn`; returns the errors met
/// (a daemon not running is not fatal).
pub async fn refresh(conn: &zbus::Connection, vals: &mut DaemonValues) -> Vec<String> {
    let mut errors = Vec::new();
    match call_json(conn, bus::UPDATER_NAME, bus::UPDATER_PATH, "Status").await {
        Ok(v) => {
            vals.dv = s(&v, "active_dv");
            vals.tos = s(&v, "active_tos");
            vals.last_check = rfc3339(v.get("last_check").and_then(|x| x.as_i64()));
            vals.last_result = s(&v, "last_result");
        }
        Err(e) => errors.push(e),
    }
    match call_json(
        conn,
        bus::DISTRIBUTOR_NAME,
        bus::DISTRIBUTOR_PATH,
        "Devices",
    )
    .await
    {
        Ok(v) => vals.devices = device_rows(&v),
        Err(e) => errors.push(e),
    }
    match call_json(conn, bus::NTP_NAME, bus::NTP_PATH, "Status").await {
        Ok(v) => {
            let synced = v.get("synchronised").and_then(|x| x.as_bool()) == Some(true);
            vals.ntp_sync = if synced { 1 } else { 2 };
            vals.ntp_stratum = v.get("stratum").and_then(|x| x.as_i64()).unwrap_or(16) as i32;
            vals.ntp_offset_us = (v.get("offset").and_then(|x| x.as_f64()).unwrap_or(0.0) * 1e6)
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        }
        Err(e) => {
            vals.ntp_sync = 3;
            errors.push(e)
        }
    }
    // No HA daemon answers yet: standalone, no peer.
    vals.ha_role = 1;
    vals.ha_peer = 1;
    errors
}

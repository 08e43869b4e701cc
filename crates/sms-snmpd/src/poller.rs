//! Polls the managed devices' SNMP agents (sysUpTime, sysDescr, ifNumber)
//! with bounded concurrency, through snmp2's v2c client; a device that
//! misses the configured number of polls in a row is unreachable, and the
//! change is announced with a trap.

use crate::config::PollerConfig;
use crate::mib::PollState;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

pub use sms_core::bus::PollResult;

/// A reachability change the poller saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Device name.
    pub name: String,
    /// Device address.
    pub address: IpAddr,
    /// New state.
    pub state: PollState,
    /// Why (for unreachable).
    pub reason: String,
}

/// The poller's table, shared with the MIB builder and D-Bus.
pub type PollTable = Arc<Mutex<HashMap<String, PollResult>>>;

fn oid(arcs: &[u64]) -> Option<snmp2::Oid<'static>> {
    snmp2::Oid::from(arcs).ok()
}

/// Polls one device once.
pub async fn poll_one(cfg: &PollerConfig, addr: IpAddr) -> Result<(u32, String, i64), String> {
    let target = SocketAddr::new(addr, cfg.port);
    let mut sess = snmp2::AsyncSession::new_v2c(target, cfg.community.as_bytes(), 1)
        .await
        .map_err(|e| format!("socket: {e}"))?;
    let (Some(up), Some(descr), Some(ifn)) = (
        oid(&[1, 3, 6, 1, 2, 1, 1, 3, 0]),
        oid(&[1, 3, 6, 1, 2, 1, 1, 1, 0]),
        oid(&[1, 3, 6, 1, 2, 1, 2, 1, 0]),
    ) else {
        return Err("bad OID".into());
    };
    let oids = [&up, &descr, &ifn];
    let fut = sess.get_many(&oids);
    let pdu = match tokio::time::timeout(cfg.timeout_ms, fut).await {
        Err(_) => {
            return Err(format!(
                "no answer within {} ms",
                cfg.timeout_ms.as_millis()
            ))
        }
        Ok(Err(snmp2::Error::Receive)) => {
            return Err("no answer (port unreachable or receive failed)".into())
        }
        Ok(Err(snmp2::Error::Send)) => return Err("sending the request failed".into()),
        Ok(Err(e)) => return Err(format!("bad answer: {e:?}")),
        Ok(Ok(p)) => p,
    };
    if pdu.error_status != 0 {
        return Err(format!("error-status {}", pdu.error_status));
    }
    let (mut u, mut d, mut n) = (0u32, String::new(), 0i64);
    for (i, (_, v)) in pdu.varbinds.enumerate() {
        match (i, v) {
            (0, snmp2::Value::Timeticks(t)) => u = t,
            (1, snmp2::Value::OctetString(s)) => d = String::from_utf8_lossy(s).to_string(),
            (2, snmp2::Value::Integer(x)) => n = x,
            _ => {}
        }
    }
    Ok((u, d, n))
}

/// Polls every device once with at most `cfg.concurrency` in flight;
/// updates `table` and returns the reachability changes.
pub async fn poll_round(
    cfg: &PollerConfig,
    devices: &[(String, IpAddr)],
    table: &PollTable,
) -> Vec<Change> {
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, addr) in devices.iter().cloned() {
        let sem = sem.clone();
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = poll_one(&cfg, addr).await;
            (name, addr, r)
        });
    }
    let mut changes = Vec::new();
    // Retry a failed poll once within the round (UDP may lose one datagram).
    let mut results = Vec::new();
    while let Some(j) = tasks.join_next().await {
        if let Ok(r) = j {
            results.push(r);
        }
    }
    let mut again = Vec::new();
    for (name, addr, r) in results.iter_mut() {
        if r.is_err() {
            again.push((name.clone(), *addr));
        }
    }
    for (name, addr) in again {
        let r = poll_one(cfg, addr).await;
        if let Some(slot) = results.iter_mut().find(|(n, _, _)| *n == name) {
            slot.2 = r;
        }
    }
    let mut t = sms_core::daemon::lock(table);
    let names: std::collections::HashSet<&String> = devices.iter().map(|(n, _)| n).collect();
    t.retain(|n, _| names.contains(n));
    for (name, addr, r) in results {
        let e = t.entry(name.clone()).or_default();
        let before = e.state;
        match r {
            Ok((u, d, n)) => {
                e.uptime = u;
                e.descr = d;
                e.interfaces = n;
                e.failures = 0;
                e.last_error = None;
                e.state = PollState::Reachable;
            }
            Err(err) => {
                e.failures += 1;
                e.last_error = Some(err);
                if e.failures >= cfg.failures.max(1) {
                    e.state = PollState::Unreachable;
                }
            }
        }
        if e.state != before && !(before == PollState::Unknown && e.state == PollState::Reachable) {
            changes.push(Change {
                name,
                address: addr,
                state: e.state,
                reason: e.last_error.clone().unwrap_or_default(),
            });
        }
    }
    changes
}

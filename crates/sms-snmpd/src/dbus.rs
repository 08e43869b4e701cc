//! `org.smsos.Snmp1` on the system bus: status, received events, poll
//! results, and a test trap for checking the managers' side.

use crate::daemon::Daemon;
use crate::sender::Notification;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zbus::{fdo, interface};

pub use sms_core::bus::SnmpStatus;

struct Snmp1 {
    d: Arc<Daemon>,
}

/// Builds the status record.
pub fn status(d: &Daemon) -> SnmpStatus {
    let a = &d.agent.counters;
    let r = &d.receiver.counters;
    let polls = sms_core::daemon::lock(&d.polls);
    SnmpStatus {
        engine_id: hex::encode(&d.identity.engine_id),
        engine_boots: d.identity.engine_boots,
        agent: d.agent_addrs.iter().map(|a| a.to_string()).collect(),
        receiver: d.receiver_addrs.iter().map(|a| a.to_string()).collect(),
        requests: a.received.load(Ordering::Relaxed),
        answered: a.answered.load(Ordering::Relaxed),
        malformed: a.malformed.load(Ordering::Relaxed) + r.malformed.load(Ordering::Relaxed),
        bad_community: a.bad_community.load(Ordering::Relaxed),
        usm_refused: a.usm_refused.load(Ordering::Relaxed) + r.usm_refused.load(Ordering::Relaxed),
        rate_limited: a.rate_limited.load(Ordering::Relaxed),
        traps_received: r.accepted.load(Ordering::Relaxed),
        informs_acknowledged: r.acknowledged.load(Ordering::Relaxed),
        replays_refused: r.replays.load(Ordering::Relaxed),
        events_stored: d.receiver.log().stored(),
        events_dropped: d.receiver.log().dropped(),
        traps_sent: d.sender.sent.load(Ordering::Relaxed),
        trap_destinations: d.sender.destinations(),
        devices_polled: polls.len(),
        devices_unreachable: polls
            .values()
            .filter(|p| p.state == crate::mib::PollState::Unreachable)
            .count(),
    }
}

#[interface(name = "org.smsos.Snmp1")]
impl Snmp1 {
    /// Status as JSON: engine, addresses, counters.
    async fn status(&self) -> String {
        serde_json::to_string(&status(&self.d)).unwrap_or_default()
    }

    /// Events with a sequence number above `after`, oldest first, at most
    /// `limit` (JSON list).
    async fn events(&self, after: u64, limit: u32) -> fdo::Result<String> {
        let ev = self
            .d
            .receiver
            .log()
            .after(after, limit.clamp(1, 10_000) as usize)
            .map_err(|e| fdo::Error::Failed(e.to_string()))?;
        Ok(serde_json::to_string(&ev).unwrap_or_default())
    }

    /// The newest `limit` events (JSON list).
    async fn latest_events(&self, limit: u32) -> fdo::Result<String> {
        let ev = self
            .d
            .receiver
            .log()
            .latest(limit.clamp(1, 10_000) as usize)
            .map_err(|e| fdo::Error::Failed(e.to_string()))?;
        Ok(serde_json::to_string(&ev).unwrap_or_default())
    }

    /// Poll results by device name (JSON object).
    async fn poll_status(&self) -> String {
        let p = sms_core::daemon::lock(&self.d.polls).clone();
        serde_json::to_string(&p).unwrap_or_default()
    }

    /// Sends a test notification (smsDvActivated with the given text) to
    /// every trap destination; returns how many destinations there are.
    async fn send_test_trap(&self, text: &str) -> fdo::Result<u32> {
        if text.len() > 255 || text.chars().any(|c| c.is_control()) {
            return Err(fdo::Error::InvalidArgs(
                "text: at most 255 characters, no control characters".into(),
            ));
        }
        self.d.sender.send(
            Notification::DvActivated,
            self.d.agent.uptime(),
            text,
            Vec::new(),
        );
        Ok(self.d.sender.destinations() as u32)
    }
}

/// Serves `org.smsos.Snmp1` on the system bus; returns the connection.
pub async fn serve(d: Arc<Daemon>) -> zbus::Result<zbus::Connection> {
    serve_with(d, zbus::connection::Builder::system()?).await
}

/// Serves `org.smsos.Snmp1` on the bus `builder` connects to (tests use a
/// private bus).
pub async fn serve_with(
    d: Arc<Daemon>,
    builder: zbus::connection::Builder<'_>,
) -> zbus::Result<zbus::Connection> {
    builder
        .name(sms_core::bus::SNMP_NAME)?
        .serve_at(
            sms_core::bus::STORE_PATH,
            sms_core::bus::StoreIface::new(d.store().clone()),
        )?
        .serve_at(sms_core::bus::SNMP_PATH, Snmp1 { d })?
        .build()
        .await
}

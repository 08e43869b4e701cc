//! `org.smsos.Snmp1`: the SNMP daemon's interface and the records it
//! answers with (status, received notifications, poll results).

use super::Json;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Well-known bus name of the SNMP daemon.
pub const SNMP_NAME: &str = "org.smsos.Snmp1";
/// Object path of the SNMP daemon.
pub const SNMP_PATH: &str = "/org/smsos/Snmp1";
/// Interface of the SNMP daemon.
pub const SNMP_INTERFACE: &str = "org.smsos.Snmp1";

/// The SNMP daemon's methods, typed (`zbus` generates `Snmp1Proxy`).
#[zbus::proxy(
    interface = "org.smsos.Snmp1",
    default_service = "org.smsos.Snmp1",
    default_path = "/org/smsos/Snmp1"
)]
pub trait Snmp1 {
    /// Counters, engine and listening addresses.
    fn status(&self) -> zbus::Result<Json<SnmpStatus>>;
    /// Up to `limit` events after sequence number `after`.
    fn events(&self, after: u64, limit: u32) -> zbus::Result<Json<Vec<TrapEvent>>>;
    /// The newest `limit` events.
    fn latest_events(&self, limit: u32) -> zbus::Result<Json<Vec<TrapEvent>>>;
    /// Poll results by device name.
    fn poll_status(&self) -> zbus::Result<Json<HashMap<String, PollResult>>>;
    /// Sends a test notification to every trap destination; answers how
    /// many destinations there are.
    fn send_test_trap(&self, text: &str) -> zbus::Result<u32>;
}

/// The daemon's status as shown by `Status()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnmpStatus {
    /// snmpEngineID, hex.
    pub engine_id: String,
    /// snmpEngineBoots.
    pub engine_boots: u32,
    /// Agent addresses.
    pub agent: Vec<String>,
    /// Receiver addresses.
    pub receiver: Vec<String>,
    /// Agent counters.
    pub requests: u64,
    /// Answers sent.
    pub answered: u64,
    /// Malformed datagrams to the agent.
    pub malformed: u64,
    /// Unknown community or source.
    pub bad_community: u64,
    /// v3 refused.
    pub usm_refused: u64,
    /// Agent datagrams dropped: source over its rate.
    #[serde(default)]
    pub rate_limited: u64,
    /// Notifications accepted.
    pub traps_received: u64,
    /// Informs answered with a Response (the sender stops resending).
    pub informs_acknowledged: u64,
    /// v3 notifications refused as replays (outside the time window).
    pub replays_refused: u64,
    /// Received notifications written to the event log.
    pub events_stored: u64,
    /// Events dropped (writer behind).
    pub events_dropped: u64,
    /// Notifications this appliance sent to its managers.
    pub traps_sent: u64,
    /// Managers notifications are sent to.
    pub trap_destinations: usize,
    /// Managed devices the poller asks.
    pub devices_polled: usize,
    /// Devices that missed their last polls.
    pub devices_unreachable: usize,
}

/// One variable binding of an event, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventVarBind {
    /// OID, dotted.
    pub oid: String,
    /// SMI type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Value as text (hex for binary octet strings).
    pub value: String,
}

/// A received trap or inform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrapEvent {
    /// Sequence number (increasing).
    pub seq: u64,
    /// Reception time, RFC 3339 UTC.
    pub time: String,
    /// Sender address.
    pub source: String,
    /// Local port it arrived on.
    pub port: u16,
    /// `v1`, `v2c` or `v3`.
    pub version: String,
    /// `trap` or `inform`.
    pub kind: String,
    /// Community (v1/v2c) or user (v3).
    pub principal: String,
    /// snmpTrapOID (v1 traps translated per RFC 3584).
    pub trap_oid: String,
    /// sysUpTime of the sender, hundredths.
    pub uptime: Option<u32>,
    /// Other bindings.
    pub varbinds: Vec<EventVarBind>,
}

/// What the poller knows of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResult {
    /// Reachability.
    pub state: PollState,
    /// sysUpTime at the last answer.
    pub uptime: u32,
    /// sysDescr at the last answer.
    pub descr: String,
    /// ifNumber at the last answer.
    pub interfaces: i64,
    /// Polls without an answer in a row.
    pub failures: u32,
    /// Why the last poll failed.
    pub last_error: Option<String>,
}

/// Reachability of a managed device as the poller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollState {
    /// Not polled yet.
    #[default]
    Unknown,
    /// Answered the last poll.
    Reachable,
    /// Missed the configured number of polls in a row.
    Unreachable,
}

impl PollState {
    /// The smsDevicePollState enumeration value.
    pub fn number(self) -> i32 {
        match self {
            PollState::Unknown => 1,
            PollState::Reachable => 2,
            PollState::Unreachable => 3,
        }
    }
}

//! The trap and inform receiver (8162/udp and 8163/udp on the appliance).
//!
//! v1 traps, v2c traps and informs (informs acknowledged with a Response),
//! v3 traps from devices (their engine is authoritative: keys are localized
//! to the sender's engine ID, and each sender's clock is tracked so a trap
//! replayed from the past is refused) and v3 informs (this engine is
//! authoritative, with discovery reports). Every accepted notification
//! becomes a [`TrapEvent`]; anything refused is counted with its reason.

use crate::access::Access;
use crate::events::{Body, EventLog, RawEvent};
use sms_snmp::message::{CommunityMessage, V3Message};
use sms_snmp::usm::{unseal, Engine, RemoteClock, UserCredentials, UserKeys};
use sms_snmp::{AnyPdu, Message, Pdu, PduType, ScopedPdu, Version};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counters of the receiver.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Notifications accepted.
    pub accepted: AtomicU64,
    /// Informs acknowledged.
    pub acknowledged: AtomicU64,
    /// Undecodable datagrams.
    pub malformed: AtomicU64,
    /// Community not accepted.
    pub bad_community: AtomicU64,
    /// v3 refused by USM (unknown user, wrong digest, decryption).
    pub usm_refused: AtomicU64,
    /// v3 outside the time window (replays).
    pub replays: AtomicU64,
    /// Not a notification.
    pub unexpected: AtomicU64,
}

/// Keys localized to remote engines, by (engine ID, user name).
type KeyCache = Mutex<HashMap<(Vec<u8>, Vec<u8>), Arc<UserKeys>>>;

/// Most remote engines whose keys and clocks are remembered.
const MAX_ENGINES: usize = 65536;

/// The receiver.
pub struct Receiver {
    engine: Arc<Engine>,
    access: Arc<Access>,
    communities: Vec<Vec<u8>>,
    users: HashMap<Vec<u8>, UserCredentials>,
    keys: KeyCache,
    clocks: Mutex<HashMap<Vec<u8>, RemoteClock>>,
    log: Arc<EventLog>,
    /// What was counted since the daemon started.
    pub counters: ReceiverCounters,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl Receiver {
    /// The remote engines' clocks as last seen, to keep across a restart:
    /// (engine ID, boots, time, Unix time when seen). Without them, a
    /// restart would accept any captured v3 trap once more.
    pub fn clocks_snapshot(&self) -> Vec<SavedClock> {
        let now = Instant::now();
        let wall = unix_now();
        let clocks = sms_core::daemon::lock(&self.clocks);
        let mut v: Vec<SavedClock> = clocks
            .iter()
            .filter_map(|(id, c)| {
                let (boots, time, at) = c.latest?;
                Some(SavedClock {
                    engine_id: hex::encode(id),
                    boots,
                    time,
                    seen_unix: wall - now.duration_since(at).as_secs() as i64,
                })
            })
            .collect();
        v.sort_by(|a, b| a.engine_id.cmp(&b.engine_id));
        v
    }

    /// Restores clocks kept by [`Receiver::clocks_snapshot`].
    pub fn restore_clocks(&self, saved: &[SavedClock]) {
        let now = Instant::now();
        let wall = unix_now();
        let mut clocks = sms_core::daemon::lock(&self.clocks);
        for c in saved.iter().take(MAX_ENGINES) {
            let Ok(id) = hex::decode(&c.engine_id) else {
                continue;
            };
            let ago = std::time::Duration::from_secs((wall - c.seen_unix).max(0) as u64);
            let at = now.checked_sub(ago).unwrap_or(now);
            clocks.insert(
                id,
                RemoteClock {
                    latest: Some((c.boots, c.time, at)),
                },
            );
        }
    }

    /// A receiver storing into `log`. `users` are the names (from the
    /// agent's users) accepted in v3 notifications.
    pub fn new(
        engine: Arc<Engine>,
        access: Arc<Access>,
        communities: &[String],
        users: &[String],
        log: Arc<EventLog>,
    ) -> Result<Receiver, String> {
        let mut creds = HashMap::new();
        for u in users {
            let user = access
                .user(u.as_bytes())
                .ok_or_else(|| format!("receiver.users: no [[user]] named {u:?}"))?;
            creds.insert(u.as_bytes().to_vec(), user.credentials.clone());
        }
        Ok(Receiver {
            engine,
            access,
            communities: communities.iter().map(|c| c.as_bytes().to_vec()).collect(),
            users: creds,
            keys: Mutex::new(HashMap::new()),
            clocks: Mutex::new(HashMap::new()),
            log,
            counters: ReceiverCounters::default(),
        })
    }

    /// The event log.
    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// Handles one datagram; returns the acknowledgement or report to send.
    pub fn handle(&self, packet: &[u8], src: SocketAddr, port: u16) -> Option<Vec<u8>> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let msg = match sms_snmp::decode(packet) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, "malformed notification: {e}");
                return None;
            }
        };
        match msg {
            Message::Community(m) => self.community(m, src, port),
            Message::V3(m) => self.v3(&m, packet, src, port),
        }
    }

    fn community(&self, m: CommunityMessage, src: SocketAddr, port: u16) -> Option<Vec<u8>> {
        if !self.communities.contains(&m.community) {
            self.counters.bad_community.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%src, "notification with a community not accepted");
            return None;
        }
        let principal = String::from_utf8_lossy(&m.community).to_string();
        match m.pdu {
            AnyPdu::TrapV1(t) => {
                self.store(Body::V1(t), src, port, Version::V1, "trap", &principal);
                None
            }
            AnyPdu::Pdu(p) if p.kind == PduType::TrapV2 => {
                self.store(
                    Body::V2(p.varbinds),
                    src,
                    port,
                    m.version,
                    "trap",
                    &principal,
                );
                None
            }
            AnyPdu::Pdu(p) if p.kind == PduType::Inform => {
                self.store(
                    Body::V2(p.varbinds.clone()),
                    src,
                    port,
                    m.version,
                    "inform",
                    &principal,
                );
                self.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                Some(
                    CommunityMessage {
                        version: m.version,
                        community: m.community,
                        pdu: AnyPdu::Pdu(ack(&p)),
                    }
                    .encode(),
                )
            }
            _ => {
                self.counters.unexpected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn min_level(&self, user: &[u8]) -> Option<sms_snmp::usm::SecurityLevel> {
        self.access.user(user).map(|u| u.min_level)
    }

    fn keys_for(&self, engine_id: &[u8], user: &[u8]) -> Option<Arc<UserKeys>> {
        let creds = self.users.get(user)?;
        let mut cache = sms_core::daemon::lock(&self.keys);
        let k = (engine_id.to_vec(), user.to_vec());
        if let Some(v) = cache.get(&k) {
            return Some(v.clone());
        }
        if cache.len() >= MAX_ENGINES {
            cache.clear();
        }
        let keys = Arc::new(creds.localize(engine_id));
        cache.insert(k, keys.clone());
        Some(keys)
    }

    fn v3(&self, m: &V3Message, raw: &[u8], src: SocketAddr, port: u16) -> Option<Vec<u8>> {
        let user = String::from_utf8_lossy(&m.usm.user).to_string();
        if m.usm.engine_id == self.engine.id() || m.usm.engine_id.is_empty() {
            // An inform (or discovery): this engine is authoritative.
            let access = &self.access;
            let users = &self.users;
            let lookup = |n: &[u8]| {
                if users.contains_key(n) {
                    access.keys(n)
                } else {
                    None
                }
            };
            return match self.engine.accept(m, raw, lookup) {
                Ok(acc)
                    if self
                        .min_level(&acc.keys.name)
                        .is_some_and(|min| acc.level < min) =>
                {
                    self.counters.usm_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%src, %user, level = ?acc.level, "v3 inform below the user's security level: refused");
                    None
                }
                Ok(acc) if acc.scoped.pdu.kind == PduType::Inform => {
                    let p = &acc.scoped.pdu;
                    self.store(
                        Body::V2(p.varbinds.clone()),
                        src,
                        port,
                        Version::V3,
                        "inform",
                        &user,
                    );
                    self.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                    let scoped = ScopedPdu {
                        context_engine_id: acc.scoped.context_engine_id.clone(),
                        context_name: acc.scoped.context_name.clone(),
                        pdu: ack(p),
                    };
                    Some(
                        self.engine
                            .seal(m.msg_id, false, &acc.keys, acc.level, &scoped),
                    )
                }
                Ok(acc) if acc.scoped.pdu.kind == PduType::TrapV2 => {
                    let p = &acc.scoped.pdu;
                    self.store(
                        Body::V2(p.varbinds.clone()),
                        src,
                        port,
                        Version::V3,
                        "trap",
                        &user,
                    );
                    None
                }
                Ok(_) => {
                    self.counters.unexpected.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(e) => {
                    if e == sms_snmp::usm::UsmError::NotInTimeWindow {
                        self.counters.replays.fetch_add(1, Ordering::Relaxed);
                    } else if e != sms_snmp::usm::UsmError::UnknownEngineId {
                        self.counters.usm_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(%src, %user, "v3 inform refused: {e}");
                    self.engine.report(m, e, lookup)
                }
            };
        }
        // A trap: the sender's engine is authoritative.
        let Some(keys) = self.keys_for(&m.usm.engine_id, &m.usm.user) else {
            self.counters.usm_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%src, %user, "v3 trap from an unknown user");
            return None;
        };
        // The level is the user's policy: a message without authentication
        // (its flags cleared by anyone on the path) is not the user's.
        let level = sms_snmp::usm::SecurityLevel::from_flags(m.flags);
        if self.min_level(&m.usm.user).is_some_and(|min| level < min) {
            self.counters.usm_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%src, %user, ?level, "v3 trap below the user's security level: refused");
            return None;
        }
        let scoped = match unseal(m, raw, &keys) {
            Ok(s) => s,
            Err(e) => {
                self.counters.usm_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, %user, "v3 trap refused: {e}");
                return None;
            }
        };
        if m.flags & sms_snmp::message::flags::AUTH != 0 {
            let mut clocks = sms_core::daemon::lock(&self.clocks);
            if clocks.len() >= MAX_ENGINES && !clocks.contains_key(&m.usm.engine_id) {
                clocks.clear();
            }
            let c = clocks.entry(m.usm.engine_id.clone()).or_default();
            if !c.check(m.usm.boots, m.usm.time, Instant::now()) {
                self.counters.replays.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    %src, %user, boots = m.usm.boots, time = m.usm.time,
                    "v3 trap outside the time window of its engine (replayed?): refused"
                );
                return None;
            }
        }
        if scoped.pdu.kind != PduType::TrapV2 {
            self.counters.unexpected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.store(
            Body::V2(scoped.pdu.varbinds),
            src,
            port,
            Version::V3,
            "trap",
            &user,
        );
        None
    }

    fn store(
        &self,
        body: Body,
        src: SocketAddr,
        port: u16,
        version: Version,
        kind: &'static str,
        principal: &str,
    ) {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let ev = RawEvent {
            time: std::time::SystemTime::now(),
            source: src,
            port,
            version: version.name(),
            kind,
            principal: principal.to_string(),
            body,
        };
        if !self.log.push(ev) {
            tracing::warn!("event queue full: a notification from {src} was not stored");
        }
    }
}

fn ack(p: &Pdu) -> Pdu {
    Pdu {
        kind: PduType::Response,
        request_id: p.request_id,
        error_status: 0,
        error_index: 0,
        varbinds: p.varbinds.clone(),
    }
}

/// A remote engine's clock as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedClock {
    /// Engine ID, hex.
    pub engine_id: String,
    /// Latest snmpEngineBoots seen.
    pub boots: u32,
    /// Latest snmpEngineTime seen.
    pub time: u32,
    /// When it was seen, Unix seconds.
    pub seen_unix: i64,
}

use sms_core::daemon::unix_now;

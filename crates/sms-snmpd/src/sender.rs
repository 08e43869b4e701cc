//! Traps about the appliance's own events, sent to the configured managers
//! (v2c with a community, or v3 as this authoritative engine).

use crate::access::Access;
use crate::config::{TrapDestination, TrapVersion};
use crate::mib::oids;
use sms_snmp::message::CommunityMessage;
use sms_snmp::usm::{Engine, SecurityLevel, UserKeys};
use sms_snmp::value::VarBind;
use sms_snmp::{AnyPdu, Oid, Pdu, PduType, ScopedPdu, Value, Version};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

/// The appliance's notifications (SMS-MIB smsNotifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// A DV package became active.
    DvActivated,
    /// A distribution job ended with failures.
    DistributionFailed,
    /// A managed device stopped answering the poller.
    DeviceUnreachable,
    /// The HA role changed.
    HaFailover,
    /// A managed device answers again.
    DeviceReachable,
    /// HA replication fell behind: commits are not all on the peer.
    HaDegraded,
    /// HA replication caught up.
    HaInSync,
    /// The agent started for the first time since the appliance booted
    /// (SNMPv2-MIB coldStart).
    ColdStart,
    /// The agent restarted within the same boot (SNMPv2-MIB warmStart).
    WarmStart,
}

impl Notification {
    /// The notification's OID.
    pub fn oid(self) -> Oid {
        // snmpTraps (RFC 3418): coldStart .1, warmStart .2.
        const SNMP_TRAPS: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5];
        let n = match self {
            Notification::DvActivated => 1,
            Notification::DistributionFailed => 2,
            Notification::DeviceUnreachable => 3,
            Notification::HaFailover => 4,
            Notification::DeviceReachable => 5,
            Notification::HaDegraded => 6,
            Notification::HaInSync => 7,
            Notification::ColdStart => return Oid::new(SNMP_TRAPS.to_vec()).child(&[1]),
            Notification::WarmStart => return Oid::new(SNMP_TRAPS.to_vec()).child(&[2]),
        };
        Oid::new(oids::SMS_NOTIFICATIONS.to_vec()).child(&[n])
    }
}

/// smsEventText.0, the text every notification carries.
pub fn event_text_oid() -> Oid {
    crate::mib::sms(&[6, 2, 0])
}

struct Destination {
    addr: SocketAddr,
    kind: Kind,
}

enum Kind {
    V2c(Vec<u8>),
    V3(UserKeys, SecurityLevel),
}

/// Sends notifications to every destination.
pub struct TrapSender {
    engine: Arc<Engine>,
    dests: Vec<Destination>,
    sock4: UdpSocket,
    sock6: Option<UdpSocket>,
    request_id: AtomicI32,
    /// Traps sent (per destination).
    pub sent: AtomicU64,
    /// Sends that failed.
    pub failed: AtomicU64,
}

impl std::fmt::Debug for TrapSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrapSender")
            .field("destinations", &self.dests.len())
            .finish()
    }
}

impl TrapSender {
    /// A sender for the configured destinations; v3 destinations use a
    /// `[[user]]`'s keys localized to this engine.
    pub fn new(
        engine: Arc<Engine>,
        access: &Access,
        dests: &[TrapDestination],
    ) -> Result<TrapSender, String> {
        let mut out = Vec::new();
        for d in dests {
            let kind = match d.version {
                TrapVersion::V2c => {
                    if d.community.is_empty() {
                        return Err(format!("trap destination {}: community missing", d.address));
                    }
                    Kind::V2c(d.community.as_bytes().to_vec())
                }
                TrapVersion::V3 => {
                    let u = access.user(d.user.as_bytes()).ok_or_else(|| {
                        format!(
                            "trap destination {}: no [[user]] named {:?}",
                            d.address, d.user
                        )
                    })?;
                    let level = SecurityLevel::parse(&d.level)
                        .map_err(|e| format!("trap destination {}: {e}", d.address))?;
                    if level > u.keys.max_level() {
                        return Err(format!(
                            "trap destination {}: user {:?} has no keys for {}",
                            d.address, d.user, d.level
                        ));
                    }
                    Kind::V3(u.keys.clone(), level)
                }
            };
            out.push(Destination {
                addr: d.address,
                kind,
            });
        }
        let sock4 = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("trap socket: {e}"))?;
        let sock6 = UdpSocket::bind("[::]:0").ok();
        Ok(TrapSender {
            engine,
            dests: out,
            sock4,
            sock6,
            request_id: AtomicI32::new(rand_start()),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Number of destinations.
    pub fn destinations(&self) -> usize {
        self.dests.len()
    }

    /// Sends `n` with `text` and extra bindings to every destination.
    pub fn send(&self, n: Notification, uptime: u32, text: &str, extra: Vec<VarBind>) {
        let mut vbs = vec![
            VarBind::new(
                Oid::new(oids::SYS_UPTIME.to_vec()),
                Value::TimeTicks(uptime),
            ),
            VarBind::new(Oid::new(oids::SNMP_TRAP_OID.to_vec()), Value::Oid(n.oid())),
            VarBind::new(event_text_oid(), Value::text(text)),
        ];
        vbs.extend(extra);
        for d in &self.dests {
            let id = self.request_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
            let pdu = Pdu::new(PduType::TrapV2, id, vbs.clone());
            let bytes = match &d.kind {
                Kind::V2c(c) => CommunityMessage {
                    version: Version::V2c,
                    community: c.clone(),
                    pdu: AnyPdu::Pdu(pdu),
                }
                .encode(),
                Kind::V3(keys, level) => self.engine.seal(
                    id,
                    false,
                    keys,
                    *level,
                    &ScopedPdu {
                        context_engine_id: self.engine.id().to_vec(),
                        context_name: Vec::new(),
                        pdu,
                    },
                ),
            };
            let sock = if d.addr.is_ipv6() {
                self.sock6.as_ref().unwrap_or(&self.sock4)
            } else {
                &self.sock4
            };
            match sock.send_to(&bytes, d.addr) {
                Ok(_) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(destination = %d.addr, "sending a trap failed: {e}");
                }
            }
        }
        tracing::info!(notification = ?n, destinations = self.dests.len(), "{text}");
    }
}

fn rand_start() -> i32 {
    (std::process::id() as i32).wrapping_mul(7919) & 0x3fff_ffff
}

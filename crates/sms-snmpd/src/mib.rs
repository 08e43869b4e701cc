//! The objects the agent serves: SNMPv2-MIB system group, the SNMP engine
//! group and USM statistics, IF-MIB from the live system, and SMS-MIB
//! (`mibs/SMS-MIB.txt`) from the daemons' values.
//!
//! A [`Mib`] is an immutable snapshot, rebuilt in the background from the
//! cached daemon values; a request only reads it, so a walk never waits on
//! another daemon. The few values that change every moment (uptime, engine
//! time, security counters) are [`Cell::Dynamic`] and read at request time.

use sms_snmp::{Oid, Value};
use std::collections::BTreeMap;
use std::ops::Bound;

pub use sms_core::bus::PollState;

/// OIDs as arrays, so that they are constants.
pub mod oids {
    /// SNMPv2-MIB::system.
    pub const SYSTEM: &[u32] = &[1, 3, 6, 1, 2, 1, 1];
    /// sysDescr.0
    pub const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
    /// sysObjectID.0
    pub const SYS_OBJECT_ID: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 2, 0];
    /// sysUpTime.0
    pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
    /// sysContact.0
    pub const SYS_CONTACT: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 4, 0];
    /// sysName.0
    pub const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
    /// sysLocation.0
    pub const SYS_LOCATION: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 6, 0];
    /// sysServices.0
    pub const SYS_SERVICES: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 7, 0];
    /// ifNumber.0
    pub const IF_NUMBER: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 1, 0];
    /// ifEntry.
    pub const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
    /// ifXEntry.
    pub const IFX_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
    /// snmpTrapOID.0 (in every v2 notification).
    pub const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
    /// snmpTrapEnterprise.0 (v1 trap translation).
    pub const SNMP_TRAP_ENTERPRISE: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 3, 0];
    /// snmpTraps (generic v1 traps translate below it).
    pub const SNMP_TRAPS: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5];
    /// snmpEngineID.0 .. snmpEngineMaxMessageSize.0 share this prefix.
    pub const SNMP_ENGINE: &[u32] = &[1, 3, 6, 1, 6, 3, 10, 2, 1];
    /// usmStats.
    pub const USM_STATS: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1];
    /// The enterprise used by SMS-MIB (RFC 5612 documentation number until
    /// a private enterprise number is registered for the product).
    pub const ENTERPRISE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473];
    /// SMS-MIB::smsMIB.
    pub const SMS_MIB: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1];
    /// smsNotifications.
    pub const SMS_NOTIFICATIONS: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 0];
    /// smsObjects.
    pub const SMS_OBJECTS: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1];
    /// smsProductAppliance (sysObjectID).
    pub const SMS_PRODUCT: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 3, 1];
}

/// A value in the snapshot, or a value computed when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Fixed until the next snapshot.
    Static(Value),
    /// Computed per request.
    Dynamic(Dynamic),
}

/// The values computed per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    /// sysUpTime (hundredths since the agent started).
    SysUpTime,
    /// snmpEngineTime.
    EngineTime,
    /// A usmStats counter (1..=6).
    UsmStat(u32),
    /// smsTrapsReceived: notifications stored so far.
    TrapsStored,
}

/// An immutable snapshot of every object.
#[derive(Debug, Clone, Default)]
pub struct Mib {
    objects: BTreeMap<Oid, Cell>,
}

impl Mib {
    /// An empty MIB.
    pub fn new() -> Mib {
        Mib::default()
    }

    /// Sets an object.
    pub fn set(&mut self, oid: Oid, cell: Cell) {
        self.objects.insert(oid, cell);
    }

    /// Sets a static value.
    pub fn put(&mut self, oid: &[u32], value: Value) {
        self.objects
            .insert(Oid::new(oid.to_vec()), Cell::Static(value));
    }

    /// An object by exact name.
    pub fn get(&self, oid: &Oid) -> Option<&Cell> {
        self.objects.get(oid)
    }

    /// The first object after `oid` for which `visible` holds.
    pub fn next(&self, oid: &Oid, visible: impl Fn(&Oid) -> bool) -> Option<(&Oid, &Cell)> {
        self.objects
            .range((Bound::Excluded(oid), Bound::Unbounded))
            .find(|(o, _)| visible(o))
    }

    /// Whether some object lies under `prefix` (to tell noSuchInstance from
    /// noSuchObject).
    pub fn has_under(&self, prefix: &Oid) -> bool {
        self.objects
            .range((Bound::Included(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|(o, _)| o.starts_with(prefix))
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the MIB is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object under `prefix`, in order.
    pub fn subtree<'a>(&'a self, prefix: &'a Oid) -> impl Iterator<Item = (&'a Oid, &'a Cell)> {
        self.objects
            .range((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(o, _)| o.starts_with(prefix))
    }
}

/// The writable system objects (persisted by the agent).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemText {
    /// sysContact.
    pub contact: String,
    /// sysName.
    pub name: String,
    /// sysLocation.
    pub location: String,
}

/// One managed device as the MIB shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRow {
    /// Inventory name (the table index).
    pub name: String,
    /// Management address, as text.
    pub address: String,
    /// Platform family.
    pub platform: String,
    /// Installed DV.
    pub dv: String,
    /// Installed TOS.
    pub tos: String,
    /// Distribution state.
    pub state: String,
    /// Last contact (RFC 3339) or empty.
    pub last_contact: String,
    /// Poller's view.
    pub poll: PollState,
    /// The device's sysUpTime at the last poll.
    pub uptime: u32,
    /// The device's sysDescr at the last poll.
    pub descr: String,
}

/// Values from the other daemons (cached) and the poller.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DaemonValues {
    /// Active DV version.
    pub dv: String,
    /// Active TOS version.
    pub tos: String,
    /// Last update check (RFC 3339) or empty.
    pub last_check: String,
    /// Result of the last check.
    pub last_result: String,
    /// Managed devices.
    pub devices: Vec<DeviceRow>,
    /// HA role: 1 standalone, 2 primary, 3 secondary.
    pub ha_role: i32,
    /// HA peer: 1 none, 2 connected, 3 disconnected.
    pub ha_peer: i32,
    /// sms-had's state in words and its epoch (for the traps' text);
    /// empty until sms-had answered.
    #[serde(default)]
    pub ha_state: String,
    /// The HA epoch.
    #[serde(default)]
    pub ha_epoch: u64,
    /// Replication DEGRADED (commits not all on the peer).
    #[serde(default)]
    pub ha_degraded: bool,
    /// NTP: 1 synchronized, 2 unsynchronized, 3 unknown (daemon not answering).
    pub ntp_sync: i32,
    /// NTP stratum served.
    pub ntp_stratum: i32,
    /// NTP offset, microseconds.
    pub ntp_offset_us: i32,
}

/// One network interface from `/sys/class/net`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// ifIndex.
    pub index: u32,
    /// Name as the device reports it.
    pub name: String,
    /// ifType (6 ethernetCsmacd, 24 softwareLoopback, 1 other).
    pub if_type: i32,
    /// Largest frame the interface carries, octets.
    pub mtu: i32,
    /// Speed, Mbit/s.
    pub speed_mbps: u32,
    /// MAC address.
    pub mac: Vec<u8>,
    /// Administratively up.
    pub admin_up: bool,
    /// Operationally up.
    pub oper_up: bool,
    /// Counters: rx bytes, rx packets, rx dropped, rx errors, tx bytes,
    /// tx packets, tx dropped, tx errors.
    pub stats: [u64; 8],
}

fn read_trim(p: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads the interfaces from `/sys/class/net` (empty when unreadable).
pub fn interfaces() -> Vec<Interface> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        let Some(index) = read_trim(&p.join("ifindex")).and_then(|s| s.parse().ok()) else {
            continue;
        };
        let arp_type: u32 = read_trim(&p.join("type"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let flags = read_trim(&p.join("flags"))
            .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let stat = |n: &str| {
            read_trim(&p.join("statistics").join(n))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        out.push(Interface {
            index,
            if_type: match arp_type {
                1 => 6,
                772 => 24,
                _ => 1,
            },
            mtu: read_trim(&p.join("mtu"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            speed_mbps: read_trim(&p.join("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s > 0)
                .unwrap_or(0) as u32,
            mac: read_trim(&p.join("address"))
                .map(|s| {
                    s.split(':')
                        .filter_map(|b| u8::from_str_radix(b, 16).ok())
                        .collect()
                })
                .unwrap_or_default(),
            admin_up: flags & 1 != 0,
            oper_up: matches!(
                read_trim(&p.join("operstate")).as_deref(),
                Some("up") | Some("unknown")
            ) && flags & 1 != 0,
            stats: [
                stat("rx_bytes"),
                stat("rx_packets"),
                stat("rx_dropped"),
                stat("rx_errors"),
                stat("tx_bytes"),
                stat("tx_packets"),
                stat("tx_dropped"),
                stat("tx_errors"),
            ],
            name,
        });
    }
    out.sort_by_key(|i| i.index);
    out
}

/// The appliance's fixed description.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Firmware version.
    pub firmware: String,
    /// snmpEngineID.
    pub engine_id: Vec<u8>,
    /// snmpEngineBoots.
    pub engine_boots: u32,
}

fn text(s: &str) -> Value {
    Value::text(s)
}

/// The OID of an SMS-MIB object below smsObjects.
pub fn sms(arcs: &[u32]) -> Oid {
    Oid::new(oids::SMS_OBJECTS.to_vec()).child(arcs)
}

/// Index arcs of a table indexed by an IMPLIED DisplayString.
pub fn implied_index(name: &str) -> Vec<u32> {
    name.bytes().map(u32::from).collect()
}

/// Builds a full snapshot.
pub fn build(id: &Identity, sys: &SystemText, vals: &DaemonValues, ifs: &[Interface]) -> Mib {
    let mut m = Mib::new();
    let kernel = read_trim(std::path::Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default();
    m.put(
        oids::SYS_DESCR,
        text(&format!(
            "SMS OS {} Security Management System appliance, Linux {kernel} x86_64",
            id.firmware
        )),
    );
    m.put(
        oids::SYS_OBJECT_ID,
        Value::Oid(Oid::new(oids::SMS_PRODUCT.to_vec())),
    );
    m.set(
        Oid::new(oids::SYS_UPTIME.to_vec()),
        Cell::Dynamic(Dynamic::SysUpTime),
    );
    m.put(oids::SYS_CONTACT, text(&sys.contact));
    m.put(oids::SYS_NAME, text(&sys.name));
    m.put(oids::SYS_LOCATION, text(&sys.location));
    m.put(oids::SYS_SERVICES, Value::Integer(72));

    // IF-MIB.
    m.put(oids::IF_NUMBER, Value::Integer(ifs.len() as i32));
    let ife = Oid::new(oids::IF_ENTRY.to_vec());
    let ifx = Oid::new(oids::IFX_ENTRY.to_vec());
    for i in ifs {
        let c32 = |v: u64| Value::Counter32(v as u32);
        let cols: [(u32, Value); 16] = [
            (1, Value::Integer(i.index as i32)),
            (2, text(&i.name)),
            (3, Value::Integer(i.if_type)),
            (4, Value::Integer(i.mtu)),
            (
                5,
                Value::Gauge32((i.speed_mbps as u64 * 1_000_000).min(u32::MAX as u64) as u32),
            ),
            (6, Value::OctetString(i.mac.clone())),
            (7, Value::Integer(if i.admin_up { 1 } else { 2 })),
            (8, Value::Integer(if i.oper_up { 1 } else { 2 })),
            (10, c32(i.stats[0])),
            (11, c32(i.stats[1])),
            (13, c32(i.stats[2])),
            (14, c32(i.stats[3])),
            (16, c32(i.stats[4])),
            (17, c32(i.stats[5])),
            (19, c32(i.stats[6])),
            (20, c32(i.stats[7])),
        ];
        for (col, v) in cols {
            m.set(ife.child(&[col, i.index]), Cell::Static(v));
        }
        m.set(ifx.child(&[1, i.index]), Cell::Static(text(&i.name)));
        m.set(
            ifx.child(&[6, i.index]),
            Cell::Static(Value::Counter64(i.stats[0])),
        );
        m.set(
            ifx.child(&[10, i.index]),
            Cell::Static(Value::Counter64(i.stats[4])),
        );
        m.set(
            ifx.child(&[15, i.index]),
            Cell::Static(Value::Gauge32(i.speed_mbps)),
        );
    }

    // SNMP-FRAMEWORK-MIB engine group and USM statistics.
    let eng = Oid::new(oids::SNMP_ENGINE.to_vec());
    m.set(
        eng.child(&[1, 0]),
        Cell::Static(Value::OctetString(id.engine_id.clone())),
    );
    m.set(
        eng.child(&[2, 0]),
        Cell::Static(Value::Integer(id.engine_boots as i32)),
    );
    m.set(eng.child(&[3, 0]), Cell::Dynamic(Dynamic::EngineTime));
    m.set(eng.child(&[4, 0]), Cell::Static(Value::Integer(65507)));
    let usm = Oid::new(oids::USM_STATS.to_vec());
    for k in 1..=6 {
        m.set(usm.child(&[k, 0]), Cell::Dynamic(Dynamic::UsmStat(k)));
    }

    // SMS-MIB.
    m.set(sms(&[1, 1, 0]), Cell::Static(text(&id.firmware)));
    m.set(sms(&[2, 1, 0]), Cell::Static(text(&vals.dv)));
    m.set(sms(&[2, 2, 0]), Cell::Static(text(&vals.tos)));
    m.set(sms(&[2, 3, 0]), Cell::Static(text(&vals.last_check)));
    m.set(sms(&[2, 4, 0]), Cell::Static(text(&vals.last_result)));
    m.set(
        sms(&[3, 1, 0]),
        Cell::Static(Value::Gauge32(vals.devices.len() as u32)),
    );
    for d in &vals.devices {
        if d.name.is_empty() || d.name.len() > 100 {
            continue; // cannot be an OID index
        }
        let idx = implied_index(&d.name);
        let col = |c: u32| {
            let mut arcs = vec![3, 2, 1, c];
            arcs.extend_from_slice(&idx);
            sms(&arcs)
        };
        m.set(col(2), Cell::Static(text(&d.address)));
        m.set(col(3), Cell::Static(text(&d.platform)));
        m.set(col(4), Cell::Static(text(&d.dv)));
        m.set(col(5), Cell::Static(text(&d.tos)));
        m.set(col(6), Cell::Static(text(&d.state)));
        m.set(col(7), Cell::Static(text(&d.last_contact)));
        m.set(col(8), Cell::Static(Value::Integer(d.poll.number())));
        m.set(col(9), Cell::Static(Value::TimeTicks(d.uptime)));
        m.set(col(10), Cell::Static(text(&d.descr)));
    }
    m.set(
        sms(&[4, 1, 0]),
        Cell::Static(Value::Integer(vals.ha_role.clamp(1, 3))),
    );
    m.set(
        sms(&[4, 2, 0]),
        Cell::Static(Value::Integer(vals.ha_peer.clamp(1, 3))),
    );
    m.set(
        sms(&[5, 1, 0]),
        Cell::Static(Value::Integer(vals.ntp_sync.clamp(1, 3))),
    );
    m.set(
        sms(&[5, 2, 0]),
        Cell::Static(Value::Integer(vals.ntp_stratum)),
    );
    m.set(
        sms(&[5, 3, 0]),
        Cell::Static(Value::Integer(vals.ntp_offset_us)),
    );
    m.set(sms(&[6, 1, 0]), Cell::Dynamic(Dynamic::TrapsStored));
    m
}

/// Whether `oid` is one of the writable objects (sysContact, sysName,
/// sysLocation).
pub fn is_writable(oid: &Oid) -> bool {
    let a = oid.arcs();
    a == oids::SYS_CONTACT || a == oids::SYS_NAME || a == oids::SYS_LOCATION
}

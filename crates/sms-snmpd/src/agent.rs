//! The agent: answers Get, GetNext, GetBulk and Set in SNMPv1, v2c and v3.
//!
//! [`Agent::handle`] takes one datagram and returns the answer, if any: it
//! decodes, checks the community (and its source network) or the USM
//! security (reports for discovery, unknown users, wrong digests, stale
//! time), applies the view, and builds the response from the current
//! [`Mib`] snapshot. Bad input never gets past the decoder; it is counted
//! and dropped.

use crate::access::{Access, View};
use crate::mib::{self, Cell, Dynamic, Mib, SystemText};
use sms_core::ratelimit::{RateLimitConfig, RateLimiter};
use sms_snmp::message::{error_status as es, CommunityMessage};
use sms_snmp::usm::Engine;
use sms_snmp::value::VarBind;
use sms_snmp::{AnyPdu, Message, Oid, Pdu, PduType, ScopedPdu, Value, Version};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Largest max-repetitions honoured in a GetBulk.
pub const MAX_REPETITIONS: i32 = 1000;

/// Counters of the agent, shown over D-Bus.
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Answers sent (responses and reports).
    pub answered: AtomicU64,
    /// Undecodable datagrams.
    pub malformed: AtomicU64,
    /// Unknown community or source not allowed.
    pub bad_community: AtomicU64,
    /// v3 messages refused by USM (reported or dropped).
    pub usm_refused: AtomicU64,
    /// Successful Set requests.
    pub sets: AtomicU64,
    /// Datagrams dropped because their source was over its rate.
    pub rate_limited: AtomicU64,
}

/// Where Set changes go to be kept across restarts.
pub type Persist = Box<dyn Fn(&SystemText) -> Result<(), String> + Send + Sync>;

/// The agent.
pub struct Agent {
    engine: Arc<Engine>,
    access: Arc<Access>,
    mib: RwLock<Arc<Mib>>,
    system: Mutex<SystemText>,
    persist: Option<Persist>,
    start: Instant,
    max_response: usize,
    /// Largest v1/v2c response: their source address is not authenticated,
    /// so a small request must not buy a large answer sent to a victim.
    community_max_response: usize,
    limiter: Option<Mutex<RateLimiter>>,
    traps_stored: std::sync::OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
    /// What was counted since the daemon started.
    pub counters: AgentCounters,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

enum Rights<'a> {
    Read(&'a View),
    ReadWrite(&'a View, &'a View),
}

impl Rights<'_> {
    fn read(&self) -> &View {
        match self {
            Rights::Read(v) | Rights::ReadWrite(v, _) => v,
        }
    }
    fn write(&self) -> Option<&View> {
        match self {
            Rights::Read(_) => None,
            Rights::ReadWrite(_, w) => Some(w),
        }
    }
}

impl Agent {
    /// An agent serving `mib`, with the writable system objects `system`.
    pub fn new(
        engine: Arc<Engine>,
        access: Arc<Access>,
        mib: Mib,
        system: SystemText,
        persist: Option<Persist>,
        max_response: usize,
    ) -> Agent {
        Agent {
            engine,
            access,
            mib: RwLock::new(Arc::new(mib)),
            system: Mutex::new(system),
            persist,
            start: Instant::now(),
            max_response: max_response.clamp(484, 65507),
            community_max_response: max_response.clamp(484, 65507),
            limiter: None,
            traps_stored: std::sync::OnceLock::new(),
            counters: AgentCounters::default(),
        }
    }

    /// Caps v1/v2c responses at `community_max_response` octets and limits
    /// the requests taken from each source address.
    pub fn with_limits(mut self, community_max_response: usize, rate: RateLimitConfig) -> Agent {
        self.community_max_response = community_max_response.clamp(484, self.max_response);
        self.limiter = rate.enabled.then(|| Mutex::new(RateLimiter::new(rate)));
        self
    }

    /// Where smsTrapsReceived comes from (the receiver's event log).
    pub fn set_traps_stored(&self, f: Box<dyn Fn() -> u64 + Send + Sync>) {
        let _ = self.traps_stored.set(f);
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The access rules.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// The current writable system objects.
    pub fn system(&self) -> SystemText {
        sms_core::daemon::lock(&self.system).clone()
    }

    /// Replaces the snapshot; the writable objects are taken from the agent.
    pub fn replace_mib(&self, mut m: Mib) {
        let sys = self.system();
        m.put(mib::oids::SYS_CONTACT, Value::text(&sys.contact));
        m.put(mib::oids::SYS_NAME, Value::text(&sys.name));
        m.put(mib::oids::SYS_LOCATION, Value::text(&sys.location));
        *sms_core::daemon::write(&self.mib) = Arc::new(m);
    }

    /// The current snapshot.
    pub fn mib(&self) -> Arc<Mib> {
        sms_core::daemon::read(&self.mib).clone()
    }

    /// sysUpTime now.
    pub fn uptime(&self) -> u32 {
        (self.start.elapsed().as_millis() / 10).min(u32::MAX as u128) as u32
    }

    fn resolve(&self, cell: &Cell) -> Value {
        match cell {
            Cell::Static(v) => v.clone(),
            Cell::Dynamic(Dynamic::SysUpTime) => Value::TimeTicks(self.uptime()),
            Cell::Dynamic(Dynamic::EngineTime) => Value::Integer(self.engine.time() as i32),
            Cell::Dynamic(Dynamic::TrapsStored) => {
                Value::Counter32(self.traps_stored.get().map(|f| f()).unwrap_or(0) as u32)
            }
            Cell::Dynamic(Dynamic::UsmStat(k)) => Value::Counter32(
                [
                    sms_snmp::usm::UsmError::UnsupportedSecLevel,
                    sms_snmp::usm::UsmError::NotInTimeWindow,
                    sms_snmp::usm::UsmError::UnknownUserName,
                    sms_snmp::usm::UsmError::UnknownEngineId,
                    sms_snmp::usm::UsmError::WrongDigest,
                    sms_snmp::usm::UsmError::DecryptionError,
                ]
                .get((*k as usize).saturating_sub(1))
                .map(|e| self.engine.counter(*e))
                .unwrap_or(0),
            ),
        }
    }

    /// Answers one datagram from `src`; `None` when nothing is to be sent.
    pub fn handle(&self, packet: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if let Some(l) = &self.limiter {
            let allowed = sms_core::daemon::lock(l).allow(src.ip(), Instant::now());
            if !allowed {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let msg = match sms_snmp::decode(packet) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, "malformed SNMP datagram: {e}");
                return None;
            }
        };
        let out = match msg {
            Message::Community(m) => self.handle_community(m, src),
            Message::V3(m) => self.handle_v3(&m, packet, src),
        };
        if out.is_some() {
            self.counters.answered.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    fn handle_community(&self, m: CommunityMessage, src: SocketAddr) -> Option<Vec<u8>> {
        let Some(c) = self.access.community(&m.community, src.ip()) else {
            self.counters.bad_community.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%src, "unknown community or source not allowed");
            return None;
        };
        let AnyPdu::Pdu(pdu) = m.pdu else { return None };
        if !matches!(
            pdu.kind,
            PduType::Get | PduType::GetNext | PduType::GetBulk | PduType::Set
        ) {
            return None;
        }
        let rights = if c.write {
            Rights::ReadWrite(&c.view, &c.view)
        } else {
            Rights::Read(&c.view)
        };
        // Room for the community header around the PDU.
        let budget = self
            .community_max_response
            .saturating_sub(32 + m.community.len());
        let resp = self.process(&pdu, m.version, &rights, budget);
        Some(
            CommunityMessage {
                version: m.version,
                community: m.community,
                pdu: AnyPdu::Pdu(resp),
            }
            .encode(),
        )
    }

    fn handle_v3(
        &self,
        m: &sms_snmp::message::V3Message,
        raw: &[u8],
        src: SocketAddr,
    ) -> Option<Vec<u8>> {
        let access = &self.access;
        let acc = match self.engine.accept(m, raw, |n| access.keys(n)) {
            Ok(a) => a,
            Err(e) => {
                self.counters.usm_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, user = %String::from_utf8_lossy(&m.usm.user), "v3 message refused: {e}");
                return self.engine.report(m, e, |n| access.keys(n));
            }
        };
        let pdu = &acc.scoped.pdu;
        if !matches!(
            pdu.kind,
            PduType::Get | PduType::GetNext | PduType::GetBulk | PduType::Set
        ) {
            return None;
        }
        let user = access.user(&acc.keys.name)?;
        let resp = if acc.level < user.min_level {
            // VACM: the level is below what the user must use.
            Pdu {
                kind: PduType::Response,
                request_id: pdu.request_id,
                error_status: 16, // authorizationError
                error_index: 0,
                varbinds: pdu.varbinds.clone(),
            }
        } else {
            let rights = match &user.write {
                Some(w) => Rights::ReadWrite(&user.read, w),
                None => Rights::Read(&user.read),
            };
            let max = (m.max_size as usize).min(self.max_response);
            // Room for the v3 header, USM parameters and padding.
            self.process(pdu, Version::V3, &rights, max.saturating_sub(160))
        };
        let scoped = ScopedPdu {
            context_engine_id: acc.scoped.context_engine_id.clone(),
            context_name: acc.scoped.context_name.clone(),
            pdu: resp,
        };
        Some(
            self.engine
                .seal(m.msg_id, false, &acc.keys, acc.level, &scoped),
        )
    }

    fn process(&self, req: &Pdu, version: Version, rights: &Rights<'_>, budget: usize) -> Pdu {
        let mib = self.mib();
        let mut resp = Pdu::new(PduType::Response, req.request_id, Vec::new());
        match req.kind {
            PduType::Get => {
                for (i, vb) in req.varbinds.iter().enumerate() {
                    let v = if rights.read().contains(&vb.oid) {
                        mib.get(&vb.oid).map(|c| self.resolve(c))
                    } else {
                        None
                    };
                    // SNMPv1 has no Counter64: such objects do not exist
                    // for a v1 manager (RFC 3584 section 4.2.2.1).
                    let v =
                        v.filter(|v| !(version == Version::V1 && matches!(v, Value::Counter64(_))));
                    let v = match v {
                        Some(v) => v,
                        None if version == Version::V1 => {
                            return error(req, es::NO_SUCH_NAME, i);
                        }
                        None => {
                            let parent = Oid::new(&vb.oid.arcs()[..vb.oid.len().saturating_sub(1)]);
                            if vb.oid.len() > 1
                                && rights.read().contains(&vb.oid)
                                && mib.has_under(&parent)
                            {
                                Value::NoSuchInstance
                            } else {
                                Value::NoSuchObject
                            }
                        }
                    };
                    resp.varbinds.push(VarBind::new(vb.oid.clone(), v));
                }
            }
            PduType::GetNext => {
                for (i, vb) in req.varbinds.iter().enumerate() {
                    let mut next = self.next(&mib, &vb.oid, rights.read());
                    // A v1 GetNext skips Counter64 objects (RFC 3584
                    // section 4.2.2.1), as net-snmp does.
                    if version == Version::V1 {
                        while let Some(n) = next
                            .as_ref()
                            .filter(|n| matches!(n.value, Value::Counter64(_)))
                        {
                            next = self.next(&mib, &n.oid, rights.read());
                        }
                    }
                    match next {
                        Some(n) => resp.varbinds.push(n),
                        None if version == Version::V1 => {
                            return error(req, es::NO_SUCH_NAME, i);
                        }
                        None => resp
                            .varbinds
                            .push(VarBind::new(vb.oid.clone(), Value::EndOfMibView)),
                    }
                }
            }
            PduType::GetBulk => {
                let n = (req.error_status.max(0) as usize).min(req.varbinds.len());
                let reps = req.error_index.clamp(0, MAX_REPETITIONS) as usize;
                let mut size = 0usize;
                let mut fits = |vb: &VarBind| {
                    let mut w = sms_snmp::ber::Writer::new();
                    vb.encode(&mut w);
                    size += w.len();
                    size <= budget
                };
                for vb in &req.varbinds[..n] {
                    let next = self
                        .next(&mib, &vb.oid, rights.read())
                        .unwrap_or_else(|| VarBind::new(vb.oid.clone(), Value::EndOfMibView));
                    if !fits(&next) {
                        return error(req, es::TOO_BIG, 0);
                    }
                    resp.varbinds.push(next);
                }
                let mut cursors: Vec<Oid> =
                    req.varbinds[n..].iter().map(|v| v.oid.clone()).collect();
                'rounds: for _ in 0..reps {
                    if cursors.is_empty() {
                        break;
                    }
                    let mut all_end = true;
                    for c in cursors.iter_mut() {
                        let next = self
                            .next(&mib, c, rights.read())
                            .unwrap_or_else(|| VarBind::new(c.clone(), Value::EndOfMibView));
                        if next.value != Value::EndOfMibView {
                            all_end = false;
                        }
                        if !fits(&next) {
                            break 'rounds;
                        }
                        *c = next.oid.clone();
                        resp.varbinds.push(next);
                    }
                    if all_end {
                        break;
                    }
                }
                return resp;
            }
            PduType::Set => return self.set(req, version, rights),
            _ => return error(req, es::GEN_ERR, 0),
        }
        let mut size = 0;
        for vb in &resp.varbinds {
            let mut w = sms_snmp::ber::Writer::new();
            vb.encode(&mut w);
            size += w.len();
        }
        if size > budget {
            let mut e = error(req, es::TOO_BIG, 0);
            e.varbinds.clear();
            return e;
        }
        resp
    }

    fn next(&self, mib: &Mib, from: &Oid, view: &View) -> Option<VarBind> {
        mib.next(from, |o| view.contains(o))
            .map(|(o, c)| VarBind::new(o.clone(), self.resolve(c)))
    }

    fn set(&self, req: &Pdu, version: Version, rights: &Rights<'_>) -> Pdu {
        let v1 = version == Version::V1;
        // Validate every binding before changing anything.
        for (i, vb) in req.varbinds.iter().enumerate() {
            let in_write = rights.write().is_some_and(|w| w.contains(&vb.oid));
            if !in_write {
                return error(req, if v1 { es::NO_SUCH_NAME } else { es::NO_ACCESS }, i);
            }
            if !mib::is_writable(&vb.oid) {
                return error(
                    req,
                    if v1 {
                        es::NO_SUCH_NAME
                    } else {
                        es::NOT_WRITABLE
                    },
                    i,
                );
            }
            let Value::OctetString(bytes) = &vb.value else {
                return error(req, if v1 { es::BAD_VALUE } else { es::WRONG_TYPE }, i);
            };
            if bytes.len() > 255 {
                return error(req, if v1 { es::BAD_VALUE } else { es::WRONG_LENGTH }, i);
            }
            let ok = std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(|c| c.is_control()));
            if !ok {
                return error(req, if v1 { es::BAD_VALUE } else { es::WRONG_VALUE }, i);
            }
        }
        let mut sys = sms_core::daemon::lock(&self.system);
        let before = sys.clone();
        for vb in &req.varbinds {
            let Value::OctetString(bytes) = &vb.value else {
                continue;
            };
            let s = String::from_utf8_lossy(bytes).to_string();
            match vb.oid.arcs() {
                a if a == mib::oids::SYS_CONTACT => sys.contact = s,
                a if a == mib::oids::SYS_NAME => sys.name = s,
                a if a == mib::oids::SYS_LOCATION => sys.location = s,
                _ => {}
            }
        }
        if let Some(p) = &self.persist {
            if let Err(e) = p(&sys) {
                tracing::error!("keeping the system objects failed, change undone: {e}");
                *sys = before;
                return error(
                    req,
                    if v1 {
                        es::GEN_ERR
                    } else {
                        14 /* commitFailed */
                    },
                    0,
                );
            }
        }
        let sys = sys.clone();
        // Publish the change in a new snapshot.
        let mut m = (*self.mib()).clone();
        m.put(mib::oids::SYS_CONTACT, Value::text(&sys.contact));
        m.put(mib::oids::SYS_NAME, Value::text(&sys.name));
        m.put(mib::oids::SYS_LOCATION, Value::text(&sys.location));
        *sms_core::daemon::write(&self.mib) = Arc::new(m);
        self.counters.sets.fetch_add(1, Ordering::Relaxed);
        tracing::info!(contact = %sys.contact, name = %sys.name, location = %sys.location, "system objects set over SNMP");
        Pdu {
            kind: PduType::Response,
            request_id: req.request_id,
            error_status: 0,
            error_index: 0,
            varbinds: req.varbinds.clone(),
        }
    }
}

fn error(req: &Pdu, status: i32, index: usize) -> Pdu {
    Pdu {
        kind: PduType::Response,
        request_id: req.request_id,
        error_status: status,
        error_index: if status == es::TOO_BIG {
            0
        } else {
            index as i32 + 1
        },
        varbinds: req.varbinds.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SnmpConfig;
    use crate::mib::{DaemonValues, Identity};
    use proptest::prelude::*;
    use sms_snmp::usm::{SecurityLevel, UserCredentials};
    use std::sync::OnceLock;

    const ENGINE: &[u8] = b"\x80\x00\x7e\xd9\x05unit";

    fn agent() -> &'static Agent {
        static AGENT: OnceLock<Agent> = OnceLock::new();
        AGENT.get_or_init(|| {
            let cfg: SnmpConfig = toml::from_str(
                r#"
[[community]]
name = "public"
sources = ["127.0.0.0/8"]
view = "all"
access = "rw"
[[user]]
name = "noc"
auth = "SHA"
auth_password = "authpass123"
privacy = "AES"
privacy_password = "privpass123"
read_view = "all"
write_view = "all"
"#,
            )
            .unwrap();
            let engine = Arc::new(Engine::new(ENGINE.to_vec(), 1));
            let access = Arc::new(Access::build(&cfg, ENGINE).unwrap());
            let identity = Identity {
                firmware: "1.2.3".into(),
                engine_id: ENGINE.to_vec(),
                engine_boots: 1,
            };
            let vals = DaemonValues {
                devices: (0..300)
                    .map(|i| crate::mib::DeviceRow {
                        name: format!("ips-{i:04}"),
                        address: format!("10.0.{}.{}", i / 250, i % 250 + 1),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let m = mib::build(&identity, &SystemText::default(), &vals, &[]);
            Agent::new(engine, access, m, SystemText::default(), None, 1400)
        })
    }

    fn src() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    fn request(kind: PduType, non_rep: i32, reps: i32, oids: &[&str]) -> Vec<u8> {
        let mut p = Pdu::new(
            kind,
            5,
            oids.iter()
                .map(|o| VarBind::new(o.parse().unwrap(), Value::Null))
                .collect(),
        );
        p.error_status = non_rep;
        p.error_index = reps;
        CommunityMessage {
            version: Version::V2c,
            community: b"public".to_vec(),
            pdu: AnyPdu::Pdu(p),
        }
        .encode()
    }

    fn response(bytes: &[u8]) -> Pdu {
        match sms_snmp::decode(bytes).unwrap() {
            Message::Community(CommunityMessage {
                pdu: AnyPdu::Pdu(p),
                ..
            }) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn getbulk_fits_the_response_size_and_walks_in_order() {
        let out = agent()
            .handle(
                &request(
                    PduType::GetBulk,
                    1,
                    1000,
                    &["1.3.6.1.2.1.1.1.0", "1.3.6.1.4.1.32473.1.1.3.2"],
                ),
                src(),
            )
            .unwrap();
        assert!(out.len() <= 1400, "{} octets", out.len());
        let p = response(&out);
        assert_eq!(p.error_status, 0);
        assert_eq!(
            p.varbinds[0].oid.to_string(),
            "1.3.6.1.2.1.1.2.0",
            "non-repeater"
        );
        let rows = &p.varbinds[1..];
        assert!(rows.len() > 10, "cut to fit, not refused: {}", rows.len());
        assert!(rows.windows(2).all(|w| w[0].oid < w[1].oid));
        assert!(rows[0]
            .oid
            .to_string()
            .starts_with("1.3.6.1.4.1.32473.1.1.3.2.1.2."));
    }

    #[test]
    fn getnext_past_the_end_is_end_of_mib_view() {
        let p = response(
            &agent()
                .handle(&request(PduType::GetNext, 0, 0, &["1.3.6.1.6.3.99"]), src())
                .unwrap(),
        );
        assert_eq!(p.varbinds[0].value, Value::EndOfMibView);
    }

    #[test]
    fn v3_discovery_is_answered_with_the_engine_id_report() {
        let creds = UserCredentials::from_passwords("", None, None);
        assert!(creds.is_err(), "empty user names are not configurable");
        let keys = sms_snmp::usm::UserKeys {
            name: Vec::new(),
            auth: None,
            privacy: None,
        };
        let probe = sms_snmp::usm::seal(
            &sms_snmp::usm::Seal {
                engine_id: b"",
                boots: 0,
                time: 0,
                msg_id: 42,
                reportable: true,
                level: SecurityLevel::NoAuthNoPriv,
                keys: &keys,
                salt: 0,
            },
            &ScopedPdu {
                context_engine_id: Vec::new(),
                context_name: Vec::new(),
                pdu: Pdu::new(PduType::Get, 9, Vec::new()),
            },
        );
        let out = agent().handle(&probe, src()).unwrap();
        let Message::V3(m) = sms_snmp::decode(&out).unwrap() else {
            panic!()
        };
        assert_eq!(m.msg_id, 42);
        assert_eq!(m.usm.engine_id, ENGINE);
        assert_eq!(m.usm.boots, 1);
        let sms_snmp::message::ScopedPduData::Plain(s) = m.data else {
            panic!()
        };
        assert_eq!(s.pdu.kind, PduType::Report);
        assert_eq!(s.pdu.varbinds[0].oid.to_string(), "1.3.6.1.6.3.15.1.1.4.0");
    }

    proptest! {
        #[test]
        fn any_datagram_leaves_the_agent_answering_decodable_messages(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            if let Some(out) = agent().handle(&bytes, src()) {
                prop_assert!(sms_snmp::decode(&out).is_ok());
            }
            let mut m = request(PduType::GetBulk, 1, 20, &["1.3.6.1.2.1.1", "1.3.6.1.4.1"]);
            let i = at.index(m.len());
            m[i] = byte;
            if let Some(out) = agent().handle(&m, src()) {
                prop_assert!(sms_snmp::decode(&out).is_ok());
            }
        }
    }
}

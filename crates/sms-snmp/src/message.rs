//! SNMP messages: v1/v2c community messages and v3 USM messages, and the
//! PDUs they carry.

use crate::ber::{tag, BerError, Reader, Writer};
use crate::value::{decode_varbinds, encode_varbinds, Oid, VarBind};

/// Message versions on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SNMPv1 (0).
    V1,
    /// SNMPv2c (1).
    V2c,
    /// SNMPv3 (3).
    V3,
}

impl Version {
    /// The version field's value.
    pub fn wire(self) -> i64 {
        match self {
            Version::V1 => 0,
            Version::V2c => 1,
            Version::V3 => 3,
        }
    }

    /// A short name for logs and records.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2c => "v2c",
            Version::V3 => "v3",
        }
    }
}

/// The kinds of PDU (their context tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PduType {
    /// GetRequest.
    Get,
    /// GetNextRequest.
    GetNext,
    /// Response.
    Response,
    /// SetRequest.
    Set,
    /// GetBulkRequest.
    GetBulk,
    /// InformRequest.
    Inform,
    /// SNMPv2-Trap.
    TrapV2,
    /// Report.
    Report,
}

/// Tag of an SNMPv1 Trap PDU.
pub const TRAP_V1_TAG: u8 = 0xa4;

impl PduType {
    /// The PDU's BER tag.
    pub fn tag(self) -> u8 {
        match self {
            PduType::Get => 0xa0,
            PduType::GetNext => 0xa1,
            PduType::Response => 0xa2,
            PduType::Set => 0xa3,
            PduType::GetBulk => 0xa5,
            PduType::Inform => 0xa6,
            PduType::TrapV2 => 0xa7,
            PduType::Report => 0xa8,
        }
    }

    fn from_tag(t: u8) -> Option<PduType> {
        Some(match t {
            0xa0 => PduType::Get,
            0xa1 => PduType::GetNext,
            0xa2 => PduType::Response,
            0xa3 => PduType::Set,
            0xa5 => PduType::GetBulk,
            0xa6 => PduType::Inform,
            0xa7 => PduType::TrapV2,
            0xa8 => PduType::Report,
            _ => return None,
        })
    }

    /// Whether the PDU expects an answer (RFC 3411 Confirmed Class).
    pub fn is_confirmed(self) -> bool {
        matches!(
            self,
            PduType::Get | PduType::GetNext | PduType::Set | PduType::GetBulk | PduType::Inform
        )
    }
}

/// Error-status values (RFC 3416).
pub mod error_status {
    /// noError.
    pub const NO_ERROR: i32 = 0;
    /// tooBig.
    pub const TOO_BIG: i32 = 1;
    /// noSuchName (v1).
    pub const NO_SUCH_NAME: i32 = 2;
    /// badValue (v1).
    pub const BAD_VALUE: i32 = 3;
    /// readOnly (v1).
    pub const READ_ONLY: i32 = 4;
    /// genErr.
    pub const GEN_ERR: i32 = 5;
    /// noAccess.
    pub const NO_ACCESS: i32 = 6;
    /// wrongType.
    pub const WRONG_TYPE: i32 = 7;
    /// wrongLength.
    pub const WRONG_LENGTH: i32 = 8;
    /// wrongValue.
    pub const WRONG_VALUE: i32 = 10;
    /// notWritable.
    pub const NOT_WRITABLE: i32 = 17;
}

/// Every PDU except the SNMPv1 trap. For GetBulk, `error_status` holds
/// non-repeaters and `error_index` max-repetitions, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// Which PDU.
    pub kind: PduType,
    /// request-id: pairs an answer with its request.
    pub request_id: i32,
    /// error-status (non-repeaters for GetBulk).
    pub error_status: i32,
    /// error-index (max-repetitions for GetBulk).
    pub error_index: i32,
    /// variable-bindings.
    pub varbinds: Vec<VarBind>,
}

impl Pdu {
    /// A PDU with no error.
    pub fn new(kind: PduType, request_id: i32, varbinds: Vec<VarBind>) -> Pdu {
        Pdu {
            kind,
            request_id,
            error_status: 0,
            error_index: 0,
            varbinds,
        }
    }

    /// Writes the PDU.
    pub fn encode(&self, w: &mut Writer) {
        w.constructed(self.kind.tag(), |w| {
            w.integer(self.request_id as i64);
            w.integer(self.error_status as i64);
            w.integer(self.error_index as i64);
            encode_varbinds(w, &self.varbinds);
        });
    }

    fn decode_body(kind: PduType, mut c: Reader<'_>) -> Result<Pdu, BerError> {
        let request_id = c.read_i32("request-id")?;
        let error_status = c.read_i32("error-status")?;
        let error_index = c.read_i32("error-index")?;
        let varbinds = decode_varbinds(&mut c)?;
        c.finish("PDU")?;
        Ok(Pdu {
            kind,
            request_id,
            error_status,
            error_index,
            varbinds,
        })
    }
}

/// An SNMPv1 Trap-PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapV1 {
    /// enterprise: the OID of the sending organisation (SNMPv1 traps).
    pub enterprise: Oid,
    /// agent-addr: the IPv4 address of the trap's sender (SNMPv1).
    pub agent_addr: [u8; 4],
    /// generic-trap.
    pub generic: i32,
    /// specific-trap.
    pub specific: i32,
    /// time-stamp (TimeTicks).
    pub timestamp: u32,
    /// variable-bindings.
    pub varbinds: Vec<VarBind>,
}

impl TrapV1 {
    /// Writes the PDU.
    pub fn encode(&self, w: &mut Writer) {
        w.constructed(TRAP_V1_TAG, |w| {
            self.enterprise.encode(w);
            w.primitive(tag::IP_ADDRESS, &self.agent_addr);
            w.integer(self.generic as i64);
            w.integer(self.specific as i64);
            w.unsigned(tag::TIMETICKS, self.timestamp as u64);
            encode_varbinds(w, &self.varbinds);
        });
    }

    fn decode_body(mut c: Reader<'_>) -> Result<TrapV1, BerError> {
        let enterprise = Oid::decode(c.read(tag::OID, "enterprise")?.bytes())?;
        let agent_addr = c
            .read(tag::IP_ADDRESS, "agent-addr")?
            .bytes()
            .try_into()
            .map_err(|_| BerError::Malformed("agent-addr is not 4 octets"))?;
        let generic = c.read_i32("generic-trap")?;
        let specific = c.read_i32("specific-trap")?;
        let ts = c.read(tag::TIMETICKS, "time-stamp")?;
        let timestamp = crate::ber::decode_unsigned(ts.bytes(), 32, "time-stamp")? as u32;
        let varbinds = decode_varbinds(&mut c)?;
        c.finish("Trap-PDU")?;
        Ok(TrapV1 {
            enterprise,
            agent_addr,
            generic,
            specific,
            timestamp,
            varbinds,
        })
    }
}

/// A PDU of either shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPdu {
    /// Every PDU but the v1 trap.
    Pdu(Pdu),
    /// An SNMPv1 trap.
    TrapV1(TrapV1),
}

impl AnyPdu {
    fn decode(r: &mut Reader<'_>) -> Result<AnyPdu, BerError> {
        let (t, c) = r.read_any("PDU")?;
        if t == TRAP_V1_TAG {
            return Ok(AnyPdu::TrapV1(TrapV1::decode_body(c)?));
        }
        let kind = PduType::from_tag(t).ok_or(BerError::Malformed("unknown PDU type"))?;
        Ok(AnyPdu::Pdu(Pdu::decode_body(kind, c)?))
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            AnyPdu::Pdu(p) => p.encode(w),
            AnyPdu::TrapV1(t) => t.encode(w),
        }
    }
}

/// A v1 or v2c message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunityMessage {
    /// V1 or V2c.
    pub version: Version,
    /// The community string.
    pub community: Vec<u8>,
    /// The PDU.
    pub pdu: AnyPdu,
}

impl CommunityMessage {
    /// Encodes the whole message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sequence(|w| {
            w.integer(self.version.wire());
            w.octets(&self.community);
            self.pdu.encode(w);
        });
        w.into_bytes()
    }
}

/// msgFlags bits.
pub mod flags {
    /// authFlag.
    pub const AUTH: u8 = 0x01;
    /// privFlag.
    pub const PRIV: u8 = 0x02;
    /// reportableFlag.
    pub const REPORTABLE: u8 = 0x04;
}

/// The USM security model number.
pub const USM_SECURITY_MODEL: i32 = 3;

/// UsmSecurityParameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsmParams {
    /// msgAuthoritativeEngineID.
    pub engine_id: Vec<u8>,
    /// msgAuthoritativeEngineBoots.
    pub boots: u32,
    /// msgAuthoritativeEngineTime.
    pub time: u32,
    /// msgUserName.
    pub user: Vec<u8>,
    /// msgAuthenticationParameters.
    pub auth_params: Vec<u8>,
    /// msgPrivacyParameters.
    pub priv_params: Vec<u8>,
}

/// A scoped PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedPdu {
    /// contextEngineID.
    pub context_engine_id: Vec<u8>,
    /// contextName.
    pub context_name: Vec<u8>,
    /// The PDU.
    pub pdu: Pdu,
}

impl ScopedPdu {
    /// Writes the scoped PDU.
    pub fn encode(&self, w: &mut Writer) {
        w.sequence(|w| {
            w.octets(&self.context_engine_id);
            w.octets(&self.context_name);
            self.pdu.encode(w);
        });
    }

    /// Encodes to bytes (the plaintext of an encrypted scoped PDU).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }

    /// Decodes a scoped PDU. Trailing bytes (cipher padding) are ignored.
    pub fn decode(bytes: &[u8]) -> Result<ScopedPdu, BerError> {
        let mut r = Reader::new(bytes);
        let mut s = r.read(tag::SEQUENCE, "ScopedPDU")?;
        let context_engine_id = s.read_octets("contextEngineID")?.to_vec();
        let context_name = s.read_octets("contextName")?.to_vec();
        let pdu = match AnyPdu::decode(&mut s)? {
            AnyPdu::Pdu(p) => p,
            AnyPdu::TrapV1(_) => return Err(BerError::Malformed("v1 trap in a v3 message")),
        };
        s.finish("ScopedPDU")?;
        Ok(ScopedPdu {
            context_engine_id,
            context_name,
            pdu,
        })
    }
}

/// The data part of a v3 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopedPduData {
    /// In the clear.
    Plain(ScopedPdu),
    /// Encrypted (privFlag set).
    Encrypted(Vec<u8>),
}

/// A decoded SNMPv3 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Message {
    /// msgID.
    pub msg_id: i32,
    /// msgMaxSize.
    pub max_size: i32,
    /// msgFlags.
    pub flags: u8,
    /// USM parameters.
    pub usm: UsmParams,
    /// The scoped PDU, plain or encrypted.
    pub data: ScopedPduData,
    /// Where msgAuthenticationParameters' content starts in the raw message
    /// (to zero it when checking the digest).
    pub auth_offset: usize,
}

/// Any message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// v1 or v2c.
    Community(CommunityMessage),
    /// v3.
    V3(V3Message),
}

/// Largest message the decoder accepts (the largest UDP datagram).
pub const MAX_MESSAGE: usize = 65507;

/// Decodes one message. Anything malformed is an error naming the field.
pub fn decode(buf: &[u8]) -> Result<Message, BerError> {
    if buf.len() > MAX_MESSAGE {
        return Err(BerError::Malformed("message larger than a datagram"));
    }
    let mut r = Reader::new(buf);
    let mut m = r.read(tag::SEQUENCE, "message")?;
    r.finish("message")?;
    let version = m.read_i32("msgVersion")?;
    match version {
        0 | 1 => {
            let community = m.read_octets("community")?.to_vec();
            let pdu = AnyPdu::decode(&mut m)?;
            m.finish("message")?;
            let version = if version == 0 {
                Version::V1
            } else {
                Version::V2c
            };
            match (&pdu, version) {
                (AnyPdu::TrapV1(_), Version::V2c) => {
                    return Err(BerError::Malformed("v1 trap in a v2c message"))
                }
                (AnyPdu::Pdu(p), Version::V1)
                    if matches!(
                        p.kind,
                        PduType::GetBulk | PduType::Inform | PduType::TrapV2 | PduType::Report
                    ) =>
                {
                    return Err(BerError::Malformed("SNMPv2 PDU in a v1 message"))
                }
                _ => {}
            }
            Ok(Message::Community(CommunityMessage {
                version,
                community,
                pdu,
            }))
        }
        3 => {
            let mut h = m.read(tag::SEQUENCE, "msgGlobalData")?;
            let msg_id = h.read_i32("msgID")?;
            let max_size = h.read_i32("msgMaxSize")?;
            let f = h.read_octets("msgFlags")?;
            let security_model = h.read_i32("msgSecurityModel")?;
            h.finish("msgGlobalData")?;
            if msg_id < 0 || max_size < 484 {
                return Err(BerError::IntegerRange("msgID/msgMaxSize"));
            }
            if f.len() != 1 {
                return Err(BerError::Malformed("msgFlags is not one octet"));
            }
            let flags = f[0];
            if flags & flags::PRIV != 0 && flags & flags::AUTH == 0 {
                return Err(BerError::Malformed("privacy without authentication"));
            }
            if security_model != USM_SECURITY_MODEL {
                return Err(BerError::Malformed("security model is not USM"));
            }
            let sp = m.read(tag::OCTET_STRING, "msgSecurityParameters")?;
            let mut sp_reader = sp;
            let mut u = sp_reader.read(tag::SEQUENCE, "UsmSecurityParameters")?;
            sp_reader.finish("msgSecurityParameters")?;
            let engine_id = u.read_octets("msgAuthoritativeEngineID")?.to_vec();
            let boots = u.read_i32("msgAuthoritativeEngineBoots")?;
            let time = u.read_i32("msgAuthoritativeEngineTime")?;
            let user = u.read_octets("msgUserName")?.to_vec();
            let auth_reader = u.read(tag::OCTET_STRING, "msgAuthenticationParameters")?;
            let auth_offset = auth_reader.offset();
            let auth_params = auth_reader.bytes().to_vec();
            let priv_params = u.read_octets("msgPrivacyParameters")?.to_vec();
            u.finish("UsmSecurityParameters")?;
            if boots < 0 || time < 0 {
                return Err(BerError::IntegerRange("engine boots/time"));
            }
            if engine_id.len() > 32 || user.len() > 32 {
                return Err(BerError::Malformed("engine ID or user name too long"));
            }
            let data = if flags & flags::PRIV != 0 {
                ScopedPduData::Encrypted(m.read_octets("encryptedPDU")?.to_vec())
            } else {
                let whole = m.read_whole(tag::SEQUENCE, "ScopedPDU")?;
                ScopedPduData::Plain(ScopedPdu::decode(whole)?)
            };
            m.finish("message")?;
            Ok(Message::V3(V3Message {
                msg_id,
                max_size,
                flags,
                usm: UsmParams {
                    engine_id,
                    boots: boots as u32,
                    time: time as u32,
                    user,
                    auth_params,
                    priv_params,
                },
                data,
                auth_offset,
            }))
        }
        _ => Err(BerError::Malformed("unsupported SNMP version")),
    }
}

/// The parts of an outgoing v3 message.
#[derive(Debug, Clone)]
pub struct V3Out<'a> {
    /// msgID.
    pub msg_id: i32,
    /// msgMaxSize to announce.
    pub max_size: i32,
    /// msgFlags.
    pub flags: u8,
    /// USM parameters; `auth_params` must already hold the right number of
    /// zero octets when the message is to be authenticated.
    pub usm: &'a UsmParams,
    /// Encoded scoped PDU, or the ciphertext when `flags` has PRIV.
    pub data: &'a [u8],
}

/// Encodes a v3 message; returns the bytes and the offset of the
/// authentication parameters' content (to be patched by the signer).
pub fn encode_v3(out: &V3Out<'_>) -> (Vec<u8>, usize) {
    let mut w = Writer::new();
    let mut auth_offset = 0;
    w.sequence(|w| {
        w.integer(3);
        w.sequence(|w| {
            w.integer(out.msg_id as i64);
            w.integer(out.max_size as i64);
            w.octets(&[out.flags]);
            w.integer(USM_SECURITY_MODEL as i64);
        });
        w.constructed(tag::OCTET_STRING, |w| {
            w.sequence(|w| {
                w.octets(&out.usm.engine_id);
                w.integer(out.usm.boots as i64);
                w.integer(out.usm.time as i64);
                w.octets(&out.usm.user);
                w.octets(&out.usm.auth_params);
                auth_offset = w.len() - out.usm.auth_params.len();
                w.octets(&out.usm.priv_params);
            });
        });
        if out.flags & flags::PRIV != 0 {
            w.octets(out.data);
        } else {
            // Already a complete ScopedPDU TLV.
            w.raw(out.data);
        }
    });
    (w.into_bytes(), auth_offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usm::{
        seal, unseal, AuthProtocol, PrivProtocol, Seal, SecurityLevel, UserCredentials,
    };
    use crate::value::Value;
    use proptest::prelude::*;

    fn pdu_strategy() -> impl Strategy<Value = Pdu> {
        (
            prop_oneof![
                Just(PduType::Get),
                Just(PduType::GetNext),
                Just(PduType::Response),
                Just(PduType::Set),
                Just(PduType::GetBulk),
                Just(PduType::Inform),
                Just(PduType::TrapV2),
            ],
            any::<i32>(),
            0i32..20,
            0i32..20,
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u32>(), 0..12),
                    any::<i32>(),
                    proptest::collection::vec(any::<u8>(), 0..40),
                ),
                0..10,
            ),
        )
            .prop_map(|(kind, id, es, ei, vbs)| Pdu {
                kind,
                request_id: id,
                error_status: es,
                error_index: ei,
                varbinds: vbs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (mut arcs, n, s))| {
                        arcs.insert(0, 6);
                        arcs.insert(0, 3);
                        arcs.insert(0, 1);
                        let value = if i % 2 == 0 {
                            Value::Integer(n)
                        } else {
                            Value::OctetString(s)
                        };
                        VarBind::new(Oid::new(arcs), value)
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn community_messages_round_trip(pdu in pdu_strategy(), c in proptest::collection::vec(any::<u8>(), 0..40)) {
            let m = CommunityMessage { version: Version::V2c, community: c, pdu: AnyPdu::Pdu(pdu) };
            prop_assert_eq!(decode(&m.encode()).unwrap(), Message::Community(m));
        }

        #[test]
        fn truncations_and_mutations_of_a_message_never_panic(pdu in pdu_strategy(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let m = CommunityMessage { version: Version::V2c, community: b"public".to_vec(), pdu: AnyPdu::Pdu(pdu) };
            let bytes = m.encode();
            let i = at.index(bytes.len());
            let _ = decode(&bytes[..i]);
            let mut changed = bytes.clone();
            changed[i] = byte;
            let _ = decode(&changed);
        }
    }

    fn user() -> UserCredentials {
        UserCredentials::from_passwords(
            "noc",
            Some((AuthProtocol::Sha256, "authpass123")),
            Some((PrivProtocol::Aes128, "privpass123")),
        )
        .unwrap()
    }

    #[test]
    fn sealed_messages_open_and_any_tampering_is_caught() {
        let engine = b"\x80\x00\x7e\xd9\x05test".to_vec();
        let keys = user().localize(&engine);
        let scoped = ScopedPdu {
            context_engine_id: engine.clone(),
            context_name: Vec::new(),
            pdu: Pdu::new(
                PduType::Get,
                77,
                vec![VarBind::new(
                    "1.3.6.1.2.1.1.5.0".parse().unwrap(),
                    Value::Null,
                )],
            ),
        };
        for level in [
            SecurityLevel::NoAuthNoPriv,
            SecurityLevel::AuthNoPriv,
            SecurityLevel::AuthPriv,
        ] {
            let bytes = seal(
                &Seal {
                    engine_id: &engine,
                    boots: 3,
                    time: 400,
                    msg_id: 9,
                    reportable: true,
                    level,
                    keys: &keys,
                    salt: 5,
                },
                &scoped,
            );
            let Message::V3(m) = decode(&bytes).unwrap() else {
                panic!("v3")
            };
            assert_eq!(crate::usm::SecurityLevel::from_flags(m.flags), level);
            assert_eq!(unseal(&m, &bytes, &keys).unwrap(), scoped);
            if level == SecurityLevel::NoAuthNoPriv {
                continue;
            }
            // Flip every byte in turn: never accepted at the level it was
            // sent at. (Clearing the auth flag turns it into an
            // unauthenticated message: the level a user must use is the
            // receiver's policy, checked by the agent and the receiver.)
            for i in 0..bytes.len() {
                let mut t = bytes.clone();
                t[i] ^= 0x01;
                if let Ok(Message::V3(tm)) = decode(&t) {
                    let tl = SecurityLevel::from_flags(tm.flags);
                    if let (Ok(s), true) = (unseal(&tm, &t, &keys), tl == level) {
                        panic!("tampered byte {i} accepted: {s:?}");
                    }
                }
            }
            // Another user's keys do not open it.
            let other = UserCredentials::from_passwords(
                "noc",
                Some((AuthProtocol::Sha256, "otherpass123")),
                Some((PrivProtocol::Aes128, "privpass123")),
            )
            .unwrap()
            .localize(&engine);
            assert!(unseal(&m, &bytes, &other).is_err());
        }
    }
}

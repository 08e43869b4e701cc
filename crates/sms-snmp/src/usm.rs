//! The User-based Security Model (RFC 3414, RFC 3826, RFC 7860).
//!
//! Keys: passwords are turned into master keys once (a megabyte of
//! hashing each) and localized to an engine ID cheaply. Authentication is
//! HMAC-SHA-1-96 or HMAC-SHA-2 (224/256/384/512); MD5 is not offered.
//! Privacy is AES-128 in CFB mode with the RFC 3826 IV. [`Engine`] is this
//! side as the authoritative engine: it checks incoming requests and informs
//! (engine ID, user, level, digest, time window, decryption), says why in a
//! report, and seals responses, reports and outgoing traps.
//! [`RemoteClock`] keeps the non-authoritative view of another engine's
//! clock, so replayed traps from the past are refused.

use crate::message::{
    encode_v3, flags, PduType, ScopedPdu, ScopedPduData, UsmParams, V3Message, V3Out,
};
use crate::value::{Oid, Value, VarBind};
use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Digest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use thiserror::Error;

/// Authentication protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthProtocol {
    /// usmHMACSHAAuthProtocol (HMAC-SHA-1-96).
    Sha1,
    /// usmHMAC128SHA224AuthProtocol.
    Sha224,
    /// usmHMAC192SHA256AuthProtocol.
    Sha256,
    /// usmHMAC256SHA384AuthProtocol.
    Sha384,
    /// usmHMAC384SHA512AuthProtocol.
    Sha512,
}

/// A protocol or level name that is unknown or not offered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A protocol this agent refuses to offer (MD5, DES).
    #[error("{0}")]
    NotOffered(&'static str),
    /// No such authentication protocol.
    #[error("unknown authentication protocol {0:?}")]
    UnknownAuth(String),
    /// No such privacy protocol.
    #[error("unknown privacy protocol {0:?}")]
    UnknownPrivacy(String),
    /// No such security level.
    #[error("unknown security level {0:?}")]
    UnknownLevel(String),
}

impl AuthProtocol {
    /// Parses the names net-snmp uses (`SHA`, `SHA-256`, ...), any case.
    pub fn parse(s: &str) -> Result<AuthProtocol, NameError> {
        Ok(match s.to_ascii_uppercase().replace('_', "-").as_str() {
            "SHA" | "SHA1" | "SHA-1" => AuthProtocol::Sha1,
            "SHA224" | "SHA-224" => AuthProtocol::Sha224,
            "SHA256" | "SHA-256" => AuthProtocol::Sha256,
            "SHA384" | "SHA-384" => AuthProtocol::Sha384,
            "SHA512" | "SHA-512" => AuthProtocol::Sha512,
            "MD5" => {
                return Err(NameError::NotOffered(
                    "MD5 authentication is not offered: use SHA-256",
                ))
            }
            _ => return Err(NameError::UnknownAuth(s.to_string())),
        })
    }

    /// The name net-snmp's `-a` option takes.
    pub fn name(self) -> &'static str {
        match self {
            AuthProtocol::Sha1 => "SHA",
            AuthProtocol::Sha224 => "SHA-224",
            AuthProtocol::Sha256 => "SHA-256",
            AuthProtocol::Sha384 => "SHA-384",
            AuthProtocol::Sha512 => "SHA-512",
        }
    }

    /// Length of msgAuthenticationParameters.
    pub fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha224 => 16,
            AuthProtocol::Sha256 => 24,
            AuthProtocol::Sha384 => 32,
            AuthProtocol::Sha512 => 48,
        }
    }

    fn hash_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        fn h<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            AuthProtocol::Sha1 => h::<sha1::Sha1>(parts),
            AuthProtocol::Sha224 => h::<sha2::Sha224>(parts),
            AuthProtocol::Sha256 => h::<sha2::Sha256>(parts),
            AuthProtocol::Sha384 => h::<sha2::Sha384>(parts),
            AuthProtocol::Sha512 => h::<sha2::Sha512>(parts),
        }
    }

    /// The truncated HMAC of `msg` under `key`.
    pub fn mac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        self.mac_parts(key, &[msg])
    }

    /// The truncated HMAC of the concatenation of `parts` under `key`
    /// (lets a receiver check a message without copying it to zero the
    /// authentication parameters).
    pub fn mac_parts(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn m<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        let mut full = match self {
            AuthProtocol::Sha1 => m::<Hmac<sha1::Sha1>>(key, parts),
            AuthProtocol::Sha224 => m::<Hmac<sha2::Sha224>>(key, parts),
            AuthProtocol::Sha256 => m::<Hmac<sha2::Sha256>>(key, parts),
            AuthProtocol::Sha384 => m::<Hmac<sha2::Sha384>>(key, parts),
            AuthProtocol::Sha512 => m::<Hmac<sha2::Sha512>>(key, parts),
        };
        full.truncate(self.mac_len());
        full
    }

    /// RFC 3414 A.2 password-to-key: the hash of one megabyte of the
    /// password repeated.
    pub fn password_to_key(self, password: &[u8]) -> Vec<u8> {
        const TOTAL: usize = 1 << 20;
        if password.is_empty() {
            return self.hash_parts(&[]);
        }
        // Whole repetitions in 64-octet-aligned chunks, like the RFC's loop.
        let mut chunk = Vec::with_capacity(64 * password.len());
        for _ in 0..64 {
            chunk.extend_from_slice(password);
        }
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut left = TOTAL;
        while left >= chunk.len() {
            parts.push(&chunk);
            left -= chunk.len();
        }
        parts.push(&chunk[..left]);
        self.hash_parts(&parts)
    }

    /// RFC 3414 A.2 key localization: H(key || engineID || key).
    pub fn localize(self, master: &[u8], engine_id: &[u8]) -> Vec<u8> {
        self.hash_parts(&[master, engine_id, master])
    }
}

/// Privacy protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrivProtocol {
    /// usmAesCfb128Protocol (RFC 3826).
    Aes128,
}

impl PrivProtocol {
    /// Parses `AES` / `AES128` / `AES-128`, any case.
    pub fn parse(s: &str) -> Result<PrivProtocol, NameError> {
        match s.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
            "AES" | "AES128" => Ok(PrivProtocol::Aes128),
            "DES" => Err(NameError::NotOffered("DES privacy is not offered: use AES")),
            _ => Err(NameError::UnknownPrivacy(s.to_string())),
        }
    }

    /// The name net-snmp's `-x` option takes.
    pub fn name(self) -> &'static str {
        "AES"
    }
}

type Aes128CfbEnc = cfb_mode::Encryptor<aes::Aes128>;
type Aes128CfbDec = cfb_mode::Decryptor<aes::Aes128>;

fn aes_iv(boots: u32, time: u32, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

/// Security levels, ordered from weakest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityLevel {
    /// noAuthNoPriv.
    NoAuthNoPriv,
    /// authNoPriv.
    AuthNoPriv,
    /// authPriv.
    AuthPriv,
}

impl SecurityLevel {
    /// The level msgFlags ask for.
    pub fn from_flags(f: u8) -> SecurityLevel {
        match (f & flags::AUTH != 0, f & flags::PRIV != 0) {
            (true, true) => SecurityLevel::AuthPriv,
            (true, false) => SecurityLevel::AuthNoPriv,
            _ => SecurityLevel::NoAuthNoPriv,
        }
    }

    /// The msgFlags bits of the level.
    pub fn flags(self) -> u8 {
        match self {
            SecurityLevel::NoAuthNoPriv => 0,
            SecurityLevel::AuthNoPriv => flags::AUTH,
            SecurityLevel::AuthPriv => flags::AUTH | flags::PRIV,
        }
    }

    /// Parses `noAuthNoPriv`, `authNoPriv`, `authPriv`, any case.
    pub fn parse(s: &str) -> Result<SecurityLevel, NameError> {
        match s.to_ascii_lowercase().as_str() {
            "noauthnopriv" => Ok(SecurityLevel::NoAuthNoPriv),
            "authnopriv" => Ok(SecurityLevel::AuthNoPriv),
            "authpriv" => Ok(SecurityLevel::AuthPriv),
            _ => Err(NameError::UnknownLevel(s.to_string())),
        }
    }
}

/// A user's master keys (from the passwords, not yet localized).
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// User name.
    pub name: Vec<u8>,
    /// Authentication protocol and master key.
    pub auth: Option<(AuthProtocol, Vec<u8>)>,
    /// Privacy protocol and master key (derived with the auth hash).
    pub privacy: Option<(PrivProtocol, Vec<u8>)>,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("auth", &self.auth.as_ref().map(|a| a.0))
            .field("privacy", &self.privacy.as_ref().map(|p| p.0))
            .finish()
    }
}

/// Shortest password accepted (net-snmp's minimum as well).
pub const MIN_PASSWORD: usize = 8;

/// Why a user's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The name is empty or longer than 32 characters.
    #[error("user name {0:?} must be 1 to 32 characters")]
    Name(String),
    /// A pass phrase is shorter than RFC 3414's minimum.
    #[error("user {0:?}: passwords must have at least {MIN_PASSWORD} characters")]
    ShortPassword(String),
    /// Privacy without authentication.
    #[error("user {0:?}: privacy needs an authentication protocol")]
    PrivacyWithoutAuth(String),
}

impl UserCredentials {
    /// Derives master keys from passwords. Privacy needs authentication.
    pub fn from_passwords(
        name: &str,
        auth: Option<(AuthProtocol, &str)>,
        privacy: Option<(PrivProtocol, &str)>,
    ) -> Result<UserCredentials, CredentialError> {
        if name.is_empty() || name.len() > 32 {
            return Err(CredentialError::Name(name.to_string()));
        }
        let auth_proto = auth.map(|a| a.0);
        for pw in auth.iter().map(|a| a.1).chain(privacy.iter().map(|p| p.1)) {
            if pw.len() < MIN_PASSWORD {
                return Err(CredentialError::ShortPassword(name.to_string()));
            }
        }
        let privacy = match (privacy, auth_proto) {
            (Some(_), None) => return Err(CredentialError::PrivacyWithoutAuth(name.to_string())),
            (Some((p, pw)), Some(a)) => Some((p, a.password_to_key(pw.as_bytes()))),
            (None, _) => None,
        };
        Ok(UserCredentials {
            name: name.as_bytes().to_vec(),
            auth: auth.map(|(p, pw)| (p, p.password_to_key(pw.as_bytes()))),
            privacy,
        })
    }

    /// The strongest level the user can use.
    pub fn max_level(&self) -> SecurityLevel {
        match (&self.auth, &self.privacy) {
            (Some(_), Some(_)) => SecurityLevel::AuthPriv,
            (Some(_), None) => SecurityLevel::AuthNoPriv,
            _ => SecurityLevel::NoAuthNoPriv,
        }
    }

    /// Keys localized to `engine_id`.
    pub fn localize(&self, engine_id: &[u8]) -> UserKeys {
        let auth = self
            .auth
            .as_ref()
            .map(|(p, k)| (*p, p.localize(k, engine_id)));
        let privacy = match (&self.privacy, &self.auth) {
            (Some((pp, k)), Some((ap, _))) => {
                let mut key = ap.localize(k, engine_id);
                key.truncate(16);
                Some((*pp, key))
            }
            _ => None,
        };
        UserKeys {
            name: self.name.clone(),
            auth,
            privacy,
        }
    }
}

/// A user's keys localized to one engine.
#[derive(Clone, PartialEq, Eq)]
pub struct UserKeys {
    /// User name.
    pub name: Vec<u8>,
    /// Authentication protocol and localized key.
    pub auth: Option<(AuthProtocol, Vec<u8>)>,
    /// Privacy protocol and localized 16-octet key.
    pub privacy: Option<(PrivProtocol, Vec<u8>)>,
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserKeys")
            .field("name", &String::from_utf8_lossy(&self.name))
            .finish_non_exhaustive()
    }
}

impl UserKeys {
    /// The strongest level these keys allow.
    pub fn max_level(&self) -> SecurityLevel {
        match (&self.auth, &self.privacy) {
            (Some(_), Some(_)) => SecurityLevel::AuthPriv,
            (Some(_), None) => SecurityLevel::AuthNoPriv,
            _ => SecurityLevel::NoAuthNoPriv,
        }
    }
}

/// Why a v3 message was refused; each maps to a usmStats counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UsmError {
    /// The user cannot use the requested level.
    #[error("unsupported security level")]
    UnsupportedSecLevel,
    /// Outside the time window (a replay or a stale clock).
    #[error("not in time window")]
    NotInTimeWindow,
    /// No such user.
    #[error("unknown user name")]
    UnknownUserName,
    /// Not this engine's ID (or discovery).
    #[error("unknown engine ID")]
    UnknownEngineId,
    /// The digest does not match.
    #[error("wrong digest")]
    WrongDigest,
    /// The ciphertext could not be decrypted into a scoped PDU.
    #[error("decryption error")]
    DecryptionError,
}

impl UsmError {
    /// The usmStats counter's index (1.3.6.1.6.3.15.1.1.N.0).
    pub fn stats_index(self) -> u32 {
        match self {
            UsmError::UnsupportedSecLevel => 1,
            UsmError::NotInTimeWindow => 2,
            UsmError::UnknownUserName => 3,
            UsmError::UnknownEngineId => 4,
            UsmError::WrongDigest => 5,
            UsmError::DecryptionError => 6,
        }
    }

    /// The usmStats counter's OID.
    pub fn stats_oid(self) -> Oid {
        Oid::new(vec![1, 3, 6, 1, 6, 3, 15, 1, 1, self.stats_index(), 0])
    }
}

/// Checks the digest and decrypts; no timeliness (callers check it for
/// their role).
pub fn unseal(msg: &V3Message, raw: &[u8], keys: &UserKeys) -> Result<ScopedPdu, UsmError> {
    verify(msg, raw, keys)?;
    decrypt(msg, keys)
}

/// Checks the level against the keys and, when authenticated, the digest.
pub fn verify(msg: &V3Message, raw: &[u8], keys: &UserKeys) -> Result<(), UsmError> {
    let level = SecurityLevel::from_flags(msg.flags);
    if level > keys.max_level() {
        return Err(UsmError::UnsupportedSecLevel);
    }
    if level >= SecurityLevel::AuthNoPriv {
        let Some((proto, key)) = &keys.auth else {
            return Err(UsmError::UnsupportedSecLevel);
        };
        let n = proto.mac_len();
        let off = msg.auth_offset;
        if msg.usm.auth_params.len() != n || off + n > raw.len() {
            return Err(UsmError::WrongDigest);
        }
        const ZEROS: [u8; 48] = [0; 48];
        let want = proto.mac_parts(key, &[&raw[..off], &ZEROS[..n], &raw[off + n..]]);
        let diff = want
            .iter()
            .zip(&msg.usm.auth_params)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(UsmError::WrongDigest);
        }
    }
    Ok(())
}

/// The scoped PDU of a message whose digest was checked: decrypted when
/// the message is encrypted.
pub fn decrypt(msg: &V3Message, keys: &UserKeys) -> Result<ScopedPdu, UsmError> {
    let level = SecurityLevel::from_flags(msg.flags);
    match &msg.data {
        ScopedPduData::Plain(s) if level < SecurityLevel::AuthPriv => Ok(s.clone()),
        ScopedPduData::Encrypted(ct) if level == SecurityLevel::AuthPriv => {
            let Some((PrivProtocol::Aes128, key)) = &keys.privacy else {
                return Err(UsmError::UnsupportedSecLevel);
            };
            let salt: [u8; 8] = msg
                .usm
                .priv_params
                .as_slice()
                .try_into()
                .map_err(|_| UsmError::DecryptionError)?;
            let iv = aes_iv(msg.usm.boots, msg.usm.time, &salt);
            let mut buf = ct.clone();
            Aes128CfbDec::new(key.as_slice().into(), (&iv).into()).decrypt(&mut buf);
            ScopedPdu::decode(&buf).map_err(|_| UsmError::DecryptionError)
        }
        _ => Err(UsmError::DecryptionError),
    }
}

/// What an outgoing v3 message is made of.
#[derive(Debug, Clone)]
pub struct Seal<'a> {
    /// msgAuthoritativeEngineID.
    pub engine_id: &'a [u8],
    /// msgAuthoritativeEngineBoots.
    pub boots: u32,
    /// msgAuthoritativeEngineTime.
    pub time: u32,
    /// msgID.
    pub msg_id: i32,
    /// Whether an answer (or report) is wanted.
    pub reportable: bool,
    /// The level to send at.
    pub level: SecurityLevel,
    /// The user's localized keys (name only at noAuthNoPriv).
    pub keys: &'a UserKeys,
    /// A fresh salt for AES (never reused with the same key).
    pub salt: u64,
}

/// Builds, encrypts and authenticates one v3 message.
pub fn seal(s: &Seal<'_>, scoped: &ScopedPdu) -> Vec<u8> {
    let plain = scoped.to_bytes();
    let mut usm = UsmParams {
        engine_id: s.engine_id.to_vec(),
        boots: s.boots,
        time: s.time,
        user: s.keys.name.clone(),
        auth_params: Vec::new(),
        priv_params: Vec::new(),
    };
    let mut level = s.level.min(s.keys.max_level());
    let mut data = plain;
    if level == SecurityLevel::AuthPriv {
        if let Some((PrivProtocol::Aes128, key)) = &s.keys.privacy {
            let salt = s.salt.to_be_bytes();
            let iv = aes_iv(s.boots, s.time, &salt);
            Aes128CfbEnc::new(key.as_slice().into(), (&iv).into()).encrypt(&mut data);
            usm.priv_params = salt.to_vec();
        } else {
            level = SecurityLevel::AuthNoPriv;
        }
    }
    let auth = if level >= SecurityLevel::AuthNoPriv {
        s.keys.auth.as_ref()
    } else {
        None
    };
    if let Some((proto, _)) = auth {
        usm.auth_params = vec![0; proto.mac_len()];
    }
    let mut f = level.flags();
    if s.reportable {
        f |= flags::REPORTABLE;
    }
    let (mut bytes, off) = encode_v3(&V3Out {
        msg_id: s.msg_id,
        max_size: 65507,
        flags: f,
        usm: &usm,
        data: &data,
    });
    if let Some((proto, key)) = auth {
        let mac = proto.mac(key, &bytes);
        bytes[off..off + mac.len()].copy_from_slice(&mac);
    }
    bytes
}

/// The time window either side of the authoritative clock (RFC 3414).
pub const TIME_WINDOW: u32 = 150;

/// This side as an authoritative SNMP engine.
#[derive(Debug)]
pub struct Engine {
    id: Vec<u8>,
    boots: u32,
    start: Instant,
    salt: AtomicU64,
    counters: [AtomicU64; 6],
}

/// A v3 message accepted by [`Engine::accept`].
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The user's localized keys.
    pub keys: UserKeys,
    /// The level the message came at.
    pub level: SecurityLevel,
    /// The scoped PDU in the clear.
    pub scoped: ScopedPdu,
}

impl Engine {
    /// An engine with its ID and the boot count of this start.
    pub fn new(id: Vec<u8>, boots: u32) -> Engine {
        Engine {
            id,
            boots: boots.clamp(1, i32::MAX as u32 - 1),
            start: Instant::now(),
            salt: AtomicU64::new(rand::random()),
            counters: Default::default(),
        }
    }

    /// Generates an RFC 3411 engine ID: enterprise `pen` with format 5
    /// (octets) and 12 random octets.
    pub fn generate_id(pen: u32) -> Vec<u8> {
        let mut id = (pen | 0x8000_0000).to_be_bytes().to_vec();
        id.push(5);
        id.extend_from_slice(&rand::random::<[u8; 12]>());
        id
    }

    /// snmpEngineID.
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// snmpEngineBoots.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// snmpEngineTime (seconds since this start).
    pub fn time(&self) -> u32 {
        self.time_at(Instant::now())
    }

    /// snmpEngineTime at `now`.
    pub fn time_at(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.start)
            .as_secs()
            .min(i32::MAX as u64) as u32
    }

    /// A fresh AES salt.
    pub fn next_salt(&self) -> u64 {
        self.salt.fetch_add(1, Ordering::Relaxed)
    }

    /// The usmStats counter for `e`.
    pub fn counter(&self, e: UsmError) -> u32 {
        self.counters[e.stats_index() as usize - 1].load(Ordering::Relaxed) as u32
    }

    /// Checks an incoming request or inform for which this engine is
    /// authoritative. `user` finds a user's localized keys by name.
    pub fn accept<'u>(
        &self,
        msg: &V3Message,
        raw: &[u8],
        user: impl Fn(&[u8]) -> Option<&'u UserKeys>,
    ) -> Result<Accepted, UsmError> {
        self.accept_at(msg, raw, user, Instant::now())
    }

    /// [`Engine::accept`] with the engine's clock read at `now`.
    pub fn accept_at<'u>(
        &self,
        msg: &V3Message,
        raw: &[u8],
        user: impl Fn(&[u8]) -> Option<&'u UserKeys>,
        now: Instant,
    ) -> Result<Accepted, UsmError> {
        let r = self.accept_inner(msg, raw, user, now);
        if let Err(e) = &r {
            self.counters[e.stats_index() as usize - 1].fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn accept_inner<'u>(
        &self,
        msg: &V3Message,
        raw: &[u8],
        user: impl Fn(&[u8]) -> Option<&'u UserKeys>,
        now: Instant,
    ) -> Result<Accepted, UsmError> {
        if msg.usm.engine_id != self.id {
            return Err(UsmError::UnknownEngineId);
        }
        let keys = user(&msg.usm.user).ok_or(UsmError::UnknownUserName)?;
        let level = SecurityLevel::from_flags(msg.flags);
        if level > keys.max_level() {
            return Err(UsmError::UnsupportedSecLevel);
        }
        // Digest before timeliness (RFC 3414 3.2 steps 6 and 7), then the
        // window, then decryption.
        verify(msg, raw, keys)?;
        if level >= SecurityLevel::AuthNoPriv {
            let now = self.time_at(now);
            if msg.usm.boots != self.boots
                || msg.usm.boots >= i32::MAX as u32
                || msg.usm.time.abs_diff(now) > TIME_WINDOW
            {
                return Err(UsmError::NotInTimeWindow);
            }
        }
        let scoped = decrypt(msg, keys)?;
        Ok(Accepted {
            keys: keys.clone(),
            level,
            scoped,
        })
    }

    /// The report for a refused message, when the sender asked for one.
    /// Not-in-time-window reports are authenticated so the sender can trust
    /// the clock they carry.
    pub fn report<'u>(
        &self,
        msg: &V3Message,
        err: UsmError,
        user: impl Fn(&[u8]) -> Option<&'u UserKeys>,
    ) -> Option<Vec<u8>> {
        if msg.flags & flags::REPORTABLE == 0 {
            return None;
        }
        let request_id = match &msg.data {
            ScopedPduData::Plain(s) => {
                if !s.pdu.kind.is_confirmed() {
                    return None;
                }
                s.pdu.request_id
            }
            ScopedPduData::Encrypted(_) => 0,
        };
        let anonymous = UserKeys {
            name: msg.usm.user.clone(),
            auth: None,
            privacy: None,
        };
        let (keys, level) = match (err, user(&msg.usm.user)) {
            (UsmError::NotInTimeWindow, Some(k)) => (k.clone(), SecurityLevel::AuthNoPriv),
            _ => (anonymous, SecurityLevel::NoAuthNoPriv),
        };
        let scoped = ScopedPdu {
            context_engine_id: self.id.clone(),
            context_name: Vec::new(),
            pdu: crate::message::Pdu::new(
                PduType::Report,
                request_id,
                vec![VarBind::new(
                    err.stats_oid(),
                    Value::Counter32(self.counter(err)),
                )],
            ),
        };
        Some(seal(
            &Seal {
                engine_id: &self.id,
                boots: self.boots,
                time: self.time(),
                msg_id: msg.msg_id,
                reportable: false,
                level,
                keys: &keys,
                salt: self.next_salt(),
            },
            &scoped,
        ))
    }

    /// Seals a response (or an outgoing trap) as this engine.
    pub fn seal(
        &self,
        msg_id: i32,
        reportable: bool,
        keys: &UserKeys,
        level: SecurityLevel,
        scoped: &ScopedPdu,
    ) -> Vec<u8> {
        seal(
            &Seal {
                engine_id: &self.id,
                boots: self.boots,
                time: self.time(),
                msg_id,
                reportable,
                level,
                keys,
                salt: self.next_salt(),
            },
            scoped,
        )
    }
}

/// The non-authoritative view of a remote engine's clock (RFC 3414 3.2
/// step 7b): the latest boots/time seen in an authentic message. A message
/// from an earlier boot, or more than the window older than the latest, is
/// a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteClock {
    /// Latest boots seen (`None` before the first authentic message).
    pub latest: Option<(u32, u32, Instant)>,
}

impl RemoteClock {
    /// Checks an authentic message's boots/time and advances the view.
    /// Returns false for a message outside the window.
    pub fn check(&mut self, boots: u32, time: u32, now: Instant) -> bool {
        if boots >= i32::MAX as u32 {
            return false;
        }
        let Some((lb, lt, at)) = self.latest else {
            self.latest = Some((boots, time, now));
            return true;
        };
        // The remote clock has advanced since we last heard it.
        let expected = lt.saturating_add(now.duration_since(at).as_secs() as u32);
        if boots > lb || (boots == lb && time > expected) {
            self.latest = Some((boots, time, now));
            return true;
        }
        !(boots < lb || time.saturating_add(TIME_WINDOW) < expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3414_password_to_key_vectors() {
        // RFC 3414 A.3.2: "maplesyrup" with SHA-1, engine 000000000000000000000002.
        let master = AuthProtocol::Sha1.password_to_key(b"maplesyrup");
        assert_eq!(
            hex::encode(&master),
            "9fb5cc0381497b3793528939ff788d5d79145211"
        );
        let engine = hex::decode("000000000000000000000002").unwrap();
        let local = AuthProtocol::Sha1.localize(&master, &engine);
        assert_eq!(
            hex::encode(local),
            "6695febc9288e36282235fc7151f128497b38f3f"
        );
    }

    #[test]
    fn rfc7860_sha256_localized_key() {
        // RFC 7860 A: "maplesyrup", SHA-256, engine 000000000000000000000002.
        let master = AuthProtocol::Sha256.password_to_key(b"maplesyrup");
        let engine = hex::decode("000000000000000000000002").unwrap();
        assert_eq!(
            hex::encode(AuthProtocol::Sha256.localize(&master, &engine)),
            "8982e0e549e866db361a6b625d84cccc11162d453ee8ce3a6445c2d6776f0f8b"
        );
    }

    #[test]
    fn remote_clock_refuses_replays_from_the_past() {
        let t0 = Instant::now();
        let mut c = RemoteClock::default();
        assert!(c.check(5, 1000, t0));
        assert!(
            c.check(5, 1000, t0),
            "the same moment again is in the window"
        );
        assert!(c.check(5, 900, t0), "within 150 s");
        assert!(!c.check(5, 100, t0), "far in the past");
        assert!(!c.check(4, 5000, t0), "an earlier boot");
        assert!(c.check(6, 3, t0), "a reboot moves forward");
        assert!(!c.check(5, 2000, t0));
    }

    #[test]
    fn the_engine_accepts_a_message_within_150_seconds_of_its_clock() {
        use crate::message::{decode, Message, Pdu, PduType, ScopedPdu};
        use crate::value::{Value, VarBind};
        let engine = Engine::new(b"\x80\x00\x7e\xd9\x05test".to_vec(), 4);
        let start = engine.start;
        let keys = UserCredentials::from_passwords(
            "noc",
            Some((AuthProtocol::Sha256, "authpass123")),
            None,
        )
        .unwrap()
        .localize(engine.id());
        let scoped = ScopedPdu {
            context_engine_id: engine.id().to_vec(),
            context_name: Vec::new(),
            pdu: Pdu::new(
                PduType::Get,
                1,
                vec![VarBind::new(
                    "1.3.6.1.2.1.1.5.0".parse().unwrap(),
                    Value::Null,
                )],
            ),
        };
        // Stamped as the engine's clock says at 1000 s.
        let bytes = seal(
            &Seal {
                engine_id: engine.id(),
                boots: 4,
                time: 1000,
                msg_id: 1,
                reportable: true,
                level: SecurityLevel::AuthNoPriv,
                keys: &keys,
                salt: 1,
            },
            &scoped,
        );
        let Message::V3(m) = decode(&bytes).unwrap() else {
            panic!("v3")
        };
        let at = |secs: u64| start + std::time::Duration::from_secs(secs);
        let user = |_: &[u8]| Some(&keys);
        assert_eq!(engine.time_at(at(1000)), 1000);
        for ok in [850, 1000, 1140, 1150] {
            assert!(engine.accept_at(&m, &bytes, user, at(ok)).is_ok(), "{ok}");
        }
        for late in [1151, 1160, 2000] {
            let e = engine.accept_at(&m, &bytes, user, at(late)).unwrap_err();
            assert_eq!(e, UsmError::NotInTimeWindow, "{late}");
        }
        let e = engine.accept_at(&m, &bytes, user, at(849)).unwrap_err();
        assert_eq!(e, UsmError::NotInTimeWindow);
    }
}

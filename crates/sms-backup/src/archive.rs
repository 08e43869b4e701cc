//! The backup archive: one file, versioned, every byte authenticated.
//!
//! ```text
//! "SMSBKUP\n" | manifest_len u32 BE | manifest (JSON) | entry bodies ... | HMAC-SHA256 (32)
//! ```
//!
//! The manifest (plain JSON) says which firmware made the archive, how the
//! keys come from the pass phrase, and each entry's name, kind, size,
//! SHA-256 and owner. From the pass phrase PBKDF2-HMAC-SHA256 derives two
//! keys: one seals every entry but package files (ChaCha20-Poly1305, the
//! entry's name as associated data), the other signs the whole file
//! (HMAC-SHA256 in the last 32 bytes). A replacement appliance shares
//! nothing with the original but the pass phrase, so the pass phrase is what
//! signs (ADR 17). The manifest carries a key check, so a wrong pass phrase
//! is told apart from an altered archive.
//!
//! Format 2 is what scheduled backups write, with nobody there to type the
//! pass phrase: the administrator enrolled it once ([`Enrolment`]), which
//! left on the appliance an X25519 public key derived from the pass phrase
//! and an Ed25519 signing key of the appliance's own, approved by a MAC
//! under the pass phrase. Entries are sealed with a key agreed between a
//! fresh ephemeral X25519 key and the enrolled public key (HKDF-SHA256);
//! the file is signed with the appliance's key (Ed25519 over its SHA-256,
//! 64 bytes at the end). A restore derives the X25519 secret and the MAC
//! key from the pass phrase: a wrong pass phrase gives another public key,
//! a signing key the pass phrase never approved fails the MAC (ADR 18).

use curve25519_dalek::montgomery::MontgomeryPoint;
use ring::signature::{self, KeyPair as _};
use ring::{aead, hkdf, hmac, pbkdf2, rand::SecureRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

/// First bytes of every archive.
pub const MAGIC: &[u8; 8] = b"SMSBKUP\n";
/// Newest archive format this firmware reads.
pub const FORMAT: u32 = 2;
/// Format of backups sealed and signed by a pass phrase typed for them.
pub const FORMAT_PASSPHRASE: u32 = 1;
/// Format of backups sealed to an enrolled public key and signed by the
/// appliance's approved key (scheduled backups).
pub const FORMAT_ENROLLED: u32 = 2;
/// PBKDF2 rounds for new archives (OWASP's 2023 figure for HMAC-SHA256).
pub const PBKDF2_ROUNDS: u32 = 600_000;
/// Most PBKDF2 rounds an archive may ask for.
pub const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;
/// Shortest pass phrase accepted for a new archive.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Largest manifest read (bounds what a damaged length field can cost).
const MAX_MANIFEST: u32 = 16 << 20;
const KEY_CHECK_LABEL: &[u8] = b"sms-backup key check v1";
const BINDING_LABEL: &[u8] = b"sms-backup signer approval v2\0";
const SIGNATURE_LABEL: &[u8] = b"sms-backup format 2 signature\0";
const SEAL_INFO: &[u8] = b"sms-backup format 2 seal";

/// Bytes after the bodies: the HMAC (format 1) or the Ed25519 signature.
fn trailer_len(format: u32) -> usize {
    if format >= FORMAT_ENROLLED {
        64
    } else {
        32
    }
}

/// Why an archive could not be written, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The file does not start like a backup.
    #[error("not an SMS backup (its first bytes are not the backup header)")]
    NotABackup,
    /// The manifest is missing, too large or not what this firmware writes.
    #[error("the backup's manifest is damaged: {0}")]
    Manifest(String),
    /// Written by a newer archive format.
    #[error("the backup has archive format {0}; this firmware reads format {FORMAT} and older: update the firmware first")]
    NewerFormat(u32),
    /// Made by a newer firmware than the one running.
    #[error("the backup was made by firmware {backup}, this appliance runs {running}: update the firmware to {backup} or later first, then restore")]
    NewerFirmware {
        /// Firmware that made the backup.
        backup: String,
        /// Firmware running here.
        running: String,
    },
    /// The key check failed.
    #[error("wrong pass phrase for this backup")]
    WrongPassphrase,
    /// The file is shorter than its manifest says.
    #[error("the backup is truncated: {have} bytes, its manifest says {expected}")]
    Truncated {
        /// Bytes the manifest accounts for.
        expected: u64,
        /// Bytes in the file.
        have: u64,
    },
    /// The file is longer than its manifest says.
    #[error("the backup has {extra} bytes after its end")]
    TrailingData {
        /// Bytes after the signature.
        extra: u64,
    },
    /// The signature over the file does not match.
    #[error("the backup's signature does not match: it was altered or damaged after it was made")]
    Altered,
    /// An entry does not decrypt or has another digest.
    #[error("entry {name} of the backup is damaged: {reason}")]
    Entry {
        /// Entry name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Format 2: the archive is signed by a key the pass phrase never
    /// approved.
    #[error("the backup is signed by a key this pass phrase never approved: it was not made by an appliance enrolled with it")]
    UnapprovedSigner,
    /// The enrolment for scheduled backups is missing or damaged.
    #[error("scheduled backups: {0}")]
    Enrolment(String),
    /// The pass phrase given for a new backup is too weak.
    #[error("the pass phrase must have at least {MIN_PASSPHRASE_CHARS} characters")]
    WeakPassphrase,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The system's random source failed.
    #[error("no random numbers from the system")]
    Random,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an entry restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A directory (its owner and mode).
    Dir,
    /// A file: settings, rollbacks, secrets, keys, the audit trail.
    File,
    /// A daemon's store, as `sms_core::store::Store::export` wrote it.
    Store,
    /// A package file of the blob store (not sealed: vendor-signed content).
    Package,
}

/// One entry of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Path below the data partition (`config/settings.toml`), or the store's
    /// directory for a store.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Bytes of its body in the archive (sealed size for sealed entries).
    pub size: u64,
    /// SHA-256 of its content (before sealing), hex.
    pub sha256: String,
    /// Nonce of the sealed body, hex; none for package files and directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Permission bits.
    pub mode: u32,
    /// Owner's user name.
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Records, for a store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

/// How the keys come from the pass phrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kdf {
    /// Always `pbkdf2-hmac-sha256` in format 1.
    pub algorithm: String,
    /// Rounds.
    pub rounds: u32,
    /// Salt, hex.
    pub salt: String,
}

/// The archive's table of contents, readable without the pass phrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Archive format.
    pub format: u32,
    /// Firmware version that made it.
    pub firmware: String,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// Host name of the appliance that made it.
    pub hostname: String,
    /// Key derivation.
    pub kdf: Kdf,
    /// HMAC of a fixed label under the signing key, hex: tells a wrong pass
    /// phrase from an altered archive.
    pub key_check: String,
    /// The entries, in body order.
    pub entries: Vec<Entry>,
    /// Format 2: the public keys the archive is sealed to and signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
}

/// Format 2: how an archive written without the pass phrase is sealed and
/// who signed it (all hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// The enrolled X25519 public key (derived from the pass phrase).
    pub public: String,
    /// The archive's ephemeral X25519 public key.
    pub ephemeral: String,
    /// The appliance's Ed25519 public key that signed the archive.
    pub signer: String,
    /// HMAC under the pass phrase approving `signer` for `public`.
    pub binding: String,
}

impl Manifest {
    /// Bytes of all bodies together (saturating: a damaged manifest cannot
    /// overflow it).
    pub fn body_bytes(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |n, e| n.saturating_add(e.size))
    }
}

/// How the file's last bytes are checked.
enum Check {
    /// Format 1: HMAC-SHA256 under a key from the pass phrase.
    Mac(hmac::Key),
    /// Format 2: Ed25519 by this (approved) public key.
    Signature(Vec<u8>),
}

/// The keys that open an archive: unlocked by the pass phrase.
pub struct Keys {
    seal: aead::LessSafeKey,
    check: Check,
}

/// 64 bytes from the pass phrase (slow on purpose: [`PBKDF2_ROUNDS`]).
fn stretch(passphrase: &str, salt: &[u8], rounds: u32) -> [u8; 64] {
    let mut out = [0u8; 64];
    let rounds = NonZeroU32::new(rounds.max(1)).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        passphrase.as_bytes(),
        &mut out,
    );
    out
}

fn chacha(key: &[u8]) -> aead::LessSafeKey {
    aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key)
        .map(aead::LessSafeKey::new)
        .unwrap_or_else(|_| unreachable_key())
}

impl Keys {
    /// Derives the format 1 keys: sealing and signing.
    pub fn derive(passphrase: &str, salt: &[u8], rounds: u32) -> Keys {
        let out = stretch(passphrase, salt, rounds);
        let (a, b) = out.split_at(32);
        Keys {
            seal: chacha(a),
            check: Check::Mac(hmac::Key::new(hmac::HMAC_SHA256, b)),
        }
    }

    fn mac(&self) -> Option<&hmac::Key> {
        match &self.check {
            Check::Mac(k) => Some(k),
            Check::Signature(_) => None,
        }
    }
}

fn key_check(sign: &hmac::Key) -> String {
    hex::encode(hmac::sign(sign, KEY_CHECK_LABEL).as_ref())
}

/// Format 2: the X25519 secret and the approval key a pass phrase gives.
fn enrolment_secrets(passphrase: &str, salt: &[u8], rounds: u32) -> ([u8; 32], hmac::Key) {
    let out = stretch(passphrase, salt, rounds);
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&out[..32]);
    (secret, hmac::Key::new(hmac::HMAC_SHA256, &out[32..]))
}

fn binding_message(public: &[u8], signer: &[u8]) -> Vec<u8> {
    [BINDING_LABEL, public, signer].concat()
}

/// The sealing key agreed for format 2 (the same on both sides).
fn agreed_key(
    shared: &MontgomeryPoint,
    ephemeral: &[u8; 32],
    public: &[u8; 32],
) -> Result<aead::LessSafeKey, ArchiveError> {
    // A low-order point agrees on zero: never a key.
    if shared.to_bytes() == [0u8; 32] {
        return Err(ArchiveError::Manifest(
            "the ephemeral key is not a usable X25519 key".into(),
        ));
    }
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &[&ephemeral[..], &public[..]].concat());
    let prk = salt.extract(&shared.to_bytes());
    let okm = prk
        .expand(&[SEAL_INFO], &aead::CHACHA20_POLY1305)
        .map_err(|_| ArchiveError::Manifest("key agreement failed".into()))?;
    Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
}

fn hex32(field: &str, value: &str) -> Result<[u8; 32], ArchiveError> {
    hex::decode(value)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ArchiveError::Manifest(format!("{field} is not a 32-byte hex key")))
}

/// What scheduled backups are sealed to and signed with, left on the
/// appliance when the administrator enrols a pass phrase: nothing in it
/// reveals the pass phrase (beyond guessing it offline, as with any
/// archive) and sealing to it needs no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// How the pass phrase was stretched.
    pub kdf: Kdf,
    /// X25519 public key of the pass phrase, hex.
    pub public: String,
    /// The appliance's Ed25519 signing key (public half), hex.
    pub signer: String,
    /// HMAC under the pass phrase approving `signer` for `public`, hex.
    pub binding: String,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
}

impl Enrolment {
    /// Enrols `passphrase`: returns the enrolment and the appliance's new
    /// signing key (PKCS#8, to be kept by root alone).
    pub fn create(
        passphrase: &str,
        rounds: u32,
        created: &str,
    ) -> Result<(Enrolment, Vec<u8>), ArchiveError> {
        if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(ArchiveError::WeakPassphrase);
        }
        let salt = random::<16>()?;
        let rounds = rounds.max(1_000);
        let (secret, approve) = enrolment_secrets(passphrase, &salt, rounds);
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| ArchiveError::Random)?;
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| ArchiveError::Enrolment("a new signing key did not parse".into()))?;
        let signer = pair.public_key().as_ref().to_vec();
        let binding = hmac::sign(&approve, &binding_message(&public, &signer));
        Ok((
            Enrolment {
                kdf: Kdf {
                    algorithm: "pbkdf2-hmac-sha256".into(),
                    rounds,
                    salt: hex::encode(salt),
                },
                public: hex::encode(public),
                signer: hex::encode(signer),
                binding: hex::encode(binding.as_ref()),
                created: created.to_string(),
            },
            pkcs8.as_ref().to_vec(),
        ))
    }

    /// A short name of the enrolled keys, shown to the administrator.
    pub fn fingerprint(&self) -> String {
        sms_core::backup::fingerprint(&self.public)
    }
}
/// A 32-byte key is always valid for ChaCha20-Poly1305.
fn unreachable_key() -> aead::LessSafeKey {
    unreachable!("ChaCha20-Poly1305 takes any 32-byte key")
}

fn random<const N: usize>() -> Result<[u8; N], ArchiveError> {
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ArchiveError::Random)?;
    Ok(b)
}

/// The owner and mode an entry is restored with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Permission bits.
    pub mode: u32,
    /// User name.
    pub owner: String,
    /// Group name.
    pub group: String,
}

enum Body {
    Sealed(Vec<u8>),
    File(PathBuf),
    Empty,
}

/// Builds an archive: entries are added, then [`ArchiveWriter::write`]
/// writes the file.
pub struct ArchiveWriter {
    format: u32,
    seal: aead::LessSafeKey,
    signer: Signer,
    kdf: Kdf,
    key_check: String,
    recipient: Option<Recipient>,
    firmware: String,
    hostname: String,
    entries: Vec<(Entry, Body)>,
}

/// What signs the file being written.
enum Signer {
    Mac(hmac::Key),
    Key(signature::Ed25519KeyPair),
}

impl ArchiveWriter {
    /// A new archive sealed and signed with keys from `passphrase`.
    pub fn new(passphrase: &str, firmware: &str, hostname: &str) -> Result<Self, ArchiveError> {
        Self::with_rounds(passphrase, firmware, hostname, PBKDF2_ROUNDS)
    }

    /// Like [`ArchiveWriter::new`] with another number of PBKDF2 rounds
    /// (tests; never fewer than 1,000).
    pub fn with_rounds(
        passphrase: &str,
        firmware: &str,
        hostname: &str,
        rounds: u32,
    ) -> Result<Self, ArchiveError> {
        if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(ArchiveError::WeakPassphrase);
        }
        let salt = random::<16>()?;
        let rounds = rounds.max(1_000);
        let keys = Keys::derive(passphrase, &salt, rounds);
        let Check::Mac(sign) = keys.check else {
            unreachable!("format 1 keys sign with a MAC")
        };
        Ok(ArchiveWriter {
            format: FORMAT_PASSPHRASE,
            seal: keys.seal,
            key_check: key_check(&sign),
            signer: Signer::Mac(sign),
            kdf: Kdf {
                algorithm: "pbkdf2-hmac-sha256".into(),
                rounds,
                salt: hex::encode(salt),
            },
            recipient: None,
            firmware: firmware.to_string(),
            hostname: hostname.to_string(),
            entries: Vec::new(),
        })
    }

    /// A new format 2 archive, written without the pass phrase: sealed to
    /// the enrolled public key, signed with the appliance's key
    /// (`signing_key`, PKCS#8) the enrolment approved.
    pub fn enrolled(
        enrolment: &Enrolment,
        signing_key: &[u8],
        firmware: &str,
        hostname: &str,
    ) -> Result<Self, ArchiveError> {
        let pair = signature::Ed25519KeyPair::from_pkcs8(signing_key).map_err(|_| {
            ArchiveError::Enrolment("the appliance's signing key is damaged".into())
        })?;
        if hex::encode(pair.public_key().as_ref()) != enrolment.signer {
            return Err(ArchiveError::Enrolment(
                "the appliance's signing key is not the enrolled one: enrol the pass phrase again"
                    .into(),
            ));
        }
        let public = hex32("enrolled public key", &enrolment.public)
            .map_err(|e| ArchiveError::Enrolment(e.to_string()))?;
        let ephemeral_secret = random::<32>()?;
        let ephemeral = MontgomeryPoint::mul_base_clamped(ephemeral_secret).to_bytes();
        let shared = MontgomeryPoint(public).mul_clamped(ephemeral_secret);
        let seal = agreed_key(&shared, &ephemeral, &public)
            .map_err(|e| ArchiveError::Enrolment(e.to_string()))?;
        Ok(ArchiveWriter {
            format: FORMAT_ENROLLED,
            seal,
            signer: Signer::Key(pair),
            kdf: enrolment.kdf.clone(),
            key_check: String::new(),
            recipient: Some(Recipient {
                public: enrolment.public.clone(),
                ephemeral: hex::encode(ephemeral),
                signer: enrolment.signer.clone(),
                binding: enrolment.binding.clone(),
            }),
            firmware: firmware.to_string(),
            hostname: hostname.to_string(),
            entries: Vec::new(),
        })
    }

    /// Adds a directory (owner and mode only).
    pub fn add_dir(&mut self, name: &str, own: Ownership) {
        self.entries
            .push((entry(name, EntryKind::Dir, 0, &[], None, own), Body::Empty));
    }

    /// Adds `content`, sealed: a file or a store snapshot.
    pub fn add_sealed(
        &mut self,
        name: &str,
        kind: EntryKind,
        content: &[u8],
        own: Ownership,
        records: Option<u64>,
    ) -> Result<(), ArchiveError> {
        let digest = Sha256::digest(content);
        let nonce = random::<12>()?;
        let mut sealed = content.to_vec();
        self.seal
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| ArchiveError::Entry {
                name: name.into(),
                reason: "sealing failed".into(),
            })?;
        let mut e = entry(name, kind, sealed.len() as u64, &digest, Some(nonce), own);
        e.records = records;
        self.entries.push((e, Body::Sealed(sealed)));
        Ok(())
    }

    /// Adds a package file by path, its SHA-256 known (the blob store is
    /// content-addressed); the file is read and checked while written.
    pub fn add_package(
        &mut self,
        name: &str,
        path: &Path,
        sha256: &str,
        own: Ownership,
    ) -> Result<(), ArchiveError> {
        let size = std::fs::metadata(path).map_err(io(path))?.len();
        let mut e = entry(name, EntryKind::Package, size, &[], None, own);
        e.sha256 = sha256.to_string();
        self.entries.push((e, Body::File(path.to_path_buf())));
        Ok(())
    }

    /// Writes the archive to `out`; returns its manifest and size. `progress`
    /// is told the bytes written so far after each entry.
    pub fn write(
        self,
        out_path: &Path,
        created: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Manifest, u64), ArchiveError> {
        let manifest = Manifest {
            format: self.format,
            firmware: self.firmware.clone(),
            created: created.to_string(),
            hostname: self.hostname.clone(),
            kdf: self.kdf.clone(),
            key_check: self.key_check.clone(),
            entries: self.entries.iter().map(|(e, _)| e.clone()).collect(),
            recipient: self.recipient.clone(),
        };
        let json = serde_json::to_vec(&manifest)
            .map_err(|e| ArchiveError::Manifest(format!("encoding: {e}")))?;
        let file = std::fs::File::create(out_path).map_err(io(out_path))?;
        let mut out = Signing {
            inner: std::io::BufWriter::new(file),
            digest: match &self.signer {
                Signer::Mac(k) => Digesting::Mac(hmac::Context::with_key(k)),
                Signer::Key(_) => Digesting::Hash(Sha256::new()),
            },
            bytes: 0,
        };
        let total = MAGIC.len() as u64
            + 4
            + json.len() as u64
            + manifest.body_bytes()
            + trailer_len(self.format) as u64;
        out.put(MAGIC).map_err(io(out_path))?;
        out.put(&(json.len() as u32).to_be_bytes())
            .map_err(io(out_path))?;
        out.put(&json).map_err(io(out_path))?;
        for (e, body) in &self.entries {
            match body {
                Body::Empty => {}
                Body::Sealed(b) => out.put(b).map_err(io(out_path))?,
                Body::File(p) => {
                    let mut f = std::fs::File::open(p).map_err(io(p))?;
                    let mut hash = Sha256::new();
                    let mut buf = vec![0u8; 1 << 16];
                    let mut n = 0u64;
                    loop {
                        let k = f.read(&mut buf).map_err(io(p))?;
                        if k == 0 {
                            break;
                        }
                        n += k as u64;
                        hash.update(&buf[..k]);
                        out.put(&buf[..k]).map_err(io(out_path))?;
                    }
                    if n != e.size || hex::encode(hash.finalize()) != e.sha256 {
                        return Err(ArchiveError::Entry {
                            name: e.name.clone(),
                            reason: format!(
                                "{} changed or is damaged on this appliance (its content no longer matches its name)",
                                p.display()
                            ),
                        });
                    }
                }
            }
            progress(out.bytes, total);
        }
        let tag = match (out.digest, &self.signer) {
            (Digesting::Mac(m), _) => m.sign().as_ref().to_vec(),
            (Digesting::Hash(h), Signer::Key(pair)) => pair
                .sign(&[SIGNATURE_LABEL, &h.finalize()[..]].concat())
                .as_ref()
                .to_vec(),
            (Digesting::Hash(_), Signer::Mac(_)) => unreachable!("a MAC signer digests with a MAC"),
        };
        let mut inner = out.inner;
        inner.write_all(&tag).map_err(io(out_path))?;
        let file = inner.into_inner().map_err(|e| ArchiveError::Io {
            path: out_path.to_path_buf(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(out_path))?;
        progress(total, total);
        Ok((manifest, total))
    }
}

fn entry(
    name: &str,
    kind: EntryKind,
    size: u64,
    digest: &[u8],
    nonce: Option<[u8; 12]>,
    own: Ownership,
) -> Entry {
    Entry {
        name: name.to_string(),
        kind,
        size,
        sha256: hex::encode(digest),
        nonce: nonce.map(hex::encode),
        mode: own.mode,
        owner: own.owner,
        group: own.group,
        records: None,
    }
}

/// What the file's bytes are fed to while written or checked.
enum Digesting {
    Mac(hmac::Context),
    Hash(Sha256),
}

impl Digesting {
    fn update(&mut self, b: &[u8]) {
        match self {
            Digesting::Mac(m) => m.update(b),
            Digesting::Hash(h) => h.update(b),
        }
    }
}

struct Signing<W: Write> {
    inner: W,
    digest: Digesting,
    bytes: u64,
}

impl<W: Write> Signing<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.digest.update(b);
        self.inner.write_all(b)?;
        self.bytes += b.len() as u64;
        Ok(())
    }
}

/// An archive opened for reading: its manifest is known, nothing in it is
/// trusted yet.
pub struct Archive {
    path: PathBuf,
    manifest: Manifest,
    body_start: u64,
    file_len: u64,
}

/// Compares dotted version numbers (`0.1.10` > `0.1.9`); anything that is
/// not a number compares as 0.
pub fn version_newer(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+'])
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    false
}

impl Archive {
    /// Reads the header and manifest of the archive at `path`.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let file_len = f.metadata().map_err(io(path))?.len();
        let mut magic = [0u8; 8];
        if f.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(ArchiveError::NotABackup);
        }
        let mut len = [0u8; 4];
        f.read_exact(&mut len)
            .map_err(|_| ArchiveError::Manifest("the file ends before the manifest".into()))?;
        let len = u32::from_be_bytes(len);
        if len > MAX_MANIFEST {
            return Err(ArchiveError::Manifest(format!("{len} bytes long")));
        }
        let mut json = Vec::new();
        (&mut f)
            .take(len as u64)
            .read_to_end(&mut json)
            .map_err(io(path))?;
        if json.len() != len as usize {
            return Err(ArchiveError::Truncated {
                expected: 12 + len as u64,
                have: file_len,
            });
        }
        // The format is read first, so that a newer format is named as such
        // even when its manifest no longer parses here.
        let format = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v.get("format").and_then(|f| f.as_u64()));
        if let Some(f) = format {
            if f > FORMAT as u64 {
                return Err(ArchiveError::NewerFormat(f as u32));
            }
        }
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| ArchiveError::Manifest(e.to_string()))?;
        match (manifest.format, &manifest.recipient) {
            (FORMAT_PASSPHRASE, None) | (FORMAT_ENROLLED, Some(_)) => {}
            (f, _) => {
                return Err(ArchiveError::Manifest(format!(
                    "format {f} with{} recipient keys",
                    if manifest.recipient.is_some() {
                        ""
                    } else {
                        "out"
                    }
                )))
            }
        }
        for e in &manifest.entries {
            check_name(&e.name)?;
        }
        Ok(Archive {
            path: path.to_path_buf(),
            manifest,
            body_start: 12 + len as u64,
            file_len,
        })
    }

    /// The unverified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Refuses an archive this firmware cannot restore.
    pub fn check_firmware(&self, running: &str) -> Result<(), ArchiveError> {
        if version_newer(&self.manifest.firmware, running) {
            return Err(ArchiveError::NewerFirmware {
                backup: self.manifest.firmware.clone(),
                running: running.to_string(),
            });
        }
        Ok(())
    }

    /// Derives the keys from `passphrase` and checks them against the
    /// manifest's key check.
    pub fn unlock(&self, passphrase: &str) -> Result<Keys, ArchiveError> {
        let kdf = &self.manifest.kdf;
        if kdf.algorithm != "pbkdf2-hmac-sha256" {
            return Err(ArchiveError::Manifest(format!(
                "unknown key derivation {}",
                kdf.algorithm
            )));
        }
        // An archive cannot make the appliance derive for hours.
        if !(1_000..=MAX_PBKDF2_ROUNDS).contains(&kdf.rounds) {
            return Err(ArchiveError::Manifest(format!(
                "{} key derivation rounds (1000 to {MAX_PBKDF2_ROUNDS} are read)",
                kdf.rounds
            )));
        }
        let salt =
            hex::decode(&kdf.salt).map_err(|_| ArchiveError::Manifest("salt is not hex".into()))?;
        let Some(r) = &self.manifest.recipient else {
            let keys = Keys::derive(passphrase, &salt, kdf.rounds);
            let check = hex::decode(&self.manifest.key_check)
                .map_err(|_| ArchiveError::Manifest("key check is not hex".into()))?;
            let mac = keys.mac().ok_or(ArchiveError::WrongPassphrase)?;
            hmac::verify(mac, KEY_CHECK_LABEL, &check)
                .map_err(|_| ArchiveError::WrongPassphrase)?;
            return Ok(keys);
        };
        let public = hex32("recipient public key", &r.public)?;
        let ephemeral = hex32("ephemeral key", &r.ephemeral)?;
        let signer = hex32("signer key", &r.signer)?;
        let binding = hex::decode(&r.binding)
            .map_err(|_| ArchiveError::Manifest("signer approval is not hex".into()))?;
        let (secret, approve) = enrolment_secrets(passphrase, &salt, kdf.rounds);
        if MontgomeryPoint::mul_base_clamped(secret).to_bytes() != public {
            return Err(ArchiveError::WrongPassphrase);
        }
        hmac::verify(&approve, &binding_message(&public, &signer), &binding)
            .map_err(|_| ArchiveError::UnapprovedSigner)?;
        let shared = MontgomeryPoint(ephemeral).mul_clamped(secret);
        Ok(Keys {
            seal: agreed_key(&shared, &ephemeral, &public)?,
            check: Check::Signature(signer.to_vec()),
        })
    }

    /// Checks the file's length and signature: after this, every byte is
    /// the one the appliance wrote.
    pub fn verify(&self, keys: &Keys) -> Result<(), ArchiveError> {
        let trailer = trailer_len(self.manifest.format);
        let expected = self
            .body_start
            .saturating_add(self.manifest.body_bytes())
            .saturating_add(trailer as u64);
        if self.file_len < expected {
            return Err(ArchiveError::Truncated {
                expected,
                have: self.file_len,
            });
        }
        if self.file_len > expected {
            return Err(ArchiveError::TrailingData {
                extra: self.file_len - expected,
            });
        }
        let f = std::fs::File::open(&self.path).map_err(io(&self.path))?;
        let mut rd = BufReader::with_capacity(1 << 16, f);
        let mut digest = match &keys.check {
            Check::Mac(k) if trailer == 32 => Digesting::Mac(hmac::Context::with_key(k)),
            Check::Signature(_) if trailer == 64 => Digesting::Hash(Sha256::new()),
            _ => return Err(ArchiveError::Altered),
        };
        let mut left = expected - trailer as u64;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            rd.read_exact(&mut buf[..want]).map_err(io(&self.path))?;
            digest.update(&buf[..want]);
            left -= want as u64;
        }
        let mut tag = vec![0u8; trailer];
        rd.read_exact(&mut tag).map_err(io(&self.path))?;
        let good = match (digest, &keys.check) {
            (Digesting::Mac(m), _) => {
                let ours = m.sign();
                ours.as_ref()
                    .iter()
                    .zip(tag.iter())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0
            }
            (Digesting::Hash(h), Check::Signature(public)) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, public)
                    .verify(&[SIGNATURE_LABEL, &h.finalize()[..]].concat(), &tag)
                    .is_ok()
            }
            (Digesting::Hash(_), Check::Mac(_)) => false,
        };
        if !good {
            return Err(ArchiveError::Altered);
        }
        Ok(())
    }

    fn offset_of(&self, index: usize) -> u64 {
        self.manifest.entries[..index]
            .iter()
            .fold(self.body_start, |n, e| n.saturating_add(e.size))
    }

    /// The content of sealed entry `index`, opened and its digest checked.
    pub fn open_entry(&self, keys: &Keys, index: usize) -> Result<Vec<u8>, ArchiveError> {
        let e = &self.manifest.entries[index];
        let damaged = |reason: &str| ArchiveError::Entry {
            name: e.name.clone(),
            reason: reason.to_string(),
        };
        let nonce = e
            .nonce
            .as_deref()
            .and_then(|n| hex::decode(n).ok())
            .and_then(|n| <[u8; 12]>::try_from(n).ok())
            .ok_or_else(|| damaged("no nonce"))?;
        let mut f = std::fs::File::open(&self.path).map_err(io(&self.path))?;
        f.seek(SeekFrom::Start(self.offset_of(index)))
            .map_err(io(&self.path))?;
        let mut body = Vec::new();
        (&mut f)
            .take(e.size)
            .read_to_end(&mut body)
            .map_err(io(&self.path))?;
        let plain = keys
            .seal
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(e.name.as_bytes()),
                &mut body,
            )
            .map_err(|_| damaged("it does not decrypt"))?;
        if hex::encode(Sha256::digest(&*plain)) != e.sha256 {
            return Err(damaged("its digest differs"));
        }
        Ok(plain.to_vec())
    }

    /// Copies package entry `index` to `dest`, its digest checked.
    pub fn copy_package(&self, index: usize, dest: &Path) -> Result<(), ArchiveError> {
        let e = &self.manifest.entries[index];
        let mut f = std::fs::File::open(&self.path).map_err(io(&self.path))?;
        f.seek(SeekFrom::Start(self.offset_of(index)))
            .map_err(io(&self.path))?;
        let mut out = std::fs::File::create(dest).map_err(io(dest))?;
        let mut hash = Sha256::new();
        let mut left = e.size;
        let mut buf = vec![0u8; 1 << 16];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            f.read_exact(&mut buf[..want]).map_err(io(&self.path))?;
            hash.update(&buf[..want]);
            out.write_all(&buf[..want]).map_err(io(dest))?;
            left -= want as u64;
        }
        out.sync_all().map_err(io(dest))?;
        if hex::encode(hash.finalize()) != e.sha256 {
            return Err(ArchiveError::Entry {
                name: e.name.clone(),
                reason: "its digest differs".into(),
            });
        }
        Ok(())
    }
}

/// Entry names are relative paths of plain components: a manifest cannot
/// name `/etc/shadow` or `../x`.
fn check_name(name: &str) -> Result<(), ArchiveError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.split('/').all(|c| {
            !c.is_empty() && c != "." && c != ".." && c.chars().all(|ch| !ch.is_control())
        });
    if ok {
        Ok(())
    } else {
        Err(ArchiveError::Manifest(format!(
            "entry name {name:?} is not a relative path"
        )))
    }
}

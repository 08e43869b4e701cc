//! Signed catalog metadata, verified in the manner of TUF.
//!
//! The update centre publishes, per channel, a catalog: a metadata version
//! number, an expiry, and an entry (length, SHA-256) for every package. The
//! catalog travels in a DSSE envelope (the payload bytes plus ed25519
//! signatures over `PAE(payload_type, payload)`), so the signed bytes are
//! exactly the bytes that are parsed: no canonical-JSON pitfalls.
//!
//! The appliance ships a [`TrustRoot`] (a key set and a threshold). It
//! refuses a catalog with too few valid signatures, an expired one, one for
//! another channel, and one older than the newest it has already accepted
//! (rollback) or of the same version with other content (equivocation).
//! Packages are then checked against their entry before activation.

use crate::blob::Digest;
use crate::package::{Channel, PackageEntry};
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Payload type of a catalog envelope.
pub const CATALOG_PAYLOAD_TYPE: &str = "application/vnd.sms.catalog+json";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why metadata was refused. Each variant is a precise reason for the log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// The envelope or catalog is not well-formed.
    #[error("malformed metadata: {0}")]
    Malformed(String),
    /// The payload type is not a catalog.
    #[error("unexpected payload type {0:?}")]
    PayloadType(String),
    /// Fewer trusted keys signed it than the threshold.
    #[error("signature check failed: {valid} valid signature(s) from trusted keys, {threshold} required")]
    BadSignature {
        /// Distinct trusted keys with a valid signature.
        valid: usize,
        /// Required number.
        threshold: usize,
    },
    /// The catalog is for another channel.
    #[error("catalog is for channel {got}, expected {expected}")]
    WrongChannel {
        /// Channel asked for.
        expected: Channel,
        /// Channel in the catalog.
        got: Channel,
    },
    /// The catalog has expired (or the clock is wrong).
    #[error("catalog version {version} expired at {expires} (now {now})")]
    Expired {
        /// Metadata version.
        version: u64,
        /// Expiry, RFC 3339.
        expires: String,
        /// Current time, RFC 3339.
        now: String,
    },
    /// The catalog is older than one already accepted.
    #[error(
        "rollback refused: catalog version {got} is older than version {seen} already accepted"
    )]
    Rollback {
        /// Version offered.
        got: u64,
        /// Newest version accepted before.
        seen: u64,
    },
    /// Same version as accepted before, but different content.
    #[error("catalog version {0} differs from the copy of the same version accepted before")]
    Equivocation(u64),
    /// The signed catalog does not list the package as received.
    #[error("package {key} does not match the signed catalog: {why}")]
    NotVouched {
        /// Package key.
        key: String,
        /// What differs.
        why: String,
    },
}

/// The signed envelope as it travels (DSSE).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Media type of the payload.
    pub payload_type: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    /// Signatures over the pre-authentication encoding.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an [`Envelope`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Key id (hex SHA-256 of the raw public key).
    pub keyid: String,
    /// Base64 of the 64-byte ed25519 signature.
    pub sig: String,
}

/// A channel's catalog: what the update centre offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Channel described.
    pub channel: Channel,
    /// Metadata version, increasing with every publication.
    pub version: u64,
    /// Issue time, Unix seconds.
    pub issued: i64,
    /// Expiry time, Unix seconds.
    pub expires: i64,
    /// Every downloadable package.
    pub packages: Vec<PackageEntry>,
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Key id of a public key: hex SHA-256 of its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    Digest::of(key.as_bytes()).to_hex()
}

/// What the appliance trusts: public keys and how many must sign.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    keys: BTreeMap<String, VerifyingKey>,
    threshold: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustRootFile {
    threshold: usize,
    keys: Vec<TrustRootKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustRootKey {
    ed25519: String,
}

impl TrustRoot {
    /// A trust root of `keys` with `threshold` required signatures.
    pub fn new(keys: &[VerifyingKey], threshold: usize) -> Result<TrustRoot, MetadataError> {
        let keys: BTreeMap<_, _> = keys.iter().map(|k| (key_id(k), *k)).collect();
        if threshold == 0 || threshold > keys.len() {
            return Err(MetadataError::Malformed(format!(
                "trust root threshold {threshold} is not between 1 and its {} key(s)",
                keys.len()
            )));
        }
        Ok(TrustRoot { keys, threshold })
    }

    /// Parses the JSON form: `{"threshold": 1, "keys": [{"ed25519": "<hex>"}]}`.
    pub fn from_json(bytes: &[u8]) -> Result<TrustRoot, MetadataError> {
        let file: TrustRootFile = serde_json::from_slice(bytes)
            .map_err(|e| MetadataError::Malformed(format!("trust root: {e}")))?;
        let mut keys = Vec::new();
        for k in &file.keys {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(&k.ed25519, &mut raw).map_err(|e| {
                MetadataError::Malformed(format!("trust root key {:?}: {e}", k.ed25519))
            })?;
            keys.push(VerifyingKey::from_bytes(&raw).map_err(|e| {
                MetadataError::Malformed(format!("trust root key {:?}: {e}", k.ed25519))
            })?);
        }
        TrustRoot::new(&keys, file.threshold)
    }

    /// Reads the JSON form from a file.
    pub fn load(path: &Path) -> Result<TrustRoot, MetadataError> {
        let bytes = std::fs::read(path).map_err(|e| {
            MetadataError::Malformed(format!("cannot read trust root {}: {e}", path.display()))
        })?;
        TrustRoot::from_json(&bytes)
    }

    /// The JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        let file = TrustRootFile {
            threshold: self.threshold,
            keys: self
                .keys
                .values()
                .map(|k| TrustRootKey {
                    ed25519: hex::encode(k.as_bytes()),
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    /// Checks the envelope's signatures and returns the payload bytes.
    pub fn open_envelope(
        &self,
        env: &Envelope,
        payload_type: &str,
    ) -> Result<Vec<u8>, MetadataError> {
        if env.payload_type != payload_type {
            return Err(MetadataError::PayloadType(env.payload_type.clone()));
        }
        let payload = B64
            .decode(&env.payload)
            .map_err(|e| MetadataError::Malformed(format!("payload is not base64: {e}")))?;
        let message = pae(&env.payload_type, &payload);
        let mut valid: Vec<&str> = Vec::new();
        for s in &env.signatures {
            let Some(key) = self.keys.get(&s.keyid) else {
                continue;
            };
            if valid.contains(&s.keyid.as_str()) {
                continue;
            }
            let Ok(raw) = B64.decode(&s.sig) else {
                continue;
            };
            let Ok(sig) = Signature::from_slice(&raw) else {
                continue;
            };
            if key.verify(&message, &sig).is_ok() {
                valid.push(&s.keyid);
            }
        }
        if valid.len() < self.threshold {
            return Err(MetadataError::BadSignature {
                valid: valid.len(),
                threshold: self.threshold,
            });
        }
        Ok(payload)
    }
}

/// The newest catalog accepted before, for rollback protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenCatalog {
    /// Its metadata version.
    pub version: u64,
    /// SHA-256 of its payload.
    pub payload_sha256: Digest,
}

/// A catalog that passed every check, with what to remember of it.
#[derive(Debug, Clone)]
pub struct VerifiedCatalog {
    /// The catalog.
    pub catalog: Catalog,
    /// What to store as the newest accepted catalog.
    pub seen: SeenCatalog,
}

/// Verifies a catalog envelope (as received, JSON bytes).
///
/// `now` is Unix seconds; `seen` the newest catalog accepted before.
pub fn verify_catalog(
    bytes: &[u8],
    trust: &TrustRoot,
    channel: Channel,
    now: i64,
    seen: Option<SeenCatalog>,
) -> Result<VerifiedCatalog, MetadataError> {
    let env: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| MetadataError::Malformed(format!("envelope: {e}")))?;
    let payload = trust.open_envelope(&env, CATALOG_PAYLOAD_TYPE)?;
    let catalog: Catalog = serde_json::from_slice(&payload)
        .map_err(|e| MetadataError::Malformed(format!("catalog: {e}")))?;
    if catalog.channel != channel {
        return Err(MetadataError::WrongChannel {
            expected: channel,
            got: catalog.channel,
        });
    }
    let mut keys = std::collections::BTreeSet::new();
    for p in &catalog.packages {
        // Two entries for one package would let the signer (or a bug) vouch
        // for two different files under one name: which one a device gets
        // would depend on lookup order.
        if !keys.insert(p.key()) {
            return Err(MetadataError::Malformed(format!(
                "package {} is listed more than once",
                p.key()
            )));
        }
        if p.channel != channel {
            return Err(MetadataError::Malformed(format!(
                "package {} is not of channel {channel}",
                p.key()
            )));
        }
        if (channel == Channel::Tos) != p.family.is_some() {
            return Err(MetadataError::Malformed(format!(
                "package {}: TOS entries need a platform family, DV entries none",
                p.key()
            )));
        }
    }
    let payload_sha256 = Digest::of(&payload);
    if let Some(seen) = seen {
        if catalog.version < seen.version {
            return Err(MetadataError::Rollback {
                got: catalog.version,
                seen: seen.version,
            });
        }
        if catalog.version == seen.version && payload_sha256 != seen.payload_sha256 {
            return Err(MetadataError::Equivocation(catalog.version));
        }
    }
    if catalog.expires <= now {
        return Err(MetadataError::Expired {
            version: catalog.version,
            expires: rfc3339(catalog.expires),
            now: rfc3339(now),
        });
    }
    Ok(VerifiedCatalog {
        seen: SeenCatalog {
            version: catalog.version,
            payload_sha256,
        },
        catalog,
    })
}

/// Checks that a vendor-signed catalog envelope lists the package `key`
/// with exactly this digest and length, and returns its entry.
///
/// This is what a receiving device does before installing: the signature
/// is the vendor's, whoever relayed the file. Expiry and rollback are the
/// fetcher's concern (they guard freshness of what is offered, not the
/// authenticity of a file), so they are not checked here.
pub fn verify_package(
    envelope: &[u8],
    trust: &TrustRoot,
    key: &str,
    sha256: &Digest,
    length: u64,
) -> Result<PackageEntry, MetadataError> {
    let env: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| MetadataError::Malformed(format!("envelope: {e}")))?;
    let payload = trust.open_envelope(&env, CATALOG_PAYLOAD_TYPE)?;
    let catalog: Catalog = serde_json::from_slice(&payload)
        .map_err(|e| MetadataError::Malformed(format!("catalog: {e}")))?;
    let not = |why: String| MetadataError::NotVouched {
        key: key.to_string(),
        why,
    };
    let entry = catalog
        .packages
        .into_iter()
        .find(|p| p.key() == key)
        .ok_or_else(|| not("not listed".into()))?;
    if entry.sha256 != *sha256 {
        return Err(not(format!(
            "sha256 {} received, {} signed",
            sha256, entry.sha256
        )));
    }
    if entry.length != length {
        return Err(not(format!(
            "{length} bytes received, {} signed",
            entry.length
        )));
    }
    Ok(entry)
}

/// Formats Unix seconds as RFC 3339 (UTC) for messages.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Signs catalogs: the update centre's side (used by the simulator and by
/// tests; the appliance never holds a signing key).
pub struct CatalogSigner {
    keys: Vec<SigningKey>,
}

impl CatalogSigner {
    /// A signer with `n` fresh random keys.
    pub fn generate(n: usize) -> CatalogSigner {
        let mut rng = rand::rngs::OsRng;
        CatalogSigner {
            keys: (0..n).map(|_| SigningKey::generate(&mut rng)).collect(),
        }
    }

    /// A signer from stored 32-byte ed25519 secret keys (the simulator keeps
    /// its keys across restarts so that a built image keeps trusting it).
    pub fn from_secret_keys(secrets: &[[u8; 32]]) -> CatalogSigner {
        CatalogSigner {
            keys: secrets.iter().map(SigningKey::from_bytes).collect(),
        }
    }

    /// The 32-byte secret keys, for storing them.
    pub fn secret_keys(&self) -> Vec<[u8; 32]> {
        self.keys.iter().map(|k| k.to_bytes()).collect()
    }

    /// The public keys.
    pub fn verifying_keys(&self) -> Vec<VerifyingKey> {
        self.keys.iter().map(|k| k.verifying_key()).collect()
    }

    /// Signs arbitrary payload bytes into an envelope.
    pub fn sign_payload(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let message = pae(payload_type, payload);
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: self
                .keys
                .iter()
                .map(|k| EnvelopeSignature {
                    keyid: key_id(&k.verifying_key()),
                    sig: B64.encode(k.sign(&message).to_bytes()),
                })
                .collect(),
        }
    }

    /// Signs a catalog.
    pub fn sign_catalog(&self, catalog: &Catalog) -> Envelope {
        let payload = serde_json::to_vec(catalog).unwrap_or_default();
        self.sign_payload(CATALOG_PAYLOAD_TYPE, &payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Version;

    fn catalog(version: u64, expires: i64) -> Catalog {
        Catalog {
            channel: Channel::Dv,
            version,
            issued: 1000,
            expires,
            packages: vec![PackageEntry {
                channel: Channel::Dv,
                version: "4.0.0.1".parse::<Version>().unwrap(),
                family: None,
                file: "dv-4.0.0.1".into(),
                length: 3,
                sha256: Digest::of(b"abc"),
            }],
        }
    }

    fn bytes(env: &Envelope) -> Vec<u8> {
        serde_json::to_vec(env).unwrap()
    }

    #[test]
    fn good_catalog_verifies() {
        let signer = CatalogSigner::generate(1);
        let trust = TrustRoot::new(&signer.verifying_keys(), 1).unwrap();
        let env = signer.sign_catalog(&catalog(3, 5000));
        let v = verify_catalog(&bytes(&env), &trust, Channel::Dv, 2000, None).unwrap();
        assert_eq!(v.catalog.version, 3);
        // Same version, same content: accepted again.
        verify_catalog(&bytes(&env), &trust, Channel::Dv, 2000, Some(v.seen)).unwrap();
    }

    #[test]
    fn refusals_are_precise() {
        let signer = CatalogSigner::generate(1);
        let other = CatalogSigner::generate(1);
        let trust = TrustRoot::new(&signer.verifying_keys(), 1).unwrap();
        let good = bytes(&signer.sign_catalog(&catalog(3, 5000)));
        let seen = verify_catalog(&good, &trust, Channel::Dv, 2000, None)
            .unwrap()
            .seen;

        let forged = bytes(&other.sign_catalog(&catalog(4, 5000)));
        assert_eq!(
            verify_catalog(&forged, &trust, Channel::Dv, 2000, None).unwrap_err(),
            MetadataError::BadSignature {
                valid: 0,
                threshold: 1
            }
        );
        let expired = bytes(&signer.sign_catalog(&catalog(4, 1500)));
        assert!(matches!(
            verify_catalog(&expired, &trust, Channel::Dv, 2000, None).unwrap_err(),
            MetadataError::Expired { version: 4, .. }
        ));
        let old = bytes(&signer.sign_catalog(&catalog(2, 5000)));
        assert_eq!(
            verify_catalog(&old, &trust, Channel::Dv, 2000, Some(seen)).unwrap_err(),
            MetadataError::Rollback { got: 2, seen: 3 }
        );
        let mut twin = catalog(3, 6000);
        twin.issued = 1001;
        let twin = bytes(&signer.sign_catalog(&twin));
        assert_eq!(
            verify_catalog(&twin, &trust, Channel::Dv, 2000, Some(seen)).unwrap_err(),
            MetadataError::Equivocation(3)
        );
        assert!(matches!(
            verify_catalog(&good, &trust, Channel::Tos, 2000, None).unwrap_err(),
            MetadataError::WrongChannel { .. }
        ));
    }

    #[test]
    fn a_package_listed_twice_is_refused() {
        let signer = CatalogSigner::generate(1);
        let trust = TrustRoot::new(&signer.verifying_keys(), 1).unwrap();
        let mut twice = catalog(3, 5000);
        let mut other = twice.packages[0].clone();
        other.sha256 = Digest::of(b"xyz");
        other.file = "dv-4.0.0.1-other".into();
        twice.packages.push(other);
        let env = bytes(&signer.sign_catalog(&twice));
        assert_eq!(
            verify_catalog(&env, &trust, Channel::Dv, 2000, None).unwrap_err(),
            MetadataError::Malformed("package dv/4.0.0.1 is listed more than once".into())
        );
    }

    #[test]
    fn tampered_payload_fails_signature() {
        let signer = CatalogSigner::generate(1);
        let trust = TrustRoot::new(&signer.verifying_keys(), 1).unwrap();
        let mut env = signer.sign_catalog(&catalog(3, 5000));
        let mut payload = B64.decode(&env.payload).unwrap();
        let pos = payload.windows(4).position(|w| w == b"\"abc").unwrap_or(10);
        payload[pos + 1] ^= 1;
        env.payload = B64.encode(&payload);
        assert!(matches!(
            verify_catalog(&bytes(&env), &trust, Channel::Dv, 2000, None).unwrap_err(),
            MetadataError::BadSignature { .. }
        ));
    }

    #[test]
    fn threshold_counts_distinct_keys() {
        let signer = CatalogSigner::generate(2);
        let trust = TrustRoot::new(&signer.verifying_keys(), 2).unwrap();
        let mut env = signer.sign_catalog(&catalog(3, 5000));
        verify_catalog(&bytes(&env), &trust, Channel::Dv, 2000, None).unwrap();
        // Duplicating one signature must not count twice.
        env.signatures[1] = env.signatures[0].clone();
        assert_eq!(
            verify_catalog(&bytes(&env), &trust, Channel::Dv, 2000, None).unwrap_err(),
            MetadataError::BadSignature {
                valid: 1,
                threshold: 2
            }
        );
    }

    #[test]
    fn trust_root_json_round_trips() {
        let signer = CatalogSigner::generate(3);
        let trust = TrustRoot::new(&signer.verifying_keys(), 2).unwrap();
        let again = TrustRoot::from_json(&trust.to_json()).unwrap();
        assert_eq!(again.threshold, 2);
        assert_eq!(again.keys.len(), 3);
        assert!(TrustRoot::new(&signer.verifying_keys(), 4).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_refused_without_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let signer = CatalogSigner::generate(1);
            let trust = TrustRoot::new(&signer.verifying_keys(), 1).unwrap();
            proptest::prop_assert!(verify_catalog(&data, &trust, Channel::Dv, 0, None).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let signer = CatalogSigner::generate(1);
        let trust = TrustRoot::new(&signer.verifying_keys(), 1).unwrap();
        for input in [&b""[..], b"{}", b"[]", b"{\"payloadType\":1}", b"\xff\xfe", b"{\"payloadType\":\"application/vnd.sms.catalog+json\",\"payload\":\"!!\",\"signatures\":[]}"] {
            assert!(verify_catalog(input, &trust, Channel::Dv, 0, None).is_err());
        }
    }
}

//! The appliance's own TLS identities (pull server certificate, device
//! client identity), made at first start when none is shipped.
//!
//! Private keys are written 0600 in a 0700 directory by an atomic write
//! whose file is created with that mode, so there is no moment at which a
//! key is readable by another account; a key found with wider permissions
//! (an older firmware wrote them 0644) is narrowed at start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Why an identity could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Key generation or signing failed.
    #[error("making the certificate for {name}: {reason}")]
    Generate {
        /// Subject name.
        name: String,
        /// rcgen's reason.
        reason: String,
    },
    /// A file could not be written or its mode set.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (public).
pub const CERT_MODE: u32 = 0o644;

/// Writes a self-signed certificate and key for `name` unless both files
/// exist; either way the key ends with mode 0600.
pub fn ensure_identity(cert: &Path, key: &Path, name: &str) -> Result<(), IdentityError> {
    if cert.exists() && key.exists() {
        return narrow_key_mode(key);
    }
    let generate = |reason: rcgen::Error| IdentityError::Generate {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let kp = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let c = params.self_signed(&kp).map_err(generate)?;
    for (path, text, mode) in [
        (key, kp.serialize_pem(), KEY_MODE),
        (cert, c.pem(), CERT_MODE),
    ] {
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io(dir))?;
            }
        }
        crate::files::write_atomic(path, text.as_bytes(), mode).map_err(io(path))?;
    }
    tracing::info!("created {} (self-signed, {name})", cert.display());
    Ok(())
}

/// The fingerprint an admin compares when pairing two appliances: the
/// SHA-256 of the certificate (DER), as colon-separated upper-case hex
/// pairs, the way browsers and `openssl x509 -fingerprint` show it.
pub fn fingerprint(cert_der: &[u8]) -> String {
    crate::blob::Digest::of(cert_der)
        .0
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads a fingerprint as [`fingerprint`] writes it (colons optional,
/// either case) into the digest a TLS configuration pins.
pub fn parse_fingerprint(text: &str) -> Result<crate::blob::Digest, String> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex)
        .map_err(|_| format!("`{text}` is not a SHA-256 fingerprint (64 hex digits)"))?;
    let a: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("`{text}` is not a SHA-256 fingerprint (64 hex digits)"))?;
    Ok(crate::blob::Digest(a))
}

/// Removes group and other permissions from an existing key file.
pub fn narrow_key_mode(key: &Path) -> Result<(), IdentityError> {
    let mode = std::fs::metadata(key)
        .map_err(io(key))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "{} was readable by others (mode {mode:o}); narrowing it to 0600",
            key.display()
        );
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(KEY_MODE))
            .map_err(io(key))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn fingerprints_read_back_and_typos_are_refused() {
        let fp = fingerprint(b"certificate");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_eq!(
            parse_fingerprint(&fp).unwrap(),
            crate::blob::Digest::of(b"certificate")
        );
        assert_eq!(
            parse_fingerprint(&fp.replace(':', "").to_lowercase()).unwrap(),
            crate::blob::Digest::of(b"certificate")
        );
        assert!(parse_fingerprint(&fp[..fp.len() - 3]).is_err());
        assert!(parse_fingerprint("zz").is_err());
    }

    #[test]
    fn a_new_key_is_private_and_an_old_wide_one_is_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls/c.pem"), dir.path().join("tls/k.pem"));
        ensure_identity(&cert, &key, "sms test").unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        assert_eq!(mode(&dir.path().join("tls")), 0o700);
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.contains("PRIVATE KEY"));

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_identity(&cert, &key, "sms test").unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read_to_string(&key).unwrap(), pem, "key replaced");
    }
}

//! Checks of single values, by type and character set, before anything is
//! stored: what an administrator types can never add a directive to a
//! generated file.

use super::{invalid, SettingsError};
use std::net::IpAddr;

/// A host name: RFC 1123 labels, at most 253 characters.
pub fn check_hostname(s: &str) -> Result<(), SettingsError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "hostname",
            format!("{s:?} is not a host name (letters, digits, '-', dot-separated labels)"),
        ))
    }
}

/// A community or user name: letters, digits, `.`, `_`, `-`, 1 to 32.
pub fn check_name(what: &str, s: &str) -> Result<(), SettingsError> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            "1 to 32 letters, digits, '.', '_' or '-', not starting with '-'",
        ))
    }
}

/// A secret: printable ASCII without quotes or backslashes, `min` to 64.
pub fn check_secret(what: &str, s: &str, min: usize) -> Result<(), SettingsError> {
    let ok = s.len() >= min
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            format!("{min} to 64 printable characters without spaces, quotes or backslashes"),
        ))
    }
}

/// A time zone name of the tz database (`Area/City`, `UTC`).
pub fn check_time_zone(s: &str) -> Result<(), SettingsError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.split('/').all(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "time-zone",
            format!("{s:?} is not a time zone name such as Europe/Berlin or UTC"),
        ))
    }
}

/// An NTP server: an address, optionally with a port (`192.0.2.123`,
/// `192.0.2.123:123`, `[2001:db8::1]:123`). The relay resolves no names, so
/// that time never depends on DNS.
pub fn check_ntp_server(s: &str) -> Result<(), SettingsError> {
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(()),
        Ok(_) => Err(invalid("ntp server", format!("{s:?}: port 0"))),
        Err(_) if s.parse::<IpAddr>().is_ok() => Ok(()),
        Err(_) => Err(invalid(
            "ntp server",
            format!("{s:?} is not an address or address:port"),
        )),
    }
}

/// A proxy URL: `http://host[:port]` and nothing more (credentials are
/// separate settings, so they never appear in a URL that is shown).
pub fn check_proxy_url(s: &str) -> Result<(), SettingsError> {
    let bad = |why: &str| invalid("proxy url", format!("{s:?}: {why}"));
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['@', '/', '?', '#']) {
        return Err(bad(
            "only http://host:port (user and password are set apart)",
        ));
    }
    if rest.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
            return Err(bad("bad port"));
        }
    }
    if host.parse::<IpAddr>().is_ok() || check_hostname(host).is_ok() {
        Ok(())
    } else {
        Err(bad("not a host"))
    }
}

/// Only the characters of an address and prefix (no spaces, nothing else).
pub(super) fn check_prefix_chars(what: &str, s: &str) -> Result<(), SettingsError> {
    if !s.is_empty()
        && s.len() <= 43
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/'))
    {
        Ok(())
    } else {
        Err(invalid(what, format!("{s:?} is not ADDRESS/LENGTH")))
    }
}

/// SSH public key algorithms accepted for logins.
pub const LOGIN_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// Smallest RSA modulus accepted, bits.
pub const MIN_RSA_BITS: usize = 2048;

/// An account name: lower-case letters, digits, `-` and `_`, starting with
/// a letter, at most 32 characters.
pub fn check_account(s: &str) -> Result<(), SettingsError> {
    let mut b = s.bytes();
    let ok = matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 32
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "login user",
            format!("{s:?} is not an account name (a lower-case letter, then letters, digits, '-', '_')"),
        ))
    }
}

/// An SSH public key as `TYPE BASE64 [COMMENT]`, checked the way sshd
/// would read it and stricter: a listed type, canonical base64 whose blob
/// names the same type and holds exactly that type's fields (an Ed25519
/// key of 32 bytes, an ECDSA point of its curve's size, an RSA modulus of
/// at least [`MIN_RSA_BITS`]), and a comment of plain characters. Nothing
/// that could add an option or a second key to an authorized_keys line
/// gets through.
pub fn check_login_key(key: &str) -> Result<(), SettingsError> {
    use base64::Engine;
    let bad = |why: &str| invalid("authorized-key", why.to_string());
    let parts: Vec<&str> = key.split(' ').collect();
    let (kind, blob, comment) = match parts.as_slice() {
        [k, b] => (*k, *b, ""),
        [k, b, c] => (*k, *b, *c),
        _ => return Err(bad("TYPE BASE64 [COMMENT], separated by single spaces")),
    };
    if !LOGIN_KEY_TYPES.contains(&kind) {
        return Err(bad(&format!("type: one of {}", LOGIN_KEY_TYPES.join(", "))));
    }
    if comment.len() > 64
        || !comment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '+' | '-'))
    {
        return Err(bad(
            "comment: at most 64 letters, digits, '@', '.', '_', '+', '-'",
        ));
    }
    if blob.len() > 2048 {
        return Err(bad("key too long"));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| bad("the key is not base64"))?;
    let mut rest = data.as_slice();
    let mut field = || -> Result<&[u8], SettingsError> {
        if rest.len() < 4 {
            return Err(bad("the key blob is truncated"));
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let f = rest
            .get(4..4 + n)
            .ok_or_else(|| bad("the key blob is truncated"))?;
        rest = &rest[4 + n..];
        Ok(f)
    };
    if field()? != kind.as_bytes() {
        return Err(bad("the key blob is of another type than it says"));
    }
    match kind {
        "ssh-ed25519" => {
            if field()?.len() != 32 {
                return Err(bad("an Ed25519 key has 32 bytes"));
            }
        }
        "ssh-rsa" => {
            let e = field()?;
            let n = field()?;
            let n = n.strip_prefix(&[0]).unwrap_or(n);
            if e.is_empty() || n.len() * 8 < MIN_RSA_BITS {
                return Err(bad(&format!(
                    "an RSA key needs at least {MIN_RSA_BITS} bits"
                )));
            }
        }
        _ => {
            let curve = &kind["ecdsa-sha2-".len()..];
            if field()? != curve.as_bytes() {
                return Err(bad("the key's curve is not the one its type names"));
            }
            let size = match curve {
                "nistp256" => 65,
                "nistp384" => 97,
                _ => 133,
            };
            let q = field()?;
            if q.len() != size || q.first() != Some(&4) {
                return Err(bad("not an uncompressed point of the curve"));
            }
        }
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the key"));
    }
    Ok(())
}

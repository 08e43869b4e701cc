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

//! The administrator's settings: what `configure` in the CLI changes.
//!
//! The root file system is read-only, so what an administrator sets (DNS
//! servers, proxy, NTP servers, SNMP communities, users and trap
//! destinations, HA peer, host name, management address, time zone) lives
//! in one TOML file on the data partition, [`DEFAULT_DIR`]`/settings.toml`.
//! The daemons read it at start on top of their shipped files; the applier
//! unit sets host name, time zone and address and restarts the daemons whose
//! part changed. Every value is validated here, by type and by character
//! set, before it is stored: nothing an administrator types can add a
//! directive to a generated file, and the file itself is written by the TOML
//! serializer, which quotes every string.
//!
//! [`SettingsStore`] keeps the committed file and the previous ones for
//! `rollback`; [`set_lines`] and [`diff`] show settings the way they are
//! typed (`set dns server 192.0.2.53`), with secrets masked.

use crate::net::Network;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where the committed settings live on the appliance.
pub const DEFAULT_DIR: &str = "/var/lib/sms/config";
/// The committed settings file the daemons read.
pub const DEFAULT_SETTINGS: &str = "/var/lib/sms/config/settings.toml";
/// How many earlier commits `rollback` can go back to.
pub const ROLLBACKS: usize = 5;

/// Everything the administrator configures. Empty lists and `None` leave
/// the shipped configuration as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Host name (RFC 1123).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Time zone from the tz database, e.g. `Europe/Berlin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Management interface address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management: Option<Management>,
    /// DNS servers for the update daemon (port 53).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<IpAddr>,
    /// HTTP proxy towards the update centre.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
    /// Upstream NTP servers (addresses, optional `:port`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ntp_servers: Vec<String>,
    /// SNMP v1/v2c communities of the agent (and accepted on traps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snmp_communities: Vec<SnmpCommunity>,
    /// SNMPv3 users (authPriv, AES).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snmp_users: Vec<SnmpUser>,
    /// Managers that receive the appliance's traps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trap_destinations: Vec<TrapDestination>,
    /// The HA peer appliance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha_peer: Option<IpAddr>,
}

/// The management interface's static address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Address with prefix length, e.g. `192.0.2.10/24`.
    pub address: String,
    /// Default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// Proxy towards the update centre.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    /// `http://host:port`.
    pub url: String,
    /// Basic authentication user (empty: none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Basic authentication password; never shown.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
}

/// One SNMP community.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpCommunity {
    /// The community string.
    pub name: String,
    /// Source networks allowed to use it (CIDR).
    pub networks: Vec<String>,
    /// Read-write instead of read-only.
    #[serde(default)]
    pub write: bool,
}

/// One SNMPv3 user (always authPriv with AES-128).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpUser {
    /// User name.
    pub name: String,
    /// `SHA-1`, `SHA-224`, `SHA-256`, `SHA-384` or `SHA-512`.
    pub auth: String,
    /// Authentication pass phrase; never shown.
    pub auth_password: String,
    /// Privacy (AES) pass phrase; never shown.
    pub privacy_password: String,
    /// Read-write instead of read-only.
    #[serde(default)]
    pub write: bool,
}

/// A manager that receives traps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapDestination {
    /// The manager's address.
    pub address: IpAddr,
    /// Its port (162).
    pub port: u16,
    /// v2c community, or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// v3 user (one of [`Settings::snmp_users`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Why settings were refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value of the wrong form; `what` names the setting.
    #[error("{what}: {why}")]
    Invalid {
        /// The setting, as typed (`dns server`).
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// The settings file is damaged.
    #[error("{path}: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Parse error.
        message: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `rollback N` beyond what is kept.
    #[error("no committed configuration {0} back (at most {ROLLBACKS} are kept)")]
    NoRollback(usize),
}

fn invalid(what: &str, why: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}

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
fn check_prefix_chars(what: &str, s: &str) -> Result<(), SettingsError> {
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

/// Authentication protocols a user may have.
pub const AUTH_PROTOCOLS: &[&str] = &["SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512"];

impl Settings {
    /// Checks every value; the first error names the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(h) = &self.hostname {
            check_hostname(h)?;
        }
        if let Some(z) = &self.time_zone {
            check_time_zone(z)?;
        }
        if let Some(m) = &self.management {
            check_prefix_chars("interface address", &m.address)?;
            let (ip, prefix) = m
                .address
                .split_once('/')
                .ok_or_else(|| invalid("interface address", "needs a prefix length: ADDR/LEN"))?;
            Network::parse(&m.address).map_err(|e| invalid("interface address", e))?;
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| invalid("interface address", "not an address"))?;
            let prefix: u8 = prefix
                .parse()
                .map_err(|_| invalid("interface address", "bad prefix length"))?;
            if ip.is_unspecified() || ip.is_multicast() || prefix == 0 {
                return Err(invalid(
                    "interface address",
                    "not a usable host address and prefix",
                ));
            }
            if let Some(g) = m.gateway {
                if g.is_ipv4() != ip.is_ipv4() {
                    return Err(invalid("interface gateway", "not of the address's family"));
                }
            }
        }
        if self.dns_servers.len() > 3 {
            return Err(invalid("dns server", "at most 3"));
        }
        if let Some(p) = &self.proxy {
            check_proxy_url(&p.url)?;
            if !p.username.is_empty() {
                check_name("proxy username", &p.username)?;
            }
            if !p.password.is_empty() {
                check_secret("proxy password", &p.password, 1)?;
            }
        }
        if self.ntp_servers.len() > 8 {
            return Err(invalid("ntp server", "at most 8"));
        }
        for s in &self.ntp_servers {
            check_ntp_server(s)?;
        }
        for c in &self.snmp_communities {
            check_name("snmp community", &c.name)?;
            if c.networks.is_empty() {
                return Err(invalid("snmp community", "needs at least one network"));
            }
            for n in &c.networks {
                check_prefix_chars("snmp community network", n)?;
                let net = Network::parse(n).map_err(|e| invalid("snmp community network", e))?;
                if c.write && net.is_everything() {
                    return Err(invalid(
                        "snmp community network",
                        "a read-write community may not be open to every address; name the managers' networks",
                    ));
                }
            }
        }
        for u in &self.snmp_users {
            check_name("snmp user", &u.name)?;
            if !AUTH_PROTOCOLS.contains(&u.auth.as_str()) {
                return Err(invalid(
                    "snmp user auth",
                    format!("one of {}", AUTH_PROTOCOLS.join(", ")),
                ));
            }
            check_secret("snmp user auth password", &u.auth_password, 8)?;
            check_secret("snmp user privacy password", &u.privacy_password, 8)?;
        }
        for t in &self.trap_destinations {
            match (&t.community, &t.user) {
                (Some(c), None) => check_name("trap-destination community", c)?,
                (None, Some(u)) => {
                    if !self.snmp_users.iter().any(|x| &x.name == u) {
                        return Err(invalid(
                            "trap-destination user",
                            format!("{u} is not a configured snmp user"),
                        ));
                    }
                }
                _ => {
                    return Err(invalid(
                        "trap-destination",
                        "needs either a community or a user",
                    ))
                }
            }
            if t.port == 0 {
                return Err(invalid("trap-destination port", "must not be 0"));
            }
        }
        Ok(())
    }

    /// The settings as a TOML document (what is stored).
    pub fn to_toml(&self) -> Result<String, SettingsError> {
        toml::to_string(self).map_err(|e| invalid("settings", e.to_string()))
    }

    /// Parses a settings document and validates it.
    pub fn from_toml(path: &Path, text: &str) -> Result<Settings, SettingsError> {
        let s: Settings = crate::config::parse(path, text).map_err(|e| SettingsError::Damaged {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Reads settings from `path`; a missing file means no settings.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Settings::from_toml(path, &t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(SettingsError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// One line of [`set_lines`]: what is shown and, for comparing, the value
/// behind the mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLine {
    /// As shown (secrets as `********`).
    pub shown: String,
    /// Identity for comparison (secrets as a digest, never the secret).
    pub key: String,
}

fn masked(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    hex::encode(&d[..8])
}

/// The settings as the commands that would set them.
pub fn set_lines(s: &Settings) -> Vec<SetLine> {
    let mut out = Vec::new();
    let mut plain = |l: String| {
        out.push(SetLine {
            key: l.clone(),
            shown: l,
        })
    };
    if let Some(h) = &s.hostname {
        plain(format!("set system hostname {h}"));
    }
    if let Some(z) = &s.time_zone {
        plain(format!("set system time-zone {z}"));
    }
    if let Some(m) = &s.management {
        match m.gateway {
            Some(g) => plain(format!(
                "set interface management address {} gateway {g}",
                m.address
            )),
            None => plain(format!("set interface management address {}", m.address)),
        }
    }
    for d in &s.dns_servers {
        plain(format!("set dns server {d}"));
    }
    if let Some(p) = &s.proxy {
        plain(format!("set proxy url {}", p.url));
        if !p.username.is_empty() {
            plain(format!("set proxy username {}", p.username));
        }
    }
    for n in &s.ntp_servers {
        plain(format!("set ntp server {n}"));
    }
    for c in &s.snmp_communities {
        let mode = if c.write { "read-write" } else { "read-only" };
        for n in &c.networks {
            plain(format!("set snmp community {} network {n} {mode}", c.name));
        }
    }
    for t in &s.trap_destinations {
        let who = match (&t.community, &t.user) {
            (Some(c), _) => format!("community {c}"),
            (_, Some(u)) => format!("user {u}"),
            _ => String::new(),
        };
        plain(format!(
            "set snmp trap-destination {} port {} {who}",
            t.address, t.port
        ));
    }
    if let Some(p) = s.ha_peer {
        plain(format!("set ha peer {p}"));
    }
    if let Some(p) = &s.proxy {
        if !p.password.is_empty() {
            out.push(SetLine {
                shown: "set proxy password ********".into(),
                key: format!("set proxy password {}", masked(&p.password)),
            });
        }
    }
    for u in &s.snmp_users {
        let mode = if u.write { "read-write" } else { "read-only" };
        out.push(SetLine {
            shown: format!(
                "set snmp user {} auth {} privacy AES {mode} (pass phrases ********)",
                u.name, u.auth
            ),
            key: format!(
                "set snmp user {} auth {} {} {} {mode}",
                u.name,
                u.auth,
                masked(&u.auth_password),
                masked(&u.privacy_password)
            ),
        });
    }
    out
}

/// What changes from `old` to `new`, as `- ` and `+ ` lines (empty: none).
pub fn diff(old: &Settings, new: &Settings) -> Vec<String> {
    let a = set_lines(old);
    let b = set_lines(new);
    let mut out = Vec::new();
    for l in &a {
        if !b.iter().any(|x| x.key == l.key) {
            out.push(format!("- {}", l.shown));
        }
    }
    for l in &b {
        if !a.iter().any(|x| x.key == l.key) {
            out.push(format!("+ {}", l.shown));
        }
    }
    out
}

/// The committed settings and the earlier ones, in one directory:
/// `settings.toml` and `rollback/1.toml` (the previous) to
/// `rollback/5.toml`. Every write goes to a temporary file that is synced
/// and renamed, so a crash leaves either the old or the new file.
#[derive(Debug, Clone)]
pub struct SettingsStore {
    dir: PathBuf,
}

impl SettingsStore {
    /// The store in `dir` (created on the first commit).
    pub fn new(dir: impl Into<PathBuf>) -> SettingsStore {
        SettingsStore { dir: dir.into() }
    }

    /// The committed settings file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("settings.toml")
    }

    fn rollback_path(&self, n: usize) -> PathBuf {
        self.dir.join("rollback").join(format!("{n}.toml"))
    }

    /// The committed settings.
    pub fn committed(&self) -> Result<Settings, SettingsError> {
        Settings::load(&self.path())
    }

    /// The settings committed `n` commits ago (1 = the previous).
    pub fn rollback(&self, n: usize) -> Result<Settings, SettingsError> {
        if n == 0 {
            return self.committed();
        }
        let p = self.rollback_path(n);
        if n > ROLLBACKS || !p.exists() {
            return Err(SettingsError::NoRollback(n));
        }
        Settings::load(&p)
    }

    /// Validates and commits `new`; the committed file becomes rollback 1.
    /// Returns the bytes written (what the applier digests).
    pub fn commit(&self, new: &Settings) -> Result<Vec<u8>, SettingsError> {
        new.validate()?;
        let text = format!(
            "# SMS OS settings, written by the CLI's commit; change them with `configure`.\n{}",
            new.to_toml()?
        );
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SettingsError::Io { path, source }
        };
        let rb = self.dir.join("rollback");
        std::fs::create_dir_all(&rb).map_err(io(&rb))?;
        // The previous commit becomes rollback 1 (before the first commit:
        // nothing set, so that rollback can return to the shipped state).
        let previous = match std::fs::read(self.path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&self.path())(e)),
        };
        for n in (1..ROLLBACKS).rev() {
            let from = self.rollback_path(n);
            if from.exists() {
                let to = self.rollback_path(n + 1);
                std::fs::rename(&from, &to).map_err(io(&from))?;
            }
        }
        let first = self.rollback_path(1);
        write_atomic(&first, &previous, 0o640).map_err(io(&first))?;
        write_atomic(&self.path(), text.as_bytes(), 0o640).map_err(io(&self.path()))?;
        Ok(text.into_bytes())
    }
}

/// Writes `bytes` to `path` with permissions `mode` (not masked by the
/// umask) through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Settings {
        Settings {
            hostname: Some("sms-1".into()),
            time_zone: Some("Europe/Berlin".into()),
            management: Some(Management {
                address: "192.0.2.10/24".into(),
                gateway: Some("192.0.2.1".parse().unwrap()),
            }),
            dns_servers: vec!["192.0.2.53".parse().unwrap()],
            proxy: Some(Proxy {
                url: "http://proxy.example:3128".into(),
                username: "bob".into(),
                password: "s3cret!".into(),
            }),
            ntp_servers: vec!["192.0.2.123".into(), "192.0.2.124:123".into()],
            snmp_communities: vec![SnmpCommunity {
                name: "noc-ro".into(),
                networks: vec!["10.0.0.0/8".into()],
                write: false,
            }],
            snmp_users: vec![SnmpUser {
                name: "noc".into(),
                auth: "SHA-256".into(),
                auth_password: "auth-pass-1".into(),
                privacy_password: "priv-pass-1".into(),
                write: true,
            }],
            trap_destinations: vec![TrapDestination {
                address: "192.0.2.162".parse().unwrap(),
                port: 162,
                community: None,
                user: Some("noc".into()),
            }],
            ha_peer: Some("192.0.2.11".parse().unwrap()),
        }
    }

    #[test]
    fn round_trips_through_toml_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path());
        assert_eq!(store.committed().unwrap(), Settings::default());
        let s = sample();
        store.commit(&s).unwrap();
        assert_eq!(store.committed().unwrap(), s);
        let mut t = s.clone();
        t.hostname = Some("sms-2".into());
        store.commit(&t).unwrap();
        assert_eq!(store.committed().unwrap(), t);
        assert_eq!(store.rollback(1).unwrap(), s);
        assert_eq!(store.rollback(2).unwrap(), Settings::default());
        assert!(matches!(
            store.rollback(3),
            Err(SettingsError::NoRollback(3))
        ));
        // A damaged file is named; a commit over it still works.
        std::fs::write(store.path(), "hostname = 5\n").unwrap();
        assert!(store
            .committed()
            .unwrap_err()
            .to_string()
            .contains("settings.toml"));
        store.commit(&t).unwrap();
        for n in 0..10 {
            t.hostname = Some(format!("h{n}"));
            store.commit(&t).unwrap();
        }
        assert_eq!(store.rollback(5).unwrap().hostname.as_deref(), Some("h4"));
        assert!(store.rollback(6).is_err());
    }

    #[test]
    fn secrets_never_shown_but_changes_are() {
        let s = sample();
        let lines: Vec<String> = set_lines(&s).into_iter().map(|l| l.shown).collect();
        let all = lines.join("\n");
        for secret in ["s3cret!", "auth-pass-1", "priv-pass-1"] {
            assert!(!all.contains(secret), "{all}");
        }
        assert!(all.contains("set proxy password ********"), "{all}");
        let mut t = s.clone();
        t.proxy.as_mut().unwrap().password = "other".into();
        let d = diff(&s, &t);
        assert_eq!(
            d,
            vec![
                "- set proxy password ********".to_string(),
                "+ set proxy password ********".to_string()
            ]
        );
        assert!(diff(&s, &s).is_empty());
        let mut u = s.clone();
        u.dns_servers.push("192.0.2.54".parse().unwrap());
        assert_eq!(
            diff(&s, &u),
            vec!["+ set dns server 192.0.2.54".to_string()]
        );
    }

    #[test]
    fn a_write_community_open_to_everyone_is_refused() {
        let mut s = sample();
        s.snmp_communities[0].networks = vec!["0.0.0.0/0".into()];
        s.snmp_communities[0].write = false;
        assert!(s.validate().is_ok());
        s.snmp_communities[0].write = true;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("may not be open to every address"), "{e}");
        s.snmp_communities[0].networks = vec!["::/0".into()];
        assert!(s.validate().is_err());
    }

    #[test]
    fn injection_and_bad_values_refused() {
        let bad_names = [
            "a\"b", "a\nb", "a b", "-x", "a;b", "a=b", "a]b", "a#b", "$(id)", "`id`", "",
        ];
        for n in bad_names {
            let mut s = sample();
            s.snmp_communities[0].name = n.into();
            assert!(s.validate().is_err(), "community {n:?}");
            let mut s = sample();
            s.hostname = Some(n.into());
            assert!(s.validate().is_err(), "hostname {n:?}");
        }
        for url in [
            "https://p:1",
            "http://u:p@proxy:3128",
            "http://proxy:0",
            "http://proxy:3128/x",
            "http://pro xy",
            "http://proxy\n:1",
        ] {
            let mut s = sample();
            s.proxy.as_mut().unwrap().url = url.into();
            assert!(s.validate().is_err(), "{url}");
        }
        for z in [
            "../etc/passwd",
            "/etc",
            "Europe/../..",
            "a b",
            "Europe/Berlin\n",
        ] {
            assert!(check_time_zone(z).is_err(), "{z}");
        }
        let mut s = sample();
        s.snmp_users[0].auth_password = "short".into();
        assert!(s.validate().is_err());
        let mut s = sample();
        s.trap_destinations[0].user = Some("nobody".into());
        assert!(s.validate().is_err());
        let mut s = sample();
        s.snmp_users[0].auth = "MD5".into();
        assert!(s.validate().is_err());
        assert!(sample().validate().is_ok());
    }

    #[test]
    fn damaged_file_is_named_and_unknown_keys_refused() {
        let e = Settings::from_toml(Path::new("/x/settings.toml"), "hostnme = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/x/settings.toml") && e.contains("hostnme"),
            "{e}"
        );
        let e = Settings::from_toml(Path::new("s"), "hostname = \"a;b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostname"), "{e}");
    }

    proptest! {
        /// Whatever string an administrator manages to store, the written
        /// file parses back to the same settings: no value can break out of
        /// its TOML string.
        #[test]
        fn any_valid_settings_round_trip(name in "[A-Za-z0-9._-]{1,32}", pw in "[!-~]{8,64}") {
            let mut s = sample();
            s.snmp_communities[0].name = name.clone();
            s.snmp_users[0].auth_password = pw.clone();
            if s.validate().is_ok() {
                let back = Settings::from_toml(Path::new("s"), &s.to_toml().unwrap()).unwrap();
                prop_assert_eq!(back, s);
            }
        }
    }
}

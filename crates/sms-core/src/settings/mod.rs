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
//! `rollback`; the value checks are in [`check`]. How settings are shown
//! as the commands that set them is the CLI's business (its `setlines`).

mod backup;
mod check;
mod ha;
mod logging;
mod mail;
mod store;

pub use backup::*;
use check::check_prefix_chars;
pub use check::*;
pub use ha::*;
pub use logging::*;
pub use mail::*;
pub use store::SettingsStore;

use crate::net::Network;
use serde::{Deserialize, Serialize};
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
    /// The peer's HA identity fingerprint (its `show ha identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_peer_fingerprint: Option<String>,
    /// This node's role when paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_role: Option<HaRole>,
    /// The witness host (`sms-had witness`) for automatic failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_witness: Option<IpAddr>,
    /// The witness's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_witness_fingerprint: Option<String>,
    /// The pair's virtual address with its prefix length
    /// (`192.0.2.100/24`): on the node that takes writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_virtual_address: Option<String>,
    /// SSH public keys that may log in, per account; the applier writes
    /// them with `restrict` (no forwarding, no pty options of the key's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub login_keys: Vec<LoginKey>,
    /// The DV automation: what the update and distribution daemons do by
    /// themselves, and the update centre's port.
    #[serde(skip_serializing_if = "UpdatePolicy::is_shipped")]
    pub update: UpdatePolicy,
    /// Remote syslog servers that receive the audit trail and events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_servers: Vec<LogServer>,
    /// E-mail notifications of warnings and failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailNotification>,
    /// The SFTP server backups are sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupServer>,
}

/// The update policy the administrator sets in configuration mode. Each
/// value left out keeps the shipped daemon configuration's (automatic
/// check every 1800 s, automatic activation and distribution to every
/// device, port 443).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdatePolicy {
    /// Whether sms-updated checks the update centre for a new DV by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_check: Option<bool>,
    /// Seconds between automatic checks ([`CHECK_INTERVAL_SECS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<u64>,
    /// Whether a downloaded DV becomes active by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_activate: Option<bool>,
    /// Whether an activated DV is distributed to the devices by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_distribute: Option<bool>,
    /// The device groups an automatic distribution goes to; empty: every
    /// device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub distribute_groups: Vec<String>,
    /// The update centre's HTTPS port: 443, or 4043 where a firewall only
    /// lets the legacy port through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub centre_port: Option<u16>,
}

/// The automatic check's interval may be set from 5 minutes to a week.
pub const CHECK_INTERVAL_SECS: std::ops::RangeInclusive<u64> = 300..=604_800;
/// The update centre's ports: the standard one and the legacy one.
pub const CENTRE_PORTS: &[u16] = &[443, 4043];
/// Device groups an automatic distribution may name, at most.
pub const MAX_DISTRIBUTE_GROUPS: usize = 8;

impl UpdatePolicy {
    /// Nothing set: the shipped configuration stands.
    pub fn is_shipped(&self) -> bool {
        *self == UpdatePolicy::default()
    }

    /// Whether the update daemon's part differs between `self` and `other`.
    pub fn updater_differs(&self, other: &UpdatePolicy) -> bool {
        (
            self.auto_check,
            self.check_interval,
            self.auto_activate,
            self.centre_port,
        ) != (
            other.auto_check,
            other.check_interval,
            other.auto_activate,
            other.centre_port,
        )
    }

    /// Whether the distribution daemon's part differs.
    pub fn distributor_differs(&self, other: &UpdatePolicy) -> bool {
        (self.auto_distribute, &self.distribute_groups)
            != (other.auto_distribute, &other.distribute_groups)
    }

    /// Checks the ranges and names.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(i) = self.check_interval {
            if !CHECK_INTERVAL_SECS.contains(&i) {
                return Err(invalid(
                    "update dv check-interval",
                    format!(
                        "{i} s is outside {} to {} s (5 minutes to a week)",
                        CHECK_INTERVAL_SECS.start(),
                        CHECK_INTERVAL_SECS.end()
                    ),
                ));
            }
        }
        if let Some(p) = self.centre_port {
            if !CENTRE_PORTS.contains(&p) {
                return Err(invalid(
                    "update centre-port",
                    format!("{p} is not an update centre port (443, or 4043 for legacy)"),
                ));
            }
        }
        if self.distribute_groups.len() > MAX_DISTRIBUTE_GROUPS {
            return Err(invalid(
                "update dv distribute-group",
                format!("at most {MAX_DISTRIBUTE_GROUPS} groups"),
            ));
        }
        for (i, g) in self.distribute_groups.iter().enumerate() {
            crate::bus::check_name("distribute-group", g)
                .map_err(|e| invalid("update dv distribute-group", e.to_string()))?;
            if self.distribute_groups[..i].contains(g) {
                return Err(invalid(
                    "update dv distribute-group",
                    format!("{g} is named twice"),
                ));
            }
        }
        Ok(())
    }
}

/// An SSH public key of an account ([`check_login_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginKey {
    /// The account.
    pub user: String,
    /// `TYPE BASE64 [COMMENT]`.
    pub key: String,
}

/// A valid Ed25519 public key, for examples and tests.
#[doc(hidden)]
pub const EXAMPLE_LOGIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPo3qQHKkecKH6Va0yqh2Ksg0Sc3Ea32WSHRfF/uky8w noc@example";

/// Keys per account, at most.
pub const MAX_LOGIN_KEYS: usize = 8;

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

pub(crate) fn invalid(what: &str, why: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        what: what.into(),
        why: why.into(),
    }
}

/// An SSH host key for examples and tests.
#[doc(hidden)]
pub const EXAMPLE_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9EECP9FozJCsB8UGMb8fkvVeJTUy/wy9KIDRMk/AVs";

/// A CA certificate (base64 of DER) for examples and tests: a P-256
/// self-signed CA, `CN=Example Log CA`.
#[doc(hidden)]
pub const EXAMPLE_LOG_CA: &str = "MIIBmjCCAT+gAwIBAgIUBEetA+Qg5IUMmjp0C6ga+2gOuXgwCgYIKoZIzj0EAwIwGTEXMBUGA1UEAwwORXhhbXBsZSBMb2cgQ0EwIBcNMjYxMjA0MDg1NzA2WhgPMjEyNjExMTAwODU3MDZaMBkxFzAVBgNVBAMMDkV4YW1wbGUgTG9nIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEt/7x4exP7S3aV0WtiH6nnOzvfGD66Ndfq49CSmM6l0dUmjrE5ihrjadYj7AkKGWKw+LoAWEDPVBktAM/C56F76NjMGEwHQYDVR0OBBYEFKUUiUldZZDJ8566Stukshe51aqYMB8GA1UdIwQYMBaAFKUUiUldZZDJ8566Stukshe51aqYMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0kAMEYCIQDA7Hy5p9Hh7W8QivMs6cc64jLRDZ8uUtbMLG4kscQxmgIhAIKcK7gEUGchRqGzSw7QSgyIiibLVR2WuMELH50CGqdh";

/// Authentication protocols a user may have.
pub const AUTH_PROTOCOLS: &[&str] = &["SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512"];

impl Settings {
    /// A complete example with every kind of setting and secret: for
    /// documentation and the tests of the crates that show settings.
    #[doc(hidden)]
    #[allow(clippy::expect_used)] // literals that are valid
    pub fn example() -> Settings {
        Settings {
            hostname: Some("sms-1".into()),
            time_zone: Some("Europe/Berlin".into()),
            management: Some(Management {
                address: "192.0.2.10/24".into(),
                gateway: Some("192.0.2.1".parse().expect("a valid literal")),
            }),
            dns_servers: vec!["192.0.2.53".parse().expect("a valid literal")],
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
                address: "192.0.2.162".parse().expect("a valid literal"),
                port: 162,
                community: None,
                user: Some("noc".into()),
            }],
            ha_peer: Some("192.0.2.11".parse().expect("a valid literal")),
            ha_peer_fingerprint: Some("5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A:5A".into()),
            ha_role: Some(HaRole::Primary),
            ha_witness: Some("192.0.2.99".parse().expect("a valid literal")),
            ha_witness_fingerprint: Some("C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3:C3".into()),
            ha_virtual_address: Some("192.0.2.100/24".into()),
            login_keys: vec![LoginKey {
                user: "admin".into(),
                key: EXAMPLE_LOGIN_KEY.into(),
            }],
            update: UpdatePolicy {
                auto_check: Some(true),
                check_interval: Some(3600),
                auto_activate: Some(false),
                auto_distribute: Some(true),
                distribute_groups: vec!["lab".into()],
                centre_port: Some(4043),
            },
            log_servers: vec![
                LogServer {
                    host: "192.0.2.14".into(),
                    port: None,
                    protocol: LogProtocol::Tls,
                    ca_certificate: Some(EXAMPLE_LOG_CA.into()),
                },
                LogServer {
                    host: "logs.example".into(),
                    port: Some(5514),
                    protocol: LogProtocol::Udp,
                    ca_certificate: None,
                },
            ],
            mail: Some(MailNotification {
                username: "sms-lab".into(),
                password: "mail-pass-1".into(),
                from: "sms@example.com".into(),
                recipients: vec!["noc@example.com".into(), "secops@example.com".into()],
                classes: vec!["distribution".into(), "device".into(), "audit".into()],
                min_interval: Some(600),
                ..MailNotification::new("smtp.example.com".into(), MailSecurity::Starttls)
            }),
            backup: Some(BackupServer {
                server: "backup.example.com".into(),
                port: Some(2222),
                user: "sms-lab".into(),
                host_key: EXAMPLE_HOST_KEY.into(),
                directory: Some("/srv/backups/sms-lab".into()),
                keep: Some(14),
                schedule: Some(BackupSchedule {
                    day: Some("sunday".into()),
                    at: "02:30".into(),
                    packages: true,
                }),
            }),
        }
    }

    /// Checks every value; the first error names the setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_ha()?;
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
        self.update.validate()?;
        check_log_servers(&self.log_servers)?;
        if let Some(m) = &self.mail {
            check_mail(m, true)?;
        }
        if let Some(b) = &self.backup {
            check_backup(b, true)?;
        }
        for k in &self.login_keys {
            check_account(&k.user)?;
            check_login_key(&k.key)?;
            if self.login_keys.iter().filter(|x| x.user == k.user).count() > MAX_LOGIN_KEYS {
                return Err(invalid(
                    "authorized-key",
                    format!("at most {MAX_LOGIN_KEYS} keys per account"),
                ));
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

    /// Reads settings from `path`, with the secrets this process may read
    /// from the daemons' files beside it (see [`SettingsStore`]); a missing
    /// file means no settings.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        Settings::load_with_secrets(
            path,
            &dir.join(UPDATER_SECRETS).join(SECRETS_FILE),
            &dir.join(SNMP_SECRETS).join(SECRETS_FILE),
            &dir.join(LOGD_SECRETS).join(SECRETS_FILE),
        )
    }

    /// Reads the shared file `path` and puts back the secrets of the files
    /// `updater`, `snmp` and `logd` where this process may read them.
    pub fn load_with_secrets(
        path: &Path,
        updater: &Path,
        snmp: &Path,
        logd: &Path,
    ) -> Result<Settings, SettingsError> {
        let mut s = match std::fs::read_to_string(path) {
            Ok(t) => Settings::from_toml(path, &t)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(source) => {
                return Err(SettingsError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let u: UpdaterSecrets = read_secrets(updater)?.unwrap_or_default();
        let n: SnmpSecrets = read_secrets(snmp)?.unwrap_or_default();
        let l: LogdSecrets = read_secrets(logd)?.unwrap_or_default();
        s.merge_secrets(&u, &n, &l);
        s.validate()?;
        Ok(s)
    }

    /// The settings with every secret replaced by [`KEPT_APART`], and the
    /// secrets of each daemon that needs some.
    pub fn split_secrets(&self) -> (Settings, UpdaterSecrets, SnmpSecrets, LogdSecrets) {
        let mut public = self.clone();
        let mut u = UpdaterSecrets::default();
        if let Some(p) = public.proxy.as_mut() {
            if !p.password.is_empty() {
                u.proxy_password = std::mem::replace(&mut p.password, KEPT_APART.into());
            }
        }
        let mut n = SnmpSecrets::default();
        for user in &mut public.snmp_users {
            n.snmp_user.push(SnmpUserSecret {
                name: user.name.clone(),
                auth_password: std::mem::replace(&mut user.auth_password, KEPT_APART.into()),
                privacy_password: std::mem::replace(&mut user.privacy_password, KEPT_APART.into()),
            });
        }
        let mut l = LogdSecrets::default();
        if let Some(m) = public.mail.as_mut() {
            if !m.password.is_empty() {
                l.mail_password = std::mem::replace(&mut m.password, KEPT_APART.into());
            }
        }
        (public, u, n, l)
    }

    /// Puts the secrets back where the shared file says [`KEPT_APART`].
    pub fn merge_secrets(&mut self, u: &UpdaterSecrets, n: &SnmpSecrets, l: &LogdSecrets) {
        if let Some(m) = self.mail.as_mut() {
            if m.password == KEPT_APART && !l.mail_password.is_empty() {
                m.password = l.mail_password.clone();
            }
        }
        if let Some(p) = self.proxy.as_mut() {
            if p.password == KEPT_APART && !u.proxy_password.is_empty() {
                p.password = u.proxy_password.clone();
            }
        }
        for user in &mut self.snmp_users {
            if let Some(sec) = n.snmp_user.iter().find(|x| x.name == user.name) {
                if user.auth_password == KEPT_APART {
                    user.auth_password = sec.auth_password.clone();
                }
                if user.privacy_password == KEPT_APART {
                    user.privacy_password = sec.privacy_password.clone();
                }
            }
        }
    }

    /// The secrets still kept apart: their files are not this process's to
    /// read (a daemon sees only its own).
    pub fn unresolved_secrets(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self
            .proxy
            .as_ref()
            .is_some_and(|p| p.password == KEPT_APART)
        {
            v.push("proxy password".to_string());
        }
        for u in &self.snmp_users {
            if u.auth_password == KEPT_APART || u.privacy_password == KEPT_APART {
                v.push(format!("snmp user {} pass phrases", u.name));
            }
        }
        if self.mail.as_ref().is_some_and(|m| m.password == KEPT_APART) {
            v.push("notification mail password".to_string());
        }
        v
    }
}

/// Stands in the shared settings file for a secret kept in the file of the
/// daemon that needs it (it passes the secret checks, so the shared file
/// validates alone; a daemon never uses it as a secret).
pub const KEPT_APART: &str = "<kept-apart>";

/// The directory (beside the shared file) of the update daemon's secrets.
pub const UPDATER_SECRETS: &str = "updated";
/// The directory (beside the shared file) of the SNMP daemon's secrets.
pub const SNMP_SECRETS: &str = "snmpd";
/// The secrets file in each of those directories.
pub const SECRETS_FILE: &str = "secrets.toml";

/// The update daemon's secrets: only it (and the administrator) reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdaterSecrets {
    /// The proxy's Basic authentication password.
    #[serde(default)]
    pub proxy_password: String,
}

/// The directory (beside the shared file) of the log daemon's secrets.
pub const LOGD_SECRETS: &str = "logd";

/// The log daemon's secrets: only it (and the administrator) reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogdSecrets {
    /// The mail server's AUTH password.
    #[serde(default)]
    pub mail_password: String,
}

/// The SNMP daemon's secrets: only it (and the administrator) reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpSecrets {
    /// Pass phrases of the SNMPv3 users.
    #[serde(default)]
    pub snmp_user: Vec<SnmpUserSecret>,
}

/// One SNMPv3 user's pass phrases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpUserSecret {
    /// User name (as in the shared file).
    pub name: String,
    /// Authentication pass phrase.
    pub auth_password: String,
    /// Privacy pass phrase.
    pub privacy_password: String,
}

/// Reads a secrets file; `None` when it is missing or not this process's
/// to read.
fn read_secrets<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(t) => crate::config::parse(path, &t)
            .map(Some)
            .map_err(|e| SettingsError::Damaged {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(SettingsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn update_policy_ranges_and_names_are_checked() {
        let mut s = Settings::example();
        s.validate().unwrap();
        let text = s.to_toml().unwrap();
        assert!(
            text.contains("[update]") && text.contains("centre_port = 4043"),
            "{text}"
        );
        assert_eq!(Settings::from_toml(Path::new("x"), &text).unwrap(), s);
        for (interval, ok) in [(299, false), (300, true), (604_800, true), (604_801, false)] {
            s.update.check_interval = Some(interval);
            assert_eq!(s.validate().is_ok(), ok, "{interval}");
        }
        s.update.check_interval = None;
        for (port, ok) in [(443, true), (4043, true), (80, false), (8443, false)] {
            s.update.centre_port = Some(port);
            assert_eq!(s.validate().is_ok(), ok, "{port}");
        }
        s.update.centre_port = None;
        for bad in ["", "-lab", "lab one", "lab\u{1b}[2J", &"g".repeat(64)] {
            s.update.distribute_groups = vec![bad.to_string()];
            assert!(s.validate().is_err(), "{bad:?}");
        }
        s.update.distribute_groups = vec!["lab".into(), "lab".into()];
        assert!(s.validate().unwrap_err().to_string().contains("twice"));
        s.update.distribute_groups = (0..=MAX_DISTRIBUTE_GROUPS)
            .map(|i| format!("g{i}"))
            .collect();
        assert!(s.validate().is_err());
        // Nothing set: nothing written, the shipped configuration stands.
        let none = Settings::default();
        assert!(none.update.is_shipped());
        assert!(!none.to_toml().unwrap().contains("update"));
    }

    /// Keys from a real ssh-keygen of every accepted type pass; what could
    /// add an option, a second key or a weak key is refused with the reason.
    #[test]
    fn login_keys_are_parsed_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let keygen = |args: &[&str]| {
            let f = dir.path().join(args.join("_"));
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-C", "ops@example"])
                .args(args)
                .arg("-f")
                .arg(&f)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen {args:?}");
            std::fs::read_to_string(f.with_extension("pub"))
                .unwrap()
                .trim()
                .to_string()
        };
        for args in [
            &["-t", "ed25519"][..],
            &["-t", "ecdsa", "-b", "256"],
            &["-t", "ecdsa", "-b", "384"],
            &["-t", "ecdsa", "-b", "521"],
            &["-t", "rsa", "-b", "3072"],
        ] {
            let k = keygen(args);
            check_login_key(&k).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        check_login_key(EXAMPLE_LOGIN_KEY).unwrap();
        let weak = keygen(&["-t", "rsa", "-b", "1024"]);
        let (_, blob) = EXAMPLE_LOGIN_KEY.split_once(' ').unwrap();
        let blob = blob.split(' ').next().unwrap();
        for (key, says) in [
            (weak.clone(), "at least 2048"),
            (
                format!("command=\"/bin/sh\" {EXAMPLE_LOGIN_KEY}"),
                "TYPE BASE64",
            ),
            (format!("ssh-rsa {blob}"), "another type"),
            (format!("ssh-ed25519 {}", &blob[..blob.len() - 8]), ""),
            (format!("ssh-ed25519 {blob} two words"), "TYPE BASE64"),
            (format!("ssh-ed25519 {blob} a\"b"), "comment"),
            (format!("ssh-ed25519 {blob}\nssh-ed25519 {blob}"), ""),
            (format!("ssh-dss {blob}"), "type"),
            (format!("ssh-ed25519  {blob}"), ""),
        ] {
            let e = check_login_key(&key).expect_err(&key).to_string();
            assert!(e.contains(says), "{key}: {e}");
        }
        let mut s = Settings::example();
        s.login_keys[0].user = "Admin".into();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("account name"));
        let mut s = Settings::example();
        s.login_keys = (0..9)
            .map(|_| LoginKey {
                user: "admin".into(),
                key: EXAMPLE_LOGIN_KEY.into(),
            })
            .collect();
        assert!(s.validate().unwrap_err().to_string().contains("at most 8"));
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_through_toml_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path());
        assert_eq!(store.committed().unwrap(), Settings::default());
        let s = Settings::example();
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
    fn secrets_are_kept_apart_per_daemon_and_put_back_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path());
        let first = Settings::example();
        store.commit(&first).unwrap();
        let shared = std::fs::read_to_string(store.path()).unwrap();
        let updater = std::fs::read_to_string(store.secrets_path(UPDATER_SECRETS)).unwrap();
        let snmp = std::fs::read_to_string(store.secrets_path(SNMP_SECRETS)).unwrap();
        let logd = std::fs::read_to_string(store.secrets_path(LOGD_SECRETS)).unwrap();
        let proxy_pw = &first.proxy.as_ref().unwrap().password;
        let auth_pw = &first.snmp_users[0].auth_password;
        let priv_pw = &first.snmp_users[0].privacy_password;
        let mail_pw = &first.mail.as_ref().unwrap().password;
        for secret in [proxy_pw, auth_pw, priv_pw, mail_pw] {
            assert!(!shared.contains(secret.as_str()), "{shared}");
        }
        assert!(logd.contains(mail_pw.as_str()) && !logd.contains(proxy_pw.as_str()));
        assert!(!snmp.contains(mail_pw.as_str()) && !updater.contains(mail_pw.as_str()));
        assert!(shared.contains(KEPT_APART), "{shared}");
        assert!(updater.contains(proxy_pw.as_str()) && !updater.contains(auth_pw.as_str()));
        assert!(snmp.contains(auth_pw.as_str()) && snmp.contains(priv_pw.as_str()));
        assert!(!snmp.contains(proxy_pw.as_str()), "{snmp}");
        // Whoever may read every file gets the whole settings back.
        assert_eq!(store.committed().unwrap(), first);
        // A second commit: the first comes back whole as rollback 1.
        let mut second = first.clone();
        second.snmp_users[0].auth_password = "new-auth-pass".into();
        second.proxy.as_mut().unwrap().password = "new-proxy-pw".into();
        store.commit(&second).unwrap();
        assert_eq!(store.committed().unwrap(), second);
        assert_eq!(store.rollback(1).unwrap(), first);
        // A daemon that may not read the SNMP secrets sees them kept apart
        // (here: the file is gone), and nothing else changes.
        std::fs::remove_file(store.secrets_path(SNMP_SECRETS)).unwrap();
        std::fs::remove_file(store.secrets_path(LOGD_SECRETS)).unwrap();
        let seen = Settings::load(&store.path()).unwrap();
        assert_eq!(seen.proxy, second.proxy);
        assert_eq!(seen.snmp_users[0].auth_password, KEPT_APART);
        assert_eq!(seen.mail.as_ref().unwrap().password, KEPT_APART);
        assert_eq!(
            seen.unresolved_secrets(),
            vec![
                format!("snmp user {} pass phrases", second.snmp_users[0].name),
                "notification mail password".to_string()
            ]
        );
    }

    #[test]
    fn a_write_community_open_to_everyone_is_refused() {
        let mut s = Settings::example();
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
            let mut s = Settings::example();
            s.snmp_communities[0].name = n.into();
            assert!(s.validate().is_err(), "community {n:?}");
            let mut s = Settings::example();
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
            let mut s = Settings::example();
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
        let mut s = Settings::example();
        s.snmp_users[0].auth_password = "short".into();
        assert!(s.validate().is_err());
        let mut s = Settings::example();
        s.trap_destinations[0].user = Some("nobody".into());
        assert!(s.validate().is_err());
        let mut s = Settings::example();
        s.snmp_users[0].auth = "MD5".into();
        assert!(s.validate().is_err());
        assert!(Settings::example().validate().is_ok());
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
            let mut s = Settings::example();
            s.snmp_communities[0].name = name.clone();
            s.snmp_users[0].auth_password = pw.clone();
            if s.validate().is_ok() {
                let back = Settings::from_toml(Path::new("s"), &s.to_toml().unwrap()).unwrap();
                prop_assert_eq!(back, s);
            }
        }
    }
}

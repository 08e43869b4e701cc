//! Configuration of sms-snmpd (`/etc/sms/snmpd.toml`).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnmpConfig {
    /// Where the daemon keeps its state (engine boots, writable objects, events).
    pub state_dir: PathBuf,
    /// The agent.
    pub agent: AgentConfig,
    /// MIB views, referenced by communities and users.
    pub view: Vec<ViewConfig>,
    /// v1/v2c communities of the agent.
    pub community: Vec<CommunityConfig>,
    /// SNMPv3 users of the agent (and of informs to the receiver).
    pub user: Vec<UserConfig>,
    /// The trap receiver.
    pub receiver: ReceiverConfig,
    /// Polling the managed devices.
    pub poller: PollerConfig,
    /// Managers that get the appliance's own traps.
    pub trap_destination: Vec<TrapDestination>,
}

impl Default for SnmpConfig {
    fn default() -> Self {
        SnmpConfig {
            state_dir: PathBuf::from("/var/lib/sms/snmpd"),
            agent: AgentConfig::default(),
            view: vec![ViewConfig {
                name: "all".into(),
                include: vec!["1.3.6.1".into()],
                exclude: vec![],
            }],
            community: Vec::new(),
            user: Vec::new(),
            receiver: ReceiverConfig::default(),
            poller: PollerConfig::default(),
            trap_destination: Vec::new(),
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// Serving threads per address.
    pub threads: usize,
    /// snmpEngineID as hex; generated once and kept when empty.
    pub engine_id: String,
    /// sysContact until set over SNMP.
    pub contact: String,
    /// sysLocation until set over SNMP.
    pub location: String,
    /// sysName until set over SNMP; the host name when empty.
    pub name: String,
    /// How often daemon values are refreshed over D-Bus.
    #[serde(with = "sms_core::config::seconds")]
    pub refresh_secs: Duration,
    /// Largest response sent, octets (a GetBulk is cut to fit).
    pub max_response: usize,
    /// Largest v1/v2c response, octets: their source address is not
    /// authenticated, so a 45-byte request must not buy a 65 KB answer to
    /// a spoofed victim. One Ethernet frame by default.
    pub community_max_response: usize,
    /// Requests taken per source address (every version).
    pub rate_limit: sms_core::ratelimit::RateLimitConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: vec!["0.0.0.0:161".parse().unwrap_or_else(|_| unreachable!())],
            threads: 1,
            engine_id: String::new(),
            contact: String::new(),
            location: String::new(),
            name: String::new(),
            refresh_secs: Duration::from_secs(5),
            max_response: 65000,
            community_max_response: 1472,
            rate_limit: sms_core::ratelimit::RateLimitConfig {
                enabled: true,
                interval_ms: 1,
                burst: 2000,
                max_clients: 65536,
            },
        }
    }
}

/// `[[view]]`: a named set of subtrees (VACM view family, without masks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// Name used by communities and users.
    pub name: String,
    /// Subtrees in the view.
    #[serde(default)]
    pub include: Vec<String>,
    /// Subtrees cut out of it (the longest match wins).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Read-only or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Get, GetNext, GetBulk.
    Ro,
    /// Also Set on the writable objects inside the write view.
    Rw,
}

/// `[[community]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityConfig {
    /// The community string.
    pub name: String,
    /// Source networks allowed to use it (CIDR).
    pub sources: Vec<String>,
    /// View readable through it.
    pub view: String,
    /// `ro` or `rw`.
    #[serde(default = "ro")]
    pub access: AccessMode,
}

fn ro() -> AccessMode {
    AccessMode::Ro
}

/// `[[user]]`: an SNMPv3 USM user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// `SHA`, `SHA-224`, `SHA-256`, `SHA-384`, `SHA-512`; none when empty.
    #[serde(default)]
    pub auth: String,
    /// Authentication password (at least 8 characters).
    #[serde(default)]
    pub auth_password: String,
    /// `AES`; none when empty.
    #[serde(default)]
    pub privacy: String,
    /// Privacy password (at least 8 characters).
    #[serde(default)]
    pub privacy_password: String,
    /// Least security level accepted from this user.
    #[serde(default = "auth_priv")]
    pub min_level: String,
    /// View readable by the user.
    #[serde(default)]
    pub read_view: String,
    /// View writable by the user; none when empty.
    #[serde(default)]
    pub write_view: String,
}

fn auth_priv() -> String {
    "authPriv".into()
}

/// `[receiver]`: the trap and inform receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Addresses to receive on.
    pub listen: Vec<SocketAddr>,
    /// Communities accepted in v1/v2c traps and informs; none when empty
    /// (only SNMPv3 users then): an appliance accepts no community it was
    /// not given.
    pub communities: Vec<String>,
    /// Names of `[[user]]` entries accepted in v3 traps and informs.
    pub users: Vec<String>,
    /// Events kept; the oldest go first.
    pub retention: usize,
    /// Kernel receive buffer per socket, octets (bursts from many devices).
    pub receive_buffer: usize,
    /// Forward every event to this syslog server (RFC 5424 over UDP).
    pub syslog: Option<SocketAddr>,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            listen: vec![
                "0.0.0.0:8162".parse().unwrap_or_else(|_| unreachable!()),
                "0.0.0.0:8163".parse().unwrap_or_else(|_| unreachable!()),
            ],
            communities: Vec::new(),
            users: Vec::new(),
            retention: 100_000,
            receive_buffer: 8 << 20,
            syslog: None,
        }
    }
}

/// `[poller]`: reading the managed devices' health over SNMP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollerConfig {
    /// Poll at all.
    pub enabled: bool,
    /// Time between two polls of a device.
    #[serde(with = "sms_core::config::seconds")]
    pub interval_secs: Duration,
    /// The devices' SNMP port.
    pub port: u16,
    /// v2c community the devices answer to; empty: the first community of
    /// the administrator's settings, and no polling while there is none.
    pub community: String,
    /// Time to wait for one answer.
    #[serde(with = "sms_core::config::millis")]
    pub timeout_ms: Duration,
    /// Devices polled at the same time.
    pub concurrency: usize,
    /// Polls in a row without an answer before a device is unreachable.
    pub failures: u32,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            enabled: true,
            interval_secs: Duration::from_secs(60),
            port: 161,
            community: String::new(),
            timeout_ms: Duration::from_millis(1000),
            concurrency: 64,
            failures: 3,
        }
    }
}

/// SNMP version of outgoing traps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrapVersion {
    /// SNMPv2c trap with a community.
    V2c,
    /// SNMPv3 trap as this engine (authoritative), with a user's keys.
    V3,
}

/// `[[trap_destination]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapDestination {
    /// Manager address, port 162 normally.
    pub address: SocketAddr,
    /// `v2c` or `v3`.
    pub version: TrapVersion,
    /// Community (v2c).
    #[serde(default)]
    pub community: String,
    /// User (v3): one of the `[[user]]` entries.
    #[serde(default)]
    pub user: String,
    /// Security level (v3).
    #[serde(default = "auth_priv")]
    pub level: String,
}

impl sms_core::daemon::WithSettings for SnmpConfig {
    /// Puts the administrator's settings over the shipped file.
    ///
    /// Communities, users and trap destinations from the settings are added
    /// to the file's (one of the same name replaces the file's entry).
    /// Settings' communities and users read the whole tree (view
    /// `settings-all`); read-write ones may Set the writable objects (a
    /// user's write view is `settings-system`). Their communities and users
    /// are also accepted on incoming traps.
    fn apply_settings(&mut self, s: &sms_core::settings::Settings) {
        let mut view = |name: &str, subtree: &str| {
            if !self.view.iter().any(|v| v.name == name) {
                self.view.push(ViewConfig {
                    name: name.into(),
                    include: vec![subtree.into()],
                    exclude: Vec::new(),
                });
            }
        };
        if !s.snmp_communities.is_empty() || !s.snmp_users.is_empty() {
            view("settings-all", "1.3.6.1");
            view("settings-system", "1.3.6.1.2.1.1");
        }
        for c in &s.snmp_communities {
            self.community.retain(|x| x.name != c.name);
            self.community.push(CommunityConfig {
                name: c.name.clone(),
                sources: c.networks.clone(),
                view: "settings-all".into(),
                access: if c.write {
                    AccessMode::Rw
                } else {
                    AccessMode::Ro
                },
            });
            if !self.receiver.communities.contains(&c.name) {
                self.receiver.communities.push(c.name.clone());
            }
        }
        if self.poller.community.is_empty() {
            if let Some(c) = s.snmp_communities.first() {
                self.poller.community = c.name.clone();
            }
        }
        for u in &s.snmp_users {
            if u.auth_password == sms_core::settings::KEPT_APART
                || u.privacy_password == sms_core::settings::KEPT_APART
            {
                tracing::error!(
                    "SNMPv3 user {}: its pass phrases are in the SNMP daemon's secrets file, which this process cannot read; the user is left out",
                    u.name
                );
                continue;
            }
            self.user.retain(|x| x.name != u.name);
            self.user.push(UserConfig {
                name: u.name.clone(),
                auth: u.auth.clone(),
                auth_password: u.auth_password.clone(),
                privacy: "AES".into(),
                privacy_password: u.privacy_password.clone(),
                min_level: auth_priv(),
                read_view: "settings-all".into(),
                write_view: if u.write {
                    "settings-system".into()
                } else {
                    String::new()
                },
            });
            if !self.receiver.users.contains(&u.name) {
                self.receiver.users.push(u.name.clone());
            }
        }
        for t in &s.trap_destinations {
            if t.user
                .as_ref()
                .is_some_and(|u| !self.user.iter().any(|x| &x.name == u))
            {
                tracing::error!(
                    "trap destination {}: its user is left out; no traps go there",
                    t.address
                );
                continue;
            }
            let address = SocketAddr::new(t.address, t.port);
            self.trap_destination.retain(|x| x.address != address);
            self.trap_destination.push(TrapDestination {
                address,
                version: if t.user.is_some() {
                    TrapVersion::V3
                } else {
                    TrapVersion::V2c
                },
                community: t.community.clone().unwrap_or_default(),
                user: t.user.clone().unwrap_or_default(),
                level: auth_priv(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sms_core::daemon::WithSettings;

    /// The configuration files the image ships must load and build.
    #[test]
    fn shipped_configurations_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for f in ["rootfs-overlay/etc/sms/snmpd.toml", "qemu/world/snmpd.toml"] {
            let path = root.join(f);
            let cfg: SnmpConfig = sms_core::config::load(&path).unwrap();
            crate::access::Access::build(&cfg, b"\x80\x00\x7e\xd9\x05test")
                .unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn unknown_keys_and_bad_entries_are_named() {
        let e = sms_core::config::parse::<SnmpConfig>(
            std::path::Path::new("x.toml"),
            "[agent]\nlisten = []\nthreds = 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("threds"), "{e}");
        let cfg: SnmpConfig = toml::from_str(
            "[[community]]\nname = \"c\"\nsources = [\"10.0.0.0/33\"]\nview = \"all\"\n",
        )
        .unwrap();
        let e = crate::access::Access::build(&cfg, b"e").unwrap_err();
        assert!(e.contains("community \"c\"") && e.contains("/33"), "{e}");
        let cfg: SnmpConfig = toml::from_str(
            "[[user]]\nname = \"u\"\nauth = \"MD5\"\nauth_password = \"12345678\"\n",
        )
        .unwrap();
        let e = crate::access::Access::build(&cfg, b"e").unwrap_err();
        assert!(e.contains("MD5"), "{e}");
        let cfg: SnmpConfig =
            toml::from_str("[[user]]\nname = \"u\"\nauth = \"SHA\"\nauth_password = \"short\"\n")
                .unwrap();
        let e = crate::access::Access::build(&cfg, b"e").unwrap_err();
        assert!(e.contains("at least 8"), "{e}");
    }

    /// The shipped file trusts no community: traps with one are refused and
    /// the poller waits, until the administrator sets one, which both take.
    #[test]
    fn the_shipped_file_accepts_no_community_until_one_is_set() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cfg: SnmpConfig =
            sms_core::config::load(&root.join("rootfs-overlay/etc/sms/snmpd.toml")).unwrap();
        assert!(cfg.community.is_empty() && cfg.user.is_empty());
        assert!(cfg.receiver.communities.is_empty());
        assert_eq!(cfg.poller.community, "");
        cfg.apply_settings(&sms_core::settings::Settings {
            snmp_communities: vec![sms_core::settings::SnmpCommunity {
                name: "fleet-ro".into(),
                networks: vec!["192.0.2.0/24".into()],
                write: false,
            }],
            ..Default::default()
        });
        assert_eq!(cfg.receiver.communities, vec!["fleet-ro".to_string()]);
        assert_eq!(cfg.poller.community, "fleet-ro");
    }

    /// Settings from the CLI build into a working access table and trap
    /// destinations, replacing a shipped entry of the same name.
    #[test]
    fn settings_add_communities_users_and_trap_destinations() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cfg: SnmpConfig =
            sms_core::config::load(&root.join("qemu/world/snmpd.toml")).unwrap();
        let s = sms_core::settings::Settings {
            snmp_communities: vec![sms_core::settings::SnmpCommunity {
                name: "public".into(),
                networks: vec!["192.0.2.0/24".into()],
                write: true,
            }],
            snmp_users: vec![sms_core::settings::SnmpUser {
                name: "ops".into(),
                auth: "SHA-256".into(),
                auth_password: "ops-auth-pass".into(),
                privacy_password: "ops-priv-pass".into(),
                write: false,
            }],
            trap_destinations: vec![sms_core::settings::TrapDestination {
                address: "192.0.2.162".parse().unwrap(),
                port: 162,
                community: None,
                user: Some("ops".into()),
            }],
            ..Default::default()
        };
        cfg.apply_settings(&s);
        let public: Vec<_> = cfg
            .community
            .iter()
            .filter(|c| c.name == "public")
            .collect();
        assert_eq!(public.len(), 1);
        assert_eq!(public[0].sources, vec!["192.0.2.0/24".to_string()]);
        assert_eq!(public[0].access, AccessMode::Rw);
        assert!(cfg.receiver.users.contains(&"ops".to_string()));
        assert_eq!(cfg.trap_destination.len(), 1);
        assert_eq!(cfg.trap_destination[0].version, TrapVersion::V3);
        crate::access::Access::build(&cfg, b"\x80\x00\x7e\xd9\x05test").unwrap();

        // Pass phrases kept apart in a file this process cannot read: the
        // user and the destination that needs it are left out, the rest
        // still builds.
        let mut cfg: SnmpConfig =
            sms_core::config::load(&root.join("qemu/world/snmpd.toml")).unwrap();
        let mut apart = s.clone();
        apart.snmp_users[0].auth_password = sms_core::settings::KEPT_APART.into();
        apart.snmp_users[0].privacy_password = sms_core::settings::KEPT_APART.into();
        cfg.apply_settings(&apart);
        assert!(!cfg.user.iter().any(|u| u.name == "ops"));
        assert!(cfg.trap_destination.is_empty());
        crate::access::Access::build(&cfg, b"\x80\x00\x7e\xd9\x05test").unwrap();
    }
}

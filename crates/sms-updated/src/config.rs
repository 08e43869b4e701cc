//! Configuration of sms-updated (`/etc/sms/updated.toml`).
//!
//! Every key has a default; the file shipped in the image spells them all
//! out. Durations are whole seconds unless the key ends in `_ms`.

use serde::{Deserialize, Serialize};
use sms_core::config::{millis, seconds};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdaterConfig {
    /// The update centre.
    pub tmc: TmcConfig,
    /// Name servers (manually configured; no DHCP, no /etc/resolv.conf).
    pub dns: DnsConfig,
    /// Optional HTTP proxy for all update traffic.
    pub proxy: ProxyConfig,
    /// Digital Vaccine schedule.
    pub dv: DvConfig,
    /// How many versions to keep.
    pub retention: RetentionConfig,
    /// Transfer behaviour.
    pub download: DownloadConfig,
    /// Where state lives.
    pub paths: PathsConfig,
}

/// `[tmc]`: the update centre.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TmcConfig {
    /// Host name of the update centre.
    pub host: String,
    /// HTTPS port: 443 (default) or 4043 (legacy).
    pub port: u16,
    /// PEM file of the CA certificates that may sign the update centre's
    /// TLS certificate.
    pub ca_file: PathBuf,
    /// JSON trust root of the catalog signing keys.
    pub trust_root: PathBuf,
    /// Identity of this appliance, sent with download confirmations.
    pub appliance_id: String,
    /// Time limit of one request to the update centre, seconds.
    #[serde(with = "seconds")]
    pub request_timeout: Duration,
}

impl Default for TmcConfig {
    fn default() -> Self {
        TmcConfig {
            host: "tmc.tippingpoint.com".into(),
            port: 443,
            ca_file: "/etc/sms/tmc-ca.pem".into(),
            trust_root: "/etc/sms/trust-root.json".into(),
            appliance_id: "sms".into(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// `[dns]`: resolver settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers as `address:port` (UDP, then TCP on truncation).
    pub servers: Vec<SocketAddr>,
    /// Time limit of one query, milliseconds.
    #[serde(with = "millis")]
    pub timeout_ms: Duration,
    /// Attempts per query.
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout_ms: Duration::from_millis(2000),
            attempts: 2,
        }
    }
}

/// `[proxy]`: optional HTTP proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://host:port` of the proxy; empty for none.
    pub url: String,
    /// User for Basic authentication; empty for none.
    pub username: String,
    /// Password for Basic authentication.
    pub password: String,
}

/// `[dv]`: the automatic Digital Vaccine cycle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DvConfig {
    /// Whether the automatic check runs at all.
    pub auto_check: bool,
    /// Seconds between automatic checks.
    #[serde(with = "seconds")]
    pub check_interval: Duration,
    /// Seconds after start-up before the first check.
    #[serde(with = "seconds")]
    pub initial_delay: Duration,
    /// Whether a newly downloaded DV becomes active by itself.
    pub auto_activate: bool,
}

impl Default for DvConfig {
    fn default() -> Self {
        DvConfig {
            auto_check: true,
            check_interval: Duration::from_secs(1800),
            initial_delay: Duration::from_secs(10),
            auto_activate: true,
        }
    }
}

/// `[retention]`: how many versions stay on the appliance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Versions kept per channel (the active one is always kept).
    pub keep_versions: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { keep_versions: 10 }
    }
}

/// `[download]`: transfer behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadConfig {
    /// Attempts per file before the operation fails.
    pub attempts: u32,
    /// First retry delay, milliseconds (doubles each time, with jitter).
    #[serde(with = "millis")]
    pub backoff_initial_ms: Duration,
    /// Cap of the retry delay, milliseconds.
    #[serde(with = "millis")]
    pub backoff_max_ms: Duration,
    /// Seconds without a byte before a transfer counts as stalled.
    #[serde(with = "seconds")]
    pub stall_timeout: Duration,
    /// Minimum transfer rate in bytes per second, judged over
    /// `min_rate_window`; a slower transfer is ended and resumed on the next
    /// attempt. 0 turns the check off.
    pub min_rate_bps: u64,
    /// Seconds over which the minimum rate is judged.
    #[serde(with = "seconds")]
    pub min_rate_window: Duration,
    /// Bytes that must stay free on the blob store's file system.
    pub reserve_bytes: u64,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            attempts: 5,
            backoff_initial_ms: Duration::from_millis(1000),
            backoff_max_ms: Duration::from_millis(60_000),
            stall_timeout: Duration::from_secs(30),
            min_rate_bps: 1024,
            min_rate_window: Duration::from_secs(60),
            reserve_bytes: 16 << 20,
        }
    }
}

/// `[paths]`: state locations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// The daemon's own store (sled).
    pub state_dir: PathBuf,
    /// The shared blob store.
    pub blob_dir: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            state_dir: "/var/lib/sms/updated".into(),
            blob_dir: "/var/lib/sms/blobs".into(),
        }
    }
}

impl sms_core::daemon::WithSettings for UpdaterConfig {
    /// Puts the administrator's settings over the shipped file: DNS
    /// servers (port 53), the proxy and the update policy (automatic check
    /// and its interval, automatic activation, the update centre's port),
    /// each when set.
    fn apply_settings(&mut self, s: &sms_core::settings::Settings) {
        let policy = &s.update;
        if let Some(on) = policy.auto_check {
            self.dv.auto_check = on;
        }
        if let Some(secs) = policy.check_interval {
            self.dv.check_interval = Duration::from_secs(secs);
        }
        if let Some(on) = policy.auto_activate {
            self.dv.auto_activate = on;
        }
        if let Some(port) = policy.centre_port {
            self.tmc.port = port;
        }
        if !s.dns_servers.is_empty() {
            self.dns.servers = s
                .dns_servers
                .iter()
                .map(|ip| SocketAddr::new(*ip, 53))
                .collect();
        }
        if let Some(p) = &s.proxy {
            self.proxy.url = p.url.clone();
            self.proxy.username = p.username.clone();
            if p.password == sms_core::settings::KEPT_APART {
                // Never sent as a password: the secrets file was not
                // readable by this daemon.
                tracing::error!(
                    "the proxy password is kept in the update daemon's secrets file, which this process cannot read; the proxy is used without one"
                );
                self.proxy.password.clear();
            } else {
                self.proxy.password = p.password.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sms_core::daemon::WithSettings;
    use std::path::Path;

    #[test]
    fn shipped_default_file_matches_the_defaults() {
        let text = include_str!("../../../rootfs-overlay/etc/sms/updated.toml");
        let parsed: UpdaterConfig =
            sms_core::config::parse(Path::new("updated.toml"), text).unwrap();
        let defaults = UpdaterConfig::default();
        assert_eq!(parsed.dv.check_interval, defaults.dv.check_interval);
        assert_eq!(parsed.retention.keep_versions, 10);
        assert_eq!(parsed.tmc.port, 443);
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&UpdaterConfig {
                dns: parsed.dns.clone(),
                ..defaults
            })
            .unwrap()
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let parsed: UpdaterConfig = sms_core::config::parse(Path::new("x"), "").unwrap();
        assert_eq!(parsed.dv.check_interval, Duration::from_secs(1800));
        assert!(parsed.dv.auto_activate);
    }

    #[test]
    fn wrong_value_names_the_key() {
        let err = sms_core::config::parse::<UpdaterConfig>(
            Path::new("u.toml"),
            "[dv]\ncheck_interval = \"soon\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("u.toml:2") && err.contains("dv.check_interval"),
            "{err}"
        );
    }

    #[test]
    fn settings_set_dns_servers_and_proxy() {
        let mut c = UpdaterConfig::default();
        c.apply_settings(&sms_core::settings::Settings::default());
        assert!(c.dns.servers.is_empty() && c.proxy.url.is_empty());
        let s = sms_core::settings::Settings {
            dns_servers: vec!["192.0.2.53".parse().unwrap()],
            proxy: Some(sms_core::settings::Proxy {
                url: "http://192.0.2.8:3128".into(),
                username: "bob".into(),
                password: "pw".into(),
            }),
            ..Default::default()
        };
        c.apply_settings(&s);
        assert_eq!(c.dns.servers, vec!["192.0.2.53:53".parse().unwrap()]);
        assert_eq!(
            (
                c.proxy.url.as_str(),
                c.proxy.username.as_str(),
                c.proxy.password.as_str()
            ),
            ("http://192.0.2.8:3128", "bob", "pw")
        );
        // A password kept apart in a file this process cannot read is never
        // sent as the password.
        let mut apart = s.clone();
        apart.proxy.as_mut().unwrap().password = sms_core::settings::KEPT_APART.into();
        c.apply_settings(&apart);
        assert_eq!(c.proxy.password, "");
    }
}

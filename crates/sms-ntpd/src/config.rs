//! Configuration of sms-ntpd (`/etc/sms/ntpd.toml`).

use serde::{Deserialize, Serialize};
pub use sms_core::ratelimit::RateLimitConfig;
use std::net::SocketAddr;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NtpConfig {
    /// Upstream servers the relay takes its time from.
    pub upstream: UpstreamConfig,
    /// What the relay does with the time it learns.
    pub clock: ClockConfig,
    /// Serving time to the managed devices.
    pub server: ServerConfig,
}

/// `[upstream]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Servers as `address:port` (port 123 when written as an address only).
    pub servers: Vec<String>,
    /// Send a burst of requests at start for a fast first sync.
    pub iburst: bool,
    /// Spacing of the burst, milliseconds.
    pub iburst_spacing_ms: u64,
    /// Shortest poll interval, log2 seconds (6 = 64 s).
    pub min_poll: u8,
    /// Longest poll interval, log2 seconds (10 = 1024 s).
    pub max_poll: u8,
    /// Time to wait for an answer, milliseconds.
    pub timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: Vec::new(),
            iburst: true,
            iburst_spacing_ms: 2000,
            min_poll: 6,
            max_poll: 10,
            timeout_ms: 1000,
        }
    }
}

/// How the relay applies time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// Discipline the system clock (needs CAP_SYS_TIME): the appliance.
    System,
    /// Leave the system clock alone and serve "system clock + estimated
    /// offset": development hosts and tests.
    Offset,
}

/// `[clock]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// `system` or `offset`.
    pub mode: ClockMode,
    /// Offsets beyond this are stepped instead of slewed, milliseconds.
    pub step_threshold_ms: u64,
    /// When unsynchronised, serve the local clock at this stratum
    /// (announced with leap 0). 0 (the default) never serves unsynchronised
    /// time: clients get leap 3 and stratum 16 instead.
    pub local_stratum: u8,
    /// Once synchronised, a correction larger than this many seconds is
    /// refused and reported instead of applied (unauthenticated upstreams
    /// must not move the clock that judges catalog expiry). 0: no limit.
    pub panic_threshold_s: u64,
    /// The updater's time floor (issue time of the newest accepted signed
    /// catalog): the clock is never set before it.
    pub time_floor_file: std::path::PathBuf,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            mode: ClockMode::System,
            step_threshold_ms: 128,
            local_stratum: 0,
            panic_threshold_s: 1000,
            time_floor_file: "/var/lib/sms/updated/time-floor".into(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to answer on.
    pub listen: Vec<SocketAddr>,
    /// Client networks allowed (CIDR); others get no answer.
    pub allow: Vec<String>,
    /// Serving threads per address.
    pub threads: usize,
    /// Per-client rate limiting.
    pub rate_limit: RateLimitConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![
                "0.0.0.0:123".parse().unwrap_or_else(|_| unreachable!()),
                "[::]:123".parse().unwrap_or_else(|_| unreachable!()),
            ],
            allow: [
                "127.0.0.0/8",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "::1/128",
                "fc00::/7",
                "fe80::/10",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            threads: 1,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

impl sms_core::daemon::WithSettings for NtpConfig {
    /// Puts the administrator's settings over the shipped file: the
    /// upstream servers, when set.
    fn apply_settings(&mut self, s: &sms_core::settings::Settings) {
        if !s.ntp_servers.is_empty() {
            self.upstream.servers = s.ntp_servers.clone();
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
        let text = include_str!("../../../rootfs-overlay/etc/sms/ntpd.toml");
        let parsed: NtpConfig = sms_core::config::parse(Path::new("ntpd.toml"), text).unwrap();
        let defaults = NtpConfig::default();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&NtpConfig {
                upstream: UpstreamConfig {
                    servers: parsed.upstream.servers.clone(),
                    ..defaults.upstream.clone()
                },
                ..defaults
            })
            .unwrap()
        );
    }

    #[test]
    fn the_qemu_world_file_serves_the_virtual_lan_too() {
        let text = include_str!("../../../qemu/world/ntpd.toml");
        let parsed: NtpConfig = sms_core::config::parse(Path::new("ntpd.toml"), text).unwrap();
        let mut want = NtpConfig::default().server.allow;
        assert!(!want.contains(&"192.0.2.0/24".to_string()));
        want.insert(4, "192.0.2.0/24".into());
        assert_eq!(parsed.server.allow, want);
    }

    #[test]
    fn settings_replace_the_upstream_servers_only_when_set() {
        let mut c = NtpConfig::default();
        c.upstream.servers = vec!["192.0.2.1".into()];
        c.apply_settings(&sms_core::settings::Settings::default());
        assert_eq!(c.upstream.servers, vec!["192.0.2.1".to_string()]);
        let s = sms_core::settings::Settings {
            ntp_servers: vec!["192.0.2.123".into(), "192.0.2.124:1123".into()],
            ..Default::default()
        };
        c.apply_settings(&s);
        assert_eq!(c.upstream.servers, s.ntp_servers);
        for server in &c.upstream.servers {
            crate::upstream::parse_server(server).unwrap();
        }
    }
}

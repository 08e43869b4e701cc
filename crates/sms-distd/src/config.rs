//! Configuration of sms-distd (`/etc/sms/distd.toml`).
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
pub struct DistdConfig {
    /// Pushing packages to devices.
    pub push: PushConfig,
    /// TLS towards the devices (mutual).
    pub tls: DeviceTlsConfig,
    /// The pull server.
    pub pull: PullConfig,
    /// Where state lives.
    pub paths: PathsConfig,
}

/// `[push]`: how distribution jobs run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Devices served at the same time.
    pub max_parallel: usize,
    /// Attempts per device before it counts as failed.
    pub attempts: u32,
    /// First retry delay and its cap, milliseconds (doubling, with jitter).
    #[serde(with = "millis")]
    pub backoff_initial_ms: Duration,
    /// Cap of the retry delay, milliseconds.
    #[serde(with = "millis")]
    pub backoff_max_ms: Duration,
    /// Time limit of a TCP + TLS connection to a device, seconds.
    #[serde(with = "seconds")]
    pub connect_timeout: Duration,
    /// Time limit of one upload, seconds.
    #[serde(with = "seconds")]
    pub transfer_timeout: Duration,
    /// Time a device may take to install, seconds.
    #[serde(with = "seconds")]
    pub install_timeout: Duration,
    /// Interval between status queries while a device installs, ms.
    #[serde(with = "millis")]
    pub poll_interval_ms: Duration,
    /// Fraction of the targets in the first (canary) wave.
    pub canary_fraction: f64,
    /// Fraction of the targets in each later wave.
    pub wave_fraction: f64,
    /// A wave whose failed fraction exceeds this stops the job.
    pub max_failure_rate: f64,
    /// Distribute a newly activated DV to the devices by itself.
    pub auto_distribute_dv: bool,
    /// The groups an automatic distribution goes to; empty: every device.
    pub auto_distribute_groups: Vec<String>,
}

impl sms_core::daemon::WithSettings for DistdConfig {
    /// Puts the update policy's distribution part over the file: whether
    /// an activated DV is distributed by itself, and to which groups.
    fn apply_settings(&mut self, settings: &sms_core::settings::Settings) {
        let policy = &settings.update;
        if let Some(on) = policy.auto_distribute {
            self.push.auto_distribute_dv = on;
        }
        if !policy.distribute_groups.is_empty() {
            self.push.auto_distribute_groups = policy.distribute_groups.clone();
        }
    }
}

impl PushConfig {
    /// Where an automatic distribution of a new DV goes: the configured
    /// groups, or every device when none is named.
    pub fn auto_targets(&self) -> Vec<sms_core::bus::Target> {
        if self.auto_distribute_groups.is_empty() {
            vec![sms_core::bus::Target::All]
        } else {
            self.auto_distribute_groups
                .iter()
                .map(|g| sms_core::bus::Target::Group(g.clone()))
                .collect()
        }
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            max_parallel: 50,
            attempts: 3,
            backoff_initial_ms: Duration::from_millis(1000),
            backoff_max_ms: Duration::from_millis(30_000),
            connect_timeout: Duration::from_secs(10),
            transfer_timeout: Duration::from_secs(1800),
            install_timeout: Duration::from_secs(900),
            poll_interval_ms: Duration::from_millis(2000),
            canary_fraction: 0.05,
            wave_fraction: 0.25,
            max_failure_rate: 0.2,
            auto_distribute_dv: true,
            auto_distribute_groups: Vec::new(),
        }
    }
}

/// `[tls]`: the appliance's identity towards devices and what it trusts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceTlsConfig {
    /// CA certificates (PEM) that sign the devices' certificates. A device
    /// with a pinned certificate is checked against its pin instead.
    pub ca_file: PathBuf,
    /// The appliance's client certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Trust root of the vendor keys: a package is distributed only when
    /// its signed catalog verifies against it.
    pub trust_root: PathBuf,
}

impl Default for DeviceTlsConfig {
    fn default() -> Self {
        DeviceTlsConfig {
            ca_file: "/etc/sms/fleet-ca.pem".into(),
            cert_file: "/var/lib/sms/distd/tls/client.pem".into(),
            key_file: "/var/lib/sms/distd/tls/client-key.pem".into(),
            trust_root: "/etc/sms/trust-root.json".into(),
        }
    }
}

/// `[pull]`: the GUTS2-style pull server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PullConfig {
    /// Plain HTTP listeners.
    pub http_listen: Vec<SocketAddr>,
    /// HTTPS listeners.
    pub https_listen: Vec<SocketAddr>,
    /// Server certificate chain (PEM) for HTTPS.
    pub tls_cert_file: PathBuf,
    /// Its private key (PEM).
    pub tls_key_file: PathBuf,
    /// Large downloads served at once; more wait, then get 503.
    pub max_large_downloads: usize,
    /// Responses at least this long count as large downloads.
    pub large_bytes: u64,
    /// How long a large download waits for a slot before 503, ms.
    #[serde(with = "millis")]
    pub slot_wait_ms: Duration,
    /// Versions per channel kept in the cache (deltas to and from them).
    pub keep_versions: usize,
    /// Full archives kept per channel (rebuilt on demand).
    pub max_full_archives: usize,
    /// Deltas between payloads up to this size are built inside the
    /// request (fast setting); larger ones in the background (503 until
    /// ready).
    pub inline_delta_max_bytes: u64,
    /// zstd level of deltas built inside a request.
    pub inline_level: i32,
    /// zstd level of the background N-1 -> N delta and of full archives.
    pub best_level: i32,
    /// A delta larger than this fraction of the full archive is not
    /// served: the client is sent to the full archive.
    pub max_delta_fraction: f64,
    /// Retry-After seconds in 503 answers.
    pub retry_after: u64,
    /// Seconds between refreshes of the package list from the updater.
    #[serde(with = "seconds")]
    pub refresh_interval: Duration,
    /// Deltas and archives built at once for clients.
    pub max_builds: usize,
    /// Builds that may wait for a place; beyond, clients get 503.
    pub build_queue: usize,
    /// Builds one client address may have queued or running.
    pub builds_per_address: usize,
    /// Bytes of built deltas and archives held in memory.
    pub memory_cache_bytes: u64,
    /// Seconds a client has to send its request headers (and, on HTTPS,
    /// to finish the TLS handshake).
    #[serde(with = "seconds")]
    pub header_timeout: Duration,
    /// Bytes per second a connection must move, judged over `rate_window`:
    /// slower clients and idle keep-alive connections are closed. 0: off.
    pub min_rate_bps: u64,
    /// Seconds over which the minimum rate is judged (also the idle
    /// timeout of keep-alive connections).
    #[serde(with = "seconds")]
    pub rate_window: Duration,
    /// Open connections allowed from one client address.
    pub max_connections_per_address: usize,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            http_listen: vec![SocketAddr::from(([0, 0, 0, 0], 80))],
            https_listen: vec![SocketAddr::from(([0, 0, 0, 0], 443))],
            tls_cert_file: "/var/lib/sms/distd/tls/server.pem".into(),
            tls_key_file: "/var/lib/sms/distd/tls/server-key.pem".into(),
            max_large_downloads: 50,
            large_bytes: 1 << 20,
            slot_wait_ms: Duration::from_millis(2000),
            keep_versions: 10,
            max_full_archives: 2,
            inline_delta_max_bytes: 64 << 20,
            inline_level: 9,
            best_level: 19,
            max_delta_fraction: 0.5,
            retry_after: 5,
            refresh_interval: Duration::from_secs(60),
            max_builds: 2,
            build_queue: 8,
            builds_per_address: 1,
            memory_cache_bytes: 256 << 20,
            header_timeout: Duration::from_secs(10),
            min_rate_bps: 4096,
            rate_window: Duration::from_secs(30),
            max_connections_per_address: 64,
        }
    }
}

/// `[paths]`: where state lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// The daemon's own database (inventory, jobs, delta index).
    pub state_dir: PathBuf,
    /// The shared package store (read only for this daemon).
    pub blob_dir: PathBuf,
    /// Deltas and full archives built here.
    pub cache_dir: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            state_dir: "/var/lib/sms/distd/state".into(),
            blob_dir: "/var/lib/sms/blobs".into(),
            cache_dir: "/var/lib/sms/distd/cache".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_parse_and_unknown_keys_are_refused() {
        let text = include_str!("../../../rootfs-overlay/etc/sms/distd.toml");
        let cfg: DistdConfig =
            sms_core::config::parse(std::path::Path::new("distd.toml"), text).unwrap();
        let d = DistdConfig::default();
        assert_eq!(cfg.push.max_parallel, d.push.max_parallel);
        assert_eq!(cfg.pull.max_large_downloads, 50);
        assert_eq!(cfg.pull.keep_versions, 10);
        assert_eq!(cfg.pull.http_listen, d.pull.http_listen);
        let e = sms_core::config::parse::<DistdConfig>(
            std::path::Path::new("x.toml"),
            "[push]\nmax_paralel = 3\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_paralel"), "{e}");
    }
}

//! The forwarder's configuration: `/etc/sms/logd.toml`, with the
//! administrator's log servers (settings) put over it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How many servers may be configured.
pub const MAX_SERVERS: usize = 4;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogdConfig {
    /// The datagram socket journald forwards to, when the daemon is not
    /// handed one by systemd (`syslog.socket`).
    pub listen: PathBuf,
    /// The host name in the messages (empty: the appliance's).
    pub hostname: String,
    /// Where the queues live (data partition).
    pub state_dir: PathBuf,
    /// The most a TCP/TLS server's queue holds, octets.
    pub queue_max_bytes: u64,
    /// The programs whose lines are forwarded (syslog identifiers).
    pub identifiers: Vec<String>,
    /// The least important severity forwarded (0 emergency .. 7 debug).
    pub max_severity: u8,
    /// Longest wait between two connection attempts to a server that is
    /// down, milliseconds (the first retry is after 200 ms, then doubling).
    #[serde(with = "sms_core::config::millis")]
    pub retry_max_ms: Duration,
    /// The servers.
    pub servers: Vec<ServerConfig>,
    /// E-mail notifications, if configured.
    pub mail: Option<crate::mail::MailConfig>,
}

impl Default for LogdConfig {
    fn default() -> Self {
        LogdConfig {
            listen: PathBuf::from("/run/systemd/journal/syslog"),
            hostname: String::new(),
            state_dir: PathBuf::from("/var/lib/sms/logd"),
            queue_max_bytes: 16 << 20,
            identifiers: [
                "sms-audit",
                "sms-cli",
                "sms-updated",
                "sms-distd",
                "sms-snmpd",
                "sms-ntpd",
                "sms-had",
                "sms-apply-settings",
                "sms-slot",
                "sms-logd",
                "rauc",
                "sshd",
            ]
            .map(String::from)
            .to_vec(),
            max_severity: 6,
            retry_max_ms: Duration::from_secs(30),
            servers: Vec::new(),
            mail: None,
        }
    }
}

/// How messages travel to a server (the settings' protocol).
pub use sms_core::settings::LogProtocol as Protocol;

/// One log server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Its address or name (a TLS server's certificate must name it).
    pub host: String,
    /// Its port (0: the protocol's usual one).
    #[serde(default)]
    pub port: u16,
    /// How to reach it.
    pub protocol: Protocol,
    /// For TLS: the CA certificate(s) the server's certificate must chain
    /// to (PEM file).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// For TLS: the same in PEM text (from the administrator's settings).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

impl ServerConfig {
    /// The port to use.
    pub fn port(&self) -> u16 {
        if self.port == 0 {
            self.protocol.default_port()
        } else {
            self.port
        }
    }

    /// A name for logs, status and the queue: `tls:host:port`.
    pub fn label(&self) -> String {
        self.protocol.label(&self.host, self.port())
    }
}

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// More servers than allowed.
    #[error("{0} log servers configured, at most {MAX_SERVERS}")]
    TooMany(usize),
    /// A TLS server without a CA.
    #[error("log server {0}: TLS needs the server's CA (ca_file)")]
    NoCa(String),
    /// The same server twice.
    #[error("log server {0} is configured twice")]
    Twice(String),
    /// A host that is empty or holds spaces.
    #[error("log server host {0:?} is not an address or a name")]
    BadHost(String),
}

impl LogdConfig {
    /// Checks the server list.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers.len() > MAX_SERVERS {
            return Err(ConfigError::TooMany(self.servers.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.servers {
            if s.host.is_empty() || s.host.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(ConfigError::BadHost(s.host.clone()));
            }
            if s.protocol == Protocol::Tls && s.ca_file.is_none() && s.ca_pem.is_none() {
                return Err(ConfigError::NoCa(s.label()));
            }
            if !seen.insert(s.label()) {
                return Err(ConfigError::Twice(s.label()));
            }
        }
        Ok(())
    }
}

impl sms_core::daemon::WithSettings for LogdConfig {
    /// The administrator's log servers, when any are set, replace the
    /// file's.
    fn apply_settings(&mut self, settings: &sms_core::settings::Settings) {
        if let Some(m) = &settings.mail {
            self.mail = Some(mail_config(m));
        }
        if settings.log_servers.is_empty() {
            return;
        }
        self.servers = settings
            .log_servers
            .iter()
            .map(|s| ServerConfig {
                host: s.host.clone(),
                port: s.port(),
                protocol: s.protocol,
                ca_file: None,
                ca_pem: s.ca_pem(),
            })
            .collect();
    }
}

/// The administrator's mail settings as the notifier's configuration; the
/// hold time stays the default.
fn mail_config(m: &sms_core::settings::MailNotification) -> crate::mail::MailConfig {
    use crate::mail::EventClass;
    let password = (!m.password.is_empty() && m.password != sms_core::settings::KEPT_APART)
        .then(|| m.password.clone());
    crate::mail::MailConfig {
        server: m.server.clone(),
        port: m.port(),
        security: m.security,
        ca_file: None,
        ca_pem: m.ca_pem(),
        username: (!m.username.is_empty()).then(|| m.username.clone()),
        password_file: None,
        password,
        from: m.from.clone(),
        recipients: m.recipients.clone(),
        classes: m
            .classes()
            .iter()
            .filter_map(|c| EventClass::from_name(c))
            .collect(),
        hold_secs: 30,
        min_interval_secs: m.min_interval.unwrap_or(900),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn servers_are_checked() {
        let tls = |h: &str| ServerConfig {
            host: h.into(),
            port: 0,
            protocol: Protocol::Tls,
            ca_file: Some("/ca.pem".into()),
            ca_pem: None,
        };
        let mut c = LogdConfig {
            servers: vec![tls("a"), tls("b")],
            ..LogdConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.servers[0].label(), "tls:a:6514");
        c.servers.push(tls("a"));
        assert_eq!(c.validate(), Err(ConfigError::Twice("tls:a:6514".into())));
        c.servers.truncate(1);
        c.servers[0].ca_file = None;
        assert!(matches!(c.validate(), Err(ConfigError::NoCa(_))));
        c.servers = vec![tls("a b")];
        assert!(matches!(c.validate(), Err(ConfigError::BadHost(_))));
        c.servers = (0..5).map(|i| tls(&format!("h{i}"))).collect();
        assert_eq!(c.validate(), Err(ConfigError::TooMany(5)));
        let parsed: LogdConfig = toml::from_str(
            "retry_max_ms = 1000\n[[servers]]\nhost = \"127.0.0.1\"\nprotocol = \"udp\"\n",
        )
        .unwrap();
        assert_eq!(parsed.servers[0].port(), 514);
        assert_eq!(parsed.retry_max_ms, Duration::from_secs(1));
    }

    #[test]
    fn the_settings_servers_replace_the_files() {
        use sms_core::daemon::WithSettings;
        let mut c = LogdConfig {
            servers: vec![ServerConfig {
                host: "file.example".into(),
                port: 0,
                protocol: Protocol::Udp,
                ca_file: None,
                ca_pem: None,
            }],
            ..LogdConfig::default()
        };
        c.apply_settings(&sms_core::settings::Settings::default());
        assert_eq!(c.servers[0].host, "file.example");
        c.apply_settings(&sms_core::settings::Settings::example());
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[0].label(), "tls:192.0.2.14:6514");
        assert!(c.servers[0]
            .ca_pem
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(c.servers[1].label(), "udp:logs.example:5514");
        assert_eq!(c.validate(), Ok(()));
        let mail = c.mail.as_ref().unwrap();
        assert_eq!(mail.validate(), Ok(()));
        assert_eq!((mail.server.as_str(), mail.port), ("smtp.example.com", 587));
        assert_eq!(mail.password.as_deref(), Some("mail-pass-1"));
        // Logged configurations never carry it.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("mail-pass-1") && shown.contains("********"),
            "{shown}"
        );
        assert_eq!(mail.min_interval_secs, 600);
        use crate::mail::EventClass;
        assert_eq!(
            mail.classes,
            [
                EventClass::Distribution,
                EventClass::Device,
                EventClass::Audit
            ]
        );
        // A password this process may not read is no password.
        let mut kept = sms_core::settings::Settings::example();
        kept.mail.as_mut().unwrap().password = sms_core::settings::KEPT_APART.into();
        c.apply_settings(&kept);
        assert_eq!(c.mail.as_ref().unwrap().password, None);
    }

    #[test]
    fn shipped_file_holds_the_defaults_and_its_mail_example_is_valid() {
        let text = include_str!("../../../rootfs-overlay/etc/sms/logd.toml");
        let parsed: LogdConfig =
            sms_core::config::parse(std::path::Path::new("logd.toml"), text).unwrap();
        assert_eq!(
            toml::to_string(&parsed).unwrap(),
            toml::to_string(&LogdConfig::default()).unwrap()
        );
        // The commented [mail] example, switched on, is a valid table.
        let start = text.find("# [mail]").unwrap();
        let example: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let with_mail: LogdConfig =
            sms_core::config::parse(std::path::Path::new("logd.toml"), &example).unwrap();
        let mail = with_mail.mail.unwrap();
        assert_eq!(mail.validate(), Ok(()));
        assert_eq!(mail.port(), 587);
        assert_eq!(mail.classes.len(), 6);
    }
}

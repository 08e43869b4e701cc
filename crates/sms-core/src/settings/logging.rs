//! Remote log servers in the settings: where sms-logd sends the audit
//! trail and the events (`set logging server ...`).

use super::{check_hostname, invalid, SettingsError};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// How many log servers may be configured.
pub const MAX_LOG_SERVERS: usize = 4;

/// How messages travel to a log server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogProtocol {
    /// RFC 5426 datagrams (port 514); nothing is kept when the server is
    /// away.
    Udp,
    /// RFC 6587 over TCP (port 514); queued while the server is down.
    Tcp,
    /// RFC 5425 over TLS (port 6514), the server's certificate checked
    /// against the configured CA; queued while the server is down.
    Tls,
}

impl LogProtocol {
    /// The word in the CLI and the settings file.
    pub fn word(self) -> &'static str {
        match self {
            LogProtocol::Udp => "udp",
            LogProtocol::Tcp => "tcp",
            LogProtocol::Tls => "tls",
        }
    }

    /// The protocol's usual port.
    pub fn default_port(self) -> u16 {
        match self {
            LogProtocol::Udp | LogProtocol::Tcp => 514,
            LogProtocol::Tls => 6514,
        }
    }

    /// How a server is named in logs, the queue and the status file:
    /// `tls:host:port`.
    pub fn label(self, host: &str, port: u16) -> String {
        format!("{}:{host}:{port}", self.word())
    }
}

/// One remote log server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogServer {
    /// Its address or name (a TLS server's certificate must name it).
    pub host: String,
    /// Its port, when not the protocol's usual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How to reach it.
    pub protocol: LogProtocol,
    /// For TLS: the CA certificate the server's must chain to, as base64
    /// of its DER encoding (the PEM body on one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

impl LogServer {
    /// The port used.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.protocol.default_port())
    }

    /// Its name in the status file ([`LogProtocol::label`]).
    pub fn label(&self) -> String {
        self.protocol.label(&self.host, self.port())
    }

    /// The CA certificate as PEM, for a TLS client configuration.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_certificate.as_deref().map(pem_of_base64)
    }
}

/// A certificate given as base64 of DER, as PEM.
pub fn pem_of_base64(b64: &str) -> String {
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Checks a CA certificate given as base64 of DER: it must decode and be
/// an X.509 certificate usable as a trust anchor.
pub fn check_ca_certificate(b64: &str) -> Result<(), SettingsError> {
    check_ca_certificate_as("logging server ca-certificate", b64)
}

/// [`check_ca_certificate`] for the setting named `what`.
pub fn check_ca_certificate_as(what: &str, b64: &str) -> Result<(), SettingsError> {
    if b64.len() > 8192 {
        return Err(invalid(what, "longer than 8192 characters"));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| {
            invalid(
                what,
                format!("not base64 ({e}); give the PEM body on one line"),
            )
        })?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .map_err(|e| invalid(what, format!("not an X.509 CA certificate ({e})")))?;
    Ok(())
}

/// Checks the list of log servers.
pub fn check_log_servers(servers: &[LogServer]) -> Result<(), SettingsError> {
    if servers.len() > MAX_LOG_SERVERS {
        return Err(invalid(
            "logging server",
            format!("at most {MAX_LOG_SERVERS} servers"),
        ));
    }
    for (i, s) in servers.iter().enumerate() {
        if s.host.parse::<std::net::IpAddr>().is_err() {
            check_hostname(&s.host).map_err(|_| {
                invalid(
                    "logging server",
                    format!("{:?} is not an address or a host name", s.host),
                )
            })?;
        }
        if s.port == Some(0) {
            return Err(invalid("logging server port", "must not be 0"));
        }
        match (s.protocol, &s.ca_certificate) {
            (LogProtocol::Tls, Some(ca)) => check_ca_certificate(ca)?,
            (LogProtocol::Tls, None) => {
                return Err(invalid(
                    "logging server",
                    format!("{}: TLS needs the server's CA (ca-certificate)", s.host),
                ))
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "logging server ca-certificate",
                    "only for TLS servers",
                ))
            }
            (_, None) => {}
        }
        if servers[..i].iter().any(|o| o.host == s.host) {
            return Err(invalid(
                "logging server",
                format!("{} is configured twice", s.host),
            ));
        }
    }
    Ok(())
}

/// What sms-logd reports for one server in its status file
/// (`/var/lib/sms/logd/status.json`), which `show logging` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogServerStatus {
    /// `protocol:host:port`.
    pub server: String,
    /// Whether a TCP/TLS connection is open (UDP: whether the last send
    /// worked).
    pub connected: bool,
    /// Messages written to the server.
    pub sent: u64,
    /// Messages waiting in the queue.
    pub queued: u64,
    /// Octets waiting.
    pub queued_bytes: u64,
    /// Messages dropped because the queue (or UDP backlog) was full.
    pub dropped: u64,
    /// Why the server was last unreachable, if it was.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::settings::EXAMPLE_LOG_CA;

    fn server(host: &str, protocol: LogProtocol, ca: Option<&str>) -> LogServer {
        LogServer {
            host: host.into(),
            port: None,
            protocol,
            ca_certificate: ca.map(String::from),
        }
    }

    #[test]
    fn log_servers_are_checked() {
        let tls = server("192.0.2.14", LogProtocol::Tls, Some(EXAMPLE_LOG_CA));
        check_log_servers(std::slice::from_ref(&tls)).unwrap();
        assert_eq!(tls.port(), 6514);
        let pem = tls.ca_pem().unwrap();
        assert!(crate::tls::client_config_from_pem(pem.as_bytes(), "ca").is_ok());

        let err = |v: &[LogServer]| check_log_servers(v).unwrap_err().to_string();
        assert!(err(&[server("a", LogProtocol::Tls, None)]).contains("needs the server's CA"));
        assert!(err(&[server("a", LogProtocol::Tls, Some("!!"))]).contains("not base64"));
        assert!(err(&[server("a", LogProtocol::Tls, Some("aGVsbG8="))]).contains("not an X.509"));
        assert!(
            err(&[server("a", LogProtocol::Udp, Some(EXAMPLE_LOG_CA))]).contains("only for TLS")
        );
        assert!(err(&[server("a b", LogProtocol::Udp, None)]).contains("not an address"));
        assert!(err(&[
            server("a", LogProtocol::Udp, None),
            server("a", LogProtocol::Tcp, None)
        ])
        .contains("twice"));
        let five: Vec<_> = (0..5)
            .map(|i| server(&format!("h{i}"), LogProtocol::Udp, None))
            .collect();
        assert!(err(&five).contains("at most 4"));
        let mut zero = server("a", LogProtocol::Udp, None);
        zero.port = Some(0);
        assert!(err(&[zero]).contains("must not be 0"));
    }
}

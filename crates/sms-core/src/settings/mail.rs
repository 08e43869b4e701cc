//! E-mail notifications in the settings: where sms-logd mails the
//! appliance's warnings and failures (`set notification mail ...`).

use super::{check_ca_certificate_as, check_hostname, invalid, SettingsError};
use serde::{Deserialize, Serialize};

/// How many recipients may be configured.
pub const MAX_MAIL_RECIPIENTS: usize = 8;

/// The event classes a mail may carry, in the order mails list them
/// (sms-logd's `EventClass` has the same names).
pub const MAIL_CLASSES: [&str; 7] = [
    "update",
    "distribution",
    "device",
    "ha",
    "firmware",
    "system",
    "audit",
];

/// The classes mailed when none are chosen: every failure, no audit (the
/// last of [`MAIL_CLASSES`]).
pub const DEFAULT_MAIL_CLASSES: &[&str] = MAIL_CLASSES.split_at(MAIL_CLASSES.len() - 1).0;

/// Least and most seconds between two mails.
pub const MAIL_INTERVAL_SECS: (u64, u64) = (60, 86_400);

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailSecurity {
    /// Plain TCP, then STARTTLS, which the server must offer (port 587).
    Starttls,
    /// TLS from the first octet (port 465).
    Tls,
    /// No encryption (port 25 on a trusted relay); no password allowed.
    None,
}

impl MailSecurity {
    /// The word in the CLI and the files.
    pub fn word(self) -> &'static str {
        match self {
            MailSecurity::Starttls => "starttls",
            MailSecurity::Tls => "tls",
            MailSecurity::None => "none",
        }
    }

    /// The usual port.
    pub fn default_port(self) -> u16 {
        match self {
            MailSecurity::Starttls => 587,
            MailSecurity::Tls => 465,
            MailSecurity::None => 25,
        }
    }
}

/// The administrator's mail settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailNotification {
    /// The mail server (a TLS certificate must name it).
    pub server: String,
    /// Its port, when not the protection's usual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How the connection is protected.
    pub security: MailSecurity,
    /// The CA the server's certificate must chain to, base64 of DER (the
    /// PEM body on one line); none: the system's CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    /// The user for AUTH (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Its password; never shown, kept apart in sms-logd's secrets file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// The sender address (empty until set).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Who gets the mails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// Which classes are mailed (empty: [`DEFAULT_MAIL_CLASSES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Least seconds between two mails (none: 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<u64>,
}

impl MailNotification {
    /// A server with nothing else set yet.
    pub fn new(server: String, security: MailSecurity) -> MailNotification {
        MailNotification {
            server,
            port: None,
            security,
            ca_certificate: None,
            username: String::new(),
            password: String::new(),
            from: String::new(),
            recipients: Vec::new(),
            classes: Vec::new(),
            min_interval: None,
        }
    }

    /// The port used.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.security.default_port())
    }

    /// The classes mailed.
    pub fn classes(&self) -> Vec<String> {
        if self.classes.is_empty() {
            DEFAULT_MAIL_CLASSES.iter().map(|c| c.to_string()).collect()
        } else {
            self.classes.clone()
        }
    }

    /// The CA certificate as PEM, if one is set.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_certificate.as_deref().map(super::pem_of_base64)
    }
}

/// Whether `a` is a plain `local@domain` address: no spaces, brackets,
/// quotes or line breaks that could smuggle SMTP commands or headers.
pub fn valid_mail_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    a.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && a.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\')
        })
}

/// Checks one mail address.
pub fn check_mail_address(what: &str, a: &str) -> Result<(), SettingsError> {
    if valid_mail_address(a) {
        Ok(())
    } else {
        Err(invalid(
            what,
            format!("{a:?} is not a mail address (local@domain)"),
        ))
    }
}

/// Checks the mail settings. With `complete`, also what sending needs (a
/// sender, a recipient): a commit is refused without them, a `set` is not.
pub fn check_mail(m: &MailNotification, complete: bool) -> Result<(), SettingsError> {
    if m.server.parse::<std::net::IpAddr>().is_err() {
        check_hostname(&m.server).map_err(|_| {
            invalid(
                "notification mail server",
                format!("{:?} is not an address or a host name", m.server),
            )
        })?;
    }
    if m.port == Some(0) {
        return Err(invalid("notification mail port", "must not be 0"));
    }
    if let Some(ca) = &m.ca_certificate {
        if m.security == MailSecurity::None {
            return Err(invalid(
                "notification mail ca-certificate",
                "only with security starttls or tls",
            ));
        }
        check_ca_certificate_as("notification mail ca-certificate", ca)?;
    }
    if !m.username.is_empty() {
        if m.security == MailSecurity::None {
            return Err(invalid(
                "notification mail user",
                "a password is only sent over TLS: use security starttls or tls",
            ));
        }
        if m.username.len() > 128 || !m.username.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid(
                "notification mail user",
                "printable characters without spaces, at most 128",
            ));
        }
        if m.password.is_empty() {
            return Err(invalid("notification mail user", "has no password"));
        }
    }
    if !m.from.is_empty() {
        check_mail_address("notification mail from", &m.from)?;
    }
    if m.recipients.len() > MAX_MAIL_RECIPIENTS {
        return Err(invalid(
            "notification mail recipient",
            format!("at most {MAX_MAIL_RECIPIENTS}"),
        ));
    }
    for (i, r) in m.recipients.iter().enumerate() {
        check_mail_address("notification mail recipient", r)?;
        if m.recipients[..i].contains(r) {
            return Err(invalid(
                "notification mail recipient",
                format!("{r} is given twice"),
            ));
        }
    }
    for c in &m.classes {
        if !MAIL_CLASSES.contains(&c.as_str()) {
            return Err(invalid(
                "notification mail class",
                format!("{c:?} is not one of {}", MAIL_CLASSES.join(", ")),
            ));
        }
    }
    if let Some(s) = m.min_interval {
        let (lo, hi) = MAIL_INTERVAL_SECS;
        if !(lo..=hi).contains(&s) {
            return Err(invalid(
                "notification mail min-interval",
                format!("{s} s is outside {lo}..{hi} s"),
            ));
        }
    }
    if complete {
        if m.from.is_empty() {
            return Err(invalid(
                "notification mail",
                "no sender: set notification mail from ADDRESS",
            ));
        }
        if m.recipients.is_empty() {
            return Err(invalid(
                "notification mail",
                "no recipient: set notification mail recipient ADDRESS",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::settings::EXAMPLE_LOG_CA;

    fn complete() -> MailNotification {
        MailNotification {
            from: "sms@example.com".into(),
            recipients: vec!["noc@example.com".into()],
            ..MailNotification::new("smtp.example.com".into(), MailSecurity::Starttls)
        }
    }

    #[test]
    fn mail_settings_are_checked() {
        let m = complete();
        check_mail(&m, true).unwrap();
        assert_eq!(m.port(), 587);
        assert_eq!(m.classes().len(), 6);
        let err = |m: &MailNotification| check_mail(m, true).unwrap_err().to_string();
        let mut bad = complete();
        bad.recipients
            .push("noc@example.com>\r\nRCPT TO:<x@y".into());
        assert!(err(&bad).contains("is not a mail address"));
        bad.recipients = vec!["noc@example.com".into(), "noc@example.com".into()];
        assert!(err(&bad).contains("twice"));
        bad.recipients.clear();
        assert!(err(&bad).contains("no recipient"));
        assert!(
            check_mail(&bad, false).is_ok(),
            "a set need not be complete"
        );
        let mut bad = complete();
        bad.username = "sms".into();
        assert!(err(&bad).contains("has no password"));
        bad.password = "pw".into();
        check_mail(&bad, true).unwrap();
        bad.security = MailSecurity::None;
        assert!(err(&bad).contains("only sent over TLS"));
        let mut bad = complete();
        bad.classes = vec!["audit".into(), "everything".into()];
        assert!(err(&bad).contains("\"everything\" is not one of"));
        let mut bad = complete();
        bad.min_interval = Some(5);
        assert!(err(&bad).contains("outside 60..86400"));
        let mut bad = complete();
        bad.server = "a b".into();
        assert!(err(&bad).contains("not an address"));
        let mut tls = complete();
        tls.ca_certificate = Some(EXAMPLE_LOG_CA.into());
        check_mail(&tls, true).unwrap();
        assert!(tls
            .ca_pem()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n"));
        tls.ca_certificate = Some("aGVsbG8=".into());
        assert!(err(&tls).contains("notification mail ca-certificate"));
    }
}

/// What sms-logd reports about mail in its status file
/// (`/var/lib/sms/logd/mail-status.json`), which `show logging` reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MailStatus {
    /// The server, `host:port`.
    pub server: String,
    /// Mails handed over to this server (counted across restarts).
    pub sent: u64,
    /// Events waiting for the next mail.
    pub pending: u64,
    /// When the last mail went (RFC 3339).
    pub last_sent: Option<String>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

//! E-mail notifications: the appliance's warnings and failures, sorted
//! into event classes, mailed to the administrators as digests.
//!
//! The first event of a quiet period is held for a short while
//! (`hold_secs`) so that what comes with it lands in the same mail; after
//! a mail, the next one waits at least `min_interval_secs`. A fleet-wide
//! failure (a thousand devices unreachable) is therefore one mail with the
//! counts per class and the first lines, not a thousand mails.

use crate::line::LogLine;
use crate::smtp::{self, Security, Submission};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many event lines one mail lists; the rest are counted.
pub const MAX_LISTED: usize = 100;

/// How many recipients may be configured.
pub const MAX_RECIPIENTS: usize = 8;

/// Events waiting for the mail task beyond this are counted, not kept.
const BACKLOG: usize = 4096;

/// What an event is about; the administrator picks the classes mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventClass {
    /// Package checks, downloads and activations (sms-updated).
    Update,
    /// Distribution to the devices (sms-distd).
    Distribution,
    /// The managed devices: unreachable, traps (sms-snmpd).
    Device,
    /// The HA pair (sms-had).
    Ha,
    /// The appliance's own firmware (rauc, slot selection).
    Firmware,
    /// Everything else on the appliance that warns or fails.
    System,
    /// Every audit record of the CLI (what the administrators did).
    Audit,
}

impl EventClass {
    /// Every class, in the order mails list them.
    pub const ALL: [EventClass; 7] = [
        EventClass::Update,
        EventClass::Distribution,
        EventClass::Device,
        EventClass::Ha,
        EventClass::Firmware,
        EventClass::System,
        EventClass::Audit,
    ];

    /// The name in settings and mails.
    pub fn as_str(self) -> &'static str {
        match self {
            EventClass::Update => "update",
            EventClass::Distribution => "distribution",
            EventClass::Device => "device",
            EventClass::Ha => "ha",
            EventClass::Firmware => "firmware",
            EventClass::System => "system",
            EventClass::Audit => "audit",
        }
    }

    /// The class named `name` (as in the settings).
    pub fn from_name(name: &str) -> Option<EventClass> {
        EventClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The class of a log line, if it is an event worth a mail: audit
    /// records always, other lines when they are warnings or worse (the
    /// program that logged decides the class, not the wording).
    pub fn of(line: &LogLine) -> Option<EventClass> {
        let app = line.app.as_deref()?;
        if app == "sms-audit" {
            return Some(EventClass::Audit);
        }
        if line.severity > 4 {
            return None;
        }
        Some(match app {
            "sms-updated" => EventClass::Update,
            "sms-distd" => EventClass::Distribution,
            "sms-snmpd" => EventClass::Device,
            "sms-had" => EventClass::Ha,
            "rauc" | "sms-slot" => EventClass::Firmware,
            _ => EventClass::System,
        })
    }
}

/// The mail settings (`[mail]` in logd.toml). Its `Debug` form masks the
/// password, so that a logged configuration never carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The mail server (relay or submission server).
    pub server: String,
    /// Its port (0: the protection's usual one: 587, 465 or 25).
    #[serde(default)]
    pub port: u16,
    /// How the connection is protected.
    #[serde(default = "default_security")]
    pub security: Security,
    /// The CA the server's certificate must chain to (PEM file; default
    /// the system's CA bundle).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The same in PEM text.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// User name for AUTH PLAIN, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// The file holding its password (root-only).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The password itself, from the administrator's settings (kept apart
    /// in sms-logd's secrets file there; never in this file).
    #[serde(skip)]
    pub password: Option<String>,
    /// The sender address.
    pub from: String,
    /// Who gets the mails.
    pub recipients: Vec<String>,
    /// Which event classes are mailed.
    #[serde(default = "default_classes")]
    pub classes: Vec<EventClass>,
    /// How long the first event waits for others to join its mail, s.
    #[serde(default = "default_hold")]
    pub hold_secs: u64,
    /// The least time between two mails, s.
    #[serde(default = "default_min_interval")]
    pub min_interval_secs: u64,
}

impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailConfig")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("ca_file", &self.ca_file)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("from", &self.from)
            .field("recipients", &self.recipients)
            .field("classes", &self.classes)
            .field("hold_secs", &self.hold_secs)
            .field("min_interval_secs", &self.min_interval_secs)
            .finish()
    }
}

fn default_security() -> Security {
    Security::Starttls
}

fn default_classes() -> Vec<EventClass> {
    EventClass::ALL[..6].to_vec()
}

fn default_hold() -> u64 {
    30
}

fn default_min_interval() -> u64 {
    900
}

/// What is wrong with the mail settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailConfigError {
    /// No server, or one with spaces.
    #[error("mail server {0:?} is not an address or a name")]
    BadServer(String),
    /// No recipient, or too many.
    #[error("{0} mail recipients configured; 1 to {MAX_RECIPIENTS} are allowed")]
    Recipients(usize),
    /// An address that is not `local@domain`.
    #[error("{0:?} is not a mail address (local@domain)")]
    BadAddress(String),
    /// A password without TLS.
    #[error("a mail password is only sent over TLS: use security starttls or tls")]
    PasswordInClear,
    /// A user name without a password.
    #[error("mail user {0:?} has no password (password_file, or the settings' password)")]
    NoPassword(String),
}

use sms_core::settings::valid_mail_address as valid_address;

impl MailConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), MailConfigError> {
        if self.server.is_empty() || self.server.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(MailConfigError::BadServer(self.server.clone()));
        }
        if self.recipients.is_empty() || self.recipients.len() > MAX_RECIPIENTS {
            return Err(MailConfigError::Recipients(self.recipients.len()));
        }
        for a in self.recipients.iter().chain(std::iter::once(&self.from)) {
            if !valid_address(a) {
                return Err(MailConfigError::BadAddress(a.clone()));
            }
        }
        if let Some(user) = &self.username {
            if self.security == Security::None {
                return Err(MailConfigError::PasswordInClear);
            }
            if self.password_file.is_none() && self.password.is_none() {
                return Err(MailConfigError::NoPassword(user.clone()));
            }
        }
        Ok(())
    }

    /// The port to use.
    pub fn port(&self) -> u16 {
        if self.port == 0 {
            self.security.default_port()
        } else {
            self.port
        }
    }
}

/// One event waiting for its mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it was received.
    pub at: OffsetDateTime,
    /// Its class.
    pub class: EventClass,
    /// The program that logged it.
    pub app: String,
    /// Its severity (0-7).
    pub severity: u8,
    /// Its text.
    pub message: String,
}

/// The events of the next mail: the first [`MAX_LISTED`] in full, all of
/// them counted per class.
#[derive(Debug, Default, Clone)]
pub struct Digest {
    listed: Vec<Event>,
    counts: BTreeMap<EventClass, u64>,
    total: u64,
}

impl Digest {
    /// Adds one event.
    pub fn add(&mut self, e: Event) {
        *self.counts.entry(e.class).or_default() += 1;
        self.total += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(e);
        }
    }

    /// Counts events that could not be kept (the task's backlog was full).
    pub fn add_lost(&mut self, n: u64, class: EventClass) {
        *self.counts.entry(class).or_default() += n;
        self.total += n;
    }

    /// How many events wait.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The mail: headers and body, CRLF line ends.
    pub fn compose(
        &self,
        hostname: &str,
        from: &str,
        to: &[String],
        now: OffsetDateTime,
    ) -> String {
        let per_class: Vec<String> = EventClass::ALL
            .iter()
            .filter_map(|c| self.counts.get(c).map(|n| format!("{n} {}", c.as_str())))
            .collect();
        let subject = format!(
            "[SMS {hostname}] {} event{}: {}",
            self.total,
            if self.total == 1 { "" } else { "s" },
            per_class.join(", ")
        );
        let date = now
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        let mut m = String::new();
        m.push_str(&format!("From: SMS {hostname} <{from}>\r\n"));
        m.push_str(&format!("To: {}\r\n", to.join(", ")));
        m.push_str(&format!("Subject: {}\r\n", one_line(&subject, 200)));
        m.push_str(&format!("Date: {date}\r\n"));
        m.push_str(&format!(
            "Message-ID: <{}.{}@{}>\r\n",
            now.unix_timestamp_nanos(),
            std::process::id(),
            one_line(hostname, 64).replace(' ', "")
        ));
        m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n");
        m.push_str(&format!(
            "The SMS appliance {hostname} reports {} event{} ({}).\r\n\r\n",
            self.total,
            if self.total == 1 { "" } else { "s" },
            per_class.join(", ")
        ));
        for e in &self.listed {
            let at =
                e.at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
            m.push_str(&format!(
                "{at} {} {} {}: {}\r\n",
                e.class.as_str(),
                severity_name(e.severity),
                e.app,
                one_line(&e.message, 900)
            ));
        }
        let more = self.total - self.listed.len() as u64;
        if more > 0 {
            m.push_str(&format!(
                "... and {more} more (the appliance's log and the syslog servers have them all).\r\n"
            ));
        }
        m
    }
}

fn severity_name(s: u8) -> &'static str {
    [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ]
    .get(usize::from(s))
    .copied()
    .unwrap_or("debug")
}

/// `s` on one line without control characters, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// When the next mail may go.
#[derive(Debug, Clone)]
pub struct Pace {
    hold: Duration,
    min_interval: Duration,
    last_sent: Option<Instant>,
    due: Option<Instant>,
}

impl Pace {
    /// A pace holding the first event `hold` and spacing mails by
    /// `min_interval`.
    pub fn new(hold: Duration, min_interval: Duration) -> Pace {
        Pace {
            hold,
            min_interval,
            last_sent: None,
            due: None,
        }
    }

    /// An event arrived at `now`: the mail is due after the hold, and not
    /// before the interval since the last one.
    pub fn event(&mut self, now: Instant) {
        if self.due.is_none() {
            let mut due = now + self.hold;
            if let Some(last) = self.last_sent {
                due = due.max(last + self.min_interval);
            }
            self.due = Some(due);
        }
    }

    /// When the mail is due, if one waits.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The mail went at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.due = None;
    }

    /// The mail could not go: try again later (the interval, between 5 s
    /// and a minute: a server that is down is not hammered even with no
    /// interval set).
    pub fn failed(&mut self, now: Instant) {
        let retry = self
            .min_interval
            .clamp(Duration::from_secs(5), Duration::from_secs(60));
        self.due = Some(now + retry);
    }
}

/// What `show logging` tells about mail (the record is sms-core's, which
/// the CLI reads).
pub use sms_core::settings::MailStatus;

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The settings are wrong.
    #[error(transparent)]
    Config(#[from] MailConfigError),
    /// The CA could not be read.
    #[error("mail server CA: {0}")]
    Tls(#[from] sms_core::tls::TlsError),
    /// The password file could not be read.
    #[error("reading the mail password {path}: {source}")]
    Password {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What the mail task is handed, in order.
enum Msg {
    /// An event for the next mail.
    Event(Event),
    /// Send what is pending now (shutdown), then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The mail task's handle: events go in, mails come out.
pub struct Notifier {
    classes: Vec<EventClass>,
    tx: mpsc::Sender<Msg>,
    lost: Arc<Mutex<BTreeMap<EventClass, u64>>>,
    status: Arc<Mutex<MailStatus>>,
}

/// The system's CA bundle, the default trust for a mail server.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Notifier {
    /// Checks the settings, reads CA and password, and starts the mail
    /// task (within a Tokio runtime).
    pub fn start(cfg: &MailConfig, hostname: &str) -> Result<Notifier, NotifierError> {
        cfg.validate()?;
        let tls = if cfg.security == Security::None {
            None
        } else {
            let label = format!("mail server {}", cfg.server);
            Some(Arc::new(match (&cfg.ca_pem, &cfg.ca_file) {
                (Some(pem), _) => sms_core::tls::client_config_from_pem(pem.as_bytes(), &label)?,
                (None, Some(f)) => sms_core::tls::client_config(f)?,
                (None, None) => sms_core::tls::client_config(std::path::Path::new(SYSTEM_CAS))?,
            }))
        };
        let auth = match (&cfg.username, &cfg.password_file) {
            (Some(user), _) if cfg.password.is_some() => {
                Some((user.clone(), cfg.password.clone().unwrap_or_default()))
            }
            (Some(user), Some(f)) => {
                let pw = std::fs::read_to_string(f).map_err(|source| NotifierError::Password {
                    path: f.display().to_string(),
                    source,
                })?;
                Some((user.clone(), pw.trim_end_matches(['\r', '\n']).to_string()))
            }
            _ => None,
        };
        let sub = Submission {
            host: cfg.server.clone(),
            port: cfg.port(),
            security: cfg.security,
            tls,
            helo: if hostname.is_empty() {
                "sms".into()
            } else {
                hostname.to_string()
            },
            auth,
        };
        let (tx, rx) = mpsc::channel(BACKLOG);
        let status = Arc::new(Mutex::new(MailStatus {
            server: format!("{}:{}", cfg.server, cfg.port()),
            ..MailStatus::default()
        }));
        let lost = Arc::new(Mutex::new(BTreeMap::new()));
        let task = MailTask {
            sub,
            from: cfg.from.clone(),
            to: cfg.recipients.clone(),
            hostname: hostname.to_string(),
            pace: Pace::new(
                Duration::from_secs(cfg.hold_secs),
                Duration::from_secs(cfg.min_interval_secs),
            ),
            status: status.clone(),
            lost: lost.clone(),
        };
        tokio::spawn(task.run(rx));
        Ok(Notifier {
            classes: cfg.classes.clone(),
            tx,
            lost,
            status,
        })
    }

    /// Takes a log line; if it is an event of a mailed class (and not
    /// this process's own, which would mail about failing to mail), it
    /// joins the next mail.
    pub fn submit(&self, line: &LogLine) {
        let Some(class) = EventClass::of(line) else {
            return;
        };
        if !self.classes.contains(&class) || line.pid == Some(std::process::id()) {
            return;
        }
        let e = Event {
            at: OffsetDateTime::now_utc(),
            class,
            app: line.app.clone().unwrap_or_default(),
            severity: line.severity,
            message: line.message.clone(),
        };
        if self.tx.try_send(Msg::Event(e)).is_err() {
            *lock(&self.lost).entry(class).or_default() += 1;
        }
    }

    /// Sends what is pending now, whatever the pace (at shutdown: a
    /// digest waiting for its interval would otherwise be lost). Returns
    /// when the attempt is over.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The mail status.
    pub fn status(&self) -> MailStatus {
        lock(&self.status).clone()
    }

    /// Continues the count of an earlier run (its status file) when it
    /// mailed the same server: a restart does not make `show logging`
    /// forget what was mailed.
    pub fn carry_over(&self, earlier: &MailStatus) {
        let mut st = lock(&self.status);
        if earlier.server == st.server {
            st.sent += earlier.sent;
            if st.last_sent.is_none() {
                st.last_sent = earlier.last_sent.clone();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MailTask {
    /// Sends the digest; on success it starts afresh, on failure it stays
    /// pending for the retry.
    async fn send(&mut self, digest: &mut Digest) {
        for (class, n) in std::mem::take(&mut *lock(&self.lost)) {
            digest.add_lost(n, class);
        }
        let text = digest.compose(
            &self.hostname,
            &self.from,
            &self.to,
            OffsetDateTime::now_utc(),
        );
        match smtp::send_mail(&self.sub, &self.from, &self.to, text.as_bytes()).await {
            Ok(()) => {
                tracing::info!(
                    "mailed {} event(s) to {}",
                    digest.total(),
                    self.to.join(", ")
                );
                self.pace.sent(Instant::now());
                let mut st = lock(&self.status);
                st.sent += 1;
                st.last_error = None;
                st.last_sent = OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok();
                *digest = Digest::default();
            }
            Err(e) => {
                tracing::warn!("mail to {} not sent: {e}", self.sub.host);
                self.pace.failed(Instant::now());
                lock(&self.status).last_error = Some(e.to_string());
            }
        }
    }
}

struct MailTask {
    sub: Submission,
    from: String,
    to: Vec<String>,
    hostname: String,
    pace: Pace,
    status: Arc<Mutex<MailStatus>>,
    lost: Arc<Mutex<BTreeMap<EventClass, u64>>>,
}

impl MailTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut digest = Digest::default();
        loop {
            let due = self.pace.due();
            let wait = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = rx.recv() => match m {
                    Some(Msg::Event(e)) => {
                        digest.add(e);
                        self.pace.event(Instant::now());
                    }
                    Some(Msg::Flush(done)) => {
                        if digest.total() > 0 {
                            self.send(&mut digest).await;
                        }
                        // The status is current before the flush is answered.
                        lock(&self.status).pending = digest.total();
                        let _ = done.send(());
                    }
                    None => return,
                },
                _ = wait => self.send(&mut digest).await,
            }
            lock(&self.status).pending = digest.total();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line(app: &str, severity: u8) -> LogLine {
        LogLine {
            facility: 3,
            severity,
            app: Some(app.into()),
            pid: Some(1),
            message: "m".into(),
        }
    }

    #[test]
    fn the_class_names_are_the_settings() {
        let names: Vec<&str> = EventClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, sms_core::settings::MAIL_CLASSES);
        for c in EventClass::ALL {
            assert_eq!(EventClass::from_name(c.as_str()), Some(c));
        }
        assert_eq!(EventClass::from_name("everything"), None);
        assert_eq!(
            default_classes()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            sms_core::settings::DEFAULT_MAIL_CLASSES
        );
    }

    #[test]
    fn the_program_and_severity_decide_the_class() {
        assert_eq!(
            EventClass::of(&line("sms-distd", 3)),
            Some(EventClass::Distribution)
        );
        assert_eq!(
            EventClass::of(&line("sms-distd", 4)),
            Some(EventClass::Distribution)
        );
        assert_eq!(EventClass::of(&line("sms-distd", 6)), None);
        assert_eq!(
            EventClass::of(&line("sms-audit", 5)),
            Some(EventClass::Audit)
        );
        assert_eq!(EventClass::of(&line("rauc", 3)), Some(EventClass::Firmware));
        assert_eq!(EventClass::of(&line("sshd", 2)), Some(EventClass::System));
        assert_eq!(
            EventClass::of(&LogLine {
                app: None,
                ..line("x", 0)
            }),
            None
        );
    }

    #[test]
    fn a_thousand_events_make_one_mail_listing_a_hundred() {
        let mut d = Digest::default();
        let at = OffsetDateTime::UNIX_EPOCH;
        for i in 0..1000 {
            d.add(Event {
                at,
                class: EventClass::Device,
                app: "sms-snmpd".into(),
                severity: 4,
                message: format!("device ips-{i} unreachable\nInjected: header"),
            });
        }
        d.add_lost(5, EventClass::Update);
        let m = d.compose(
            "sms-lab",
            "sms@example.com",
            &["ops@example.com".into()],
            at,
        );
        assert!(
            m.contains("Subject: [SMS sms-lab] 1005 events: 5 update, 1000 device\r\n"),
            "{m}"
        );
        assert!(m.contains("device ips-99 unreachable Injected: header"));
        assert!(!m.contains("ips-100 "));
        assert!(m.contains("... and 905 more"));
        assert!(!m.contains("\nInjected"));
    }

    #[test]
    fn mails_are_held_then_spaced() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pace::new(s(30), s(900));
        assert_eq!(p.due(), None);
        p.event(t0);
        p.event(t0 + s(10));
        assert_eq!(p.due(), Some(t0 + s(30)));
        p.sent(t0 + s(30));
        assert_eq!(p.due(), None);
        p.event(t0 + s(40));
        assert_eq!(p.due(), Some(t0 + s(930)));
        p.failed(t0 + s(930));
        assert_eq!(p.due(), Some(t0 + s(990)));
        let mut eager = Pace::new(s(0), s(0));
        eager.event(t0);
        assert_eq!(eager.due(), Some(t0));
        eager.failed(t0);
        assert_eq!(eager.due(), Some(t0 + s(5)));
    }

    #[test]
    fn settings_are_checked() {
        let mut c: MailConfig = toml::from_str(
            "server = \"smtp.example\"\nfrom = \"sms@example.com\"\nrecipients = [\"ops@example.com\"]\n",
        )
        .unwrap();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.port(), 587);
        assert_eq!(c.classes.len(), 6);
        c.recipients
            .push("ops@example.com>\r\nRCPT TO:<evil@x".into());
        assert!(matches!(c.validate(), Err(MailConfigError::BadAddress(_))));
        c.recipients = vec![];
        assert_eq!(c.validate(), Err(MailConfigError::Recipients(0)));
        c.recipients = vec!["ops@example.com".into()];
        c.username = Some("sms".into());
        assert_eq!(c.validate(), Err(MailConfigError::NoPassword("sms".into())));
        c.password_file = Some("/pw".into());
        c.security = Security::None;
        assert_eq!(c.validate(), Err(MailConfigError::PasswordInClear));
    }
}

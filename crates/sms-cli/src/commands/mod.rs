//! The commands of the CLI and what runs them.
//!
//! [`tree`] is the whole language (see [`crate::grammar`]); [`Cli::execute`]
//! runs one line: it matches the line, calls the daemons over D-Bus (the
//! update, distribution, NTP and SNMP daemons; systemd for units), writes
//! every command that changes anything to the audit log, and returns text
//! in which everything that came from outside has its control characters
//! neutralised. A line may end in `| json` for the daemons' JSON.

use crate::action::{Action, Cfg, Op};
use crate::audit::Audit;
use crate::configure::{self, Session, SettingsPaths};
use crate::grammar::{self, clean, ArgKind, Node, Parsed};
use sms_core::bus;
use sms_core::package::Family;
use sms_core::settings::SettingsStore;
use std::time::Duration;

mod backup;
mod render;
mod system;
mod tree;

pub use render::{clean_json, fields, help_text, table};
use render::{clean_multiline, name_of, opt, record, settings_text, yes_no};
pub use tree::tree;

/// Firmware version (all SMS OS components share it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Units `services restart` may touch.
pub const SERVICES: &[&str] = &[
    "sms-updated",
    "sms-distd",
    "sms-ntpd",
    "sms-snmpd",
    "sms-had",
];

/// What a command line produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Text to show; the command succeeded.
    Ok(String),
    /// Text to show; the command failed (exit status 1).
    Failed(String),
    /// Log out.
    Exit,
    /// Ask for these pass phrases without echo, then run the line again
    /// with them ([`Cli::set_secrets`]).
    Secret {
        /// One prompt per pass phrase.
        prompts: Vec<String>,
        /// The line to run with them.
        line: String,
    },
    /// Ask this question; run the line again with ` confirm` on "yes".
    Confirm {
        /// The question.
        question: String,
        /// The line to run when confirmed.
        line: String,
    },
}

/// The CLI's state: who runs it, the bus, the audit log.
pub struct Cli {
    user: String,
    bus: Option<zbus::Connection>,
    audit: Audit,
    rt: tokio::runtime::Runtime,
    paths: SettingsPaths,
    session: Option<Session>,
    secrets: Vec<String>,
    /// The pass phrase of the backup a `system restore` just showed, kept
    /// for its `confirm` (the next line) only.
    restore_pass: Option<(String, String)>,
}

/// Whether this process may write in `dir` (or, before the first commit
/// made it, in its nearest existing parent).
fn may_write(dir: &std::path::Path) -> bool {
    let mut d = Some(dir);
    while let Some(p) = d {
        if p.exists() {
            return nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
        }
        d = p.parent();
    }
    false
}

/// The system bus's socket, whatever the environment says.
const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// How long a daemon may take to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Cli {
    /// A CLI for `user` writing its audit log with `audit`; connects to the
    /// system bus's own socket when it can, or to `bus` (tests). The
    /// environment's DBUS_SYSTEM_BUS_ADDRESS is never used: a login could
    /// set it and point the CLI at daemons of its own.
    pub fn new(user: String, audit: Audit, bus: Option<&str>) -> std::io::Result<Cli> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let address = bus.unwrap_or(SYSTEM_BUS).to_string();
        let bus = rt.block_on(async {
            let connect = async {
                zbus::connection::Builder::address(address.as_str())?
                    .build()
                    .await
            };
            tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .ok()
                .and_then(|r| r.ok())
        });
        Ok(Cli {
            user,
            bus,
            audit,
            rt,
            paths: SettingsPaths::default(),
            session: None,
            secrets: Vec::new(),
            restore_pass: None,
        })
    }

    /// Keeps settings in `paths` instead of the appliance's places.
    pub fn with_settings(mut self, paths: SettingsPaths) -> Cli {
        self.paths = paths;
        self
    }

    fn store(&self) -> SettingsStore {
        SettingsStore::new(&self.paths.dir)
    }

    /// Where settings and passwords are kept.
    pub fn paths(&self) -> &SettingsPaths {
        &self.paths
    }

    /// Writes a line to the audit log for something done outside a command
    /// line (the first-boot setup's password).
    pub fn audit_note(&self, what: &str, result: &str) -> Result<(), String> {
        self.audit
            .record(&self.user, what, result)
            .map_err(|e| format!("the audit log cannot be written: {e}"))
    }

    /// The commands of the current mode.
    pub fn tree(&self) -> Vec<Node> {
        if self.session.is_some() {
            let operational = tree()
                .into_iter()
                .filter(|n| !matches!(n.word, "configure" | "exit" | "logout" | "help"))
                .collect();
            configure::tree(operational)
        } else {
            tree()
        }
    }

    /// Whether configuration mode is on (the prompt ends in `#`).
    pub fn configuring(&self) -> bool {
        self.session.is_some()
    }

    /// Pass phrases for the next line run (asked by the shell after
    /// [`Outcome::Secret`]).
    pub fn set_secrets(&mut self, secrets: Vec<String>) {
        self.secrets = secrets;
    }

    /// Whether `line` carries a secret as an argument (an SNMP community):
    /// such lines are not kept in the history.
    pub fn holds_secret(&self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        match grammar::parse(&self.tree(), &words) {
            Ok(p) => p.args.iter().any(|(kind, _)| *kind == ArgKind::Community),
            // A line that does not parse is kept (it runs nothing), unless
            // it names a community at all.
            Err(_) => words.iter().any(|w| w.eq_ignore_ascii_case("community")),
        }
    }

    /// The logged-in user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Live values for completion of an argument type.
    pub fn live(&self, kind: ArgKind) -> Vec<String> {
        let mut out: Vec<String> = match kind {
            ArgKind::Name => self
                .ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c).await?.devices().await
                })
                .map(|d| d.0.into_iter().flat_map(|d| [d.name, d.group]).collect())
                .unwrap_or_default(),
            ArgKind::Version => self
                .ask("Updater1", |c| async move {
                    bus::Updater1Proxy::new(&c).await?.list("dv").await
                })
                .map(|l| l.0.into_iter().map(|p| p.version).collect())
                .unwrap_or_default(),
            _ => return Vec::new(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// Runs `call` on the bus, waiting at most [`CALL_TIMEOUT`]; errors
    /// name `daemon` (a daemon's own refusal is passed on as it said it).
    fn ask<T, F, Fut>(&self, daemon: &str, call: F) -> Result<T, String>
    where
        F: FnOnce(zbus::Connection) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<T>>,
    {
        self.ask_within(daemon, CALL_TIMEOUT, call)
    }

    /// [`Cli::ask`] with its own time limit.
    fn ask_within<T, F, Fut>(&self, daemon: &str, limit: Duration, call: F) -> Result<T, String>
    where
        F: FnOnce(zbus::Connection) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<T>>,
    {
        let Some(conn) = self.bus.clone() else {
            return Err("the system bus is not reachable".into());
        };
        self.rt.block_on(async {
            // Ctrl-C gives the prompt back (the daemon may still finish
            // what it was asked); SIGINT is otherwise ignored.
            let answer = tokio::select! {
                a = tokio::time::timeout(limit, call(conn)) => a,
                _ = tokio::signal::ctrl_c() => {
                    return Err(format!(
                        "interrupted (Ctrl-C) while waiting for {daemon}; it may still finish what it was asked"
                    ))
                }
            };
            match answer {
                Err(_) => Err(format!(
                    "{daemon} did not answer within {} s",
                    limit.as_secs()
                )),
                Ok(Err(zbus::Error::MethodError(name, _, _)))
                    if name.as_str() == "org.freedesktop.DBus.Error.AccessDenied" =>
                {
                    Err(format!(
                        "not allowed for your account's role: the system bus refused the call to {daemon}"
                    ))
                }
                Ok(Err(zbus::Error::MethodError(_, Some(msg), _))) => Err(msg),
                Ok(Err(zbus::Error::FDO(e))) => match *e {
                    zbus::fdo::Error::InvalidArgs(msg) | zbus::fdo::Error::Failed(msg) => Err(msg),
                    other => Err(format!("{daemon}: {other}")),
                },
                Ok(Err(e)) => Err(format!("{daemon}: {e}")),
                Ok(Ok(v)) => Ok(v),
            }
        })
    }

    /// Runs one command line.
    pub fn execute(&mut self, line: &str) -> Outcome {
        let (line, json) = match line.trim().strip_suffix("| json") {
            Some(l) => (l.trim_end(), true),
            None => (line.trim(), false),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            return Outcome::Ok(String::new());
        }
        let parsed = match grammar::parse(&self.tree(), &words) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(format!("% {e}")),
        };
        let op = match parsed.action {
            Action::Cfg(_) | Action::Op(Op::Configure) => {
                let secrets = std::mem::take(&mut self.secrets);
                return self.configure(&parsed, line, secrets);
            }
            Action::Op(op) => op,
        };
        if op == Op::HaSwap && parsed.keywords.last() != Some(&"confirm") {
            return Outcome::Confirm {
                question:
                    "Hand the active role to the peer? This node stops taking writes now. [yes/NO] "
                        .into(),
                line: format!("{} confirm", parsed.keywords.join(" ")),
            };
        }
        if op == Op::HaFailover && parsed.keywords.last() != Some(&"confirm") {
            return Outcome::Confirm {
                question: "Make this node the active one at epoch + 1? Without a witness, only do this when the peer is down: the old primary stands by when it returns. [yes/NO] ".into(),
                line: format!("{} confirm", parsed.keywords.join(" ")),
            };
        }
        if matches!(op, Op::SystemReboot | Op::SystemShutdown)
            && parsed.keywords.last() != Some(&"confirm")
        {
            let what = if op == Op::SystemReboot {
                "reboot"
            } else {
                "power off"
            };
            return Outcome::Confirm {
                question: format!("Really {what} the appliance? Every service stops. [yes/NO] "),
                line: format!("{} confirm", parsed.keywords.join(" ")),
            };
        }
        // A restore's pass phrase lives for the confirmation line only.
        let restore_pass = self.restore_pass.take();
        if op == Op::SystemBackupPassPhrase {
            let secrets = std::mem::take(&mut self.secrets);
            let prompts = [
                "Pass phrase for scheduled backups (12 characters or more, never stored): ",
                "Pass phrase again: ",
            ];
            if secrets.len() < prompts.len() {
                return Outcome::Secret {
                    prompts: prompts.iter().map(|p| p.to_string()).collect(),
                    line: line.to_string(),
                };
            }
            let result = if secrets[0] != secrets[1] {
                Err("the two pass phrases differ; nothing changed".to_string())
            } else {
                backup::call(
                    &self.paths.backup_socket,
                    &sms_core::backup::BackupRequest::Enrol {
                        passphrase: secrets[0].clone(),
                    },
                )
                .map(|a| a.text)
            };
            if let Some(refused) = self.record(&parsed, &result) {
                return refused;
            }
            return match result {
                Ok(text) => Outcome::Ok(text),
                Err(e) => Outcome::Failed(format!("% {}", clean_multiline(&e))),
            };
        }
        if matches!(op, Op::SystemBackup | Op::SystemRestore) {
            let name = parsed.args.first().map(|a| a.1.clone()).unwrap_or_default();
            let confirm = parsed.keywords.last() == Some(&"confirm");
            // Nothing is asked when there is nowhere to send or fetch from.
            if let Ok(c) = self.store().committed() {
                if c.backup.is_none() {
                    self.secrets.clear();
                    return Outcome::Failed(
                        "% no backup server is configured: in configuration mode, set system backup server HOST user NAME and set system backup host-key TYPE BASE64".into(),
                    );
                }
            }
            let mut secrets = std::mem::take(&mut self.secrets);
            if op == Op::SystemRestore && confirm && secrets.is_empty() {
                if let Some((_, pass)) = restore_pass.filter(|(n, _)| *n == name) {
                    secrets = vec![pass];
                }
            }
            let prompts: &[&str] = if op == Op::SystemBackup {
                &[
                    "Pass phrase for this backup (12 characters or more, never stored): ",
                    "Pass phrase again: ",
                ]
            } else {
                &["Pass phrase of the backup: "]
            };
            if secrets.len() < prompts.len() {
                return Outcome::Secret {
                    prompts: prompts.iter().map(|p| p.to_string()).collect(),
                    line: line.to_string(),
                };
            }
            let result = if op == Op::SystemBackup {
                if secrets[0] != secrets[1] {
                    Err("the two pass phrases differ; no backup taken".to_string())
                } else {
                    backup::call(
                        &self.paths.backup_socket,
                        &sms_core::backup::BackupRequest::Backup {
                            passphrase: secrets[0].clone(),
                            packages: parsed.keywords.contains(&"packages"),
                        },
                    )
                    .map(|a| a.text)
                }
            } else {
                let answer = backup::call(
                    &self.paths.backup_socket,
                    &sms_core::backup::BackupRequest::Restore {
                        name: name.clone(),
                        passphrase: secrets[0].clone(),
                        confirm,
                    },
                );
                match answer {
                    Ok(a) if !confirm => {
                        self.restore_pass = Some((name.clone(), secrets[0].clone()));
                        return Outcome::Confirm {
                            question: format!(
                                "{}\n{}\nRestore it? The settings, stores and keys above are replaced and the daemons restart. [yes/NO] ",
                                a.plan.join("\n"),
                                a.text
                            ),
                            line: format!("system restore {name} confirm"),
                        };
                    }
                    other => other.map(|a| a.text),
                }
            };
            if confirm || op == Op::SystemBackup {
                if let Some(refused) = self.record(&parsed, &result) {
                    return refused;
                }
            }
            return match result {
                Ok(text) => Outcome::Ok(text),
                Err(e) => Outcome::Failed(format!("% {}", clean_multiline(&e))),
            };
        }
        let result = if op == Op::Password {
            let secrets = std::mem::take(&mut self.secrets);
            let other = parsed
                .args
                .first()
                .map(|a| a.1.clone())
                .filter(|u| *u != self.user);
            let prompts: &[&str] = if other.is_some() {
                &["New password: ", "New password again: "]
            } else {
                &[
                    "Current password: ",
                    "New password: ",
                    "New password again: ",
                ]
            };
            if secrets.len() < prompts.len() {
                return Outcome::Secret {
                    prompts: prompts.iter().map(|p| p.to_string()).collect(),
                    line: line.to_string(),
                };
            }
            match other {
                Some(account) => {
                    crate::account::set_role_password(&self.paths, &self.user, &account, &secrets)
                }
                None => crate::account::change_password(&self.paths, &self.user, &secrets),
            }
        } else {
            self.run(op, &parsed, json)
        };
        if op.changes_state() {
            if let Some(refused) = self.record(&parsed, &result) {
                return refused;
            }
        }
        match result {
            Ok(text) if op == Op::Exit && text.is_empty() => Outcome::Exit,
            Ok(text) => Outcome::Ok(text),
            Err(e) => Outcome::Failed(format!("% {}", clean(&e))),
        }
    }

    /// Writes a state-changing command and its result to the audit log;
    /// the outcome to show instead when the log cannot be written.
    fn record(&self, parsed: &Parsed, result: &Result<String, String>) -> Option<Outcome> {
        let what = parsed.words.join(" ");
        let res = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        self.audit.record(&self.user, &what, &res).err().map(|e| {
            Outcome::Failed(format!(
                "% the audit log cannot be written ({e}); nothing else was done after the command"
            ))
        })
    }

    fn configure(&mut self, p: &Parsed, line: &str, secrets: Vec<String>) -> Outcome {
        let cfg = match p.action {
            Action::Cfg(c) => Some(c),
            Action::Op(_) => None,
        };
        let needed = cfg.map(configure::secrets_needed).unwrap_or(&[]);
        if secrets.len() < needed.len() {
            return Outcome::Secret {
                prompts: needed.iter().map(|s| s.to_string()).collect(),
                line: line.to_string(),
            };
        }
        let store = self.store();
        if cfg.is_none() {
            // The settings directory is the administrator's: the kernel
            // refuses anyone else's commit; say so before anything is staged.
            if !may_write(&self.paths.dir) {
                return Outcome::Failed(
                    "% configuration mode is for administrators: this account may show the configuration (show configuration), not change it".into(),
                );
            }
            return match store.committed() {
                Ok(c) => {
                    self.session = Some(Session {
                        base: c.clone(),
                        candidate: c,
                    });
                    Outcome::Ok(
                        "configuration mode: set/delete stage changes; compare, commit, discard, rollback; exit to leave".into(),
                    )
                }
                Err(e) => Outcome::Failed(format!("% the committed settings cannot be read: {e}")),
            };
        }
        let Some(session) = self.session.as_mut() else {
            return Outcome::Failed("% not in configuration mode (type configure)".into());
        };
        match cfg {
            Some(Cfg::Exit)
                if !crate::setlines::diff(&session.base, &session.candidate).is_empty() =>
            {
                return Outcome::Failed(
                    "% uncommitted changes: commit them, `discard`, or `exit discard`".into(),
                )
            }
            Some(Cfg::Exit | Cfg::ExitDiscard) => {
                self.session = None;
                return Outcome::Ok(String::new());
            }
            _ => {}
        }
        let changes = crate::setlines::diff(&session.base, &session.candidate);
        let result = match cfg {
            Some(c) => configure::apply(c, session, &store, &self.paths, p, &secrets),
            None => Ok(String::new()),
        };
        if cfg == Some(Cfg::Commit) && !changes.is_empty() {
            let res = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("failed: {}", e.lines().last().unwrap_or_default()),
            };
            let what = format!("commit: {}", changes.join("; "));
            if let Err(e) = self.audit.record(&self.user, &what, &res) {
                return Outcome::Failed(format!("% the audit log cannot be written ({e})"));
            }
        }
        match result {
            Ok(t) => Outcome::Ok(t),
            Err(e) => Outcome::Failed(format!("% {}", clean_multiline(&e))),
        }
    }

    fn run(&mut self, op: Op, p: &Parsed, json: bool) -> Result<String, String> {
        let arg = |i: usize| p.args.get(i).map(|a| a.1.clone()).unwrap_or_default();
        let channel = || {
            if p.keywords.contains(&"tos") {
                "tos"
            } else {
                "dv"
            }
        };
        match op {
            Op::Exit => Ok(String::new()),
            Op::Help => Ok(help_text(&self.tree())),
            Op::Whoami => Ok(clean(&self.user)),
            Op::ShowVersion => {
                let host = sms_core::daemon::host_name();
                let slot = system::booted_slot().unwrap_or_else(|| "-".into());
                let (dv, tos) = match self.ask("Updater1", |c| async move {
                    bus::Updater1Proxy::new(&c).await?.status().await
                }) {
                    Ok(s) => (opt(&s.0.active_dv), opt(&s.0.active_tos)),
                    Err(_) => (
                        "unknown (update daemon not answering)".into(),
                        "unknown".into(),
                    ),
                };
                // The development layer says so (image/layers/development.sh).
                let layer = std::fs::read_to_string("/etc/sms/image-layer")
                    .map(|t| t.trim().to_string())
                    .unwrap_or_else(|_| "production".into());
                Ok(format!(
                    "SMS OS {VERSION} (build {})\nimage: {}\nhost name: {}\nbooted slot: {}\nactive DV: {}\nactive TOS: {}",
                    option_env!("SMS_BUILD").unwrap_or("development"),
                    clean(&layer),
                    clean(&host),
                    clean(&slot),
                    clean(&dv),
                    clean(&tos)
                ))
            }
            Op::ShowSystem => Ok(system::system_text()),
            Op::ShowLogging => {
                let c = self.store().committed().map_err(|e| e.to_string())?;
                let status = std::fs::read(&self.paths.log_status)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        serde_json::from_slice::<Vec<sms_core::settings::LogServerStatus>>(&b)
                            .map_err(|e| e.to_string())
                    });
                let mail = std::fs::read(self.paths.log_status.with_file_name("mail-status.json"))
                    .ok()
                    .and_then(|b| {
                        serde_json::from_slice::<sms_core::settings::MailStatus>(&b).ok()
                    });
                Ok(render::logging_text(&c, status, mail, json))
            }
            Op::ShowHa => {
                let c = self.store().committed().map_err(|e| e.to_string())?;
                match self.ask("Ha1", |c| async move {
                    bus::Ha1Proxy::new(&c).await?.status().await
                }) {
                    Ok(s) => Ok(record(&s.0, json, render::ha_text)),
                    Err(e) => Ok(format!(
                        "{}\nstate: unknown (the HA daemon: {e})",
                        settings_text(op, &c)
                    )),
                }
            }
            Op::ShowHaIdentity => self.ask("Ha1", |c| async move {
                bus::Ha1Proxy::new(&c).await?.identity().await
            }),
            Op::ShowDns | Op::ShowProxy | Op::ShowConfiguration => {
                let c = self.store().committed().map_err(|e| e.to_string())?;
                Ok(settings_text(op, &c))
            }
            Op::Password => Err("the password command needs its pass phrases".into()),
            Op::Who => self.who(),
            Op::ShowFiles => {
                let files = crate::files::list(&self.paths.files)?;
                let rows: Vec<FileRow> = files
                    .into_iter()
                    .map(|(name, bytes, t)| FileRow {
                        name,
                        bytes,
                        modified: rfc3339(t),
                    })
                    .collect();
                Ok(record(&rows, json, |r| {
                    table(
                        r,
                        &[
                            ("NAME", &|f: &FileRow| f.name.clone()),
                            ("BYTES", &|f| f.bytes.to_string()),
                            ("MODIFIED", &|f| f.modified.clone()),
                        ],
                    )
                }))
            }
            Op::ShowServices => Ok(self.services_text()),
            Op::ShowDv | Op::ShowTos => {
                let ch = if op == Op::ShowDv { "dv" } else { "tos" };
                let list = self.ask("Updater1", |c| async move {
                    bus::Updater1Proxy::new(&c).await?.list(ch).await
                })?;
                Ok(record(&list.0, json, |r| {
                    table(
                        r,
                        &[
                            ("VERSION", &|p: &bus::InstalledPackage| p.version.clone()),
                            ("PLATFORM", &|p| opt(&p.family)),
                            ("ACTIVE", &|p| yes_no(p.active)),
                            ("BYTES", &|p| p.length.to_string()),
                        ],
                    )
                }))
            }
            Op::ShowUpdate => {
                let s = self.ask("Updater1", |c| async move {
                    bus::Updater1Proxy::new(&c).await?.status().await
                })?;
                Ok(record(&s.0, json, fields))
            }
            Op::ShowDevices => {
                let list = self.devices()?;
                Ok(record(&list, json, |r| {
                    table(
                        r,
                        &[
                            ("NAME", &|d: &bus::Device| d.name.clone()),
                            ("ADDRESS", &|d| d.address.to_string()),
                            ("GROUP", &|d| d.group.clone()),
                            ("PLATFORM", &|d| d.family.to_string()),
                            ("DV", &|d| opt(&d.dv)),
                            ("TOS", &|d| opt(&d.tos)),
                            ("STATE", &|d| d.state.as_str().to_string()),
                        ],
                    )
                }))
            }
            Op::ShowDevice => {
                let d = self.device(&arg(0))?;
                Ok(record(&d, json, fields))
            }
            Op::ShowJobs => {
                let jobs = self.ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c).await?.jobs().await
                })?;
                Ok(record(&jobs.0, json, |r| {
                    table(
                        r,
                        &[
                            ("JOB", &|j: &bus::JobRecord| j.id.to_string()),
                            ("CHANNEL", &|j| j.channel.to_string()),
                            ("VERSION", &|j| j.version.to_string()),
                            ("TARGET", &|j| j.target.to_string()),
                            ("STATE", &|j| name_of(&j.state)),
                        ],
                    )
                }))
            }
            Op::ShowEvents => {
                let events = self.ask("Snmp1", |c| async move {
                    bus::Snmp1Proxy::new(&c).await?.latest_events(20).await
                })?;
                Ok(record(&events.0, json, |r| {
                    table(
                        r,
                        &[
                            ("#", &|e: &bus::TrapEvent| e.seq.to_string()),
                            ("TIME", &|e| e.time.clone()),
                            ("SOURCE", &|e| e.source.clone()),
                            ("VER", &|e| e.version.clone()),
                            ("TRAP", &|e| e.trap_oid.clone()),
                        ],
                    )
                }))
            }
            Op::ShowNtp => {
                let s = self.ask("Ntp1", |c| async move {
                    bus::Ntp1Proxy::new(&c).await?.status().await
                })?;
                Ok(record(&s.0, json, fields))
            }
            Op::ShowSnmp => {
                let s = self.ask("Snmp1", |c| async move {
                    bus::Snmp1Proxy::new(&c).await?.status().await
                })?;
                Ok(record(&s.0, json, fields))
            }
            Op::ShowAudit => Ok(self.audit.tail(50).map_err(|e| e.to_string())?),
            Op::UpdateDvRefresh | Op::UpdateTosRefresh => {
                let ch = if op == Op::UpdateDvRefresh {
                    "dv"
                } else {
                    "tos"
                };
                let list = self.ask("Updater1", |c| async move {
                    bus::Updater1Proxy::new(&c).await?.refresh(ch).await
                })?;
                Ok(record(&list.0, json, |r| {
                    table(
                        r,
                        &[
                            ("VERSION", &|v: &bus::AvailableVersion| v.version.clone()),
                            ("BYTES", &|v| v.length.to_string()),
                            ("DOWNLOADED", &|v| yes_no(v.downloaded)),
                        ],
                    )
                }))
            }
            Op::UpdateDvCheck => {
                let said = self.ask("Updater1", |c| async move {
                    bus::Updater1Proxy::new(&c).await?.check_now().await
                })?;
                Ok(clean(&said))
            }
            Op::Download | Op::Activate => {
                let (ch, version) = (channel(), arg(0));
                let said = self.ask("Updater1", |c| async move {
                    let updater = bus::Updater1Proxy::new(&c).await?;
                    if op == Op::Download {
                        updater.download(ch, &version).await
                    } else {
                        updater.activate(ch, &version).await
                    }
                })?;
                Ok(clean(&said))
            }
            Op::Distribute => {
                let ch = if p.keywords.get(1) == Some(&"tos") {
                    "tos"
                } else {
                    "dv"
                };
                let target = match (p.keywords.last(), p.args.get(1)) {
                    (Some(&"all"), _) => "all".to_string(),
                    (Some(&"group"), Some((_, g))) => format!("group:{g}"),
                    (Some(&"device"), Some((_, d))) => format!("device:{d}"),
                    _ => return Err("a target is needed: all, group NAME or device NAME".into()),
                };
                let version = arg(0);
                let job = self.ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c)
                        .await?
                        .distribute(ch, &version, &target)
                        .await
                })?;
                Ok(record(&job.0, json, fields))
            }
            Op::JobStatus => {
                let id = job_number(&arg(0))?;
                let report = self.ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c).await?.job(id).await
                })?;
                Ok(record(&report.0, json, fields))
            }
            Op::JobCancel => {
                let id = job_number(&arg(0))?;
                self.ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c).await?.cancel_job(id).await
                })?;
                Ok(format!("job {id} cancelled"))
            }
            Op::DevicesAdd => {
                let family = match p.keywords.iter().find(|k| k.contains("00")) {
                    Some(&"50-100e") => Family::F50To100E,
                    Some(&"5000e") => Family::F5000E,
                    _ => Family::F200To2400,
                };
                let mut rest = p.args.iter().skip(2);
                let mut group = "default".to_string();
                let mut port = 443u16;
                if p.keywords.contains(&"group") {
                    group = rest.next().map(|a| a.1.clone()).unwrap_or(group);
                }
                if p.keywords.contains(&"port") {
                    port = port_number(&rest.next().map(|a| a.1.clone()).unwrap_or_default())?;
                }
                let address = arg(1)
                    .parse()
                    .map_err(|_| format!("{}: not an address", arg(1)))?;
                let device = bus::Device::new(arg(0), address, port, family, group.clone());
                self.ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c)
                        .await?
                        .add_devices(bus::Json(vec![device]))
                        .await
                })?;
                Ok(format!(
                    "device {} added to group {}",
                    arg(0),
                    clean(&group)
                ))
            }
            Op::DevicesRemove => {
                let name = arg(0);
                self.ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c)
                        .await?
                        .remove_device(&name)
                        .await
                })?;
                Ok(format!("device {} removed", arg(0)))
            }
            Op::DevicesEdit => {
                let mut d = self.device(&arg(0))?;
                let field = p.keywords.last().copied().unwrap_or_default();
                match field {
                    "port" => d.port = port_number(&arg(1))?,
                    "address" => {
                        d.address = arg(1)
                            .parse()
                            .map_err(|_| format!("{}: not an address", arg(1)))?
                    }
                    _ => d.group = arg(1),
                }
                self.ask("Distributor1", |c| async move {
                    bus::Distributor1Proxy::new(&c)
                        .await?
                        .edit_device(bus::Json(d))
                        .await
                })?;
                Ok(format!("device {}: {field} is now {}", arg(0), arg(1)))
            }
            Op::DevicesGroups => {
                let mut groups: std::collections::BTreeMap<String, usize> = Default::default();
                for d in self.devices()? {
                    *groups.entry(d.group).or_default() += 1;
                }
                let rows: Vec<GroupRow> = groups
                    .into_iter()
                    .map(|(group, devices)| GroupRow { group, devices })
                    .collect();
                Ok(record(&rows, json, |r| {
                    table(
                        r,
                        &[
                            ("GROUP", &|g: &GroupRow| g.group.clone()),
                            ("DEVICES", &|g| g.devices.to_string()),
                        ],
                    )
                }))
            }
            Op::ServicesRestart => self.restart(&arg(0)),
            Op::ShowLog => system::journal(&arg(0)),
            Op::SystemBackupList => backup::call(
                &self.paths.backup_socket,
                &sms_core::backup::BackupRequest::List,
            )
            .map(|a| a.text),
            Op::ShowBackup => {
                let c = self.store().committed().map_err(|e| e.to_string())?;
                let server = match &c.backup {
                    Some(b) => format!(
                        "server     {}@{}:{}\ndirectory  {}\nkeep       {}\nhost key   {}",
                        b.user,
                        b.server,
                        b.port_or_default(),
                        b.directory.as_deref().unwrap_or("(the account's home)"),
                        b.keep_or_default(),
                        if b.host_key.is_empty() {
                            "-"
                        } else {
                            &b.host_key
                        }
                    ),
                    None => "server     (none: set system backup server ... in configuration mode)"
                        .into(),
                };
                let key = backup::call(
                    &self.paths.backup_socket,
                    &sms_core::backup::BackupRequest::PublicKey,
                )
                .map(|a| a.text)
                .unwrap_or_else(|e| format!("({e})"));
                let last = std::fs::read(&self.paths.backup_status).ok().and_then(|b| {
                    serde_json::from_slice::<sms_core::backup::BackupStatus>(&b).ok()
                });
                let last = match last {
                    None => "none taken yet".to_string(),
                    Some(st) => {
                        let by = if st.scheduled { " (scheduled)" } else { "" };
                        match (&st.name, &st.error) {
                            (Some(name), _) => format!(
                                "{name} ({} KiB), {}{by}",
                                st.bytes.div_ceil(1024),
                                st.attempted
                            ),
                            (None, e) => format!(
                                "FAILED {}{by}: {}",
                                st.attempted,
                                clean(e.as_deref().unwrap_or("unknown reason"))
                            ),
                        }
                    }
                };
                let enrolment = std::fs::read(
                    self.paths
                        .backup_status
                        .parent()
                        .and_then(|p| p.parent())
                        .unwrap_or(std::path::Path::new("/"))
                        .join(sms_core::backup::BACKUP_ENROLMENT),
                )
                .ok()
                .and_then(|b| {
                    serde_json::from_slice::<sms_core::backup::EnrolmentSummary>(&b).ok()
                });
                let schedule = match (
                    c.backup.as_ref().and_then(|b| b.schedule.as_ref()),
                    &enrolment,
                ) {
                    (None, _) => {
                        "on demand only (set system backup schedule ... in configuration mode)"
                            .to_string()
                    }
                    (Some(s), Some(e)) => format!(
                        "{}, next {}\nsealed to  the pass phrase enrolled {} (key {})",
                        s.describe(),
                        s.next_due(time::OffsetDateTime::now_utc().unix_timestamp())
                            .map(rfc3339)
                            .unwrap_or_default(),
                        e.created,
                        sms_core::backup::fingerprint(&e.public)
                    ),
                    (Some(s), None) => format!(
                        "{}: NOT TAKEN until a pass phrase is enrolled: system backup pass-phrase",
                        s.describe()
                    ),
                };
                Ok(format!(
                    "{server}\nschedule   {schedule}\nlast backup {last}\nappliance key (authorise it for the account on the server):\n{key}"
                ))
            }
            Op::SystemBackup | Op::SystemRestore | Op::SystemBackupPassPhrase => {
                Err("handled before".into())
            }
            Op::HaFailover => self.ask("Ha1", |c| async move {
                bus::Ha1Proxy::new(&c).await?.failover().await
            }),
            Op::HaSwap => self.ask("Ha1", |c| async move {
                bus::Ha1Proxy::new(&c).await?.swap().await
            }),
            Op::SystemReboot => self.power(true),
            Op::SystemShutdown => self.power(false),
            Op::Configure => Err("configure: handled before".into()),
        }
    }

    fn devices(&self) -> Result<Vec<bus::Device>, String> {
        self.ask("Distributor1", |c| async move {
            bus::Distributor1Proxy::new(&c).await?.devices().await
        })
        .map(bus::Json::into_inner)
    }

    fn device(&self, name: &str) -> Result<bus::Device, String> {
        self.ask("Distributor1", |c| async move {
            bus::Distributor1Proxy::new(&c).await?.device(name).await
        })
        .map(bus::Json::into_inner)
    }
}

/// A saved file as `show files` lists it.
#[derive(serde::Serialize)]
struct FileRow {
    name: String,
    bytes: u64,
    modified: String,
}

/// A group as `devices groups` lists it.
#[derive(serde::Serialize)]
struct GroupRow {
    group: String,
    devices: usize,
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn job_number(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| "not a job number".to_string())
}

fn port_number(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| "the port is 1 to 65535".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_help_line_and_parses() {
        let h = help_text(&tree());
        for c in [
            "show version",
            "show device <name>",
            "distribute dv <version> to group <name>",
            "services restart <name>",
            "exit",
        ] {
            assert!(h.contains(c), "{c} missing from help:\n{h}");
        }
        for line in [
            "sh ver",
            "distr dv 4.0.0.1 to gr lab",
            "serv rest sms-snmpd",
            "sh dist jobs",
            "upd dv downl 4.0.0.2",
        ] {
            let words: Vec<&str> = line.split_whitespace().collect();
            grammar::parse(&tree(), &words).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn tables_neutralise_what_came_from_outside() {
        let rows = vec![GroupRow {
            group: "evil\u{1b}]0;owned\u{7}".into(),
            devices: 1,
        }];
        let t = table(
            &rows,
            &[
                ("GROUP", &|g: &GroupRow| g.group.clone()),
                ("DEVICES", &|g| g.devices.to_string()),
            ],
        );
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(t.contains("owned"), "{t:?}");
        let j = clean_json(&serde_json::to_value(&rows).unwrap());
        assert!(!j.contains('\u{1b}'), "{j}");
    }
}

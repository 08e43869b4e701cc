//! The backup service: what `sms-backup serve` does for one connection of
//! the CLI (systemd starts it per connection, the socket on standard input
//! and output). One backup or restore at a time; the backup server comes
//! from the committed settings; the appliance's own SSH key for it is made
//! on first use. The service has no network: archives travel through the
//! transfer step ([`crate::transfer`]).

use crate::archive::Enrolment;
use crate::capture::{capture, CaptureOptions, Sealing, StoreAccess};
use crate::layout::Layout;
use crate::restore;
use crate::sftp::backup_name;
use crate::transfer::{self, Transfer, TransferOp, TransferRequest, INCOMING, KEY, OUTGOING};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sms_core::backup::{BackupReply, BackupRequest, BACKUP_ENROLMENT};
use sms_core::settings::{BackupServer, Settings};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Where the service keeps its lock.
pub const WORK_DIR: &str = "backup";

/// Longest request line read (a pass phrase and a name).
const MAX_REQUEST: u64 = 64 * 1024;

/// The appliance's signing key of scheduled backups (root only).
pub const SIGNING_KEY: &str = "backup/schedule/signing-key.pk8";

/// What the schedule did for its latest due time.
const SCHEDULE_STATE: &str = "backup/schedule/state.json";

/// Attempts of one due backup before the schedule waits for the next one
/// (one per tick of the timer, every 15 minutes).
pub const SCHEDULED_ATTEMPTS: u32 = 3;

/// The schedule's memory: which due time was served and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ScheduleState {
    /// The due time (Unix seconds) these attempts were for.
    due: i64,
    /// Attempts made for it.
    attempts: u32,
    /// Whether one succeeded.
    done: bool,
}

/// What a tick of the schedule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// No schedule is configured.
    Unscheduled,
    /// Nothing due (done, or given up until the next due time).
    NotDue,
    /// Another backup or restore holds the lock: the next tick tries again.
    Busy,
    /// A backup was taken and sent: the text for the log.
    Sent(String),
}

/// The service's surroundings.
#[derive(Debug, Clone)]
pub struct Service {
    /// The data partition.
    pub layout: Layout,
    /// The committed settings file.
    pub settings: PathBuf,
    /// How stores are reached.
    pub access: StoreAccess,
    /// Whether a restore stops and starts the daemons.
    pub services: bool,
    /// How archives reach the backup server.
    pub transfer: Transfer,
    /// PBKDF2 rounds of new archives.
    pub rounds: u32,
    /// Host name recorded in backups.
    pub hostname: String,
}

struct Replies<W: Write> {
    out: W,
}

impl<W: Write> Replies<W> {
    fn send(&mut self, r: &BackupReply) {
        if let Ok(line) = serde_json::to_string(r) {
            // The CLI may have gone: the work goes on, its result is logged.
            let _ = writeln!(self.out, "{line}").and_then(|_| self.out.flush());
        }
    }
}

impl Service {
    fn work(&self) -> PathBuf {
        self.layout.path(WORK_DIR)
    }

    fn transfer_dir(&self) -> PathBuf {
        transfer::dir_of(&self.layout.root)
    }

    /// The appliance's key for the backup server, made when missing (the
    /// transfer account's own: the service never sends with it).
    fn ensure_key(&self) -> Result<String> {
        let dir = self.transfer_dir();
        let key = dir.join(KEY);
        if !key.exists() {
            std::fs::create_dir_all(&dir)?;
            let st = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("sms-backup@{}", self.hostname))
                .arg("-f")
                .arg(&key)
                .status()
                .context("running ssh-keygen")?;
            if !st.success() {
                bail!("ssh-keygen could not make the appliance's backup key");
            }
            transfer::own_by_transfer(&key)?;
            transfer::own_by_transfer(&key.with_extension("pub"))?;
            tracing::info!("made the appliance's SSH key for the backup server");
        }
        let public = std::fs::read_to_string(key.with_extension("pub"))
            .with_context(|| format!("{}.pub", key.display()))?;
        Ok(public.trim().to_string())
    }

    fn target(&self) -> Result<BackupServer> {
        let text = std::fs::read_to_string(&self.settings).unwrap_or_default();
        let settings = Settings::from_toml(&self.settings, &text)?;
        settings.backup.context(
            "no backup server is configured: in configuration mode, set system backup server HOST user NAME and set system backup host-key TYPE BASE64",
        )
    }

    fn move_archive(&self, server: &BackupServer, op: TransferOp) -> Result<Vec<String>> {
        let req = TransferRequest {
            server: server.clone(),
            op,
        };
        Ok(transfer::run(self.transfer, &self.transfer_dir(), &req)?.names)
    }

    /// Answers one connection: a request line on `input`, replies on
    /// `output`.
    pub async fn handle(&self, input: impl BufRead, output: impl Write) {
        let mut out = Replies { out: output };
        let mut line = String::new();
        let read = std::io::Read::take(input, MAX_REQUEST).read_line(&mut line);
        let req = match read
            .map_err(anyhow::Error::from)
            .and_then(|_| serde_json::from_str::<BackupRequest>(&line).map_err(Into::into))
        {
            Ok(r) => r,
            Err(e) => {
                out.send(&BackupReply::Error(format!("unreadable request: {e}")));
                return;
            }
        };
        let what = match &req {
            BackupRequest::Backup { .. } => "backup",
            BackupRequest::List => "list",
            BackupRequest::PublicKey => "public-key",
            BackupRequest::Enrol { .. } => "enrol",
            BackupRequest::Restore { confirm: true, .. } => "restore",
            BackupRequest::Restore { .. } => "restore check",
        };
        match self.run(req, &mut out).await {
            Ok(text) => {
                tracing::info!("{what}: {}", text.lines().next().unwrap_or(""));
                out.send(&BackupReply::Done(text));
            }
            Err(e) => {
                let text = format!("{e:#}");
                tracing::warn!("{what} failed: {text}");
                out.send(&BackupReply::Error(text));
            }
        }
    }

    /// Notes the outcome of a backup for `show backup`.
    fn note(&self, name: Option<String>, bytes: u64, error: Option<String>, scheduled: bool) {
        let status = sms_core::backup::BackupStatus {
            attempted: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            name,
            bytes,
            error,
            scheduled,
        };
        let path = self.layout.path(sms_core::backup::BACKUP_STATUS);
        let written = serde_json::to_vec(&status)
            .map_err(std::io::Error::other)
            .and_then(|b| sms_core::files::write_atomic(&path, &b, 0o644));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", path.display());
        }
    }

    fn lock(&self) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
        std::fs::create_dir_all(self.work())?;
        let lock_path = self.work().join(".lock");
        let lock_file = std::fs::File::create(&lock_path)?;
        Ok(nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok())
    }

    async fn run<W: Write>(&self, req: BackupRequest, out: &mut Replies<W>) -> Result<String> {
        let _lock = self.lock()?.ok_or_else(|| {
            anyhow::anyhow!("another backup or restore is running; try again when it has finished")
        })?;
        match req {
            BackupRequest::PublicKey => self.ensure_key(),
            BackupRequest::Enrol { passphrase } => self.enrol(&passphrase),
            BackupRequest::List => {
                let t = self.target()?;
                self.ensure_key()?;
                let names = self.move_archive(&t, TransferOp::List)?;
                Ok(if names.is_empty() {
                    format!("no backups on {}", t.server)
                } else {
                    names.join("\n")
                })
            }
            BackupRequest::Backup {
                passphrase,
                packages,
            } => {
                let done = self
                    .backup(Sealing::Passphrase(&passphrase), packages, out)
                    .await;
                match &done {
                    Ok((_, name, bytes)) => self.note(Some(name.clone()), *bytes, None, false),
                    Err(e) => self.note(None, 0, Some(format!("{e:#}")), false),
                }
                done.map(|(text, _, _)| text)
            }
            BackupRequest::Restore {
                name,
                passphrase,
                confirm,
            } => self.restore(&name, &passphrase, confirm, out),
        }
    }

    /// Enrols the pass phrase of scheduled backups: keeps its public key
    /// and a new signing key of the appliance it approves.
    fn enrol(&self, passphrase: &str) -> Result<String> {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let (enrolment, key) = Enrolment::create(passphrase, self.rounds, &now)?;
        let key_path = self.layout.path(SIGNING_KEY);
        let enrolment_path = self.layout.path(BACKUP_ENROLMENT);
        if let Some(dir) = key_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        // The key first: an enrolment never names a key that is not there.
        sms_core::files::write_atomic(&key_path, &key, 0o600)
            .with_context(|| key_path.display().to_string())?;
        let json = serde_json::to_vec_pretty(&enrolment)?;
        sms_core::files::write_atomic(&enrolment_path, &json, 0o644)
            .with_context(|| enrolment_path.display().to_string())?;
        Ok(format!(
            "scheduled backups are sealed to this pass phrase from now on (key {}); restoring one asks for it",
            enrolment.fingerprint()
        ))
    }

    fn enrolled(&self) -> Result<(Enrolment, Vec<u8>)> {
        let path = self.layout.path(BACKUP_ENROLMENT);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no pass phrase is enrolled for scheduled backups: run system backup pass-phrase"
            ),
            Err(e) => return Err(e).context(path.display().to_string()),
        };
        let enrolment: Enrolment = serde_json::from_slice(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        let key_path = self.layout.path(SIGNING_KEY);
        let key = std::fs::read(&key_path).with_context(|| {
            format!(
                "{}: enrol the pass phrase again (system backup pass-phrase)",
                key_path.display()
            )
        })?;
        Ok((enrolment, key))
    }

    fn schedule_state(&self) -> ScheduleState {
        std::fs::read(self.layout.path(SCHEDULE_STATE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_schedule_state(&self, st: &ScheduleState) {
        let path = self.layout.path(SCHEDULE_STATE);
        let written = serde_json::to_vec(st)
            .map_err(std::io::Error::other)
            .and_then(|b| sms_core::files::write_atomic(&path, &b, 0o644));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", path.display());
        }
    }

    /// One tick of the schedule at `now` (Unix seconds): takes and sends a
    /// backup when one is due and not yet taken (a failed one is tried
    /// again at the next ticks, [`SCHEDULED_ATTEMPTS`] times in all).
    pub async fn tick(&self, now: i64) -> Result<Tick> {
        let text = std::fs::read_to_string(&self.settings).unwrap_or_default();
        let settings = Settings::from_toml(&self.settings, &text)?;
        let Some(schedule) = settings.backup.as_ref().and_then(|b| b.schedule.clone()) else {
            return Ok(Tick::Unscheduled);
        };
        let due = schedule
            .last_due(now)
            .context("the backup schedule is invalid")?;
        let mut st = self.schedule_state();
        if st.due == due && (st.done || st.attempts >= SCHEDULED_ATTEMPTS) {
            return Ok(Tick::NotDue);
        }
        if st.due != due {
            st = ScheduleState {
                due,
                attempts: 0,
                done: false,
            };
        }
        let Some(_lock) = self.lock()? else {
            return Ok(Tick::Busy);
        };
        st.attempts += 1;
        self.save_schedule_state(&st);
        let mut sink = Replies {
            out: std::io::sink(),
        };
        let result = match self.enrolled() {
            Ok((enrolment, key)) => {
                self.backup(
                    Sealing::Enrolled {
                        enrolment: &enrolment,
                        signing_key: &key,
                    },
                    schedule.packages,
                    &mut sink,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((text, name, bytes)) => {
                st.done = true;
                self.save_schedule_state(&st);
                self.note(Some(name), bytes, None, true);
                Ok(Tick::Sent(text))
            }
            Err(e) => {
                let tries = if st.attempts < SCHEDULED_ATTEMPTS {
                    format!(
                        "attempt {} of {SCHEDULED_ATTEMPTS}, tried again in 15 minutes",
                        st.attempts
                    )
                } else {
                    "no more attempts until the next scheduled time".to_string()
                };
                let e = e.context(format!("scheduled backup ({tries})"));
                self.note(None, 0, Some(format!("{e:#}")), true);
                Err(e)
            }
        }
    }

    /// Takes and sends a backup; returns the text, its name and size.
    async fn backup<W: Write>(
        &self,
        sealing: Sealing<'_>,
        packages: bool,
        out: &mut Replies<W>,
    ) -> Result<(String, String, u64)> {
        let t = self.target()?;
        self.ensure_key()?;
        let file = self.transfer_dir().join(OUTGOING);
        let opts = CaptureOptions {
            packages,
            firmware: crate::FIRMWARE_VERSION.into(),
            hostname: self.hostname.clone(),
            rounds: self.rounds,
        };
        let result = capture(&self.layout, sealing, &opts, self.access, &file, &mut |s| {
            out.send(&BackupReply::Progress(s.to_string()))
        })
        .await;
        let (manifest, size) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                return Err(e);
            }
        };
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default();
        let name = backup_name(&self.hostname, &stamp);
        out.send(&BackupReply::Progress(format!(
            "sending {name} ({} KiB) to {}",
            size.div_ceil(1024),
            t.server
        )));
        let sent = transfer::give_to_transfer(&file).and_then(|_| {
            self.move_archive(
                &t,
                TransferOp::Send {
                    name: name.clone(),
                    keep: t.keep_or_default() as usize,
                },
            )
        });
        let _ = std::fs::remove_file(&file);
        let removed = sent?;
        let mut text = format!(
            "backup {name} sent to {} ({} entries, {} KiB)",
            t.server,
            manifest.entries.len(),
            size.div_ceil(1024)
        );
        if !removed.is_empty() {
            text.push_str(&format!("\nremoved old backups: {}", removed.join(", ")));
        }
        Ok((text, name, size))
    }

    /// Fetches a backup, checks it and, confirmed, restores it.
    fn restore<W: Write>(
        &self,
        name: &str,
        passphrase: &str,
        confirm: bool,
        out: &mut Replies<W>,
    ) -> Result<String> {
        let t = self.target()?;
        self.ensure_key()?;
        let file = self.transfer_dir().join(INCOMING);
        out.send(&BackupReply::Progress(format!(
            "fetching {name} from {}",
            t.server
        )));
        let fetched = self.move_archive(
            &t,
            TransferOp::Fetch {
                name: name.to_string(),
            },
        );
        let result = fetched.and_then(|_| self.restore_file(&file, passphrase, confirm, out));
        let _ = std::fs::remove_file(&file);
        result
    }

    fn restore_file<W: Write>(
        &self,
        file: &Path,
        passphrase: &str,
        confirm: bool,
        out: &mut Replies<W>,
    ) -> Result<String> {
        out.send(&BackupReply::Progress(
            "checking the signature and every entry".into(),
        ));
        let v = restore::verify(file, passphrase, crate::FIRMWARE_VERSION)?;
        out.send(&BackupReply::Plan(v.plan(&self.layout)));
        if !confirm {
            return Ok("the backup is good; nothing was changed".into());
        }
        v.apply(&self.layout, self.services, &mut |s| {
            out.send(&BackupReply::Progress(s.to_string()))
        })?;
        Ok(format!(
            "restored the backup of {} made {}; the settings are applied now",
            v.manifest().hostname,
            v.manifest().created
        ))
    }
}

//! The settings directory: the committed file, its rollbacks and the
//! daemons' secrets files, each written atomically.

use super::*;
use crate::files::write_atomic;

/// The committed settings and the earlier ones, in one directory:
/// `settings.toml` and `rollback/1.toml` (the previous) to
/// `rollback/5.toml`. The secrets are not in those files (they say
/// [`KEPT_APART`]) but in `updated/secrets.toml` (the proxy password) and
/// `snmpd/secrets.toml` (the SNMPv3 pass phrases) and `logd/secrets.toml`
/// (the mail server's password), each with its own
/// `rollback/N.toml`; on the appliance those directories belong to the
/// administrator with the daemon's group (setgid), so each daemon reads
/// only its own secrets and the others none. Every write goes to a
/// temporary file that is synced and renamed, so a crash leaves either the
/// old or the new file.
#[derive(Debug, Clone)]
pub struct SettingsStore {
    dir: PathBuf,
}

impl SettingsStore {
    /// The store in `dir` (created on the first commit).
    pub fn new(dir: impl Into<PathBuf>) -> SettingsStore {
        SettingsStore { dir: dir.into() }
    }

    /// The committed settings file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("settings.toml")
    }

    fn rollback_path(&self, n: usize) -> PathBuf {
        self.dir.join("rollback").join(format!("{n}.toml"))
    }

    /// The committed settings.
    pub fn committed(&self) -> Result<Settings, SettingsError> {
        Settings::load(&self.path())
    }

    /// The settings committed `n` commits ago (1 = the previous).
    pub fn rollback(&self, n: usize) -> Result<Settings, SettingsError> {
        if n == 0 {
            return self.committed();
        }
        let p = self.rollback_path(n);
        if n > ROLLBACKS || !p.exists() {
            return Err(SettingsError::NoRollback(n));
        }
        Settings::load_with_secrets(
            &p,
            &self.secrets_rollback_path(UPDATER_SECRETS, n),
            &self.secrets_rollback_path(SNMP_SECRETS, n),
            &self.secrets_rollback_path(LOGD_SECRETS, n),
        )
    }

    /// A daemon's secrets file.
    pub fn secrets_path(&self, daemon: &str) -> PathBuf {
        self.dir.join(daemon).join(SECRETS_FILE)
    }

    fn secrets_rollback_path(&self, daemon: &str, n: usize) -> PathBuf {
        self.dir
            .join(daemon)
            .join("rollback")
            .join(format!("{n}.toml"))
    }

    /// Keeps the previous file at `current` as rollback 1 of the set whose
    /// `n`th rollback is `rollback(n)`, shifting the older ones.
    fn rotate(current: &Path, rollback: impl Fn(usize) -> PathBuf) -> Result<(), SettingsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SettingsError::Io { path, source }
        };
        let first = rollback(1);
        if let Some(dir) = first.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let previous = match std::fs::read(current) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(current)(e)),
        };
        for n in (1..ROLLBACKS).rev() {
            let from = rollback(n);
            if from.exists() {
                let to = rollback(n + 1);
                std::fs::rename(&from, &to).map_err(io(&from))?;
            }
        }
        write_atomic(&first, &previous, 0o640).map_err(io(&first))
    }

    /// Validates and commits `new`; the committed file becomes rollback 1.
    /// Returns the bytes written (what the applier digests).
    pub fn commit(&self, new: &Settings) -> Result<Vec<u8>, SettingsError> {
        new.validate()?;
        let (public, updater, snmp, logd) = new.split_secrets();
        let text = format!(
            "# SMS OS settings, written by the CLI's commit; change them with `configure`.\n# Secrets are kept apart, each in the file of the daemon that needs it.\n{}",
            public.to_toml()?
        );
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SettingsError::Io { path, source }
        };
        let encode = |v: &dyn erased::Encode| v.encode();
        let secrets = [
            (UPDATER_SECRETS, encode(&updater)?),
            (SNMP_SECRETS, encode(&snmp)?),
            (LOGD_SECRETS, encode(&logd)?),
        ];
        // Secrets first, so that the shared file never names secrets that
        // are not there yet. The previous commit becomes rollback 1 (before
        // the first commit: nothing set, so that rollback can return to the
        // shipped state).
        for (daemon, bytes) in &secrets {
            let current = self.secrets_path(daemon);
            Self::rotate(&current, |n| self.secrets_rollback_path(daemon, n))?;
            write_atomic(&current, bytes, 0o640).map_err(io(&current))?;
        }
        Self::rotate(&self.path(), |n| self.rollback_path(n))?;
        write_atomic(&self.path(), text.as_bytes(), 0o640).map_err(io(&self.path()))?;
        Ok(text.into_bytes())
    }
}

/// Serializing the secrets of different daemons through one call.
mod erased {
    use super::{invalid, SettingsError};

    /// Something written as a TOML secrets file.
    pub(super) trait Encode {
        /// The file's bytes.
        fn encode(&self) -> Result<Vec<u8>, SettingsError>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Result<Vec<u8>, SettingsError> {
            toml::to_string(self)
                .map(|t| {
                    format!("# Secrets of the SMS settings; written by the CLI's commit.\n{t}")
                        .into_bytes()
                })
                .map_err(|e| invalid("secrets", e.to_string()))
        }
    }
}

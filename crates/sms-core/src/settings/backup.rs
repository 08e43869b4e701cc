//! The backup server in the settings: where `system backup` sends the
//! appliance's backups (`set system backup ...`), by SFTP with the
//! appliance's own key and the server's host key pinned.

use super::{check_hostname, check_login_key, invalid, SettingsError};
use serde::{Deserialize, Serialize};

/// Backups kept on the server when no count is set.
pub const DEFAULT_BACKUP_KEEP: u32 = 10;

/// Most backups that may be kept.
pub const MAX_BACKUP_KEEP: u32 = 365;

/// The SFTP server backups go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupServer {
    /// Host name or address.
    pub server: String,
    /// SSH port (22 when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The account on the server.
    #[serde(default)]
    pub user: String,
    /// The server's host key, `TYPE BASE64`: pinned, never learnt.
    #[serde(default)]
    pub host_key: String,
    /// Directory on the server (the account's home when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Backups kept there; older ones are removed after each backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

impl BackupServer {
    /// The port used.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(22)
    }

    /// The retention used.
    pub fn keep_or_default(&self) -> u32 {
        self.keep.unwrap_or(DEFAULT_BACKUP_KEEP)
    }
}

/// Checks a backup server; `complete` also asks for what a commit needs
/// (a user and a host key), which may be set by later commands.
pub fn check_backup(b: &BackupServer, complete: bool) -> Result<(), SettingsError> {
    if b.server.parse::<std::net::IpAddr>().is_err() {
        check_hostname(&b.server)
            .map_err(|_| invalid("backup server", "a host name or an address"))?;
    }
    if b.port == Some(0) {
        return Err(invalid("backup port", "must not be 0"));
    }
    if !b.user.is_empty()
        && (b.user.len() > 64
            || b.user.starts_with('-')
            || !b
                .user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            "backup user",
            "at most 64 letters, digits, '.', '_', '-'",
        ));
    }
    if !b.host_key.is_empty() {
        check_login_key(&b.host_key).map_err(|e| match e {
            SettingsError::Invalid { why, .. } => invalid("backup host-key", why),
            other => other,
        })?;
    }
    if let Some(d) = &b.directory {
        if d.is_empty()
            || d.len() > 255
            || d.chars().any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(invalid(
                "backup directory",
                "a path of at most 255 printable characters, no quotes",
            ));
        }
    }
    if let Some(k) = b.keep {
        if !(1..=MAX_BACKUP_KEEP).contains(&k) {
            return Err(invalid("backup keep", format!("1 to {MAX_BACKUP_KEEP}")));
        }
    }
    if complete {
        if b.user.is_empty() {
            return Err(invalid(
                "backup",
                "needs a user: set system backup server HOST user NAME",
            ));
        }
        if b.host_key.is_empty() {
            return Err(invalid(
                "backup",
                "needs the server's host key: set system backup host-key TYPE BASE64",
            ));
        }
    }
    Ok(())
}

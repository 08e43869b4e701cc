//! What the CLI and the backup service (`sms-backup serve`, root, started
//! by systemd per connection on [`BACKUP_SOCKET`]) say to each other: one
//! request line, then reply lines until [`BackupReply::Done`] or
//! [`BackupReply::Error`], all JSON. Pass phrases cross this socket only
//! (mode 0660, group admin), never a command line or a file.

use serde::{Deserialize, Serialize};

/// The backup service's socket.
pub const BACKUP_SOCKET: &str = "/run/sms/backup.sock";

/// What the administrator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum BackupRequest {
    /// Take a backup and send it to the configured server.
    Backup {
        /// Seals the secrets and keys and signs the archive.
        passphrase: String,
        /// Also the package files.
        packages: bool,
    },
    /// The backups on the server.
    List,
    /// The appliance's SSH public key, to authorise on the server.
    PublicKey,
    /// Enrol the pass phrase scheduled backups are sealed to (only its
    /// public key is kept).
    Enrol {
        /// The pass phrase.
        passphrase: String,
    },
    /// Fetch and check a backup; with `confirm`, restore it.
    Restore {
        /// Its name on the server.
        name: String,
        /// Its pass phrase.
        passphrase: String,
        /// Restore (otherwise only check and show what would change).
        confirm: bool,
    },
}

/// One line of the service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupReply {
    /// A step of a long operation.
    Progress(String),
    /// What a restore would change, one line per item.
    Plan(Vec<String>),
    /// Finished; the text for the administrator.
    Done(String),
    /// Failed; nothing was changed unless the text says so.
    Error(String),
}

/// Where the backup service notes its last backup, below the data
/// partition (readable by all: it holds no secret).
pub const BACKUP_STATUS: &str = "backup/status.json";

/// The last backup, as `show backup` tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// When it was attempted (RFC 3339, UTC).
    pub attempted: String,
    /// Its name on the server, when it was sent.
    pub name: Option<String>,
    /// Its size.
    pub bytes: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Whether the schedule took it (nobody asked).
    #[serde(default)]
    pub scheduled: bool,
}

/// The enrolment of scheduled backups (public keys only, readable by all),
/// below the data partition.
pub const BACKUP_ENROLMENT: &str = "backup/schedule/enrolment.json";

/// A short form of an enrolled public key (hex) the administrator can
/// compare: its first 16 hex digits in groups of four.
pub fn fingerprint(public: &str) -> String {
    public
        .chars()
        .take(16)
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

/// What the enrolment file tells the CLI (the rest of it is the backup
/// service's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentSummary {
    /// When the pass phrase was enrolled (RFC 3339, UTC).
    pub created: String,
    /// The enrolled X25519 public key, hex.
    pub public: String,
}

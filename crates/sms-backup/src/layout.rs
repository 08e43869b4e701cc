//! What a backup holds, as paths below the data partition (`/var/lib/sms`).

use std::path::PathBuf;

/// A daemon's store: where it lives and who serves it while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSpec {
    /// Short name (`updated`).
    pub name: &'static str,
    /// The daemon's bus name, serving `org.smsos.Store1`.
    pub bus_name: &'static str,
    /// Its directory below the data partition.
    pub dir: &'static str,
    /// Its systemd unit, stopped while the store is replaced.
    pub unit: &'static str,
}

/// Directories copied whole: settings with rollbacks, secrets and password
/// hashes; the TLS identity devices pin; the SSH host key admins pin.
pub const TREES: &[&str] = &["config", "distd/tls", "ssh"];

/// The CLI's audit trail (restored only where there is none).
pub const AUDIT_LOG: &str = "cli/audit.log";

/// Single files: the CLI's audit trail; the appliance's key for the backup
/// server (so that a restored appliance reaches the same server); the
/// enrolment of scheduled backups and the key that signs them (so that a
/// replacement goes on taking them, sealed to the same pass phrase).
pub const FILES: &[&str] = &[
    AUDIT_LOG,
    "backup/transfer/id_ed25519",
    "backup/transfer/id_ed25519.pub",
    sms_core::backup::BACKUP_ENROLMENT,
    crate::service::SIGNING_KEY,
];

/// The stores: packages metadata, inventory and jobs, events.
pub const STORES: &[StoreSpec] = &[
    StoreSpec {
        name: "updated",
        bus_name: "org.smsos.Updater1",
        dir: "updated",
        unit: "sms-updated.service",
    },
    StoreSpec {
        name: "distd",
        bus_name: "org.smsos.Distributor1",
        dir: "distd/state",
        unit: "sms-distd.service",
    },
    StoreSpec {
        name: "snmpd",
        bus_name: "org.smsos.Snmp1",
        dir: "snmpd/store",
        unit: "sms-snmpd.service",
    },
];

/// The package files (content-addressed), in a backup on request.
pub const BLOBS: &str = "blobs/sha256";

/// Units restarted (when running) after a restore, beside the stores'
/// owners: the ones reading restored secrets or keys. SSH sessions survive
/// sshd's restart.
pub const OTHER_UNITS: &[&str] = &["sms-logd.service", "sms-ntpd.service", "ssh.service"];

/// The data partition a backup is taken from or restored to.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Its mount point: `/var/lib/sms` on the appliance.
    pub root: PathBuf,
}

impl Layout {
    /// `name` below the root.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where the previous content goes during a restore.
    pub fn before_restore(&self) -> PathBuf {
        self.root.join(".before-restore")
    }

    /// Where restored trees are assembled before they replace the live ones.
    pub fn staging(&self) -> PathBuf {
        self.root.join(".restore-staging")
    }
}

//! Applying the administrator's committed settings.
//!
//! The CLI runs as the unprivileged `admin` user and only writes the
//! settings file ([`sms_core::settings`]). This crate is the privileged
//! other half, run by systemd (`sms-settings-apply.service`, started by a
//! path unit when the file changes and once at boot): it sets the host
//! name, the time zone and the management address and restarts the daemons
//! whose part of the settings changed, then writes what it did to a status
//! file the CLI waits for. Nothing here takes text from a person: it reads
//! a file that was validated when it was committed, and validates it again.

#![forbid(unsafe_code)]

pub mod accounts;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sms_core::settings::{Management, Settings};
use std::path::{Path, PathBuf};

/// Where the applier keeps what it applied and its status (root-owned).
pub const STATE_DIR: &str = "/var/lib/sms/system";
/// The runtime network file for the management interface; it sorts before
/// the image's DHCP file, so systemd-networkd takes it instead.
pub const NETWORK_FILE: &str = "/run/systemd/network/40-sms-management.network";
/// The tz database.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

/// What applying changed settings takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Host name to set.
    pub hostname: Option<String>,
    /// Time zone to link.
    pub time_zone: Option<String>,
    /// Network file to write (`Some(None)`: remove ours, back to DHCP).
    pub network: Option<Option<String>>,
    /// Units to restart, in order.
    pub restart: Vec<&'static str>,
}

/// Compares what was applied with what is committed. At boot (`old` is
/// `None`) everything set is applied and no daemon restarted: they start
/// after the applier and read the file themselves.
pub fn plan(old: Option<&Settings>, new: &Settings) -> Plan {
    let boot = old.is_none();
    let empty = Settings::default();
    let old = old.unwrap_or(&empty);
    let mut p = Plan::default();
    if boot || old.hostname != new.hostname {
        p.hostname = new.hostname.clone();
    }
    if boot || old.time_zone != new.time_zone {
        p.time_zone = Some(new.time_zone.clone().unwrap_or_else(|| "UTC".into()));
    }
    if boot || old.management != new.management {
        p.network = Some(new.management.as_ref().map(network_file));
    }
    if !boot {
        if old.dns_servers != new.dns_servers
            || old.proxy != new.proxy
            || old.update.updater_differs(&new.update)
        {
            p.restart.push("sms-updated.service");
        }
        if old.update.distributor_differs(&new.update) {
            p.restart.push("sms-distd.service");
        }
        if old.ntp_servers != new.ntp_servers {
            p.restart.push("sms-ntpd.service");
        }
        if old.snmp_communities != new.snmp_communities
            || old.snmp_users != new.snmp_users
            || old.trap_destinations != new.trap_destinations
        {
            p.restart.push("sms-snmpd.service");
        }
        let pairing = |s: &Settings| {
            (
                s.ha_peer,
                s.ha_peer_fingerprint.clone(),
                s.ha_role,
                s.ha_witness,
                s.ha_witness_fingerprint.clone(),
                s.ha_virtual_address.clone(),
            )
        };
        if pairing(old) != pairing(new) {
            p.restart.push("sms-had.service");
        }
        // The host name is in every message sms-logd sends (and mail).
        if old.log_servers != new.log_servers
            || old.mail != new.mail
            || old.hostname != new.hostname
        {
            p.restart.push("sms-logd.service");
        }
    }
    p
}

/// The systemd-networkd file for a static management address. The values
/// were validated as an address with prefix and an address of the same
/// family; they are written one per line, nothing else.
pub fn network_file(m: &Management) -> String {
    let mut s = format!(
        "# Written by sms-apply from the committed settings.\n[Match]\nName=en* eth*\n\n[Network]\nAddress={}\n",
        m.address
    );
    if let Some(g) = m.gateway {
        s.push_str(&format!("Gateway={g}\n"));
    }
    s
}

/// The zoneinfo file of a validated zone name, refused when it is not a
/// regular file inside the tz database (no `..`, no links out of it).
pub fn zone_file(zoneinfo: &Path, zone: &str) -> Result<PathBuf, String> {
    sms_core::settings::check_time_zone(zone).map_err(|e| e.to_string())?;
    let p = zoneinfo.join(zone);
    let real = p
        .canonicalize()
        .map_err(|_| format!("time zone {zone} is not in the tz database"))?;
    let base = zoneinfo
        .canonicalize()
        .map_err(|e| format!("{}: {e}", zoneinfo.display()))?;
    if !real.starts_with(&base) || !real.is_file() {
        return Err(format!("time zone {zone} is not in the tz database"));
    }
    Ok(p)
}

/// What the applier reports; the CLI waits for the one whose digest is the
/// file it committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// SHA-256 of the settings file applied.
    pub digest: String,
    /// Everything worked.
    pub ok: bool,
    /// What was done, or what failed.
    pub messages: Vec<String>,
}

/// SHA-256 of a settings file's bytes (empty: no file).
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads the status file, if any.
pub fn read_status(path: &Path) -> Option<Status> {
    let t = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&t).ok()
}

/// Reads the committed settings the way a root program must read a file an
/// unprivileged account wrote: without following a symbolic link
/// (`O_NOFOLLOW`), without blocking on a FIFO, and only a regular file with
/// one link, owned by root or by `writer` (the account whose CLI commits)
/// and writable by nobody else. `Ok(None)`: there is no file (nothing
/// set).
pub fn read_settings(path: &Path, writer: Option<u32>) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(format!("{} is a symbolic link: refused", path.display()))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file: refused", path.display()));
    }
    if meta.nlink() != 1 {
        return Err(format!(
            "{} has {} links: refused (a hard link could point it elsewhere)",
            path.display(),
            meta.nlink()
        ));
    }
    if meta.uid() != 0 && Some(meta.uid()) != writer {
        return Err(format!(
            "{} is owned by uid {}, not by the administrator: refused",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by others (mode {:o}): refused",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(bytes))
}

/// Where the accounts step reads and writes (the appliance's places, or a
/// test's).
#[derive(Debug, Clone)]
pub struct AccountPaths {
    /// The passwords file the CLI writes.
    pub passwords: PathBuf,
    /// The image's shadow file.
    pub factory_shadow: PathBuf,
    /// The shadow file in use.
    pub shadow: PathBuf,
    /// The sshd fragment allowing password logins.
    pub sshd_passwords: PathBuf,
    /// One authorized_keys file per account (sshd's
    /// `AuthorizedKeysFile .../%u`).
    pub keys_dir: PathBuf,
}

/// The authorized_keys text of every account with keys: each key on its
/// own line behind `restrict` (no forwarding, no pty options, no
/// `~/.ssh/rc`; the CLI is the forced command anyway). The keys were
/// validated (`check_login_key`), so a line holds one key and no option.
pub fn authorized_keys(
    keys: &[sms_core::settings::LoginKey],
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::<String, String>::new();
    for k in keys {
        if sms_core::settings::check_account(&k.user).is_err()
            || sms_core::settings::check_login_key(&k.key).is_err()
        {
            continue;
        }
        let text = out.entry(k.user.clone()).or_insert_with(|| {
            "# Written by sms-apply-settings from the committed settings.\n".to_string()
        });
        text.push_str(&format!("restrict {}\n", k.key));
    }
    out
}

/// Writes the authorized_keys files in `dir` (0644, root's) and removes
/// those of accounts that have no key any more; returns what changed.
pub fn apply_keys(
    dir: &Path,
    keys: &[sms_core::settings::LoginKey],
) -> Result<Vec<String>, String> {
    let want = authorized_keys(keys);
    let mut said = Vec::new();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (user, text) in &want {
        let path = dir.join(user);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            sms_core::files::write_atomic(&path, text.as_bytes(), 0o644)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let n = text.lines().filter(|l| l.starts_with("restrict ")).count();
            said.push(format!("SSH keys of {user} set ({n})"));
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !want.contains_key(&name) {
            std::fs::remove_file(e.path()).map_err(|x| format!("{}: {x}", e.path().display()))?;
            said.push(format!("SSH keys of {name} removed"));
        }
    }
    Ok(said)
}

/// What the accounts step did.
#[derive(Debug, Clone)]
pub struct AccountsApplied {
    /// Its report, digest of the passwords file read.
    pub status: Status,
    /// Whether sshd must read its configuration again.
    pub sshd_changed: bool,
}

/// Writes the shadow file from the factory file and the administrator's
/// passwords, and the sshd fragment that allows password logins once
/// `admin` has a password of its own. A passwords file that cannot be
/// trusted (see [`read_settings`]) or parsed changes nothing, except that a
/// missing shadow file is made from the factory file, so the console login
/// always works. `today` is the day number for the shadow file.
pub fn apply_accounts(paths: &AccountPaths, writer: Option<u32>, today: u64) -> AccountsApplied {
    let mut status = Status {
        digest: String::new(),
        ok: true,
        messages: Vec::new(),
    };
    let read = read_settings(&paths.passwords, writer).and_then(|b| {
        let bytes = b.unwrap_or_default();
        status.digest = digest(&bytes);
        accounts::Passwords::parse(&String::from_utf8_lossy(&bytes))
            .map_err(|e| format!("{}: {e}", paths.passwords.display()))
    });
    let factory = std::fs::read_to_string(&paths.factory_shadow)
        .map_err(|e| format!("{}: {e}", paths.factory_shadow.display()));
    let current = std::fs::read_to_string(&paths.shadow).ok();
    let (text, passwords) = match (read, factory) {
        (Ok(p), Ok(f)) => match accounts::shadow(&f, &p, today) {
            Ok(t) => (Some(t), Some(p)),
            Err(e) => {
                status.ok = false;
                status.messages.push(format!("passwords not applied: {e}"));
                (current.is_none().then_some(f), None)
            }
        },
        (Err(e), Ok(f)) => {
            status.ok = false;
            status.messages.push(format!("passwords not applied: {e}"));
            (current.is_none().then_some(f), None)
        }
        (_, Err(e)) => {
            status.ok = false;
            status.messages.push(format!("passwords not applied: {e}"));
            (None, None)
        }
    };
    if let Some(text) = text {
        if current.as_deref() != Some(text.as_str()) {
            let written = paths
                .shadow
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| sms_core::files::write_atomic(&paths.shadow, text.as_bytes(), 0o600));
            match written {
                Ok(()) if current.is_some() => status.messages.push("passwords applied".into()),
                Ok(()) => status
                    .messages
                    .push("account database made from the factory file".into()),
                Err(e) => {
                    status.ok = false;
                    status
                        .messages
                        .push(format!("{}: {e}", paths.shadow.display()));
                }
            }
        }
    }
    let mut sshd_changed = false;
    if let Some(p) = passwords {
        let want = p.0.contains_key(accounts::ADMIN);
        let have = paths.sshd_passwords.exists();
        if want != have {
            let r = if want {
                sms_core::files::write_atomic(
                    &paths.sshd_passwords,
                    accounts::SSHD_PASSWORDS_TEXT.as_bytes(),
                    0o644,
                )
            } else {
                std::fs::remove_file(&paths.sshd_passwords)
            };
            match r {
                Ok(()) => {
                    sshd_changed = true;
                    status.messages.push(if want {
                        "SSH accepts passwords (the factory password was replaced)".into()
                    } else {
                        "SSH refuses passwords until the factory password is replaced".into()
                    });
                }
                Err(e) => {
                    status.ok = false;
                    status
                        .messages
                        .push(format!("{}: {e}", paths.sshd_passwords.display()));
                }
            }
        }
    }
    AccountsApplied {
        status,
        sshd_changed,
    }
}

/// The user ID of the account `name`, from the password database.
pub fn account_uid(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sms_core::settings::{Settings, SnmpCommunity};

    #[test]
    fn only_changed_parts_restart_their_daemon() {
        let a = Settings::default();
        let mut b = a.clone();
        b.ntp_servers = vec!["192.0.2.1".into()];
        let p = plan(Some(&a), &b);
        assert_eq!(p.restart, vec!["sms-ntpd.service"]);
        assert_eq!(p.hostname, None);
        assert_eq!(p.network, None);
        let mut c = b.clone();
        c.snmp_communities.push(SnmpCommunity {
            name: "x".into(),
            networks: vec!["10.0.0.0/8".into()],
            write: false,
        });
        c.dns_servers.push("192.0.2.53".parse().unwrap());
        c.hostname = Some("sms-2".into());
        let p = plan(Some(&b), &c);
        assert_eq!(
            p.restart,
            vec![
                "sms-updated.service",
                "sms-snmpd.service",
                "sms-logd.service"
            ]
        );
        assert_eq!(p.hostname.as_deref(), Some("sms-2"));
        assert!(plan(Some(&c), &c).restart.is_empty());
        // At boot: host, zone and network, no restarts.
        let p = plan(None, &c);
        assert!(p.restart.is_empty());
        assert_eq!(p.time_zone.as_deref(), Some("UTC"));
        assert_eq!(p.network, Some(None));
    }

    #[test]
    fn the_ha_pairing_restarts_the_ha_daemon() {
        let a = Settings::default();
        let mut b = a.clone();
        b.ha_peer = Some("192.0.2.11".parse().unwrap());
        assert_eq!(plan(Some(&a), &b).restart, vec!["sms-had.service"]);
        let mut c = b.clone();
        c.ha_witness = Some("192.0.2.99".parse().unwrap());
        assert_eq!(plan(Some(&b), &c).restart, vec!["sms-had.service"]);
        assert!(plan(Some(&c), &c).restart.is_empty());
    }

    #[test]
    fn log_servers_and_the_host_name_restart_the_log_forwarder() {
        let a = Settings::default();
        let mut b = a.clone();
        b.log_servers = Settings::example().log_servers;
        assert_eq!(plan(Some(&a), &b).restart, vec!["sms-logd.service"]);
        let mut c = b.clone();
        c.hostname = Some("sms-lab".into());
        assert_eq!(plan(Some(&b), &c).restart, vec!["sms-logd.service"]);
        assert!(plan(Some(&c), &c).restart.is_empty());
        let mut d = c.clone();
        d.mail = Settings::example().mail;
        assert_eq!(plan(Some(&c), &d).restart, vec!["sms-logd.service"]);
        let mut e = d.clone();
        e.mail.as_mut().unwrap().password = "another-pass".into();
        assert_eq!(plan(Some(&d), &e).restart, vec!["sms-logd.service"]);
    }

    #[test]
    fn the_update_policy_restarts_the_daemon_it_concerns() {
        let a = Settings::default();
        let mut b = a.clone();
        b.update.auto_activate = Some(false);
        assert_eq!(plan(Some(&a), &b).restart, vec!["sms-updated.service"]);
        let mut c = b.clone();
        c.update.distribute_groups = vec!["lab".into()];
        assert_eq!(plan(Some(&b), &c).restart, vec!["sms-distd.service"]);
        c.update.centre_port = Some(4043);
        c.update.auto_distribute = Some(false);
        assert_eq!(
            plan(Some(&b), &c).restart,
            vec!["sms-updated.service", "sms-distd.service"]
        );
    }

    #[test]
    fn network_file_has_the_address_and_gateway_only() {
        let m = Management {
            address: "192.0.2.10/24".into(),
            gateway: Some("192.0.2.1".parse().unwrap()),
        };
        let f = network_file(&m);
        assert!(
            f.contains("\nAddress=192.0.2.10/24\nGateway=192.0.2.1\n"),
            "{f}"
        );
        assert_eq!(f.matches('=').count(), 3, "{f}");
    }

    #[test]
    fn zones_stay_inside_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let zi = dir.path().join("zoneinfo");
        std::fs::create_dir_all(zi.join("Europe")).unwrap();
        std::fs::write(zi.join("Europe/Berlin"), b"TZif").unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), zi.join("Out")).unwrap();
        assert!(zone_file(&zi, "Europe/Berlin").is_ok());
        assert!(zone_file(&zi, "Out").is_err());
        assert!(zone_file(&zi, "../secret").is_err());
        assert!(zone_file(&zi, "Europe").is_err());
        assert!(zone_file(&zi, "Mars/Olympus").is_err());
    }
}

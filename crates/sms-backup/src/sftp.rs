//! Moving archives to and from the customer's SFTP server with OpenSSH's
//! own `sftp` client: key authentication only, the server's host key
//! pinned (never learnt on first use), uploads renamed into place only when
//! complete, old backups removed beyond the retention count.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where backups go.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Server host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Account on the server.
    pub user: String,
    /// Directory on the server.
    pub dir: String,
    /// The appliance's private key for that account.
    pub key: PathBuf,
    /// The server's host key, one `known_hosts` line or its key part
    /// (`ssh-ed25519 AAAA...`).
    pub host_key: String,
}

/// Backups kept on the server by default.
pub const DEFAULT_KEEP: usize = 10;

/// File name suffix of archives.
pub const SUFFIX: &str = ".smsbak";

/// Whether `name` is one of ours (only those are ever removed).
pub fn is_backup_name(name: &str) -> bool {
    name.starts_with("sms-backup-")
        && name.ends_with(SUFFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The name of a new backup of `hostname` at `stamp` (`20261204T170500Z`).
pub fn backup_name(hostname: &str, stamp: &str) -> String {
    let host: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("sms-backup-{host}-{stamp}{SUFFIX}")
}

impl Remote {
    fn known_hosts(&self, dir: &Path) -> Result<PathBuf> {
        let key = self.host_key.trim();
        let parts: Vec<&str> = key.split_whitespace().collect();
        // Either "type base64" or "host type base64 [comment]".
        let (kind, b64) = match parts.as_slice() {
            [t, k, ..] if t.starts_with("ssh-") || t.starts_with("ecdsa-") => (*t, *k),
            [_, t, k, ..] => (*t, *k),
            _ => bail!("the server's host key is not of the form `ssh-ed25519 AAAA...`"),
        };
        let pattern = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        let path = dir.join("known_hosts");
        std::fs::write(&path, format!("{pattern} {kind} {b64}\n"))?;
        Ok(path)
    }

    /// Runs `sftp` with `batch` commands; returns its standard output.
    fn run(&self, batch: &str) -> Result<String> {
        let plain = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_control() || c == '"');
        if !plain(&self.dir)
            || !plain(&self.user)
            || !plain(&self.host)
            || self.host.starts_with('-')
            || self.user.contains(['@', ' '])
        {
            bail!("the server, account or directory has characters sftp cannot take");
        }
        let scratch = tempfile::tempdir().context("a scratch directory for sftp")?;
        let known = self.known_hosts(scratch.path())?;
        let mut child = Command::new("sftp")
            // Nothing from the account's or the system's ssh configuration.
            .args(["-F", "/dev/null"])
            .args(["-o", "LogLevel=ERROR"])
            .args(["-b", "-"])
            .args(["-P", &self.port.to_string()])
            .args(["-i".as_ref(), self.key.as_os_str()])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "PasswordAuthentication=no"])
            .args(["-o", "ConnectTimeout=15"])
            .args(["-o", "ServerAliveInterval=15"])
            .arg(format!("{}@{}", self.user, self.host))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting sftp (OpenSSH client)")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(batch.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let reason = if err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                || err.contains("Host key verification failed")
            {
                "the server's host key is not the pinned one (refused)".to_string()
            } else if err.contains("Permission denied") {
                "the server refused the appliance's key".to_string()
            } else {
                err.lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("sftp failed")
                    .to_string()
            };
            bail!(
                "sftp to {}@{}:{}: {reason}",
                self.user,
                self.host,
                self.port
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    fn quoted(&self, name: &str) -> String {
        format!("\"{}/{}\"", self.dir.trim_end_matches('/'), name)
    }

    /// Uploads `file` as `name`: written as `.name.part`, renamed when
    /// complete, so the server never holds half a backup under its name.
    pub fn send(&self, file: &Path, name: &str) -> Result<()> {
        if !is_backup_name(name) {
            bail!("{name}: not a backup file name");
        }
        if file.to_string_lossy().contains('"') {
            bail!("{}: unusable file name", file.display());
        }
        let part = format!(".{name}.part");
        let batch = format!(
            "-rm {p}\nput \"{f}\" {p}\nrename {p} {n}\n",
            p = self.quoted(&part),
            f = file.display(),
            n = self.quoted(name)
        );
        self.run(&batch).map(|_| ())
    }

    /// The backups on the server, oldest first (names sort by time).
    pub fn list(&self) -> Result<Vec<String>> {
        let out = self.run(&format!("ls -1 \"{}\"\n", self.dir))?;
        let mut names: Vec<String> = out
            .lines()
            .filter_map(|l| l.trim().rsplit('/').next().map(str::to_string))
            .filter(|n| is_backup_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Downloads backup `name` into `dest`.
    pub fn fetch(&self, name: &str, dest: &Path) -> Result<()> {
        if !is_backup_name(name) {
            bail!("{name}: not a backup file name");
        }
        if dest.to_string_lossy().contains('"') {
            bail!("{}: unusable file name", dest.display());
        }
        self.run(&format!(
            "get {} \"{}\"\n",
            self.quoted(name),
            dest.display()
        ))
        .map(|_| ())
    }

    /// Removes the oldest backups beyond `keep`; returns the removed names.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>> {
        let names = self.list()?;
        if names.len() <= keep {
            return Ok(Vec::new());
        }
        let old: Vec<String> = names[..names.len() - keep].to_vec();
        let batch: String = old
            .iter()
            .map(|n| format!("rm {}\n", self.quoted(n)))
            .collect();
        self.run(&batch)?;
        Ok(old)
    }
}

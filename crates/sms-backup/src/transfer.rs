//! The networked step, apart from the privileged one (ADR 17): the backup
//! service (root, every secret readable, no network) seals the archive,
//! then has `sms-backup-transfer@OP.service` (account sms-backup, no
//! capability, network) move it. The two meet in [`TRANSFER_DIR`]: a
//! request, a result, the archive in flight and the appliance's SSH key,
//! which only the transfer account reads.

use crate::sftp::Remote;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sms_core::settings::BackupServer;
use std::path::{Path, PathBuf};

/// The transfer directory below the data partition.
pub const TRANSFER_DIR: &str = "backup/transfer";
/// The account of the transfer step.
pub const TRANSFER_USER: &str = "sms-backup";
/// The archive being sent.
pub const OUTGOING: &str = "outgoing.smsbak";
/// The archive fetched.
pub const INCOMING: &str = "incoming.smsbak";
/// The appliance's key for the backup server.
pub const KEY: &str = "id_ed25519";

/// What the transfer step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum TransferOp {
    /// Upload [`OUTGOING`] as `name`, then keep the newest `keep`.
    Send {
        /// Name on the server.
        name: String,
        /// Backups kept.
        keep: usize,
    },
    /// List the backups on the server.
    List,
    /// Download `name` into [`INCOMING`].
    Fetch {
        /// Name on the server.
        name: String,
    },
}

impl TransferOp {
    /// The unit instance (`send`, `list`, `fetch`).
    pub fn word(&self) -> &'static str {
        match self {
            TransferOp::Send { .. } => "send",
            TransferOp::List => "list",
            TransferOp::Fetch { .. } => "fetch",
        }
    }
}

/// A request of the service to the transfer step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// Where to.
    pub server: BackupServer,
    /// What.
    pub op: TransferOp,
}

/// What the transfer step reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferResult {
    /// Whether it worked.
    pub ok: bool,
    /// Backups listed or removed by retention.
    pub names: Vec<String>,
    /// Why it failed.
    pub error: String,
}

/// How the service reaches the transfer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// In this process (tests, `--no-services`).
    Direct,
    /// Through `sms-backup-transfer@OP.service`.
    Unit,
}

fn remote(dir: &Path, server: &BackupServer) -> Remote {
    Remote {
        host: server.server.clone(),
        port: server.port_or_default(),
        user: server.user.clone(),
        dir: server.directory.clone().unwrap_or_else(|| ".".into()),
        key: dir.join(KEY),
        host_key: server.host_key.clone(),
    }
}

/// Does `req` from `dir` (the transfer step's work).
pub fn run_here(dir: &Path, req: &TransferRequest) -> Result<TransferResult> {
    let r = remote(dir, &req.server);
    let names = match &req.op {
        TransferOp::Send { name, keep } => {
            r.send(&dir.join(OUTGOING), name)?;
            r.prune(*keep)?
        }
        TransferOp::List => r.list()?,
        TransferOp::Fetch { name } => {
            r.fetch(name, &dir.join(INCOMING))?;
            Vec::new()
        }
    };
    Ok(TransferResult {
        ok: true,
        names,
        error: String::new(),
    })
}

/// `sms-backup transfer OP`: reads the request in `dir`, does it, writes
/// the result beside it (also when it failed).
pub fn serve_unit(dir: &Path, word: &str) -> Result<()> {
    let req: TransferRequest = serde_json::from_slice(
        &std::fs::read(dir.join("request.json")).context("reading the transfer request")?,
    )
    .context("the transfer request")?;
    if req.op.word() != word {
        bail!("the request is for {}, this is {word}", req.op.word());
    }
    let result = run_here(dir, &req).unwrap_or_else(|e| TransferResult {
        ok: false,
        names: Vec::new(),
        error: format!("{e:#}"),
    });
    sms_core::files::write_atomic(
        &dir.join("result.json"),
        &serde_json::to_vec(&result)?,
        0o640,
    )?;
    if !result.ok {
        bail!("{}", result.error);
    }
    Ok(())
}

/// Runs `req` the way `how` says; `Err` carries the transfer's reason.
pub fn run(how: Transfer, dir: &Path, req: &TransferRequest) -> Result<TransferResult> {
    match how {
        Transfer::Direct => run_here(dir, req),
        Transfer::Unit => {
            let request = dir.join("request.json");
            let result = dir.join("result.json");
            let _ = std::fs::remove_file(&result);
            sms_core::files::write_atomic(&request, &serde_json::to_vec(req)?, 0o640)?;
            give_to_transfer(&request)?;
            let unit = format!("sms-backup-transfer@{}.service", req.op.word());
            let status = std::process::Command::new("systemctl")
                .args(["start", &unit])
                .status()
                .context("running systemctl")?;
            let got: Option<TransferResult> = std::fs::read(&result)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match got {
                Some(r) if r.ok && status.success() => Ok(r),
                Some(r) if !r.ok => bail!("{}", r.error),
                _ => bail!("{unit} failed ({status}); see show log sms-backup"),
            }
        }
    }
}

/// Makes `path` readable by the transfer account (group), when it exists.
pub fn give_to_transfer(path: &Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    if let Ok(Some(g)) = nix::unistd::Group::from_name(TRANSFER_USER) {
        nix::unistd::chown(path, None, Some(g.gid))
            .with_context(|| format!("chown {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

/// Makes `path` the transfer account's own, when that account exists.
pub fn own_by_transfer(path: &Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    if let Ok(Some(u)) = nix::unistd::User::from_name(TRANSFER_USER) {
        nix::unistd::chown(path, Some(u.uid), Some(u.gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// The transfer directory of `root`.
pub fn dir_of(root: &Path) -> PathBuf {
    root.join(TRANSFER_DIR)
}

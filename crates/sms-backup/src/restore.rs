//! Restoring a backup: checked whole before anything changes, shown as a
//! plan, then applied with the affected daemons stopped.

use crate::archive::{Archive, ArchiveError, EntryKind, Keys};
use crate::layout::{Layout, AUDIT_LOG, OTHER_UNITS, STORES, TREES};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// An archive that passed every check: firmware, pass phrase, signature,
/// every sealed entry.
pub struct Verified {
    archive: Archive,
    keys: Keys,
}

/// Opens and checks `path` completely. Nothing is written.
pub fn verify(
    path: &Path,
    passphrase: &str,
    running_firmware: &str,
) -> Result<Verified, ArchiveError> {
    let archive = Archive::open(path)?;
    archive.check_firmware(running_firmware)?;
    let keys = archive.unlock(passphrase)?;
    archive.verify(&keys)?;
    for (i, e) in archive.manifest().entries.iter().enumerate() {
        if matches!(e.kind, EntryKind::File | EntryKind::Store) {
            archive.open_entry(&keys, i)?;
        }
    }
    Ok(Verified { archive, keys })
}

impl Verified {
    /// The archive's manifest (now trusted).
    pub fn manifest(&self) -> &crate::archive::Manifest {
        self.archive.manifest()
    }

    /// What a restore onto `layout` changes, one line per item.
    pub fn plan(&self, layout: &Layout) -> Vec<String> {
        let m = self.archive.manifest();
        let mut lines = vec![format!(
            "backup of {} made {} by firmware {}",
            m.hostname, m.created, m.firmware
        )];
        let in_backup: BTreeSet<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
        for e in &m.entries {
            match e.kind {
                EntryKind::File => {
                    let path = layout.path(&e.name);
                    let now = std::fs::read(&path).ok();
                    let same = now
                        .as_deref()
                        .map(|b| sms_core::blob::Digest::of(b).to_hex() == e.sha256);
                    match same {
                        Some(true) => {}
                        Some(false) if kept_here(layout, &e.name) => lines.push(format!(
                            "keep     {} (this appliance's own audit trail is kept)",
                            e.name
                        )),
                        Some(false) => lines.push(format!("replace  {}", e.name)),
                        None => lines.push(format!("add      {}", e.name)),
                    }
                }
                EntryKind::Store => {
                    let now = STORES
                        .iter()
                        .find(|s| format!("store/{}", s.name) == e.name)
                        .map(|s| layout.path(s.dir).join("conf").exists())
                        .unwrap_or(false);
                    lines.push(format!(
                        "{}  {} ({} records)",
                        if now { "replace" } else { "add    " },
                        e.name,
                        e.records.unwrap_or(0)
                    ));
                }
                EntryKind::Package => {
                    if !layout.path(&e.name).exists() {
                        lines.push(format!("add      {}", e.name));
                    }
                }
                EntryKind::Dir => {}
            }
        }
        for t in TREES {
            for f in files_below(&layout.path(t), t) {
                if !in_backup.contains(f.as_str()) {
                    lines.push(format!("remove   {f} (not in the backup)"));
                }
            }
        }
        lines
    }

    /// Restores onto `layout`. With `services`, the daemons whose stores,
    /// settings or keys change are stopped first and started after.
    pub fn apply(
        &self,
        layout: &Layout,
        services: bool,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let owners: Vec<&str> = STORES.iter().map(|s| s.unit).collect();
        if services {
            progress("stopping the daemons whose stores are replaced");
            systemctl("stop", &owners)?;
        }
        let result = self.apply_files(layout, progress);
        if services {
            progress("starting the daemons");
            // Started even when the restore failed: the previous content
            // is back in place or kept aside, and the appliance must serve.
            let started = systemctl("start", &owners);
            // The restored settings applied now (host name, network,
            // accounts), not only when the path unit notices the new file.
            let applied = systemctl("start", &["sms-settings-apply.service"]);
            // The others read restored secrets or keys.
            let others = systemctl("try-restart", OTHER_UNITS);
            result?;
            started?;
            applied?;
            return others;
        }
        result
    }

    fn apply_files(&self, layout: &Layout, progress: &mut dyn FnMut(&str)) -> Result<()> {
        let m = self.archive.manifest();
        let staging = layout.staging();
        let aside = layout.before_restore();
        for d in [&staging, &aside] {
            if d.exists() {
                std::fs::remove_dir_all(d).with_context(|| d.display().to_string())?;
            }
            std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        }
        // Trees are assembled in the staging area, then swapped in whole.
        for (i, e) in m.entries.iter().enumerate() {
            let in_tree = TREES
                .iter()
                .any(|t| e.name == *t || e.name.starts_with(&format!("{t}/")));
            let dest = if in_tree {
                staging.join(&e.name)
            } else {
                layout.path(&e.name)
            };
            match e.kind {
                EntryKind::Dir => {
                    std::fs::create_dir_all(&dest).with_context(|| dest.display().to_string())?;
                    set_owner_mode(&dest, &e.owner, &e.group, e.mode)?;
                }
                EntryKind::File => {
                    if kept_here(layout, &e.name) {
                        continue;
                    }
                    let content = self.archive.open_entry(&self.keys, i)?;
                    if let Some(p) = dest.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    sms_core::files::write_atomic(&dest, &content, e.mode & 0o777)
                        .with_context(|| dest.display().to_string())?;
                    set_owner_mode(&dest, &e.owner, &e.group, e.mode)?;
                }
                EntryKind::Store => {
                    let Some(spec) = STORES
                        .iter()
                        .find(|s| format!("store/{}", s.name) == e.name)
                    else {
                        tracing::warn!("{}: a store this firmware does not have, left out", e.name);
                        continue;
                    };
                    let content = self.archive.open_entry(&self.keys, i)?;
                    let dir = layout.path(spec.dir);
                    let sum = sms_core::store::restore_store(&dir, &mut content.as_slice())?;
                    chown_tree(&dir, &e.owner, &e.group)?;
                    set_owner_mode(&dir, &e.owner, &e.group, e.mode)?;
                    progress(&format!(
                        "store {}: {} records restored",
                        spec.name, sum.records
                    ));
                }
                EntryKind::Package => {
                    if dest.exists() {
                        continue;
                    }
                    if let Some(p) = dest.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    let tmp = dest.with_extension("restoring");
                    self.archive.copy_package(i, &tmp)?;
                    set_owner_mode(&tmp, &e.owner, &e.group, e.mode)?;
                    std::fs::rename(&tmp, &dest)?;
                }
            }
        }
        for t in TREES {
            let staged = staging.join(t);
            if !staged.exists() {
                continue;
            }
            let live = layout.path(t);
            let kept = aside.join(t);
            if let Some(p) = kept.parent() {
                std::fs::create_dir_all(p)?;
            }
            if live.exists() {
                std::fs::rename(&live, &kept)
                    .with_context(|| format!("moving {} aside", live.display()))?;
            }
            if let Some(p) = live.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::rename(&staged, &live).with_context(|| {
                format!(
                    "moving the restored {t} in (the previous one is in {})",
                    kept.display()
                )
            })?;
            progress(&format!("{t} restored"));
        }
        std::fs::remove_dir_all(&staging).ok();
        Ok(())
    }
}

/// The audit trail is append-only evidence: a restore never puts an older
/// one over it. Only an appliance without one (a replacement) gets the
/// backup's.
fn kept_here(layout: &Layout, name: &str) -> bool {
    name == AUDIT_LOG
        && std::fs::metadata(layout.path(name))
            .map(|m| m.len() > 0)
            .unwrap_or(false)
}

fn files_below(dir: &Path, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = format!("{name}/{}", e.file_name().to_string_lossy());
            match e.file_type() {
                Ok(t) if t.is_dir() => out.extend(files_below(&e.path(), &n)),
                Ok(t) if t.is_file() => out.push(n),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

fn ids(owner: &str, group: &str) -> (Option<nix::unistd::Uid>, Option<nix::unistd::Gid>) {
    let uid = nix::unistd::User::from_name(owner)
        .ok()
        .flatten()
        .map(|u| u.uid)
        .or_else(|| owner.parse().ok().map(nix::unistd::Uid::from_raw));
    let gid = nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid)
        .or_else(|| group.parse().ok().map(nix::unistd::Gid::from_raw));
    (uid, gid)
}

/// Gives `path` the recorded owner (by name: a replacement appliance may
/// number its accounts otherwise) and mode. Only root may change owners;
/// elsewhere (tests as a user) the owner stays.
fn set_owner_mode(path: &Path, owner: &str, group: &str, mode: u32) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        let (uid, gid) = ids(owner, group);
        if uid.is_none() || gid.is_none() {
            tracing::warn!(
                "{}: no account {owner}:{group} here; owner left as is",
                path.display()
            );
        }
        nix::unistd::chown(path, uid, gid).with_context(|| format!("chown {}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

fn chown_tree(path: &Path, owner: &str, group: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let (uid, gid) = ids(owner, group);
    nix::unistd::chown(path, uid, gid).with_context(|| format!("chown {}", path.display()))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), owner, group)?;
        }
    }
    Ok(())
}

fn systemctl(verb: &str, units: &[&str]) -> Result<()> {
    let status = std::process::Command::new("systemctl")
        .arg(verb)
        .args(units)
        .status()
        .with_context(|| format!("running systemctl {verb}"))?;
    if !status.success() {
        anyhow::bail!("systemctl {verb} {} failed ({status})", units.join(" "));
    }
    Ok(())
}
